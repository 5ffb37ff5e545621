"""Score-id bags and update intervals, checked against plain-Python references."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.runtime.tracer.events import merge_intervals
from harness.runtime.tracer.scores import NO_SID, ScoreBook


@settings(max_examples=60, deadline=None)
@given(
    pos=st.lists(st.integers(0, 12), min_size=2, max_size=20),
    ops=st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 40), min_size=1, max_size=5)), max_size=12),
)
def test_bags_flatten_to_exact_sets(pos: list[int], ops: list[tuple[bool, list[int]]]) -> None:
    book = ScoreBook()
    sids = book.new(np.array(pos)).tolist()
    values: list[int] = list(sids) + [NO_SID]
    ref: dict[int, set[int]] = {s: {s} for s in sids}
    ref[NO_SID] = set()
    for is_reduce, picks in ops:
        chosen = [values[i % len(values)] for i in picks]
        if is_reduce:
            out, combos = book.reduce_groups(np.array([chosen]))
            v = int(out[0])
        else:
            acc: np.ndarray | None = None
            for x in chosen:
                m, _ = book.merge([np.array([x]) if acc is None else acc, np.array([x])])
                acc = m
            v = int(acc[0]) if acc is not None else NO_SID
        want = set().union(*(ref[x] for x in chosen))
        ref[v] = want
        values.append(v)
        assert set(book.flatten(np.array([v])).tolist()) == want
        if want:
            assert int(book.max_pos(np.array([v]))[0]) == max(pos[s] for s in want)


def test_combines_pair_scores_of_one_position() -> None:
    book = ScoreBook()
    a = book.new(np.array([5, 6, 7]))
    b = book.new(np.array([5, 9, 7]))
    out, combos = book.merge([a, b])
    assert sorted((p, x, y) for p, x, y in combos) == [(5, int(a[0]), int(b[0])), (7, int(a[2]), int(b[2]))]
    assert all(v <= -2 for v in out.tolist())
    red, combos2 = book.reduce_groups(np.stack([a, b]).T)  # per position pairs, like stack().min(0)
    assert sorted(p for p, _, _ in combos2) == [5, 7]
    assert book.single_position(int(red[0])) == 5 and book.single_position(int(red[1])) is None


@settings(max_examples=80, deadline=None)
@given(
    iv=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 30)), min_size=0, max_size=60),
    untraced=st.integers(0, 5),
    cap=st.integers(1, 8),
)
def test_update_intervals_cover_every_written_element(iv: list[tuple[int, int]], untraced: int, cap: int) -> None:
    lo = np.array([a for a, _ in iv] + [2**31 - 1] * untraced, dtype=np.int64)
    hi = np.array([a + w for a, w in iv] + [-1] * untraced, dtype=np.int64)
    segs = merge_intervals(lo, hi, cap)
    assert len(segs) <= max(cap, 1) if iv else segs == []
    assert sum(n for _, _, n in segs) == len(iv)
    for (a, b, _), (c, d, _) in zip(segs, segs[1:]):
        assert b < c  # sorted and disjoint
    for a, w in iv:
        assert any(s <= a and a + w <= e for s, e, _ in segs)


def _merge_reference(lo: np.ndarray, hi: np.ndarray, cap: int) -> list[tuple[int, int, int]]:
    """Interval merging written the plain way (sort, sweep, close the smallest gaps): what the tracer's
    faster merge must reproduce exactly."""
    pairs = sorted((int(a), int(b)) for a, b in zip(lo.ravel().tolist(), hi.ravel().tolist()) if b >= 0)
    segs: list[list[int]] = []
    for a, b in pairs:
        if segs and a <= segs[-1][1] + 1:
            segs[-1][1] = max(segs[-1][1], b)
            segs[-1][2] += 1
        else:
            segs.append([a, b, 1])
    while len(segs) > cap:
        gaps = [segs[i + 1][0] - segs[i][1] for i in range(len(segs) - 1)]
        i = gaps.index(min(gaps))
        x, y = segs[i], segs.pop(i + 1)
        segs[i] = [x[0], max(x[1], y[1]), x[2] + y[2]]
    return [tuple(s) for s in segs]  # type: ignore[misc]


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 400), st.integers(1, 40)), min_size=0, max_size=40),
    untraced=st.integers(0, 30),
    cap=st.integers(1, 40),
    far=st.booleans(),
)
def test_update_interval_merge_matches_the_plain_sweep(rows: list[tuple[int, int, int]], untraced: int, cap: int,
                                                       far: bool) -> None:
    """Rows of repeated intervals (an optimizer state's rows), untraced elements, and optionally one far
    position (a span much wider than the elements: the sorting path) give the plain sweep's answer."""
    lo = [a for a, _, k in rows for _ in range(k)] + [2**31 - 1] * untraced
    hi = [a + w for a, w, k in rows for _ in range(k)] + [-1] * untraced
    if far and rows:
        lo.append(10**8)
        hi.append(10**8 + 5)
    lo_a, hi_a = np.array(lo, dtype=np.int32).reshape(-1), np.array(hi, dtype=np.int32).reshape(-1)
    assert merge_intervals(lo_a, hi_a, cap) == _merge_reference(lo_a, hi_a, cap)


@settings(max_examples=120, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 3000), st.integers(-1, 400)), min_size=1, max_size=40),
    width=st.sampled_from([2, 128, 512]),
    broken=st.one_of(st.none(), st.tuples(st.integers(0, 39), st.integers(0, 511), st.integers(0, 5000))),
    cap=st.integers(1, 40),
)
def test_update_interval_merge_of_row_constant_states(rows: list[tuple[int, int]], width: int,
                                                      broken: tuple[int, int, int] | None, cap: int) -> None:
    """A 2-D state whose rows are constant (merged one element per row, counts scaled by the row length),
    or with one element changed (the rows are then not constant): always the plain sweep's answer."""
    lo = np.array([[a if w >= 0 else 2**31 - 1] * width for a, w in rows], dtype=np.int32)
    hi = np.array([[a + w if w >= 0 else -1] * width for a, w in rows], dtype=np.int32)
    if broken is not None:
        r, c, v = broken
        lo[r % len(rows), c % width] = v
        hi[r % len(rows), c % width] = v + 3
    assert merge_intervals(lo, hi, cap) == _merge_reference(lo, hi, cap)
