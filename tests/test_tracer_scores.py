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
