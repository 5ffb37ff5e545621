"""Attention: a causal / masked running union along the sequence (SDPA, flash-attention in
BHSD and BSHD layouts, and their backward).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness.runtime.tracer.ops.basic import h_unhandled
from harness.runtime.tracer.ops.call import OpCall, handler
from harness.runtime.tracer.ops.common import _CHUNK_ELEMS, fit, hull_prov
from harness.runtime.tracer.provenance import E_HI, E_LO, Prov, broadcast, filled
from harness.runtime.tracer.state import np_values


def _rows(p: Prov | None, layout: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Union over the head dim -> [B, H, S] (from BHSD or BSHD)."""
    if p is None:
        return None
    lo, hi = p.lo.min(-1), p.hi.max(-1)
    if layout == "bshd":
        lo, hi = np.swapaxes(lo, 1, 2), np.swapaxes(hi, 1, 2)
    return lo, hi


def _expand_heads(x: np.ndarray, hq: int) -> np.ndarray:
    hk = x.shape[1]
    if hk == hq:
        return x
    if hk == 1 or hq % hk:
        return np.broadcast_to(x.min(1, keepdims=True) if x.dtype == np.int32 else x, (x.shape[0], hq) + x.shape[2:])
    return np.repeat(x, hq // hk, axis=1)


def _allowed(c: OpCall, mask: Any, causal: bool, L: int, S: int, bh: tuple[int, int], offset: int) -> np.ndarray | None:
    """Boolean [B or 1, H or 1, L, S] of keys each query may see, or None (all / pure causal)."""
    allowed = None
    if isinstance(mask, torch.Tensor):
        mv = np_values(mask)
        allowed = mv.astype(bool) if mv.dtype == np.bool_ else ~np.isneginf(mv)
        while allowed.ndim < 4:
            allowed = allowed[None]
        allowed = np.broadcast_to(allowed, (allowed.shape[0], allowed.shape[1], L, S))
    if causal and allowed is not None:
        tri = np.arange(S)[None, :] <= (np.arange(L)[:, None] + offset)
        allowed = allowed & tri
    return allowed


def _key_union(kv_lo: np.ndarray, kv_hi: np.ndarray, allowed: np.ndarray | None, causal: bool, L: int,
               offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query row i: union of kv over the keys it may see -> [B, H, L]."""
    S = kv_lo.shape[-1]
    if allowed is None and not causal:
        return (np.broadcast_to(kv_lo.min(-1, keepdims=True), kv_lo.shape[:-1] + (L,)),
                np.broadcast_to(kv_hi.max(-1, keepdims=True), kv_hi.shape[:-1] + (L,)))
    if allowed is None:
        pre_lo = np.minimum.accumulate(kv_lo, axis=-1)
        pre_hi = np.maximum.accumulate(kv_hi, axis=-1)
        j = np.arange(L) + offset
        valid = j >= 0
        jj = np.clip(j, 0, S - 1)
        lo = np.where(valid, pre_lo[..., jj], E_LO)
        hi = np.where(valid, pre_hi[..., jj], E_HI)
        return lo, hi
    los, his = [], []
    step = max(1, _CHUNK_ELEMS // max(1, kv_lo.size))
    for i0 in range(0, L, step):
        al = allowed[..., i0 : i0 + step, :]
        los.append(np.where(al, kv_lo[..., None, :], E_LO).min(-1))
        his.append(np.where(al, kv_hi[..., None, :], E_HI).max(-1))
    return np.concatenate(los, -1), np.concatenate(his, -1)


def _attn_inputs(c: OpCall, layout: str) -> dict[str, Any]:
    b = c.b
    q = b.get("query", b.get("q"))
    k = b.get("key", b.get("k"))
    v = b.get("value", b.get("v"))
    mask = b.get("attn_mask", b.get("attn_bias", b.get("bias")))
    causal = bool(b.get("is_causal", b.get("causal", False)))
    if layout == "bshd":
        B, L, H = q.shape[0], q.shape[1], q.shape[2]
        S = k.shape[1]
    else:
        B, H, L = q.shape[0], q.shape[1], q.shape[2]
        S = k.shape[2]
    # torch SDPA aligns a causal mask top-left; flash-attention (seqlen_q != seqlen_k) bottom-right
    offset = (S - L) if layout == "bshd" else 0
    return dict(q=q, k=k, v=v, mask=mask, causal=causal, B=B, H=H, L=L, S=S, offset=offset)


def _to_layout(lo: np.ndarray, layout: str) -> np.ndarray:
    return np.swapaxes(lo, 1, 2) if layout == "bshd" else lo


def attention_forward(c: OpCall, layout: str) -> None:
    a = _attn_inputs(c, layout)
    H, L, S = a["H"], a["L"], a["S"]
    qr, kr, vr = _rows(c.p(a["q"]), layout), _rows(c.p(a["k"]), layout), _rows(c.p(a["v"]), layout)
    kvshape = (a["B"], a["k"].shape[2] if layout == "bshd" else a["k"].shape[1], S)
    kv_lo = filled(kvshape, E_LO, np.int32)
    kv_hi = filled(kvshape, E_HI, np.int32)
    for r in (kr, vr):
        if r is not None:
            np.minimum(kv_lo, r[0], out=kv_lo)
            np.maximum(kv_hi, r[1], out=kv_hi)
    kv_lo, kv_hi = _expand_heads(kv_lo, H), _expand_heads(kv_hi, H)
    allowed = _allowed(c, a["mask"], a["causal"], L, S, (a["B"], H), a["offset"])
    lo, hi = _key_union(kv_lo, kv_hi, allowed, a["causal"], L, a["offset"])
    lo = np.broadcast_to(lo, (a["B"], H, L)).copy()
    hi = np.broadcast_to(hi, (a["B"], H, L)).copy()
    if qr is not None:
        np.minimum(lo, qr[0], out=lo)
        np.maximum(hi, qr[1], out=hi)
    mp = c.p(a["mask"]) if isinstance(a["mask"], torch.Tensor) else None
    if mp is not None:  # a traced mask (document boundaries from tokens): the row depends on it
        mlo = np.broadcast_to(mp.lo.min(-1), (a["B"], H, L)) if mp.lo.ndim else mp.lo
        mhi = np.broadcast_to(mp.hi.max(-1), (a["B"], H, L)) if mp.hi.ndim else mp.hi
        lo = np.minimum(lo, mlo)
        hi = np.maximum(hi, mhi)
    outs = c.outputs()
    if not outs:
        return
    out = outs[0]
    row = Prov(_to_layout(lo, layout)[..., None], _to_layout(hi, layout)[..., None], None)
    c.assign(out, broadcast(row, tuple(out.shape)))
    for t in outs[1:2]:  # logsumexp: one value per query row
        if t.numel() == lo.size:
            c.assign(t, fit(Prov(lo, hi, None), tuple(t.shape)))
    if any(p is not None and p.sid is not None for p in (c.p(a["q"]), c.p(a["k"]), c.p(a["v"]))):
        c.tr.coarse["attention_scores_dropped"] += 1


@handler("attention")
def h_attention(c: OpCall) -> None:
    layout = "bshd" if c.short in ("_flash_attention_forward", "_efficient_attention_forward") else "bhsd"
    attention_forward(c, layout)


@handler("attention_bshd")
def h_attention_bshd(c: OpCall) -> None:
    b = c.b
    if not all(isinstance(b.get(n), torch.Tensor) for n in ("q", "k", "v")) and not all(
        isinstance(b.get(n), torch.Tensor) for n in ("query", "key", "value")
    ):
        return h_unhandled(c)
    attention_forward(c, "bshd")


@handler("attention_backward")
def h_attention_backward(c: OpCall) -> None:
    layout = "bshd" if c.short in ("_flash_attention_backward", "_efficient_attention_backward") else "bhsd"
    a = _attn_inputs(c, layout)
    B, H, L, S = a["B"], a["H"], a["L"], a["S"]
    Hk = a["k"].shape[2] if layout == "bshd" else a["k"].shape[1]
    kv = [r for r in (_rows(c.p(a["k"]), layout), _rows(c.p(a["v"]), layout)) if r is not None]
    kv_lo = filled((B, Hk, S), E_LO, np.int32)
    kv_hi = filled((B, Hk, S), E_HI, np.int32)
    for r in kv:
        np.minimum(kv_lo, r[0], out=kv_lo)
        np.maximum(kv_hi, r[1], out=kv_hi)
    kvq_lo, kvq_hi = _expand_heads(kv_lo, H), _expand_heads(kv_hi, H)
    allowed = _allowed(c, a["mask"], a["causal"], L, S, (B, H), a["offset"])
    p_lo, p_hi = _key_union(kvq_lo, kvq_hi, allowed, a["causal"], L, a["offset"])
    h_lo = np.broadcast_to(p_lo, (B, H, L)).copy()
    h_hi = np.broadcast_to(p_hi, (B, H, L)).copy()
    names = [n for n in ("grad_out", "grad_out_", "out", "query", "q", "dout") if isinstance(c.b.get(n), torch.Tensor)]
    for n in names:
        r = _rows(c.p(c.b[n]), layout)
        if r is not None:
            np.minimum(h_lo, r[0], out=h_lo)
            np.maximum(h_hi, r[1], out=h_hi)
    lse = c.b.get("logsumexp", c.b.get("softmax_lse"))
    lp = c.p(lse) if isinstance(lse, torch.Tensor) else None
    if lp is not None and lp.lo.size == h_lo.size:
        np.minimum(h_lo, lp.lo.reshape(h_lo.shape), out=h_lo)
        np.maximum(h_hi, lp.hi.reshape(h_hi.shape), out=h_hi)
    # keys/values: union over the queries that see them
    if allowed is None and a["causal"]:
        # query i sees key j iff j <= i + offset  <=>  i >= j - offset
        suf_lo = np.minimum.accumulate(h_lo[..., ::-1], axis=-1)[..., ::-1]
        suf_hi = np.maximum.accumulate(h_hi[..., ::-1], axis=-1)[..., ::-1]
        i0 = np.arange(S) - a["offset"]
        valid = i0 <= L - 1
        ii = np.clip(i0, 0, L - 1)
        g_lo = np.where(valid, suf_lo[..., ii], E_LO)
        g_hi = np.where(valid, suf_hi[..., ii], E_HI)
    elif allowed is None:
        g_lo = np.broadcast_to(h_lo.min(-1, keepdims=True), (B, H, S))
        g_hi = np.broadcast_to(h_hi.max(-1, keepdims=True), (B, H, S))
    else:
        al = np.broadcast_to(allowed, (B, H, L, S))
        g_lo = np.where(al, h_lo[..., :, None], E_LO).min(-2)
        g_hi = np.where(al, h_hi[..., :, None], E_HI).max(-2)
    if Hk != H:
        if H % Hk == 0:
            g_lo = g_lo.reshape(B, Hk, H // Hk, S).min(2)
            g_hi = g_hi.reshape(B, Hk, H // Hk, S).max(2)
        else:
            g_lo = np.broadcast_to(g_lo.min(1, keepdims=True), (B, Hk, S))
            g_hi = np.broadcast_to(g_hi.max(1, keepdims=True), (B, Hk, S))
    g_lo = np.minimum(g_lo, kv_lo)
    g_hi = np.maximum(g_hi, kv_hi)
    outs = c.outputs()
    qrow = Prov(_to_layout(h_lo, layout)[..., None], _to_layout(h_hi, layout)[..., None], None)
    krow = Prov(_to_layout(g_lo, layout)[..., None], _to_layout(g_hi, layout)[..., None], None)
    for i, t in enumerate(outs):
        if i == 0:
            c.assign(t, broadcast(qrow, tuple(t.shape)))
        elif i in (1, 2):
            c.assign(t, broadcast(krow, tuple(t.shape)) if t.dim() == 4 else hull_prov(c.tr, [qrow, krow], tuple(t.shape), c.short))
        else:
            c.assign(t, hull_prov(c.tr, [qrow, krow], tuple(t.shape), c.short))
