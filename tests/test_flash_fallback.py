"""The flash-attention CPU fallback equals a naive attention written from the definition.

Naive reference: per batch, head and query row, softmax over the visible keys (bottom-right aligned causal
mask and sliding window, GQA head mapping h -> h // group, optional tanh softcap), in float64.
"""

from __future__ import annotations

import math
import sys

import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from harness.runtime.shim import FALLBACK_DIR  # noqa: E402

sys.path.insert(0, str(FALLBACK_DIR))
import flash_attn  # noqa: E402
import flash_attn_interface as fa3  # noqa: E402
from flash_attn import _cpu_attention  # noqa: E402

sys.path.remove(str(FALLBACK_DIR))

F64 = torch.float64


def naive(q, k, v, causal=False, window=(-1, -1), softcap=0.0, scale=None, return_lse=False):
    """Attention from the definition, differentiable, one query row at a time."""
    b_, sq, h, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    group = h // hk
    scale = d ** -0.5 if scale is None else scale
    left, right = window
    if causal:
        right = 0
    outs, lses = [], []
    for b in range(b_):
        ob, lb = [], []
        for i in range(sq):
            oi, li = [], []
            centre = i + sk - sq
            lo = centre - left if left >= 0 else 0
            hi = centre + right if right >= 0 else sk - 1
            js = [j for j in range(sk) if lo <= j <= hi]
            for hh in range(h):
                kv = hh // group
                if not js:
                    oi.append(torch.zeros(d, dtype=q.dtype))
                    li.append(torch.tensor(float("-inf"), dtype=F64))
                    continue
                s = torch.stack([(q[b, i, hh] * k[b, j, kv]).sum() * scale for j in js])
                if softcap > 0:
                    s = softcap * torch.tanh(s / softcap)
                p = torch.softmax(s.to(F64), dim=0)
                vv = torch.stack([v[b, j, kv] for j in js]).to(F64)
                oi.append((p[:, None] * vv).sum(0).to(q.dtype))
                li.append(torch.logsumexp(s.to(F64), dim=0))
            ob.append(torch.stack(oi))
            lb.append(torch.stack(li))
        outs.append(torch.stack(ob))
        lses.append(torch.stack(lb))
    out = torch.stack(outs)  # (b, sq, h, d)
    lse = torch.stack(lses).transpose(1, 2)  # (b, h, sq)
    return (out, lse) if return_lse else out


def rand(*shape, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def close(a, b, tol=1e-9):
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a.to(F64), b.to(F64), atol=tol, rtol=tol), (a - b).abs().max()


shapes = st.fixed_dictionaries(
    {
        "b": st.integers(1, 2),
        "sq": st.integers(1, 9),
        "extra_k": st.integers(0, 3),
        "hk": st.integers(1, 3),
        "group": st.integers(1, 3),
        "d": st.sampled_from([4, 8]),
        "causal": st.booleans(),
        "left": st.integers(-1, 5),
        "right": st.integers(-1, 3),
        "softcap": st.sampled_from([0.0, 3.0]),
        "seed": st.integers(0, 1000),
    }
)


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_fa3_matches_naive(p):
    sk = p["sq"] + p["extra_k"]
    q = rand(p["b"], p["sq"], p["hk"] * p["group"], p["d"], seed=p["seed"])
    k = rand(p["b"], sk, p["hk"], p["d"], seed=p["seed"] + 1)
    v = rand(p["b"], sk, p["hk"], p["d"], seed=p["seed"] + 2)
    window = (p["left"], p["right"])
    got = fa3.flash_attn_func(q, k, v, causal=p["causal"], window_size=window, softcap=p["softcap"])
    close(got, naive(q, k, v, p["causal"], window, p["softcap"]))


@settings(max_examples=30, deadline=None)
@given(shapes)
def test_fa2_matches_naive_with_lse(p):
    sk = p["sq"] + p["extra_k"]
    q = rand(p["b"], p["sq"], p["hk"] * p["group"], p["d"], seed=p["seed"])
    k = rand(p["b"], sk, p["hk"], p["d"], seed=p["seed"] + 1)
    v = rand(p["b"], sk, p["hk"], p["d"], seed=p["seed"] + 2)
    window = (p["left"], p["right"])
    out, lse, s_dmask = flash_attn.flash_attn_func(
        q, k, v, causal=p["causal"], window_size=window, softcap=p["softcap"], return_attn_probs=True
    )
    ref_out, ref_lse = naive(q, k, v, p["causal"], window, p["softcap"], return_lse=True)
    close(out, ref_out)
    assert s_dmask is None
    finite = torch.isfinite(ref_lse)
    assert torch.equal(finite, torch.isfinite(lse))
    close(lse[finite], ref_lse[finite])


