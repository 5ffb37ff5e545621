"""The ledger's tracer events as arrays: every recorded score, every update, consume and combine.

Score ids are per process, so a score is keyed by (rank, sid). Event order is the ledger's stable
order (harness clock, then rank, then seq; read_ledger sorts by it): within one rank that is the
order the process emitted its events, across ranks it is the shared clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.ledger import Ledger

_RANK_SHIFT = 40  # key = rank << 40 | sid: score ids stay below 2**40 in any realistic run
UNTRACED_DEP = -2  # a score event without a dep value: its inputs were not traced


def score_key(rank: int | np.ndarray, sid: int | np.ndarray) -> Any:
    return (np.asarray(rank, dtype=np.int64) << _RANK_SHIFT) | np.asarray(sid, dtype=np.int64)


def _as_list(x: Any, n: int | None = None) -> list[Any]:
    """A parallel-list field: a list as is, a scalar broadcast to n items."""
    if isinstance(x, (list, tuple)):
        return list(x)
    if n is None:
        return [x]
    return [x] * n


def expand_ids(raw: Any) -> list[int]:
    """Score ids of a consume / combine event, flattened: consume carries a sorted list of ids,
    combine a list of [sid_a, sid_b] pairs (two scores of one position). Non-integers are ignored
    (and so cannot match)."""
    out: list[int] = []
    stack = [raw] if raw is not None else []
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            out.append(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
    return out


@dataclass
class Update:
    order: int  # index in ledger.events
    rank: int
    seq: int
    t: float
    site: str | None
    target: str
    op: str
    lo: int
    hi: int  # inclusive
    states: tuple[int, ...] = ()  # the memory blocks it wrote (empty: not followed)

    def what(self) -> str:
        """How a reviewer would call this state change."""
        return {
            "param": "a gradient step",
            "optimizer_state": "an optimizer-state update",
            "table": "a cache/table write",
            "buffer": "a running-statistic (buffer) update",
            "array": "an array write",
            "serialized": "a torch.save of tensors computed from them",
        }.get(self.target, f"a state change ({self.target or 'unknown'})")


@dataclass
class Consume:
    order: int
    rank: int
    seq: int
    t: float
    site: str | None
    op: str
    rows: np.ndarray  # score rows it carries
    missing: int  # ids that match no recorded score
    value: Any = None


@dataclass
class Combine:
    order: int
    rank: int
    seq: int
    t: float
    site: str | None
    op: str
    rows: np.ndarray


@dataclass
class TraceTables:
    """Every score of the run (one row each) and the events that refer to scores or positions."""

    rank: np.ndarray
    sid: np.ndarray
    pos: np.ndarray
    nll: np.ndarray
    dep: np.ndarray  # UNTRACED_DEP when the event carried none
    grad: np.ndarray
    order: np.ndarray  # index of the score's event in ledger.events
    event_of_row: np.ndarray  # same as order, kept for readability at call sites
    updates: list[Update] = field(default_factory=list)
    consumes: list[Consume] = field(default_factory=list)
    combines: list[Combine] = field(default_factory=list)
    malformed: int = 0  # score events whose parallel lists disagree (skipped)
    # (rank, state) -> (event order of its release, seq of the first event after its last read, values that
    # left torch between its first update and that read)
    released: dict[tuple[int, int], tuple[int, int, int]] = field(default_factory=dict)
    _sorted_keys: np.ndarray | None = None
    _sorted_rows: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.pos.size)

    def rows_for(self, rank: int, sids: Iterable[int]) -> tuple[np.ndarray, int]:
        """Score rows of (rank, sid) pairs, and how many ids matched no recorded score."""
        ids = np.fromiter(sids, dtype=np.int64)
        if ids.size == 0 or self._sorted_keys is None or self._sorted_keys.size == 0:
            return np.zeros(0, dtype=np.int64), int(ids.size)
        keys = score_key(rank, ids)
        idx = np.searchsorted(self._sorted_keys, keys)
        idx_c = np.minimum(idx, self._sorted_keys.size - 1)
        hit = self._sorted_keys[idx_c] == keys
        rows = np.unique(self._sorted_rows[idx_c[hit]])
        return rows, int((~hit).sum())


def _score_rows(ev: dict[str, Any]) -> list[tuple[int, int, float, int, bool]] | None:
    sid = _as_list(ev.get("sid"))
    n = len(sid)
    pos = _as_list(ev.get("pos"), n)
    nll = _as_list(ev.get("nll"), n)
    dep_raw = ev.get("dep")
    dep = _as_list(dep_raw, n) if dep_raw is not None else [None] * n
    grad = _as_list(ev.get("grad", False), n)
    if not (len(pos) == len(nll) == len(dep) == len(grad) == n):
        return None
    out = []
    for s, p, v, d, g in zip(sid, pos, nll, dep, grad):
        if not isinstance(s, int) or not isinstance(p, int):
            return None
        try:
            fv = float(v) if v is not None else float("nan")
        except (TypeError, ValueError):
            fv = float("nan")
        dv = int(d) if isinstance(d, (int, float)) and not isinstance(d, bool) else UNTRACED_DEP
        out.append((s, p, fv, dv, bool(g)))
    return out


def _state_ids(ev: dict[str, Any]) -> tuple[int, ...]:
    sts = ev.get("states")
    if not isinstance(sts, list) or not sts or not all(isinstance(x, int) and not isinstance(x, bool) for x in sts):
        return ()
    return tuple(sts)


def build_tables(ledger: Ledger) -> TraceTables:
    ranks: list[int] = []
    sids: list[int] = []
    poss: list[int] = []
    nlls: list[float] = []
    deps: list[int] = []
    grads: list[bool] = []
    orders: list[int] = []
    malformed = 0
    updates: list[Update] = []
    raw_consumes: list[tuple[int, dict[str, Any]]] = []
    raw_combines: list[tuple[int, dict[str, Any]]] = []
    released: dict[tuple[int, int], tuple[int, int, int]] = {}
    for i, ev in enumerate(ledger.events):
        kind = ev["kind"]
        if kind == "score":
            rows = _score_rows(ev)
            if rows is None:
                malformed += 1
                continue
            r = int(ev.get("rank", 0))
            for s, p, v, d, g in rows:
                ranks.append(r)
                sids.append(s)
                poss.append(p)
                nlls.append(v)
                deps.append(d)
                grads.append(g)
                orders.append(i)
        elif kind == "update":
            los = _as_list(ev.get("lo"))
            his = _as_list(ev.get("hi"), len(los))
            for lo, hi in zip(los, his):
                if isinstance(lo, int) and isinstance(hi, int) and hi >= lo:
                    updates.append(Update(i, int(ev.get("rank", 0)), int(ev.get("seq", 0)),
                                          float(ev.get("t", 0.0)), ev.get("site"), str(ev.get("target", "")),
                                          str(ev.get("op", "")), lo, hi, _state_ids(ev)))
        elif kind == "release":
            sts, last, esc = ev.get("states"), ev.get("last_read"), ev.get("escapes")
            if isinstance(sts, list) and isinstance(last, list) and isinstance(esc, list) \
                    and len(sts) == len(last) == len(esc):
                for st, lr, n in zip(sts, last, esc):
                    if all(isinstance(x, int) and not isinstance(x, bool) for x in (st, lr, n)):
                        released.setdefault((int(ev.get("rank", 0)), st), (i, lr, n))
        elif kind == "consume":
            raw_consumes.append((i, ev))
        elif kind == "combine":
            raw_combines.append((i, ev))
    tables = TraceTables(
        rank=np.asarray(ranks, dtype=np.int64),
        sid=np.asarray(sids, dtype=np.int64),
        pos=np.asarray(poss, dtype=np.int64),
        nll=np.asarray(nlls, dtype=np.float64),
        dep=np.asarray(deps, dtype=np.int64),
        grad=np.asarray(grads, dtype=bool),
        order=np.asarray(orders, dtype=np.int64),
        event_of_row=np.asarray(orders, dtype=np.int64),
        updates=updates,
        malformed=malformed,
        released=released,
    )
    keys = score_key(tables.rank, tables.sid)
    srt = np.argsort(keys, kind="stable")
    tables._sorted_keys = keys[srt]
    tables._sorted_rows = srt.astype(np.int64)
    for i, ev in raw_consumes:
        r = int(ev.get("rank", 0))
        rows, missing = tables.rows_for(r, expand_ids(ev.get("sids")))
        tables.consumes.append(Consume(i, r, int(ev.get("seq", 0)), float(ev.get("t", 0.0)), ev.get("site"),
                                       str(ev.get("op", "")), rows, missing, ev.get("value")))
    for i, ev in raw_combines:
        r = int(ev.get("rank", 0))
        rows, _ = tables.rows_for(r, expand_ids(ev.get("sids")))
        tables.combines.append(Combine(i, r, int(ev.get("seq", 0)), float(ev.get("t", 0.0)), ev.get("site"),
                                       str(ev.get("op", "")), rows))
    return tables
