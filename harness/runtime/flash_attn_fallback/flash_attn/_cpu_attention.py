"""Flash-attention semantics on torch.nn.functional.scaled_dot_product_attention (CPU runs).

Layout as in flash-attention: q (batch, seqlen_q, nheads, headdim), k/v (batch, seqlen_k, nheads_k, headdim)
with nheads % nheads_k == 0 (GQA/MQA: query head h reads kv head h // (nheads / nheads_k)).
Causal and sliding-window masks are aligned to the bottom-right corner: query i may see key j when
    i + seqlen_k - seqlen_q - window_left <= j <= i + seqlen_k - seqlen_q + window_right
(window -1 = unbounded; causal means window_right = 0). A query row with no visible key outputs 0.

Plain causal attention (seqlen_q == seqlen_k) is one SDPA call with is_causal=True, so a tracer that knows
SDPA sees exactly the causal structure; windows use a boolean mask; softcap, ALiBi and returning the
log-sum-exp take the explicit softmax path. Varlen inputs are split per sequence (cu_seqlens), each a
separate call: no token attends across a sequence boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _window(causal: bool, window_size: Sequence[Any] | None) -> tuple[int, int]:
    left, right = (-1, -1) if window_size is None else (window_size[0], window_size[1])
    left = -1 if left is None else int(left)
    right = -1 if right is None else int(right)
    if causal:
        right = 0
    return left, right


def visible(seqlen_q: int, seqlen_k: int, left: int, right: int, device: Any = None) -> Tensor | None:
    """Boolean (seqlen_q, seqlen_k) mask of visible keys; None when every key is visible."""
    if left < 0 and right < 0:
        return None
    i = torch.arange(seqlen_q, device=device).unsqueeze(1) + (seqlen_k - seqlen_q)
    j = torch.arange(seqlen_k, device=device).unsqueeze(0)
    mask = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=device)
    if right >= 0:
        mask &= j <= i + right
    if left >= 0:
        mask &= j >= i - left
    return mask


def _check(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"flash-attention fallback: q, k, v must be (batch, seqlen, nheads, headdim); got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[2] % k.shape[2] != 0 or k.shape[2] != v.shape[2]:
        raise ValueError(
            f"flash-attention fallback: nheads {q.shape[2]} must be a multiple of nheads_k {k.shape[2]}"
        )


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: Sequence[Any] | None = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: Tensor | None = None,
    dropout_p: float = 0.0,
    return_lse: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """out (batch, seqlen_q, nheads, headdim) [, lse (batch, nheads, seqlen_q) float32]."""
    _check(q, k, v)
    _, sq, h, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    scale = softmax_scale if softmax_scale is not None else d ** -0.5
    left, right = _window(causal, window_size)
    gqa = h != hk
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    explicit = bool(softcap and softcap > 0) or alibi_slopes is not None or return_lse

    if not explicit:
        if left < 0 and (right < 0 or (right == 0 and sq == sk)):
            out = F.scaled_dot_product_attention(
                qt, kt, vt, dropout_p=dropout_p, is_causal=right == 0, scale=scale, enable_gqa=gqa
            )
            return out.transpose(1, 2)
        mask = visible(sq, sk, left, right, q.device)
        assert mask is not None
        rows = mask.any(dim=-1)
        full = bool(rows.all())
        if not full:  # SDPA gives NaN for a row with no key: attend anywhere, then zero the row
            mask = mask | ~rows.unsqueeze(-1)
        out = F.scaled_dot_product_attention(
            qt, kt, vt, attn_mask=mask, dropout_p=dropout_p, scale=scale, enable_gqa=gqa
        )
        if not full:
            out = out * rows.view(1, 1, sq, 1).to(out.dtype)
        return out.transpose(1, 2)

    if gqa:
        kt = kt.repeat_interleave(h // hk, dim=1)
        vt = vt.repeat_interleave(h // hk, dim=1)
    acc = torch.promote_types(q.dtype, torch.float32)  # at least fp32 for the softmax
    scores = torch.matmul(qt.to(acc), kt.to(acc).transpose(-1, -2)) * scale
    if softcap and softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    if alibi_slopes is not None:
        i = torch.arange(sq, device=q.device).unsqueeze(1) + (sk - sq)
        j = torch.arange(sk, device=q.device).unsqueeze(0)
        slopes = alibi_slopes.to(acc)
        slopes = slopes.view(1, h, 1, 1) if slopes.dim() == 1 else slopes.view(-1, h, 1, 1)
        scores = scores - slopes * (i - j).abs().to(acc)
    mask = visible(sq, sk, left, right, q.device)
    rows = None
    if mask is not None:
        rows = mask.any(dim=-1)
        # a row with no visible key attends anywhere (finite gradients), then is zeroed below
        scores = scores.masked_fill(~(mask | ~rows.unsqueeze(-1)), float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    lse = torch.logsumexp(scores, dim=-1)
    if rows is not None and not bool(rows.all()):
        probs = probs * rows.view(1, 1, sq, 1).to(probs.dtype)
        lse = lse.masked_fill(~rows.view(1, 1, sq), float("-inf"))
    if dropout_p > 0:
        probs = F.dropout(probs, p=dropout_p)
    out = torch.matmul(probs, vt.to(acc)).to(q.dtype).transpose(1, 2)
    if return_lse:
        return out, lse
    return out


def varlen_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cu_seqlens_q: Tensor,
    cu_seqlens_k: Tensor,
    *,
    seqused_q: Tensor | None = None,
    seqused_k: Tensor | None = None,
    return_lse: bool = False,
    **kw: Any,
) -> Tensor | tuple[Tensor, Tensor]:
    """q (total_q, nheads, headdim), k/v (total_k, nheads_k, headdim); sequence b is rows
    cu_seqlens[b]:cu_seqlens[b+1]. out (total_q, nheads, headdim) [, lse (nheads, total_q)]."""
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError("flash-attention fallback (varlen): q, k, v must be (total, nheads, headdim)")
    cq = [int(x) for x in cu_seqlens_q.tolist()]
    ck = [int(x) for x in cu_seqlens_k.tolist()]
    if len(cq) != len(ck):
        raise ValueError("flash-attention fallback (varlen): cu_seqlens_q and cu_seqlens_k differ in length")
    used_q = None if seqused_q is None else [int(x) for x in seqused_q.tolist()]
    used_k = None if seqused_k is None else [int(x) for x in seqused_k.tolist()]
    nheads, total = q.shape[1], q.shape[0]
    outs: list[Tensor] = []
    lses: list[Tensor] = []
    cursor = 0

    def gap(upto: int) -> None:  # rows no sequence covers (or not in seqused) output 0, lse -inf
        if upto > cursor:
            outs.append(q.new_zeros(upto - cursor, nheads, v.shape[2]))
            lses.append(torch.full((nheads, upto - cursor), float("-inf"), device=q.device))

    for b in range(len(cq) - 1):
        q0, q1, k0, k1 = cq[b], cq[b + 1], ck[b], ck[b + 1]
        if used_q is not None:
            q1 = min(q1, q0 + used_q[b])
        if used_k is not None:
            k1 = min(k1, k0 + used_k[b])
        if q1 <= q0 or k1 <= k0:
            continue
        gap(q0)
        res = attention(q[q0:q1].unsqueeze(0), k[k0:k1].unsqueeze(0), v[k0:k1].unsqueeze(0),
                        return_lse=True if return_lse else False, **kw)
        o, l_ = res if return_lse else (res, None)  # type: ignore[misc]
        outs.append(o[0])
        if l_ is not None:
            lses.append(l_[0])
        cursor = q1
    gap(total)
    out = torch.cat(outs, dim=0) if outs else q.new_zeros(0, nheads, v.shape[2])
    if return_lse:
        return out, torch.cat(lses, dim=1)
    return out


def kvcache_attention(
    q: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    k: Tensor | None = None,
    v: Tensor | None = None,
    *,
    cache_seqlens: Tensor | int | None = None,
    cache_batch_idx: Tensor | None = None,
    return_lse: bool = False,
    **kw: Any,
) -> Tensor | tuple[Tensor, Tensor]:
    """flash_attn_with_kvcache without rotary or paged caches: new k/v are written into the cache at
    cache_seqlens (in place), then q attends to each sequence's cache prefix."""
    bsz = q.shape[0]
    if cache_seqlens is None:
        lens = [k_cache.shape[1]] * bsz if k is None else [0] * bsz
    elif isinstance(cache_seqlens, int):
        lens = [cache_seqlens] * bsz
    else:
        lens = [int(x) for x in cache_seqlens.tolist()]
    idx = list(range(bsz)) if cache_batch_idx is None else [int(x) for x in cache_batch_idx.tolist()]
    outs, lses = [], []
    for b in range(bsz):
        cb, n = idx[b], lens[b]
        if k is not None and v is not None:
            new = k.shape[1]
            with torch.no_grad():
                k_cache[cb, n:n + new] = k[b]
                v_cache[cb, n:n + new] = v[b]
            n += new
        res = attention(q[b:b + 1], k_cache[cb:cb + 1, :n], v_cache[cb:cb + 1, :n], return_lse=return_lse, **kw)
        if return_lse:
            outs.append(res[0])
            lses.append(res[1])
        else:
            outs.append(res)
    out = torch.cat(outs, dim=0)  # type: ignore[arg-type]
    return (out, torch.cat(lses, dim=0)) if return_lse else out