def test_plain_causal_is_one_sdpa_call_with_is_causal(monkeypatch):
    """The tracer gives SDPA(is_causal=True) a running union: the common path must use exactly that."""
    calls = []
    real = _cpu_attention.F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(_cpu_attention.F, "scaled_dot_product_attention", spy)
    q, k = rand(2, 6, 4, 8), rand(2, 6, 2, 8, seed=1)
    out = fa3.flash_attn_func(q, k, k, causal=True)
    assert len(calls) == 1 and calls[0]["is_causal"] is True and calls[0].get("attn_mask") is None
    assert calls[0]["enable_gqa"] is True
    close(out, naive(q, k, k, causal=True))


def test_softmax_scale_and_float32():
    q, k, v = (rand(1, 5, 2, 8, dtype=torch.float32, seed=s) for s in (3, 4, 5))
    got = fa3.flash_attn_func(q, k, v, softmax_scale=0.3, causal=True)
    assert got.dtype == torch.float32
    close(got, naive(q.double(), k.double(), v.double(), causal=True, scale=0.3), tol=1e-5)


def test_fully_masked_rows_are_zero_with_finite_gradients():
    # seqlen_q > seqlen_k with causal: the first rows see no key (bottom-right alignment)
    q = rand(1, 5, 2, 4).requires_grad_()
    k = rand(1, 2, 2, 4, seed=1).requires_grad_()
    v = rand(1, 2, 2, 4, seed=2).requires_grad_()
    for softcap in (0.0, 2.0):  # SDPA path, explicit path
        out = fa3.flash_attn_func(q, k, v, causal=True, softcap=softcap)
        assert torch.equal(out[0, :3], torch.zeros_like(out[0, :3]))
        close(out, naive(q, k, v, causal=True, softcap=softcap))
        out.square().sum().backward()
        for t in (q, k, v):
            assert torch.isfinite(t.grad).all()
            t.grad = None


@pytest.mark.parametrize("kw", [
    {"causal": True},
    {"causal": True, "window_size": (2, 0)},
    {"causal": False, "window_size": (1, 2)},
    {"causal": True, "softcap": 4.0},
])
def test_gradients_match_naive(kw):
    def leaves():
        return [rand(2, 6, h, 4, seed=s).requires_grad_() for h, s in ((4, 7), (2, 8), (2, 9))]

    a, b = leaves(), leaves()
    fa3.flash_attn_func(*a, **kw).sin().sum().backward()
    naive(*b, kw.get("causal", False), kw.get("window_size", (-1, -1)), kw.get("softcap", 0.0)).sin().sum().backward()
    for x, y in zip(a, b):
        close(x.grad, y.grad)


def _varlen_case(seed=0):
    lens = [3, 1, 5, 4]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    total = int(cu[-1])
    q = rand(total, 4, 8, seed=seed)
    k = rand(total, 2, 8, seed=seed + 1)
    v = rand(total, 2, 8, seed=seed + 2)
    return lens, cu, q, k, v


@pytest.mark.parametrize("window", [(-1, -1), (1, 0)])
def test_varlen_matches_per_sequence_naive(window):
    lens, cu, q, k, v = _varlen_case()
    got = fa3.flash_attn_varlen_func(q, k, v, cu, cu, max(lens), max(lens), causal=True, window_size=window)
    got2 = flash_attn.flash_attn_varlen_func(q, k, v, cu, cu, max(lens), max(lens), causal=True,
                                             window_size=window)
    for b, n in enumerate(lens):
        a, z = int(cu[b]), int(cu[b + 1])
        ref = naive(q[None, a:z], k[None, a:z], v[None, a:z], True, window)[0]
        close(got[a:z], ref)
        close(got2[a:z], ref)


def test_varlen_never_attends_across_a_boundary():
    lens, cu, q, k, v = _varlen_case()
    base = fa3.flash_attn_varlen_func(q, k, v, cu, cu, 5, 5, causal=False)
    k2, v2 = k.clone(), v.clone()
    a, z = int(cu[2]), int(cu[3])  # change only sequence 2's keys and values
    k2[a:z] += 10.0
    v2[a:z] -= 10.0
    moved = fa3.flash_attn_varlen_func(q, k2, v2, cu, cu, 5, 5, causal=False)
    unchanged = torch.ones(q.shape[0], dtype=torch.bool)
    unchanged[a:z] = False
    assert torch.equal(base[unchanged], moved[unchanged])
    assert not torch.allclose(base[a:z], moved[a:z])


