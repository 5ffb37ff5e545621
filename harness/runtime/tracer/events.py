"""The tracer's ledger events: score, combine, consume, update, stats (fields as in harness.ledger).

- score   sid, pos, nll, dep, grad, op     parallel lists, one event per op call (split at CHUNK); zsum (a
                                          pick from rows that are not a distribution: each row's sum);
                                          norm: true when every pick is the target token's own entry of a
                                          normalized full-vocabulary row (the C2 proof's premise)
- combine pos, sids, op                   sids: [sid_a, sid_b] pairs, parallel to pos
- consume sids, value, op, numel          sids sorted; value: the number that left (a sum for
                                          several elements); numel: how many elements it was
- update  lo, hi, target, op, n, states   one event per disjoint interval of the written
                                          elements' positions (at most MAX_INTERVALS; closer
                                          intervals are merged, which only widens); states: ids of
                                          the memory blocks written (absent: not followed)
- release states, last_read, escapes      parallel lists, per block an update named: the seq the next
                                          event had when the script last read it, and how many values
                                          left torch between its first update and that read; written
                                          when the block is freed (before the next event) or at the end
- stats   unruled_ops, escapes, traced_ops, plus rule_counts (ops per handler kind), fast_ops, coarse, ...

Inside an optimizer step (between its pre and post hooks) update events are coalesced per
(target, op, site) and written when the step ends, one set of merged intervals each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CHUNK = 4096
MAX_INTERVALS = 32


def merge_intervals(lo: np.ndarray, hi: np.ndarray, cap: int = MAX_INTERVALS) -> list[tuple[int, int, int]]:
    """Disjoint (lo, hi, count) covering every traced (hi >= 0) interval; at most ``cap``."""
    lo = np.asarray(lo)
    hi = np.asarray(hi)
    per_row = 1
    if lo.ndim >= 2 and lo.shape == hi.shape and lo.shape[-1] > 1 and lo.size >= 4096 \
            and bool((lo == lo[..., :1]).all()) and bool((hi == hi[..., :1]).all()):
        per_row = lo.shape[-1]  # rows constant along the last dim (a state's rows): merge one element per row
        lo, hi = lo[..., 0], hi[..., 0]
    segs = _merge(lo.ravel(), hi.ravel(), cap)
    return segs if per_row == 1 else [(a, b, n * per_row) for a, b, n in segs]


def _merge(lo: np.ndarray, hi: np.ndarray, cap: int) -> list[tuple[int, int, int]]:
    m = hi >= 0
    if not m.any():
        return []
    lo = lo[m].astype(np.int64)
    hi = hi[m].astype(np.int64)
    lo_min, lo_max, hi_min, hi_max = int(lo.min()), int(lo.max()), int(hi.min()), int(hi.max())
    if lo_min == lo_max and hi_min == hi_max:
        return [(lo_min, hi_max, int(lo.size))]
    span = hi_max - lo_min + 1
    if 0 < span <= 8 * lo.size + 4096 and bool((lo <= hi).all()):
        segs = _merge_by_coverage(lo - lo_min, hi - lo_min, span, lo_min)
    else:
        segs = _merge_by_sorting(lo, hi)
    while len(segs) > cap:  # close the smallest gap: widening is the safe direction
        gaps = [segs[i + 1][0] - segs[i][1] for i in range(len(segs) - 1)]
        i = int(np.argmin(gaps))
        a, b = segs[i], segs.pop(i + 1)
        segs[i] = [a[0], max(a[1], b[1]), a[2] + b[2]]
    return [tuple(s) for s in segs]  # type: ignore[misc]


def _merge_by_sorting(lo: np.ndarray, hi: np.ndarray) -> list[list[int]]:
    """Sort by start; a start past the running end + 1 opens a new interval."""
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], hi[order]
    run = np.maximum.accumulate(hi)
    breaks = np.nonzero(lo[1:] > run[:-1] + 1)[0]
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [lo.size - 1]])
    return [[int(lo[s]), int(run[e]), int(e - s + 1)] for s, e in zip(starts.tolist(), ends.tolist())]


def _merge_by_coverage(lo: np.ndarray, hi: np.ndarray, span: int, base: int) -> list[list[int]]:
    """The same intervals without a sort, when the positions span little more than the elements (an optimizer
    step over a large state writes each interval many times): the covered positions, from counts of starts
    and ends, fall into maximal runs, and those runs are the merged intervals (two intervals merge exactly
    when their positions touch or overlap); each element counts in the run holding its start.
    ``lo``/``hi`` are relative to ``base``, with lo <= hi."""
    opened = np.bincount(lo, minlength=span + 1)
    depth = np.cumsum(opened - np.bincount(hi + 1, minlength=span + 1))[:span]
    edges = np.diff(np.concatenate(([0], (depth > 0).view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    counts = np.add.reduceat(opened[:span], starts)  # every start lies in a run: a run's count is its starts
    return [[int(a) + base, int(b) + base, int(n)] for a, b, n in zip(starts.tolist(), ends.tolist(), counts.tolist())]


class Emitter:
    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self._step_depth = 0
        self._pending: dict[tuple[str, str, str | None], list[tuple[int, int, int]]] = {}
        self._pending_states: dict[tuple[str, str, str | None], set[int]] = {}
        self.counts: dict[str, int] = {"score": 0, "combine": 0, "consume": 0, "update": 0}
        self.released: list[tuple[int, int, int]] = []  # (state, last read, escapes) queued by Tracer

    def _flush_released(self) -> None:
        if self.released:
            out, self.released = self.released, []
            self.counts["release"] = self.counts.get("release", 0) + 1
            self.ctx.emit("release", site="", states=[r[0] for r in out], last_read=[r[1] for r in out],
                          escapes=[r[2] for r in out])

    def _emit(self, kind: str, site: str | None, **fields: Any) -> None:
        self._flush_released()  # a block freed before this event is written before it
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.ctx.emit(kind, site=site if site is not None else "", **fields)

    def score(self, sids: np.ndarray, pos: np.ndarray, nll: np.ndarray, dep: np.ndarray, grad: bool, op: str,
              site: str | None, zsum: np.ndarray | None = None, norm: bool = False) -> None:
        sids, pos, nll, dep = (np.asarray(x).ravel() for x in (sids, pos, nll, dep))
        z = None if zsum is None else np.asarray(zsum, np.float64).ravel()
        for s in range(0, sids.size, CHUNK):
            sl = slice(s, s + CHUNK)
            extra: dict[str, Any] = {} if z is None else {"zsum": [None if x != x else float(x) for x in z[sl]]}
            if norm:
                extra["norm"] = True
            self._emit(
                "score", site, sid=sids[sl].tolist(), pos=pos[sl].tolist(),
                nll=[float(x) for x in nll[sl].astype(np.float64)], dep=dep[sl].tolist(), grad=bool(grad), op=op,
                **extra,
            )

    def combine(self, triples: list[tuple[int, int, int]], op: str, site: str | None) -> None:
        for s in range(0, len(triples), CHUNK):
            part = triples[s : s + CHUNK]
            self._emit("combine", site, pos=[t[0] for t in part], sids=[[t[1], t[2]] for t in part], op=op)

    def consume(self, sids: np.ndarray, value: Any, op: str, numel: int, site: str | None) -> None:
        self._emit("consume", site, sids=np.asarray(sids).tolist(), value=value, op=op, numel=int(numel))

    def update(self, lo: np.ndarray, hi: np.ndarray, target: str, op: str, site: str | None,
               state: int | None = None) -> list[tuple[int, int, int]]:
        segs = merge_intervals(lo, hi)
        if not segs:
            return segs
        if self._step_depth:
            key = (target, op, site)
            self._pending.setdefault(key, []).extend(segs)
            # None poisons the set: a coalesced event names its blocks only when every one is known
            self._pending_states.setdefault(key, set()).add(-1 if state is None else state)
            return segs
        extra = {} if state is None else {"states": [state]}
        for a, b, n in segs:
            self._emit("update", site, lo=a, hi=b, target=target, op=op, n=n, **extra)
        return segs

    def begin_step(self) -> None:
        self._step_depth += 1

    def end_step(self) -> None:
        self._step_depth = max(0, self._step_depth - 1)
        if not self._step_depth:
            self.flush()

    def flush(self) -> None:
        """Write the coalesced updates (end of a step, or at exit after a step that raised)."""
        pending, self._pending = self._pending, {}
        states, self._pending_states = self._pending_states, {}
        for key, segs in pending.items():
            target, op, site = key
            st = states.get(key, {-1})
            # each merged interval names every block of the step's writes: more blocks only delay a discard
            extra = {} if -1 in st else {"states": sorted(st)}
            lo = np.array([s[0] for s in segs])
            hi = np.array([s[1] for s in segs])
            for a, b, _ in merge_intervals(lo, hi):
                cnt = sum(s[2] for s in segs if s[0] >= a and s[1] <= b)
                self._emit("update", site, lo=a, hi=b, target=target, op=op, n=cnt, **extra)

    def stats(self, fields: dict[str, Any]) -> None:
        self.flush()
        self._flush_released()
        self.ctx.emit("stats", site="", **fields)
