"""The tracer's shortcuts must stay exact or conservative: a cached constant check never narrows a
later provenance, views cost no handler, whole-block reads and writes match strided ones."""

from __future__ import annotations

import numpy as np
import torch

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
