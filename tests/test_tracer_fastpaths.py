"""The tracer's shortcuts must stay exact or conservative: a cached constant check never narrows a
later provenance, views cost no handler, whole-block reads and writes match strided ones."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from test_tracer_util import Trace, trace  # noqa: F401


def test_a_weight_changed_behind_its_version_counter_is_checked_again(trace: Trace) -> None:
    x = trace.ttokens(4).float()
    w = torch.tensor([0.0, 2.0, 3.0, 4.0])
    lo, hi = trace.prov(x * w)
    assert hi[0] < 0 and (hi[1:] >= 0).all()  # x * 0 is the constant 0
    w.data[0] = 5.0  # .data: same memory, the version counter does not move
    lo, hi = trace.prov(x * w)
    assert hi[0] == 0, "a cached 'has a zero' answer would hide that element 0 now depends on x[0]"


def test_a_weight_without_zeros_is_read_again_after_an_in_place_write(trace: Trace) -> None:
    x = trace.ttokens(4).float()
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert (trace.prov(x * w)[1] >= 0).all()  # checked once, "no zero" cached
    w.mul_(0.0).add_(torch.tensor([0.0, 1.0, 1.0, 1.0]))  # a visible write: the values are read again and the zero is found
    assert trace.prov(x * w)[1][0] < 0


def test_a_matmul_weight_is_read_again_after_an_in_place_write(trace: Trace) -> None:
    x = trace.ttokens(6).float().view(2, 3)
    w = torch.ones(2, 3)  # no zero: every output reads every column (and that answer is cached)
    _, hi = trace.prov(x @ w.t())
    assert hi.tolist() == [[2, 2], [5, 5]]
    with torch.no_grad():
        w[:, 2] = 0.0  # an in-place write moves the version counter: column 2 no longer counts
    _, hi = trace.prov(x @ w.t())
    assert hi.tolist() == [[1, 1], [4, 4]]


def test_views_are_counted_without_a_handler_and_keep_provenance(trace: Trace) -> None:
    x = trace.ttokens(12).float().view(3, 4)
    before = trace.tr.handler_counts["view"]
    v = x.t()[1:]
    assert trace.tr.handler_counts["view"] > before
    lo, hi = trace.prov(v)
    assert lo.tolist() == hi.tolist() == [[1, 5, 9], [2, 6, 10], [3, 7, 11]]


def test_whole_block_and_strided_reads_agree(trace: Trace) -> None:
    x = trace.ttokens(24).float().view(2, 3, 4) + 0  # a fresh contiguous block
    whole = trace.prov(x)
    part = trace.prov(x[:, 1:, ::2])
    assert whole[0][:, 1:, ::2].tolist() == part[0].tolist()
    y = torch.zeros(2, 3, 4)
    y.copy_(x)  # whole-block write into an existing untraced block
    assert np.array_equal(trace.prov(y)[1], whole[1])
    y[:, 0] = 0.0  # strided overwrite of part of it
    assert (trace.prov(y)[1][:, 0] < 0).all() and np.array_equal(trace.prov(y)[1][:, 1:], whole[1][:, 1:])


def test_a_new_tensor_at_a_freed_ones_address_does_not_inherit_its_answer(trace: Trace) -> None:
    a, b = torch.ones(4), torch.ones(4)
    key = trace.tr.absorbing_key(a, "mul")
    trace.tr.note_without_absorbing(key)
    assert trace.tr.known_without_absorbing(key)
    # the same id, layout and version (what a reused address looks like) but another storage
    reused = key[:-1] + (b.untyped_storage(),)
    assert not trace.tr.known_without_absorbing(reused)
    x = trace.ttokens(4).float()
    for _ in range(20):  # temporaries of one shape, freed and re-made: a zero is always found
        w = torch.ones(4)
        assert (trace.prov(x * w)[1] >= 0).all()
        del w
        z = torch.tensor([0.0, 1.0, 1.0, 1.0])
        assert trace.prov(x * z)[1][0] < 0
        del z


# -- movement: integer replay and the direct select / slice backward -----------------------------------

def _movement_cases(t: torch.Tensor) -> list[tuple[str, Any]]:
    """Movement ops on a traced (6, 5) float tensor; each is a zero-argument callable."""
    import torch.nn.functional as F

    return [
        ("cat", lambda: torch.cat([t[3:], t[:3]])),
        ("stack", lambda: torch.stack([t[0], t[4]])),
        ("flip", lambda: t.flip(1)),
        ("roll", lambda: torch.roll(t, 2, 0)),
        ("pad", lambda: F.pad(t, (1, 2))),
        ("reflect", lambda: F.pad(t.view(1, 6, 5), (2, 1), mode="reflect")),  # no integer kernel
        ("tril", lambda: torch.tril(t)),
        ("repeat", lambda: t.repeat(2, 1)),
        ("select_backward", lambda: torch.ops.aten.select_backward(t[2], [6, 5], 0, 2)),
        ("select_backward_neg", lambda: torch.ops.aten.select_backward(t[:, 1], [6, 5], 1, -4)),
        ("slice_backward", lambda: torch.ops.aten.slice_backward(t[1:5:2], [6, 5], 0, 1, 5, 2)),
        ("slice_backward_neg", lambda: torch.ops.aten.slice_backward(t[:, -3:], [6, 5], 1, -3, 2 ** 62, 1)),
    ]


def _float64_replay_only(monkeypatch: Any) -> None:
    """The reference: every movement op through the float64 replay (no integer channels, no direct path)."""
    from harness.runtime.tracer.ops import movement

    real = movement._replay
    monkeypatch.setattr(movement, "_replay", lambda c, data, has_sid, exact_int: real(c, data, has_sid, False))
    monkeypatch.setattr(movement, "_placed", lambda c, shape: None)


@settings(max_examples=15, deadline=None)
@given(start=st.integers(0, 30), mult=st.integers(1, 11))
def test_integer_replay_and_direct_backward_match_the_float64_replay(tmp_path_factory, start: int, mult: int) -> None:
    import pytest

    results = []
    for reference in (False, True):
        with pytest.MonkeyPatch.context() as mp:
            if reference:
                _float64_replay_only(mp)
            tr = Trace(tmp_path_factory.mktemp("m"))
            try:
                x = tr.ttokens(30, lo=start).float().view(6, 5)
                t = x * float(mult) + 0  # a fresh traced block
                results.append({name: tr.prov(f()) for name, f in _movement_cases(t)})
            finally:
                tr.close()
    fast, ref = results
    for name in ref:
        assert np.array_equal(fast[name][0], ref[name][0]) and np.array_equal(fast[name][1], ref[name][1]), name
    # and the reference itself is right on the two backward ops
    lo, hi = ref["select_backward"]
    assert (hi[2] == np.arange(10, 15) + start).all() and (hi[[0, 1, 3, 4, 5]] < 0).all()
    lo, hi = ref["slice_backward"]
    assert (hi[[1, 3]] >= 0).all() and (hi[[0, 2, 4, 5]] < 0).all()


def test_direct_select_backward_keeps_score_ids(trace: Trace) -> None:
    import torch.nn.functional as F

    tok = trace.ttokens(5)
    logits = torch.randn(4, 32, requires_grad=True)
    with torch.no_grad():
        logits.add_(tok[:4, None].float() * 0)  # traced logits, rows apart
    nll = F.cross_entropy(logits, tok[1:], reduction="none")  # one score per row
    sid = trace.sid(nll)
    assert sid is not None and (sid >= 0).all()
    back = torch.ops.aten.select_backward(nll, [3, 4], 0, 1)
    got = trace.sid(back)
    assert got is not None and np.array_equal(got[1], sid) and (got[[0, 2]] == -1).all()
    lo, hi = trace.prov(back)
    assert np.array_equal(hi[1], trace.prov(nll)[1]) and (hi[[0, 2]] < 0).all()


# -- provenance shared copy on write (provenance._own, Entry.writable) ---------------------------------


def test_a_block_that_passes_its_provenance_on_shares_it_until_either_is_written() -> None:
    from harness.runtime.tracer import provenance as pv

    store = pv.Store()
    n = 2 * pv._SHARE_MIN
    a, b = torch.zeros(n), torch.zeros(n)
    la, lb = store.locate_tensor(a), store.locate_tensor(b)
    pos = np.arange(n, dtype=np.int32)
    store.write(la, pv.Prov(pos.copy(), pos.copy(), None), fresh=True)
    store.write(lb, store.read(la))  # b = f(a), its provenance unchanged: shared, not copied
    ea, eb = store.entries[la.key], store.entries[lb.key]
    assert np.shares_memory(ea.lo, eb.lo), "the copy this saves is the point"
    # a write to either block copies first; the other keeps what it had
    store.write(store.locate_tensor(a[:10]), None)
    assert (store.read(la).hi[:10] == -1).all() and store.read(lb).hi[:10].tolist() == list(range(10))
    store.write_elements(b.untyped_storage(), n, 4, np.array([50]), pv.Prov(np.array([70], np.int32), np.array([70], np.int32), None),
                         accumulate=True)
    assert store.read(lb).lo[50] == 50 and store.read(lb).hi[50] == 70 and store.read(la).hi[50] == 50
    # the score-id channel is copied on write too
    c = torch.zeros(n)
    lc = store.locate_tensor(c)
    sid = np.full(n, -1, np.int64)
    sid[5] = 0
    store.write(lc, pv.Prov(pos.copy(), pos.copy(), sid), fresh=True)
    d = torch.zeros(n)
    store.write(store.locate_tensor(d), store.read(lc))
    store.write(store.locate_tensor(d[5:6]), pv.Prov(np.array([1], np.int32), np.array([1], np.int32), np.array([1], np.int64)))
    assert store.read(lc).sid[5] == 0 and store.read(store.locate_tensor(d)).sid[5] == 1


def test_an_in_place_write_after_an_op_that_kept_the_provenance_leaves_the_result_alone(trace: Trace) -> None:
    x = trace.ttokens(8192).float()
    y = torch.relu(x)  # one traced input of the output's shape: the union passes x's arrays on
    x[:100] = 0.0  # x's first elements are now constants; y's still depend on their tokens
    x[100:200] += torch.arange(100.0)  # untraced: x's provenance there is unchanged
    lo, hi = trace.prov(y)
    assert hi[:100].tolist() == list(range(100)) and (hi == np.arange(8192)).all()
    assert (trace.prov(x)[1][:100] == -1).all()
    y.mul_(trace.ttokens(8192, lo=8192).float())  # y now also depends on the second stretch; x does not
    assert (trace.prov(y)[1] == np.arange(8192, 16384)).all() and (trace.prov(x)[1][100:] == np.arange(100, 8192)).all()