def test_varlen_lse_and_seqused():
    lens, cu, q, k, v = _varlen_case(seed=3)
    out, lse = fa3.flash_attn_varlen_func(q, k, v, cu, cu, 5, 5, causal=True, return_attn_probs=True)
    assert lse.shape == (4, q.shape[0])
    for b in range(len(lens)):
        a, z = int(cu[b]), int(cu[b + 1])
        _, ref_lse = naive(q[None, a:z], k[None, a:z], v[None, a:z], True, return_lse=True)
        close(lse[:, a:z], ref_lse[0])
    used = torch.tensor([2, 1, 3, 4], dtype=torch.int32)
    got = fa3.flash_attn_varlen_func(q, k, v, cu, cu, 5, 5, seqused_q=used, seqused_k=used, causal=True)
    for b in range(len(lens)):
        a, n = int(cu[b]), int(used[b])
        close(got[a:a + n], naive(q[None, a:a + n], k[None, a:a + n], v[None, a:a + n], True)[0])
        assert torch.equal(got[a + n:int(cu[b + 1])], torch.zeros_like(got[a + n:int(cu[b + 1])]))


def test_packed_variants():
    q, k, v = rand(2, 5, 4, 8), rand(2, 5, 4, 8, seed=1), rand(2, 5, 4, 8, seed=2)
    ref = naive(q, k, v, causal=True)
    close(flash_attn.flash_attn_qkvpacked_func(torch.stack([q, k, v], dim=2), causal=True), ref)
    close(flash_attn.flash_attn_kvpacked_func(q, torch.stack([k, v], dim=2), causal=True), ref)
    close(fa3.flash_attn_qkvpacked_func(torch.stack([q, k, v], dim=2), causal=True), ref)
    kg, vg = k[:, :, :2], v[:, :, :2]  # FA3 packed GQA layout: (b, s, hq + 2 hk, d)
    close(fa3.flash_attn_qkvpacked_func(torch.cat([q, kg, vg], dim=2), causal=True, num_heads_q=4),
          naive(q, kg, vg, causal=True))
    cu = torch.tensor([0, 4, 10], dtype=torch.int32)
    flat = torch.stack([q.reshape(10, 4, 8), k.reshape(10, 4, 8), v.reshape(10, 4, 8)], dim=1)
    got = flash_attn.flash_attn_varlen_qkvpacked_func(flat, cu, 6, causal=True)
    close(got[4:], naive(q.reshape(10, 4, 8)[None, 4:], k.reshape(10, 4, 8)[None, 4:],
                         v.reshape(10, 4, 8)[None, 4:], True)[0])


def test_kvcache_appends_then_attends_to_the_prefix():
    k_cache = torch.zeros(2, 8, 2, 4, dtype=F64)
    v_cache = torch.zeros(2, 8, 2, 4, dtype=F64)
    k_cache[:, :3] = rand(2, 3, 2, 4, seed=1)
    v_cache[:, :3] = rand(2, 3, 2, 4, seed=2)
    q, k_new, v_new = rand(2, 1, 4, 4, seed=3), rand(2, 1, 2, 4, seed=4), rand(2, 1, 2, 4, seed=5)
    lens = torch.tensor([3, 2], dtype=torch.int32)
    out = fa3.flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=lens, causal=True)
    for b, n in enumerate([3, 2]):
        assert torch.equal(k_cache[b, n], k_new[b, 0])
        ref = naive(q[b:b + 1], k_cache[b:b + 1, :n + 1], v_cache[b:b + 1, :n + 1], causal=True)
        close(out[b:b + 1], ref)


def test_refuses_what_has_no_cpu_meaning():
    q = rand(1, 2, 2, 4)
    with pytest.raises(NotImplementedError, match="descale"):
        fa3.flash_attn_func(q, q, q, q_descale=torch.ones(1))
    with pytest.raises(ValueError, match="nheads"):
        fa3.flash_attn_func(q, rand(1, 2, 3, 4), rand(1, 2, 3, 4))
    assert flash_attn.HARNESS_CPU_FALLBACK and fa3.HARNESS_CPU_FALLBACK
    assert math.isfinite(float(fa3.flash_attn_func(q, q, q).sum()))
