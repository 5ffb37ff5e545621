"""Score ids and bags: which recorded scores a value is made of.

Every NLL element the tracer records gets a fresh score id (sid >= 0, unique per rank) with its
target position. The per-element sid channel of a tensor/array holds ``NO_SID`` (-1), one sid, or a
*bag* reference ``-(b + 2)``: bag ``b`` is an exact set of sids, stored as its members (sids and
other bag references) so that accumulators (``loss_sum += batch.sum()``) grow in O(1) per step and
the full set is only expanded (``flatten``) when a value leaves torch/numpy.

``merge`` (elementwise ops) and ``reduce_groups`` (reductions) also report *combines*: two distinct
sids of the same target position meeting in one value (min over passes and the like).
"""

from __future__ import annotations

import numpy as np

from harness.runtime.tracer.provenance import filled

NO_SID = -1
SMALL_BAG = 16  # combines are looked for only between values made of at most this many scores


def bag_index(v: int) -> int:
    return -int(v) - 2


class ScoreBook:
    def __init__(self) -> None:
        self._pos = np.empty(1024, np.int64)
        self._dep = np.empty(1024, np.int64)
        self._nll = np.empty(1024, np.float64)
        self._norm = np.zeros(1024, bool)  # the score event's ``norm`` (a raw pick from a normalized row)
        self.n = 0
        self._members: list[np.ndarray] = []
        self._size: list[int] = []  # upper bound on each bag's number of sids
        self._bag_max: dict[int, int] = {}  # bag channel value -> largest target position in it
        self._bag_dep: dict[int, int] = {}  # bag channel value -> largest dep of its scores

    # -- score ids -------------------------------------------------------------------------------------
    def new(self, pos: np.ndarray, dep: np.ndarray | None = None, nll: np.ndarray | None = None,
            norm: bool = False) -> np.ndarray:
        """Fresh sids for target positions ``pos`` (1-D), with the ``dep``, ``nll`` and ``norm`` their events carry."""
        k = int(pos.size)
        while self.n + k > self._pos.size:
            m = self._pos.size
            self._pos = np.concatenate([self._pos, np.empty(m, np.int64)])
            self._dep = np.concatenate([self._dep, np.empty(m, np.int64)])
            self._nll = np.concatenate([self._nll, np.empty(m, np.float64)])
            self._norm = np.concatenate([self._norm, np.zeros(m, bool)])
        sids = np.arange(self.n, self.n + k, dtype=np.int64)
        sl = slice(self.n, self.n + k)
        self._pos[sl] = pos.ravel()
        self._dep[sl] = -1 if dep is None else np.asarray(dep).ravel()
        self._nll[sl] = np.nan if nll is None else np.asarray(nll, np.float64).ravel()
        self._norm[sl] = norm
        self.n += k
        return sids

    def same_normalized(self, sids: np.ndarray, nll: np.ndarray) -> bool:
        """Every sid (plain, >= 0) is a ``norm`` score whose NLL is ``nll`` (a log taken of the picked value
        itself, not of a value changed after the pick)."""
        sids = np.asarray(sids, np.int64).ravel()
        if not sids.size or int(sids.min()) < 0:
            return False
        nll = np.asarray(nll, np.float64).ravel()
        old = self._nll[sids]
        return bool(self._norm[sids].all() and (np.abs(old - nll) <= 1e-9 * np.maximum(1.0, np.abs(nll))).all())

    def pos_of(self, sids: np.ndarray) -> np.ndarray:
        return self._pos[np.asarray(sids, np.int64)]

    # -- bags ----------------------------------------------------------------------------------------
    def _size_of(self, v: int) -> int:
        return self._size[bag_index(v)] if v <= -2 else (1 if v >= 0 else 0)

    def bag(self, members: np.ndarray) -> int:
        """A bag of distinct channel values (len >= 2); returns its channel value."""
        members = np.asarray(members, np.int64)
        self._members.append(members)
        self._size.append(sum(self._size_of(int(m)) for m in members[members <= -2]) + int((members >= 0).sum()))
        return -(len(self._members) - 1) - 2

    def flatten(self, values: np.ndarray) -> np.ndarray:
        """Sorted unique sids inside any mix of channel values."""
        v = np.unique(np.asarray(values, np.int64))
        v = v[v != NO_SID]
        parts = [v[v >= 0]]
        stack = [bag_index(int(b)) for b in v[v <= -2]]
        seen: set[int] = set()
        while stack:
            b = stack.pop()
            if b in seen:
                continue
            seen.add(b)
            m = self._members[b]
            parts.append(m[m >= 0])
            stack.extend(bag_index(int(x)) for x in m[m <= -2] if bag_index(int(x)) not in seen)
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    # -- combining -----------------------------------------------------------------------------------
    def _same_pos(self, a: int, b: int) -> list[tuple[int, int, int]]:
        """(pos, sid_a, sid_b) for scores of one position found on both sides (small values only)."""
        if self._size_of(a) > SMALL_BAG or self._size_of(b) > SMALL_BAG:
            return []
        fa = self.flatten(np.array([a]))
        fb = self.flatten(np.array([b]))
        if fa.size == 0 or fb.size == 0:
            return []
        pa = self.pos_of(fa)
        pb = self.pos_of(fb)
        out = []
        for sb, p in zip(fb.tolist(), pb.tolist()):
            hit = fa[(pa == p) & (fa != sb)]
            if hit.size:
                out.append((int(p), int(hit[0]), int(sb)))
        return out

    def merge(self, chans: list[np.ndarray | None]) -> tuple[np.ndarray | None, list[tuple[int, int, int]]]:
        """Elementwise union of sid channels (already broadcast to one shape)."""
        chans = [c for c in chans if c is not None]
        if not chans:
            return None, []
        out = np.array(chans[0], np.int64, copy=True)
        combos: list[tuple[int, int, int]] = []
        for c in chans[1:]:
            a_has = out != NO_SID
            b_has = c != NO_SID
            both = a_has & b_has & (out != c)
            res = np.where(a_has, out, c)
            if both.any():
                av = out[both]
                bv = np.asarray(c)[both]
                plain = (av >= 0) & (bv >= 0)
                if plain.any():
                    pa = self.pos_of(av[plain])
                    pb = self.pos_of(bv[plain])
                    same = pa == pb
                    combos.extend(zip(pa[same].tolist(), av[plain][same].tolist(), bv[plain][same].tolist()))
                for x, y in zip(av[~plain].tolist(), bv[~plain].tolist()):
                    combos.extend(self._same_pos(x, y))
                res[both] = [self.bag(np.array([x, y])) for x, y in zip(av.tolist(), bv.tolist())]
            out = res
        return out, combos

    def reduce_groups(self, groups: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """One channel value per row of ``groups`` [G, R]: the set of scores the row is made of."""
        g = np.asarray(groups, np.int64)
        out = filled(g.shape[0], NO_SID, np.int64)
        combos: list[tuple[int, int, int]] = []
        if g.size == 0:
            return out, combos
        masked = np.where(g == NO_SID, np.iinfo(np.int64).min, g)
        mx = masked.max(axis=1)
        has = mx != np.iinfo(np.int64).min
        mn = np.where(g == NO_SID, np.iinfo(np.int64).max, g).min(axis=1)
        single = has & (mn == mx)
        out[single] = mx[single]
        for r in np.nonzero(has & ~single)[0].tolist():
            u = np.unique(g[r][g[r] != NO_SID])
            combos.extend(self._combines_within(u))
            out[r] = self.bag(u)
        return out, combos

    def _combines_within(self, u: np.ndarray) -> list[tuple[int, int, int]]:
        plain = u[u >= 0]
        out: list[tuple[int, int, int]] = []
        if plain.size > 1:
            pos = self.pos_of(plain)
            order = np.argsort(pos, kind="stable")
            ps, ss = pos[order], plain[order]
            dup = np.nonzero(ps[1:] == ps[:-1])[0]
            out.extend((int(ps[i]), int(ss[i]), int(ss[i + 1])) for i in dup.tolist())
        bags = u[u <= -2]
        if bags.size and bags.size + plain.size <= SMALL_BAG:
            vals = u.tolist()
            for i in range(len(vals)):
                for j in range(i + 1, len(vals)):
                    if vals[i] <= -2 or vals[j] <= -2:
                        out.extend(self._same_pos(vals[i], vals[j]))
        return out

    def max_pos(self, sid: np.ndarray) -> np.ndarray:
        """Per element: the largest target position among the scores it is made of (-1: none).

        A score's value was selected at its target, so a value carrying score ids depends on those
        targets' tokens: a distribution built from it depends on them too.
        """
        return self._max_of(sid, self._pos, self._bag_max)

    def max_dep(self, sid: np.ndarray) -> np.ndarray:
        """Per element: the largest ``dep`` among the scores it is made of (-1: none)."""
        return self._max_of(sid, self._dep, self._bag_dep)

    def _max_of(self, sid: np.ndarray, table: np.ndarray, cache: dict[int, int]) -> np.ndarray:
        sid = np.asarray(sid, np.int64)
        out = filled(sid.shape, -1, np.int64)
        plain = sid >= 0
        if plain.any():
            out[plain] = table[sid[plain]]
        bags = sid <= -2
        if bags.any():
            for v in np.unique(sid[bags]).tolist():
                m = cache.get(v)
                if m is None:
                    f = self.flatten(np.array([v]))
                    m = cache[v] = int(table[f].max()) if f.size else -1
                out[sid == v] = m
        return out

    def single_position(self, v: int) -> int | None:
        """The one target position all scores of a channel value share, else None."""
        if v == NO_SID:
            return None
        if v >= 0:
            return int(self._pos[v])
        f = self.flatten(np.array([v]))
        if f.size == 0:
            return None
        p = np.unique(self.pos_of(f))
        return int(p[0]) if p.size == 1 else None
