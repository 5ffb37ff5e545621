"""Find the reported pass: the set of recorded scores whose recomputed val_loss / val_bpb equal the
numbers the script printed.

Candidates come from `consume` events (scores reaching a number that left torch):
- one event's score ids (`(loss_sum / count).item()` at the end of an eval);
- runs of consecutive events from one site (per-batch `total += nll.sum().item()`), cut where a
  position repeats (a new pass began) and, in a second variant, also where a score line was printed; in
  a third, only where a score line was printed (repeats kept: the selections below then judge them);
- one event cut at position repeats (a value that mixed several passes, e.g. a widened trace);
- the same key on every rank, unioned (each rank consumes its own share before an all_reduce);
- as a last resort, passes inferred from the order of grad-free scores (cut where a position repeats),
  unless the number consumed last before the print combined several scores of one position (then the
  print came from that number, and an inferred set that matches it is a coincidence).
A part of one consume event is not taken when the event's recorded value could not be that part alone:
the number carried every score of the event, repeats included.
A candidate in which some position has several scores is also tried through a selection (min, max,
mean, first, last per position): a match that needs one is a C4 violation, never a clean pass.
The numbers are recomputed from the harness's own records: the NLL of each score and the bytes of
each target from the tokenizer (harness.data.bpb), never from the script's own accumulators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from harness.ledger import Ledger
from harness.verdict.trace import TraceTables

SELECTIONS = ("min", "max", "mean", "first", "last")
_LN2 = math.log(2.0)


class Printed(NamedTuple):
    """The final score line the script printed."""

    tag: str
    val_loss: float
    val_bpb: float
    line: str = ""


@dataclass
class Candidate:
    rows: np.ndarray  # score rows, sorted ascending (= the order the scores were recorded)
    label: str
    key: tuple
    consumes: list[tuple[int, int]] = field(default_factory=list)  # (rank, seq) of its consume events
    selection: str = "all"  # "all" or one of SELECTIONS
    inferred: bool = False  # from score order only: no consume event carried it

    @property
    def last_row(self) -> int:
        return int(self.rows[-1]) if self.rows.size else -1


@dataclass
class PassMatch:
    """The reported pass and how well it reproduces the printed numbers."""

    cand: Candidate
    val_loss: float
    val_bpb: float | None  # None: bytes unknown (no val tokens / tokenizer)
    d_loss: float
    d_bpb: float | None
    bpb_ok: bool  # recomputed bpb within tolerance (False when unknown)
    tried: int  # candidates evaluated
    by_value: bool = False  # found by the consumed value, not by recomputing its scores

    @property
    def rows(self) -> np.ndarray:
        return self.cand.rows


@dataclass
class PassSearch:
    match: PassMatch | None
    tried: int
    closest: PassMatch | None  # best candidate when none matched (for the finding)
    missing_ids: int  # consumed score ids with no recorded score


def _group(pos: np.ndarray, nll: np.ndarray, selection: str) -> tuple[np.ndarray, np.ndarray]:
    """One value per position; pos/nll arrive in recording order."""
    if selection == "all":
        return pos, nll
    order = np.lexsort((np.arange(pos.size), pos))
    p, v = pos[order], nll[order]
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    ends = np.r_[starts[1:], p.size]
    if selection == "min":
        vals = np.minimum.reduceat(v, starts)
    elif selection == "max":
        vals = np.maximum.reduceat(v, starts)
    elif selection == "mean":
        vals = np.add.reduceat(v, starts) / (ends - starts)
    elif selection == "first":
        vals = v[starts]
    else:  # last
        vals = v[ends - 1]
    return p[starts], vals


def recompute(
    pos: np.ndarray, nll: np.ndarray, pos_bytes: np.ndarray | None, selection: str = "all"
) -> tuple[float, float | None]:
    """(val_loss, val_bpb) of a set of scores; val_bpb None when bytes are unknown."""
    p, v = _group(pos, nll, selection)
    if p.size == 0:
        return float("nan"), None
    loss = float(np.sum(v) / p.size)
    if pos_bytes is None or p.min() < 0 or p.max() >= pos_bytes.size:
        return loss, None
    nbytes = float(pos_bytes[p].sum())
    if nbytes <= 0:
        return loss, None
    return loss, float(np.sum(v) / _LN2 / nbytes)


def _has_dup(pos: np.ndarray) -> bool:
    if pos.size < 2:
        return False
    s = np.sort(pos)
    return bool(np.any(s[1:] == s[:-1]))


def _split_at_repeats(rows: np.ndarray, pos: np.ndarray) -> list[np.ndarray]:
    """Cut rows (recording order) where a position repeats within the current piece."""
    pieces: list[np.ndarray] = []
    seen: set[int] = set()
    start = 0
    p = pos[rows]
    for i in range(rows.size):
        q = int(p[i])
        if q in seen:
            pieces.append(rows[start:i])
            seen = set()
            start = i
        seen.add(q)
    pieces.append(rows[start:])
    return [x for x in pieces if x.size]


def _boundaries(ledger: Ledger) -> np.ndarray:
    """Event orders of printed score lines (a pass usually ends with one). The runner records them
    (rank -1) as they arrive, so they apply to every rank."""
    return np.asarray([i for i, ev in enumerate(ledger.events) if ev["kind"] in ("stdout", "reported")],
                      dtype=np.int64)


def _printed_between(bounds: np.ndarray | None, a: int, b: int) -> bool:
    if bounds is None or bounds.size == 0:
        return False
    i = int(np.searchsorted(bounds, a, side="right"))
    return i < bounds.size and int(bounds[i]) < b


MAX_INFERRED = 256  # inferred passes tried at most (a sliding window's rescored context cuts many pieces)


def _unique(cands: list[Candidate]) -> list[Candidate]:
    """Unique by content, keeping the first (the most telling label)."""
    seen_keys: set[tuple[int, int, bytes]] = set()
    uniq: list[Candidate] = []
    for c in cands:
        sig = (c.rows.size, int(c.rows.sum()) if c.rows.size else 0, c.rows[:64].tobytes())
        if sig in seen_keys and any(np.array_equal(c.rows, u.rows) for u in uniq if u.rows.size == c.rows.size):
            continue
        seen_keys.add(sig)
        uniq.append(c)
    return uniq


def inferred(tables: TraceTables, limit: int = MAX_INFERRED) -> list[Candidate]:
    """Passes inferred from the order of grad-free scores, per rank, cut where a position repeats;
    the largest `limit` of them."""
    out: list[Candidate] = []
    for rank in sorted(set(tables.rank.tolist())):
        rows = np.flatnonzero((tables.rank == rank) & ~tables.grad)
        for j, piece in enumerate(_split_at_repeats(rows, tables.pos)):
            out.append(Candidate(piece, f"inferred pass {j + 1} on rank {rank} (grad-free scores in order)",
                                 ("inferred", rank, j), [], inferred=True))
    out.sort(key=lambda c: -c.rows.size)
    return _unique(out[:limit])


def generate(tables: TraceTables, ledger: Ledger) -> list[Candidate]:
    """Candidate passes from consume events (see the module docstring)."""
    pos = tables.pos
    bounds = _boundaries(ledger)
    per_rank: dict[int, list[Candidate]] = {}
    for rank in sorted({c.rank for c in tables.consumes}):
        cands: list[Candidate] = []
        by_site: dict[str, list] = {}
        for c in tables.consumes:
            if c.rank == rank and c.rows.size:
                by_site.setdefault(str(c.site), []).append(c)
        for site, events in by_site.items():
            for k, c in enumerate(events):
                cands.append(Candidate(c.rows, f"consume #{c.seq} ({c.op or 'value'}) at {site}",
                                       ("one", site, k), [(rank, c.seq)]))
                if _has_dup(pos[c.rows]):
                    for j, piece in enumerate(_split_at_repeats(c.rows, pos)):
                        cands.append(Candidate(piece, f"part {j + 1} of consume #{c.seq} at {site}",
                                               ("part", site, k, j), [(rank, c.seq)]))
            if len(events) < 2:
                continue
            # "printed": cut only where a score line was printed, repeats kept (a sliding window whose short
            # last windows score the tail again, every score summed into the printed number)
            for variant in ("split", "joined", "printed"):
                runs: list[list] = []
                cur: list = []
                seen: set[int] = set()
                for c in events:
                    ps = set(pos[c.rows].tolist())
                    new = not cur or (variant != "printed" and bool(ps & seen))
                    if cur and variant != "joined" and _printed_between(bounds, cur[-1].order, c.order):
                        new = True
                    if new and cur:
                        runs.append(cur)
                        cur, seen = [], set()
                    cur.append(c)
                    seen |= ps
                if cur:
                    runs.append(cur)
                for k, run in enumerate(runs):
                    if len(run) < 2:
                        continue
                    rows = np.unique(np.concatenate([c.rows for c in run]))
                    cands.append(Candidate(
                        rows, f"{len(run)} consume events #{run[0].seq}..#{run[-1].seq} at {site}",
                        ("run", variant, site, k), [(rank, c.seq) for c in run]))
        per_rank[rank] = cands
    out: list[Candidate] = [c for cs in per_rank.values() for c in cs]
    if len(per_rank) > 1:
        by_key: dict[tuple, list[Candidate]] = {}
        for cs in per_rank.values():
            for c in cs:
                by_key.setdefault(c.key, []).append(c)
        for key, cs in by_key.items():
            if len(cs) > 1:
                rows = np.unique(np.concatenate([c.rows for c in cs]))
                out.append(Candidate(rows, f"{cs[0].label} on {len(cs)} ranks", ("ranks",) + key,
                                     [x for c in cs for x in c.consumes]))
    return _unique(out)


def _by_value(tables: TraceTables, printed: Printed, pos_bytes: np.ndarray | None, tol: float) -> PassMatch | None:
    """The last consume whose value is the printed val_loss (or its sum over the consumed positions):
    the scores it carries are the reported pass even though the recorded NLLs do not reproduce the
    number (the tracer missed part of the computation; C4 then cannot pass)."""
    for c in reversed(tables.consumes):
        if not c.rows.size or isinstance(c.value, bool) or not isinstance(c.value, (int, float)):
            continue
        n = int(np.unique(tables.pos[c.rows]).size)
        v = float(c.value)
        if not math.isfinite(v) or not (abs(v - printed.val_loss) <= tol or abs(v / n - printed.val_loss) <= tol):
            continue
        p, nll = tables.pos[c.rows], tables.nll[c.rows]
        loss, bpb = recompute(p, nll, pos_bytes)
        cand = Candidate(c.rows, f"consume #{c.seq} ({c.op or 'value'}) at {c.site} whose value is the printed "
                         f"val_loss", ("value", c.rank, c.seq), [(c.rank, c.seq)])
        d_bpb = abs(bpb - printed.val_bpb) if bpb is not None else None
        return PassMatch(cand, loss, bpb, abs(loss - printed.val_loss), d_bpb, False, 0, by_value=True)
    return None


def last_consume_before_print(tables: TraceTables, ledger: Ledger):
    """The last consume event carrying scores before the final score line (the last `reported` event, else
    the last stdout line): the number the print most likely came from."""
    prints = [i for i, e in enumerate(ledger.events) if e["kind"] == "reported"]
    if not prints:
        prints = [i for i, e in enumerate(ledger.events) if e["kind"] == "stdout"]
    if not prints:
        return None
    before = [c for c in tables.consumes if c.order < prints[-1] and c.rows.size]
    return before[-1] if before else None


def _last_consume_mixes_passes(tables: TraceTables, ledger: Ledger) -> bool:
    """The number consumed last before the score line combined several scores of one position (a min, a
    sum of a rescore): then the print came from it, and a set inferred from score order that happens to
    reproduce the print within tolerance is a coincidence, not the reported pass."""
    last = last_consume_before_print(tables, ledger)
    return last is not None and any(np.isin(c.rows, last.rows).any() for c in tables.combines)


def _part_value_ok(tables: TraceTables, cand: Candidate, printed: Printed, tol_loss: float) -> bool:
    """A part of one consume event stands for the reported pass only when the event's own value could be that
    part alone (the trace widened the event to other scores). It cannot when the value is neither the part's
    NLL sum nor its mean and is the sum of more scores than the part holds at the printed mean (value /
    printed val_loss >= part size + 1/2): then the number carried every score of the event, repeats of a
    position included, and the part reproduces the print only by coincidence (equal repeat counts of
    identical scores give the same mean). Any other value (unknown, a bpb, a mean) leaves the part a
    candidate."""
    if not cand.key or cand.key[0] != "part" or not cand.consumes:
        return True
    rank, seq = cand.consumes[0]
    ev = next((c for c in tables.consumes if c.rank == rank and c.seq == seq), None)
    v = None if ev is None else ev.value
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return True
    v, m = float(v), int(cand.rows.size)
    total = float(np.sum(tables.nll[cand.rows]))
    if abs(v - total) <= tol_loss * m or abs(v - total / max(m, 1)) <= tol_loss:
        return True
    return not (printed.val_loss > 0 and v / printed.val_loss >= m + 0.5)


def find_reported_pass(
    tables: TraceTables,
    ledger: Ledger,
    printed: Printed,
    pos_bytes: np.ndarray | None,
    tol_loss: float,
    tol_bpb: float,
) -> PassSearch:
    """Pick the candidate whose recomputation equals the printed numbers.

    Preference: loss and bpb both within tolerance before loss only; consume-based before inferred;
    a plain set (each position once) before a selection; then the smallest difference, the larger
    set, the later set. A loss-only match is kept (the C4 check then reports the bpb disagreement) only
    when bytes are known; with unknown bytes the loss alone identifies the pass.
    """
    missing = sum(c.missing for c in tables.consumes)
    scored: list[tuple[tuple, PassMatch]] = []
    closest: list[tuple[float, PassMatch]] = []
    tried = 0

    def consider(cands: list[Candidate]) -> None:
        nonlocal tried
        for c in cands:
            if not _part_value_ok(tables, c, printed, tol_loss):
                continue
            p, v = tables.pos[c.rows], tables.nll[c.rows]
            selections = ("all",) + (SELECTIONS if _has_dup(p) else ())
            for sel in selections:
                tried += 1
                loss, bpb = recompute(p, v, pos_bytes, sel)
                if not math.isfinite(loss):
                    continue
                d_loss = abs(loss - printed.val_loss)
                d_bpb = abs(bpb - printed.val_bpb) if bpb is not None else None
                bpb_ok = d_bpb is not None and d_bpb <= tol_bpb
                cand = c if sel == "all" else Candidate(c.rows, f"{sel} per position over {c.label}",
                                                        c.key + (sel,), c.consumes, sel, c.inferred)
                m = PassMatch(cand, loss, bpb, d_loss, d_bpb, bpb_ok, 0)
                gap = d_loss + (d_bpb or 0.0)
                if not closest or gap < closest[0][0]:
                    closest[:] = [(gap, m)]
                if d_loss > tol_loss:
                    continue
                tier = 1 if d_bpb is not None and not bpb_ok else 0  # 1: loss matches, bytes disagree
                scored.append(((tier, c.inferred, sel != "all", gap, -c.rows.size, -c.last_row), m))

    consider(generate(tables, ledger))
    if not any(k[0] == 0 for k, _ in scored) and not _last_consume_mixes_passes(tables, ledger):
        consider(inferred(tables))  # no consume event reproduces the numbers: try the order of scores
    best = min(scored, key=lambda x: x[0])[1] if scored else None
    if best is None:
        best = _by_value(tables, printed, pos_bytes, tol_loss)
    if best is not None:
        best.tried = tried
    if closest:
        closest[0][1].tried = tried
    return PassSearch(best, tried, closest[0][1] if closest else None, missing)
