"""Provenance through Triton kernels run in Triton's CPU interpreter (harness/runtime/tracer/kernels.py):
row-wise kernels (fused MLP with a tiled dot, cross-entropy with a row reduction, causal attention
with an untraced -inf mask) keep positions apart; a kernel that mixes row r+1 into row r shows it."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ["TRITON_INTERPRET"] = "1"

triton = pytest.importorskip("triton")
import torch  # noqa: E402
import triton.language as tl  # noqa: E402

from harness.runtime.tracer import kernels  # noqa: E402
from test_tracer_util import Trace, trace  # noqa: E402,F401


@triton.jit
def mlp_kernel(x_ptr, w_ptr, y_ptr, M, K: tl.constexpr, N: tl.constexpr, BLOCK_M: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ks = tl.arange(0, K)
    ns = tl.arange(0, N)
    x = tl.load(x_ptr + rows[:, None] * K + ks[None, :], mask=rows[:, None] < M, other=0.0)
    w = tl.load(w_ptr + ks[:, None] * N + ns[None, :])
    h = tl.dot(x, w)
    h = tl.where(h > 0, h, 0.5 * h)
    tl.store(y_ptr + rows[:, None] * N + ns[None, :], h * h, mask=rows[:, None] < M)


@triton.jit
def ce_kernel(logits_ptr, tgt_ptr, loss_ptr, V: tl.constexpr):
    r = tl.program_id(0)
    cols = tl.arange(0, V)
    z = tl.load(logits_ptr + r * V + cols)
    m = tl.max(z, 0)
    lse = m + tl.log(tl.sum(tl.exp(z - m), 0))
    t = tl.load(tgt_ptr + r)
    zt = tl.load(logits_ptr + r * V + t)
    tl.store(loss_ptr + r, lse - zt)


@triton.jit
def leak_kernel(x_ptr, y_ptr, M, D: tl.constexpr, BLOCK_M: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, D)
    cur = tl.load(x_ptr + rows[:, None] * D + cols[None, :], mask=rows[:, None] < M, other=0.0)
    nxt = tl.load(x_ptr + (rows[:, None] + 1) * D + cols[None, :], mask=rows[:, None] + 1 < M, other=0.0)
    tl.store(y_ptr + rows[:, None] * D + cols[None, :], cur + 0.5 * nxt, mask=rows[:, None] < M)


@triton.jit
def causal_attn_kernel(q_ptr, k_ptr, v_ptr, o_ptr, T: tl.constexpr, D: tl.constexpr):
    i = tl.arange(0, T)
    d = tl.arange(0, D)
    q = tl.load(q_ptr + i[:, None] * D + d[None, :])
    k = tl.load(k_ptr + i[:, None] * D + d[None, :])
    v = tl.load(v_ptr + i[:, None] * D + d[None, :])
    s = tl.dot(q, tl.trans(k))
    s = tl.where(i[:, None] >= i[None, :], s, float("-inf"))
    p = tl.exp(s - tl.max(s, 1)[:, None])
    p = p / tl.sum(p, 1)[:, None]
    tl.store(o_ptr + i[:, None] * D + d[None, :], tl.dot(p, v))


@triton.jit
def desc_mlp_kernel(a_desc, b_desc, c_desc, BM: tl.constexpr, BN: tl.constexpr, K: tl.constexpr):
    # the records' fused linear + leaky-ReLU^2 shape: tensor descriptors, dot with b.T, split halves
    pid = tl.program_id(0)
    a = a_desc.load([pid * BM, 0])
    b = b_desc.load([0, 0])
    acc = tl.dot(a, b.T)
    acc = tl.permute(tl.reshape(acc, (BM, 2, BN // 2)), (0, 2, 1))
    c0, c1 = tl.split(acc)
    c0 = tl.where(c0 > 0, c0, 0.5 * c0)
    c_desc.store([pid * BM, 0], c0 * c0)
    c_desc.store([pid * BM, BN // 2], c1)


@triton.jit
def branchy_kernel(x_ptr, y_ptr, n):
    # a Python branch on a traced scalar: what the program stores depends on it
    flag = tl.load(x_ptr + n - 1)
    if flag > -1e30:
        tl.store(y_ptr + tl.program_id(0), 1.0)


def _run(tr, name, fn, grid, *args, **kw):
    out, why = kernels.run_traced(tr, name, args, kw, lambda: fn[grid](*args, **kw))
    assert why is None
    return out


def _emb(trace: Trace, n: int, d: int) -> torch.Tensor:
    """[n, d] activations whose row r depends on exactly position r."""
    t = trace.ttokens(n).float()
    return (t[:, None] * torch.linspace(0.01, 0.1, d)[None, :]).contiguous()


def test_row_wise_mlp_kernel_keeps_rows_apart(trace: Trace) -> None:
    M, K, N = 40, 16, 32
    x = _emb(trace, M, K)
    w = torch.randn(K, N)
    y = torch.empty(M, N)
    _run(trace.tr, "mlp", mlp_kernel, (triton.cdiv(M, 16),), x, w, y, M, K=K, N=N, BLOCK_M=16)
    ref = x @ w
    ref = torch.where(ref > 0, ref, 0.5 * ref) ** 2
    assert torch.allclose(y, ref, rtol=1e-4, atol=1e-4)
    lo, hi = trace.prov(y)
    assert (lo == np.arange(M)[:, None]).all() and (hi == np.arange(M)[:, None]).all()
    assert trace.prov(w)[1].max() < 0  # the weight is only read: it stays untraced


def test_cross_entropy_kernel_is_row_wise_and_the_target_pick_counts(trace: Trace) -> None:
    M, V = 12, 32
    t = trace.ttokens(M + 1)
    logits = _emb(trace, M, V)  # row r: position r (the input token)
    tgt = t[1:].clone()  # row r's target: position r + 1
    loss = torch.empty(M)
    _run(trace.tr, "ce", ce_kernel, (M,), logits, tgt, loss, V=V)
    ref = torch.nn.functional.cross_entropy(logits, tgt, reduction="none")
    assert torch.allclose(loss, ref, atol=1e-5)
    lo, hi = trace.prov(loss)
    assert lo.tolist() == list(range(M)) and hi.tolist() == list(range(1, M + 1))


def test_a_kernel_mixing_the_next_row_in_is_seen(trace: Trace) -> None:
    M, D = 20, 8
    x = _emb(trace, M, D)
    y = torch.empty(M, D)
    _run(trace.tr, "leak", leak_kernel, (triton.cdiv(M, 8),), x, y, M, D=D, BLOCK_M=8)
    lo, hi = trace.prov(y)
    assert (hi[:-1] == np.arange(1, M)[:, None]).all()  # row r depends on r + 1
    assert (hi[-1] == M - 1).all() and (lo == np.arange(M)[:, None]).all()


def test_causal_attention_kernel_stays_causal(trace: Trace) -> None:
    T, D = 16, 8
    q, k, v = (_emb(trace, T, D) * s for s in (1.0, 0.5, 2.0))
    o = torch.empty(T, D)
    _run(trace.tr, "attn", causal_attn_kernel, (1,), q, k, v, o, T=T, D=D)
    ref = torch.nn.functional.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True, scale=1.0)[0]
    assert torch.allclose(o, ref, atol=1e-4)
    lo, hi = trace.prov(o)
    assert (hi == np.arange(T)[:, None]).all() and (lo == 0).all()


def test_tensor_descriptor_kernel_keeps_rows_apart(trace: Trace) -> None:
    from triton.tools.tensor_descriptor import TensorDescriptor

    M, K, N = 32, 16, 32
    a = _emb(trace, M, K)
    b = torch.randn(N, K)
    c = torch.empty(M, N // 2)
    c2 = torch.empty(M, N)
    descs = (TensorDescriptor.from_tensor(a, [16, K]), TensorDescriptor.from_tensor(b, [N, K]),
             TensorDescriptor.from_tensor(c2, [16, N // 2]))
    _run(trace.tr, "desc_mlp", desc_mlp_kernel, (M // 16,), *descs, BM=16, BN=N, K=K)
    ref = a @ b.T
    c0 = ref[:, : N // 2]
    assert torch.allclose(c2[:, : N // 2], torch.where(c0 > 0, c0, 0.5 * c0) ** 2, rtol=1e-4, atol=1e-4)
    assert torch.allclose(c2[:, N // 2 :], ref[:, N // 2 :], rtol=1e-4, atol=1e-4)
    lo, hi = trace.prov(c2)
    assert (lo == np.arange(M)[:, None]).all() and (hi == np.arange(M)[:, None]).all()
    del c


def test_a_branch_on_a_traced_value_reaches_the_store(trace: Trace) -> None:
    x = _emb(trace, 4, 1).reshape(-1)
    y = torch.zeros(2)
    _run(trace.tr, "branchy", branchy_kernel, (2,), x, y, 4)
    assert trace.prov(y)[1].tolist() == [3, 3]


def test_untraced_launch_runs_without_the_shadow(trace: Trace) -> None:
    x, w, y = torch.randn(16, 16), torch.randn(16, 32), torch.empty(16, 32)
    _run(trace.tr, "mlp", mlp_kernel, (1,), x, w, y, 16, K=16, N=32, BLOCK_M=16)
    assert trace.prov(y)[1].max() < 0 and trace.tr.coarse["kernel:exact"] == 0


def test_a_failing_shadow_widens_every_argument(trace: Trace, monkeypatch) -> None:
    M, D = 8, 8
    x = _emb(trace, M, D)
    y = torch.empty(M, D)
    monkeypatch.setitem(kernels._RULES, "create_masked_store", kernels._guard(lambda L, *a: 1 / 0))
    monkeypatch.setattr(kernels, "_INSTALLED", kernels._INSTALLED)
    from triton.runtime import interpreter as interp

    kernels._install(interp)
    store = interp.InterpreterBuilder.create_masked_store
    orig = store._harness_orig
    kernels._wrap_method(interp.InterpreterBuilder, "create_masked_store", orig)
    try:
        _run(trace.tr, "leak", leak_kernel, (1,), x, y, M, D=D, BLOCK_M=8)
    finally:
        interp.InterpreterBuilder.create_masked_store = store
    lo, hi = trace.prov(y)
    assert (lo == 0).all() and (hi == M - 1).all()
    assert trace.tr.coarse["kernel:widened:leak"] == 1


@triton.jit
def bf16_kernel(a_ptr, b_ptr, c_ptr, y_ptr, N: tl.constexpr):
    o = tl.arange(0, N)
    a = tl.load(a_ptr + o[:, None] * N + o[None, :])
    b = tl.load(b_ptr + o[:, None] * N + o[None, :])
    tl.store(c_ptr + o[:, None] * N + o[None, :], tl.dot(a, b).to(tl.bfloat16))
    r = tl.where(a > 0, 2.0 * a, 0.5 * a)
    tl.store(y_ptr + o, tl.sum(r * r, 1).to(tl.bfloat16))


def test_bf16_kernels_compute_in_float_not_on_bit_patterns(trace: Trace) -> None:
    """Triton's interpreter keeps bf16 as uint16 bits and computed on them (NaN in the records' fused
    bf16 MLP); the shim (triton_guard._bf16_arithmetic) widens bf16 arithmetic to fp32 and rounds back,
    and the shadow provenance travels through the widening."""
    from triton.runtime import interpreter as interp

    from harness.runtime.shim import triton_guard

    triton_guard._bf16_arithmetic(interp)
    a = _emb(trace, 16, 16).to(torch.bfloat16)
    b = torch.randn(16, 16, dtype=torch.bfloat16)
    c, y = torch.empty(16, 16, dtype=torch.bfloat16), torch.empty(16, dtype=torch.bfloat16)
    _run(trace.tr, "bf16", bf16_kernel, (1,), a, b, c, y, N=16)
    assert torch.allclose(c.float(), a.float() @ b.float(), rtol=2e-2, atol=5e-2)
    ref = (torch.where(a > 0, 2 * a, 0.5 * a).float() ** 2).sum(1)
    assert torch.allclose(y.float(), ref, rtol=3e-2, atol=5e-2)
    assert (trace.prov(c)[1] == np.arange(16)[:, None]).all() and trace.prov(y)[1].tolist() == list(range(16))
