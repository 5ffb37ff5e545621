"""Provenance rules through torch ops: each test breaks if its rule does."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from test_tracer_util import V, Trace, positions, scores, trace  # noqa: F401

E = np.iinfo(np.int32).max


def test_views_are_exact_and_inplace_writes_reach_the_base(trace: Trace) -> None:
    t = trace.ttokens(24)
    x = t.view(4, 6)
    lo, hi = trace.prov(x.t()[1:, ::2])
    assert np.array_equal(lo, np.arange(24).reshape(4, 6).T[1:, ::2])
    assert np.array_equal(hi, lo)
    e = x[1].unsqueeze(0).expand(3, 6)
    assert np.array_equal(trace.prov(e)[0], np.broadcast_to(np.arange(6, 12), (3, 6)))
    # a write of untraced values through a view clears exactly those elements of the base
    buf = t.clone()
    buf.view(4, 6)[:, 0] = 0
    lo, hi = trace.prov(buf)
    assert (hi[::6] == -1).all() and (lo[::6] == E).all()
    assert np.array_equal(hi[1:6], np.arange(1, 6))


def test_copies_dtype_and_reshape_are_exact(trace: Trace) -> None:
    t = trace.ttokens(12)
    for y in (t.float(), t.clone(), t.to(torch.float16).double(), t.int().long(), t.view(3, 4).reshape(-1) + 0):
        lo, hi = trace.prov(y)
        assert np.array_equal(lo, np.arange(12)) and np.array_equal(hi, np.arange(12))
    z = t.view(3, 4).t().contiguous().reshape(-1)
    assert np.array_equal(trace.prov(z)[0], np.arange(12).reshape(3, 4).T.reshape(-1))
    dst = torch.zeros(12)
    dst.copy_(t.flip(0))
    assert np.array_equal(trace.prov(dst)[1], np.arange(12)[::-1])


def test_elementwise_union_with_broadcasting(trace: Trace) -> None:
    t = trace.ttokens(8).float()
    out = t[:4, None] + t[None, 4:] * 2.0
    lo, hi = trace.prov(out)
    assert np.array_equal(lo, np.broadcast_to(np.arange(4)[:, None], (4, 4)))
    assert np.array_equal(hi, np.broadcast_to(np.arange(4, 8)[None, :], (4, 4)))
    # an untraced operand adds nothing
    lo2, hi2 = trace.prov(t + torch.ones(8))
    assert np.array_equal(lo2, np.arange(8)) and np.array_equal(hi2, np.arange(8))


def test_multiplying_by_an_exact_untraced_zero_is_a_constant(trace: Trace) -> None:
    t = trace.ttokens(6).float()
    m = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    lo, hi = trace.prov(t * m)
    assert hi.tolist() == [0, -1, 2, -1, 4, -1]
    assert (trace.prov(t * 0)[1] == -1).all()
    # a traced zero (its value depends on the tokens) is not a constant
    assert trace.prov(t * (t - t))[1].tolist() == list(range(6))


def test_matmul_keeps_rows_apart_with_an_untraced_weight(trace: Trace) -> None:
    x = trace.ttokens(12).float().view(4, 3)  # row i depends on positions 3i..3i+2
    w = torch.randn(3, 5)
    lo, hi = trace.prov(x @ w)
    assert np.array_equal(lo, np.broadcast_to((np.arange(4) * 3)[:, None], (4, 5)))
    assert np.array_equal(hi, np.broadcast_to((np.arange(4) * 3 + 2)[:, None], (4, 5)))
    # nn.Linear / F.linear with bias, batched input
    lin = torch.nn.Linear(3, 2)
    lo, hi = trace.prov(lin(x.view(2, 2, 3)))
    assert np.array_equal(hi[:, :, 0], np.array([[2, 5], [8, 11]]))
    # a traced weight: out[i, j] = row i of x  U  column j of w
    wt = trace.ttokens(15, lo=100).float().view(3, 5)
    lo, hi = trace.prov(x @ wt)
    assert np.array_equal(hi, np.maximum((np.arange(4) * 3 + 2)[:, None], (110 + np.arange(5))[None, :]))
    assert (lo == np.minimum((np.arange(4) * 3)[:, None], 100 + np.arange(5)[None, :])).all()


def test_matmul_skips_terms_with_exact_zeros(trace: Trace) -> None:
    x = trace.ttokens(5).float()
    tri = torch.tril(torch.ones(5, 5))
    lo, hi = trace.prov(tri @ x)  # prefix sums: element i depends on 0..i
    assert hi.tolist() == [0, 1, 2, 3, 4] and lo.tolist() == [0] * 5
    lo, hi = trace.prov(x[None, :] @ torch.triu(torch.ones(5, 5)))
    assert hi[0].tolist() == [0, 1, 2, 3, 4]
    z = torch.zeros(3, 5)
    assert (trace.prov(z @ x)[1] == -1).all()


def _qkv(trace: Trace, B: int = 1, H: int = 2, T: int = 6, D: int = 4, Hk: int | None = None):
    Hk = Hk or H
    x = trace.ttokens(B * T).float().view(B, T, 1)
    emb = x.expand(B, T, (H + 2 * Hk) * D) * torch.randn((H + 2 * Hk) * D)
    q, k, v = emb.split([H * D, Hk * D, Hk * D], dim=-1)
    f = lambda z, h: z.reshape(B, T, h, D).transpose(1, 2)  # noqa: E731
    return f(q, H), f(k, Hk), f(v, Hk)


def test_causal_sdpa_is_a_running_union(trace: Trace) -> None:
    q, k, v = _qkv(trace, B=2)
    lo, hi = trace.prov(F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert np.array_equal(hi[0, 0, :, 0], np.arange(6)) and np.array_equal(hi[1, 1, :, 0], np.arange(6, 12))
    assert (lo[0] == 0).all() and (lo[1] == 6).all()  # batch rows stay apart
    lo, hi = trace.prov(F.scaled_dot_product_attention(q, k, v, is_causal=False))
    assert (hi[0] == 5).all()


def test_sdpa_with_gqa_and_with_a_boolean_mask(trace: Trace) -> None:
    q, k, v = _qkv(trace, H=4, Hk=2)
    lo, hi = trace.prov(F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))
    assert np.array_equal(hi[0, 3, :, 0], np.arange(6))
    mask = torch.ones(6, 6, dtype=torch.bool).tril(-1) | torch.eye(6, dtype=torch.bool)
    mask[:, 0] = False
    mask[0, 0] = True
    q2, k2, v2 = _qkv(trace)
    lo, hi = trace.prov(F.scaled_dot_product_attention(q2, k2, v2, attn_mask=mask))
    assert np.array_equal(hi[0, 0, :, 0], np.arange(6))
    assert lo[0, 0, :, 0].tolist() == [0, 1, 1, 1, 1, 1]  # key 0 masked out except for query 0


def test_sdpa_math_decomposition_stays_causal(trace: Trace) -> None:
    q, k, v = _qkv(trace)
    out = torch.ops.aten._scaled_dot_product_attention_math(q, k, v, is_causal=True)[0]
    assert np.array_equal(trace.prov(out)[1][0, 0, :, 0], np.arange(6))


@pytest.mark.parametrize("style", ["masked_fill", "additive", "where"])
def test_hand_written_masked_softmax_is_causal(trace: Trace, style: str) -> None:
    q, k, v = _qkv(trace)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
    keep = torch.tril(torch.ones(6, 6))
    if style == "masked_fill":
        att = att.masked_fill(keep == 0, float("-inf"))
    elif style == "additive":
        att = att + torch.zeros(6, 6).masked_fill(keep == 0, float("-inf"))
    else:
        att = torch.where(keep.bool(), att, torch.tensor(float("-inf")))
    y = att.softmax(-1) @ v
    lo, hi = trace.prov(y)
    assert np.array_equal(hi[0, 0, :, 0], np.arange(6)), style
    # without the mask the same code is not causal: the rule is not blind
    y2 = (q @ k.transpose(-2, -1)).softmax(-1) @ v
    assert (trace.prov(y2)[1] == 5).all()


def test_reductions_scans_and_softmax(trace: Trace) -> None:
    x = trace.ttokens(12).float().view(3, 4)
    assert trace.prov(x.sum(1))[1].tolist() == [3, 7, 11]
    assert trace.prov(x.sum(1))[0].tolist() == [0, 4, 8]
    assert trace.prov(x.mean(0, keepdim=True))[1].tolist() == [[8, 9, 10, 11]]
    assert trace.prov(x.max())[1].item() == 11
    assert trace.prov(x.max(dim=1).indices)[1].tolist() == [3, 7, 11]
    lo, hi = trace.prov(x.cumsum(1))
    assert hi[1].tolist() == [4, 5, 6, 7] and lo[1].tolist() == [4] * 4
    lo, hi = trace.prov(x.softmax(-1))
    assert (hi[2] == 11).all() and (lo[2] == 8).all()
    lo, hi = trace.prov(F.layer_norm(x, (4,)))
    assert (hi[0] == 3).all() and (lo[1] == 4).all()
    lo, hi = trace.prov(F.rms_norm(x, (4,)))
    assert (hi[1] == 7).all()


def test_movement_ops(trace: Trace) -> None:
    t = trace.ttokens(6)
    assert trace.prov(torch.cat([t[3:], t[:3]]))[1].tolist() == [3, 4, 5, 0, 1, 2]
    assert trace.prov(t.flip(0))[1].tolist() == [5, 4, 3, 2, 1, 0]
    assert trace.prov(torch.roll(t, 2))[1].tolist() == [4, 5, 0, 1, 2, 3]
    assert trace.prov(torch.stack([t[:2], t[4:]]))[1].tolist() == [[0, 1], [4, 5]]
    assert trace.prov(F.pad(t.float(), (1, 1)))[1].tolist() == [-1, 0, 1, 2, 3, 4, 5, -1]
    assert trace.prov(torch.tril(t.float().view(2, 3)))[1].tolist() == [[0, -1, -1], [3, 4, -1]]
    assert trace.prov(t.repeat(2))[1].tolist() == [0, 1, 2, 3, 4, 5] * 2


def test_embedding_includes_the_index_and_a_traced_table(trace: Trace) -> None:
    x = trace.ttokens(5)
    emb = torch.nn.Embedding(V, 3)
    lo, hi = trace.prov(emb(x))
    assert np.array_equal(hi, np.broadcast_to(np.arange(5)[:, None], (5, 3)))
    # after a write of traced values into row 3, looking up token 3 depends on them too
    with torch.no_grad():
        emb.weight[3] = x[4].float()
    ids = torch.tensor([3, 1])
    assert trace.prov(emb(ids))[1][:, 0].tolist() == [4, -1]


def test_index_select_gather_and_take_include_the_index(trace: Trace) -> None:
    table = torch.randn(100, 2)
    key = trace.ttokens(4) * 3  # a hashed key built from tokens
    assert trace.prov(table.index_select(0, key))[1][:, 1].tolist() == [0, 1, 2, 3]
    assert trace.prov(table[key])[1][:, 0].tolist() == [0, 1, 2, 3]
    assert trace.prov(torch.take(table, key))[1].tolist() == [0, 1, 2, 3]
    g = table.gather(0, key[:, None].expand(4, 2))
    assert trace.prov(g)[1][:, 1].tolist() == [0, 1, 2, 3]


def _lm(trace: Trace, n: int = 8):
    t = trace.ttokens(n + 1)
    x, y = t[:-1], t[1:]
    logits = torch.nn.Embedding(V, V)(x)  # row i depends on position i only
    return x, y, logits


def test_target_selection_from_a_vocabulary_row_excludes_the_target(trace: Trace) -> None:
    x, y, logits = _lm(trace)
    logp = F.log_softmax(logits, -1)
    picked = logp.gather(-1, y[:, None]).squeeze(-1)
    assert trace.prov(picked)[1].tolist() == list(range(8))  # the row, not the target
    picked2 = logp[torch.arange(8), y]
    assert trace.prov(picked2)[1].tolist() == list(range(8))
    ev = scores(trace.close())
    assert len(ev) == 16
    for s in ev.values():
        assert s["dep"] == s["pos"] - 1
    want = (-logp.detach()[torch.arange(8), y]).tolist()
    got = [s["nll"] for s in sorted(ev.values(), key=lambda s: (s["op"], s["pos"]))][:8]
    assert np.allclose(sorted(got), sorted(want), atol=1e-5)


def test_a_hashed_table_indexed_by_a_target_key_keeps_the_target(trace: Trace) -> None:
    x, y, logits = _lm(trace)
    counts = torch.rand(4096)  # size != vocabulary: not a distribution over tokens
    key = (x * 31 + y * 7) % 4096
    p_ng = counts[key]
    assert trace.prov(p_ng)[1].tolist() == list(range(1, 9))  # depends on the target position
    dist = torch.rand(8, V).softmax(-1) * 0.5 + torch.full((8, V), 0.5 / V)  # a mixture: still a distribution
    assert trace.prov(dist[torch.arange(8), y])[1].tolist() == [-1] * 8  # the target's pick: excluded
    raw = torch.rand(8, V) * 9 + 1  # a vocabulary-sized row that is not normalized (counts): the target counts
    assert trace.prov(raw[torch.arange(8), y])[1].tolist() == list(range(1, 9))
    assert trace.prov(raw.gather(-1, y[:, None]))[1][:, 0].tolist() == list(range(1, 9))
    # values in [0, 1] not summing to 1 (an unnormalized mixture): the target's pick, scored with its row sum
    probs = torch.rand(8, V)
    assert trace.prov(probs.gather(-1, y[:, None]))[1][:, 0].tolist() == [-1] * 8


def test_nll_loss_scores_targets_and_respects_ignore_index(trace: Trace) -> None:
    x, y, logits = _lm(trace)
    y2 = y.clone()
    y2[2] = -100
    out = F.cross_entropy(logits, y2, reduction="none")
    lo, hi = trace.prov(out)
    assert hi.tolist() == [0, 1, -1, 3, 4, 5, 6, 7]
    mean = F.cross_entropy(logits, y)
    assert trace.prov(mean)[1].item() == 7
    ev = scores(trace.close())
    assert len(ev) == 7 + 8
    assert {s["pos"] for s in ev.values()} == set(range(1, 9))
    assert all(s["dep"] == s["pos"] - 1 for s in ev.values())
    ref = F.cross_entropy(logits.detach(), y, reduction="none")
    by_pos = {s["pos"]: s["nll"] for s in ev.values()}
    assert np.allclose([by_pos[p] for p in range(1, 9)], ref.tolist(), atol=1e-5)


def test_nll_loss_over_a_non_vocabulary_dim_keeps_the_target(trace: Trace) -> None:
    t = trace.ttokens(9)
    logits = torch.randn(8, 5, requires_grad=False) + t[:-1, None].float() * 0
    out = F.cross_entropy(logits, t[1:] % 5, reduction="none")
    assert trace.prov(out)[1].tolist() == list(range(1, 9))
    ev = scores(trace.close())
    assert all(s["dep"] == s["pos"] for s in ev.values())


def test_backward_keeps_batch_rows_apart_and_unruled_ops_are_counted(trace: Trace) -> None:
    t = trace.ttokens(8)
    w = torch.nn.Parameter(torch.randn(V, 4))
    out = (w[t.view(2, 4)] ** 2).sum(-1)  # [2, 4]
    (out[0].sum() * 1.0).backward()
    lo, hi = trace.prov(w.grad)
    touched = hi >= 0
    assert touched.any() and hi.max() == 3 and lo[touched].min() == 0  # only the first row's positions
    det = torch.linalg.det(t[:4].float().view(2, 2))
    assert trace.prov(det)[1].item() == 3
    st = trace.events("stats")[-1]
    assert sum(st["unruled_ops"].values()) >= 1


def test_escapes_are_counted(trace: Trace) -> None:
    t = trace.ttokens(4)
    _ = t[0].item()
    _ = float(t[1])
    _ = t.tolist()
    _ = (torch.ones(2) * 3).tolist()  # untraced: not an escape
    st = trace.events("stats")[-1]
    assert st["escapes"] == 3
    assert st["escape_ops"]["tolist"] == 1


@settings(max_examples=40, deadline=None)
@given(
    a=st.integers(0, 5), b=st.integers(1, 6), step=st.integers(1, 3), perm=st.booleans(), col=st.integers(0, 4)
)
def test_property_view_chains_are_exact(tmp_path_factory, a: int, b: int, step: int, perm: bool, col: int) -> None:
    tr = Trace(tmp_path_factory.mktemp("p"))
    try:
        t = tr.ttokens(30).view(6, 5)
        ref = np.arange(30).reshape(6, 5)
        v = t[a : a + b : step]
        r = ref[a : a + b : step]
        if perm:
            v, r = v.t(), r.T
        lo, hi = tr.prov(v)
        assert np.array_equal(lo, r) and np.array_equal(hi, r)
        c = v.contiguous() + 0
        assert np.array_equal(tr.prov(c)[1], r)
    finally:
        tr.close()


def test_positions_helper_matches_tags(trace: Trace) -> None:
    t = trace.ttokens(5, lo=40)
    assert np.array_equal(trace.prov(t)[0], positions(40, 5))


def test_document_mask_from_tokens_stays_causal(trace: Trace) -> None:
    """A causal mask plus a same-document mask computed from the tokens (BOS = 1)."""
    q, k, v = _qkv(trace)
    t = trace.ttokens(6)
    doc = (t == 1).cumsum(0)  # document id of each position: depends on every earlier token
    same_doc = doc[:, None] == doc[None, :]
    causal = torch.tril(torch.ones(6, 6, dtype=torch.bool))
    att = (q @ k.transpose(-2, -1)).masked_fill(~causal, float("-inf"))
    att = att.masked_fill(~same_doc, float("-inf"))
    y = att.softmax(-1) @ v
    assert np.array_equal(trace.prov(y)[1][0, 0, :, 0], np.arange(6))
    y2 = F.scaled_dot_product_attention(q, k, v, attn_mask=causal & same_doc)
    assert np.array_equal(trace.prov(y2)[1][0, 0, :, 0], np.arange(6))
    # the same-document mask alone (no causal part) lets later tokens in: not causal
    y3 = F.scaled_dot_product_attention(q, k, v, attn_mask=same_doc)
    assert (trace.prov(y3)[1][0, 0, :, 0] == 5).all()


def test_out_variants_and_in_place_movement(trace: Trace) -> None:
    t = trace.ttokens(6).float()
    buf = torch.empty(6)
    torch.cat([t[3:], t[:3]], out=buf)
    assert trace.prov(buf)[1].tolist() == [3, 4, 5, 0, 1, 2]
    m = t.view(2, 3).clone()
    m.tril_()
    assert trace.prov(m)[1].tolist() == [[0, -1, -1], [3, 4, -1]]
    r = F.pad(t.view(1, 1, 6), (2, 0), mode="reflect")
    assert trace.prov(r)[1][0, 0].tolist() == [2, 1, 0, 1, 2, 3, 4, 5]
    st = trace.events("stats")[-1]
    assert not st["unruled_ops"] and not any(k.startswith("rule_error") for k in st["coarse"])


def test_complex_rotary_views_keep_positions(trace: Trace) -> None:
    x = trace.ttokens(8).float().view(4, 2)  # row i: positions 2i, 2i+1
    xc = torch.view_as_complex(x.contiguous())  # a complex view of float memory
    freqs = torch.polar(torch.ones(4), torch.arange(4.0))
    y = torch.view_as_real(xc * freqs).flatten()
    lo, hi = trace.prov(y)
    assert lo.tolist() == [0, 0, 2, 2, 4, 4, 6, 6] and hi.tolist() == [1, 1, 3, 3, 5, 5, 7, 7]
    nz = torch.where(x[:, 0] > 3)
    assert (trace.prov(nz[0])[1] == 6).all()  # which rows: depends on every row tested
