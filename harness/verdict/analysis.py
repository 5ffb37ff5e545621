"""Everything the checkers and the timeline share: the trace as arrays, the reported pass, and for
each score of that pass the earliest state change that touched its position."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.data.shards import BOS_ID
from harness.ledger import Ledger
from harness.verdict.passes import PassSearch, Printed, find_reported_pass
from harness.runtime.tracer.provenance import apply_labels
from harness.verdict.trace import TraceTables, Update, build_tables


@dataclass
class TraceStats:
    unruled_ops: dict[str, int] = field(default_factory=dict)
    escapes: int = 0
    traced_ops: int = 0
    imprecise_targets: int = 0  # target selections the tracer could not resolve exactly (not scored)
    ranks: int = 0  # ranks that wrote a stats event
    # op outputs left with no provenance: the op's handler and the coarse fallback both failed (a MemoryError
    # on a vocabulary-sized tensor); what they carried is unknown: label -> count
    lost_outputs: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        if not self.ranks:
            return "trace: no stats recorded"
        unruled = sum(self.unruled_ops.values())
        top = ", ".join(f"{k} {v}" for k, v in sorted(self.unruled_ops.items(), key=lambda kv: -kv[1])[:3])
        imprecise = f", {self.imprecise_targets} imprecise targets" if self.imprecise_targets else ""
        return (f"trace: {self.traced_ops} ops, {unruled} unruled (coarse union){f' [{top}]' if top else ''}, "
                f"{self.escapes} escapes{imprecise}")


def trace_stats(ledger: Ledger) -> TraceStats:
    """Totals over ranks of each rank's last stats event (the tracer's counters are cumulative and
    written every so many ops and at exit)."""
    last: dict[int, dict[str, Any]] = {}
    for ev in ledger.of("stats"):
        last[int(ev.get("rank", 0))] = ev
    st = TraceStats()
    for ev in last.values():
        st.ranks += 1
        for k, v in (ev.get("unruled_ops") or {}).items():
            if isinstance(v, int):
                st.unruled_ops[str(k)] = st.unruled_ops.get(str(k), 0) + v
        if isinstance(ev.get("escapes"), int):
            st.escapes += ev["escapes"]
        if isinstance(ev.get("traced_ops"), int):
            st.traced_ops += ev["traced_ops"]
        if isinstance(ev.get("imprecise_targets"), int):
            st.imprecise_targets += ev["imprecise_targets"]
        coarse = ev.get("coarse")
        for k, v in (coarse.items() if isinstance(coarse, dict) else ()):
            if isinstance(k, str) and k.startswith("untraced_output:") and isinstance(v, int) and v > 0:
                label = k[len("untraced_output:"):]
                st.lost_outputs[label] = st.lost_outputs.get(label, 0) + v
    return st


def runtime_parts(ledger: Ledger) -> dict[str, str]:
    """Which runtime parts started (runtime_ready phase events), the worst state over processes."""
    out: dict[str, str] = {}
    for ev in ledger.of("phase"):
        if ev.get("name") != "runtime_ready" or not isinstance(ev.get("parts"), dict):
            continue
        for k, v in ev["parts"].items():
            if v != "ok" or k not in out:
                out[str(k)] = str(v)
    return out


def earliest_cover(points: np.ndarray, updates: list[Update]) -> np.ndarray:
    """For each of the sorted unique `points`, the index of the first update (in ledger order) whose
    [lo, hi] contains it, or -1. Each update paints only the not-yet-painted gaps of its range, so the
    work is the number of points plus a few list operations per update, however wide the ranges."""
    first = np.full(points.size, -1, dtype=np.int64)
    starts: list[int] = []  # painted index intervals [s, e), disjoint, sorted
    ends: list[int] = []
    for ui, u in enumerate(updates):
        a = int(np.searchsorted(points, u.lo, side="left"))
        b = int(np.searchsorted(points, u.hi, side="right"))
        if a >= b:
            continue
        i = bisect.bisect_left(ends, a)  # first interval ending at or after a
        j = bisect.bisect_right(starts, b)  # intervals starting at or before b
        cur = a
        for k in range(i, j):
            if starts[k] > cur:
                first[cur:min(starts[k], b)] = ui
            cur = max(cur, ends[k])
        if cur < b:
            first[cur:b] = ui
        ns = min(a, starts[i]) if i < j else a
        ne = max(b, ends[j - 1]) if i < j else b
        starts[i:j] = [ns]
        ends[i:j] = [ne]
    return first


@dataclass
class Analysis:
    ledger: Ledger
    tables: TraceTables
    printed: Printed | None
    search: PassSearch | None
    n_val: int | None  # tokens in the served validation stream
    pos_bytes: np.ndarray | None
    traced: bool | None  # run_start.traced; None when the ledger has no run_start
    stats: TraceStats
    parts: dict[str, str] = field(default_factory=dict)  # runtime part -> "ok" | why not
    first_update: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # per pass row
    notes: list[str] = field(default_factory=list)
    val_tokens: np.ndarray | None = None  # the served stream (document boundaries are BOS tokens)
    # updates set aside for C3 (tables.updates keeps the rest; all_updates has both): the script never read a
    # block they wrote again from the reported pass's first score on; `discarded` with no value leaving torch
    # between the update and that last read (no score can depend on them but through traced values, which
    # C1 follows), `doubtful` with some (undecided)
    discarded: list[Update] = field(default_factory=list)
    doubtful: list[Update] = field(default_factory=list)
    # the score-order replay's decisions on rows this run left undecided (harness.verdict.relabel.Replay)
    replay: Any = None

    def part_failed(self, part: str) -> str | None:
        """Why a runtime part (tracer, io_hooks, shim) did not start, or None when it did or is unknown."""
        v = self.parts.get(part)
        return None if v in (None, "ok") else v

    @property
    def tracing(self) -> bool:
        """The tracer was asked for and started: an absent update then means none happened."""
        return bool(self.traced) and self.part_failed("tracer") is None

    @property
    def all_updates(self) -> list[Update]:
        """Every update, those C3 set aside included (D1 asks what shaped the artifact, whoever reads it later)."""
        return sorted([*self.tables.updates, *self.discarded, *self.doubtful], key=lambda u: u.order)

    @property
    def multi_rank(self) -> bool:
        """More than one process produced scores or updates (the runner's own events are rank -1)."""
        ranks = set(self.tables.rank.tolist()) | {u.rank for u in self.all_updates}
        return len(ranks) > 1

    @property
    def pass_rows(self) -> np.ndarray | None:
        return self.search.match.rows if self.search and self.search.match else None

    def event(self, order: int) -> dict[str, Any]:
        return self.ledger.events[order]

    def updated_before_scored(self) -> np.ndarray:
        """Pass rows whose position an update touched before the row's score event (C3)."""
        rows = self.pass_rows
        if rows is None or rows.size == 0 or not self.tables.updates:
            return np.zeros(0, dtype=np.int64)
        u = self.first_update
        orders = np.asarray([x.order for x in self.tables.updates], dtype=np.int64)
        has = u >= 0
        bad = np.zeros(rows.size, dtype=bool)
        bad[has] = orders[u[has]] < self.tables.order[rows[has]]
        return rows[bad]

    # Provenance keeps one interval hull per element, so only a hull's ends are positions a value surely
    # depends on (min and max of its true set, widened only by coarse op handlers); a position strictly
    # inside may never have been used. A violation is proven only through an end; one seen only inside a
    # hull is undecided (INCONCLUSIVE), never PASS and never FAIL.

    def proven_updates(self) -> list[Update]:
        """The updates an end of whose interval the reported pass scored only after them: each surely used a
        position before it was scored."""
        rows = self.pass_rows
        tb = self.tables
        if rows is None or rows.size == 0:
            return []
        first = self._first_score_order()
        return [u for u in tb.updates if any(first.get(e, -1) > u.order for e in self.proof_ends(u))]

    def proof_ends(self, u: Update) -> tuple[int, ...]:
        """The ends of an update's interval that can prove a use. A document's opening BOS is read by
        per-document methods as the first input of that document: all it says is that a document starts
        there. Phased TTT trains on a document (BOS first) before the previous one, whose last target is
        that BOS, is scored; an accepted pattern. Such a low end proves nothing; the positions beside it
        stay undecided (never PASS). A high end at a BOS was used as a target or as the last input of the
        previous document: it still proves."""
        vt = self.val_tokens
        if vt is None or not (0 <= u.lo < vt.shape[0]) or int(vt[u.lo]) != BOS_ID or u.lo == u.hi:
            return (u.lo, u.hi)
        return (u.hi,)

    def updated_before_scored_surely(self) -> np.ndarray:
        """Pass rows whose position a proven update (see proven_updates) touched before the row's score."""
        rows = self.pass_rows
        ups = self.proven_updates()
        if rows is None or rows.size == 0 or not ups:
            return np.zeros(0, dtype=np.int64)
        points = np.unique(self.tables.pos[rows])
        cover = earliest_cover(points, ups)[np.searchsorted(points, self.tables.pos[rows])]
        orders = np.asarray([u.order for u in ups], dtype=np.int64)
        has = cover >= 0
        bad = np.zeros(rows.size, dtype=bool)
        bad[has] = orders[cover[has]] < self.tables.order[rows[has]]
        return rows[bad]

    def proof_of(self, pos: int, score_order: int) -> tuple[Update, int]:
        """The first proven update written before `score_order` whose range holds `pos`, and the end of its
        range that the pass scored after it (`pos` itself when it is that end)."""
        first = self._first_score_order()
        for u in self.proven_updates():
            if u.order < score_order and u.lo <= pos <= u.hi:
                ends = [e for e in self.proof_ends(u) if first.get(e, -1) > u.order]
                return u, pos if pos in ends else ends[0]
        raise ValueError(f"no proven update covers position {pos}")

    def _first_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """The pass's scored positions (sorted) and the event order of each one's first score."""
        rows = self.pass_rows
        tb = self.tables
        assert rows is not None
        order = tb.order[rows]
        srt = np.lexsort((order, tb.pos[rows]))
        upos, first_idx = np.unique(tb.pos[rows][srt], return_index=True)
        return upos, order[srt][first_idx]

    def _first_score_order(self) -> dict[int, int]:
        upos, first_order = self._first_scores()
        return dict(zip(upos.tolist(), first_order.tolist()))

    def dependence_proven(self, bad: np.ndarray) -> np.ndarray:
        """Mask over `bad` (C1 rows, dep >= pos): the score depends on its target (dep == pos), or on a
        later position the reported pass had not scored yet. dep is the hull's max, so it is a position the
        value surely depends on. A later position scored already (phased or document-batched score-first
        TTT trains on scored documents from anywhere in the stream) proves nothing about the positions
        between t and dep: undecided."""
        tb = self.tables
        rows = self.pass_rows
        pos, dep = tb.pos[bad], tb.dep[bad]
        if rows is None or rows.size == 0:
            return np.ones(bad.shape, dtype=bool)
        upos, first_order = self._first_scores()
        k = np.clip(np.searchsorted(upos, dep), 0, max(upos.size - 1, 0))
        scored_before = (upos[k] == dep) & (first_order[k] < tb.order[bad])
        return (dep == pos) | ~scored_before


def analyze(
    ledger: Ledger,
    printed: Printed | None,
    val_tokens: np.ndarray | None,
    pos_bytes: np.ndarray | None,
    tol_loss: float,
    tol_bpb: float,
    label: np.ndarray | None = None,
) -> Analysis:
    """label: position -> label when the run's positions were relabeled (harness.verdict.relabel): score
    positions are read back as stream positions, dependences and update ranges stay labels."""
    tables = build_tables(ledger)
    if label is not None:
        inv = np.empty(label.size, dtype=np.int64)
        inv[label] = np.arange(label.size)
        tables.pos = apply_labels(tables.pos, inv)
    rs = ledger.first("run_start")
    traced = bool(rs.get("traced")) if rs is not None and "traced" in rs else None
    n_val: int | None = int(np.asarray(val_tokens).shape[0]) if val_tokens is not None else None
    if n_val is None:
        his = [int(e["hi"]) for e in ledger.of("read") if isinstance(e.get("hi"), int)]
        n_val = max(his) if his else None
    an = Analysis(ledger, tables, printed, None, n_val, pos_bytes, traced, trace_stats(ledger), runtime_parts(ledger))
    an.val_tokens = None if val_tokens is None else np.asarray(val_tokens)
    if printed is not None and tables.n:
        an.search = find_reported_pass(tables, ledger, printed, pos_bytes, tol_loss, tol_bpb)
    rows = an.pass_rows
    if rows is not None and rows.size:
        _set_aside_unread_state(an, int(tables.order[rows].min()))
        at = apply_labels(tables.pos[rows], label)  # update ranges are labels
        points = np.unique(at)
        cover = earliest_cover(points, tables.updates)
        an.first_update = cover[np.searchsorted(points, at)]
    return an


def _set_aside_unread_state(an: Analysis, pass_start: int) -> None:
    """A throwaway copy trained on validation before the pass (a LoRA built to warm up a compiler, then
    dropped) changes nothing the pass scores with when the script never reads what the update wrote from
    the pass's first score on. Values computed from it before then carry its positions in their
    provenance, so a score that used them shows it in its dep (C1); only values that left torch as
    Python numbers meanwhile escape that, and then the update stays undecided instead."""
    tb = an.tables
    first = an.event(pass_start)
    rank, first_seq = int(first.get("rank", 0)), int(first.get("seq", 0))
    live: list[Update] = []
    for u in tb.updates:
        rel = [tb.released.get((u.rank, st)) for st in u.states]
        if not u.states or u.rank != rank or any(r is None or r[1] > first_seq for r in rel):
            live.append(u)
        elif any(r[2] for r in rel):  # type: ignore[index]
            an.doubtful.append(u)
        else:
            an.discarded.append(u)
    tb.updates = live
