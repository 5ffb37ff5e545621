"""FlashAttention-2 functions (`flash_attn.flash_attn_interface`) with the library's signatures, computed on
the CPU by scaled_dot_product_attention (see _cpu_attention). Harness CPU fallback, not the real library.

return_attn_probs=True returns (out, softmax_lse, None): the dropout mask S_dmask is not materialised.
"""

from __future__ import annotations

from typing import Any

from flash_attn._cpu_attention import attention, kvcache_attention, varlen_attention


def _ret(res: Any, return_attn_probs: bool) -> Any:
    if return_attn_probs:
        out, lse = res
        return out, lse, None
    return res


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                    softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    return _ret(attention(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                          softcap=softcap, alibi_slopes=alibi_slopes, dropout_p=dropout_p,
                          return_lse=return_attn_probs), return_attn_probs)


def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                              softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    q, k, v = qkv.unbind(dim=2)
    return flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes,
                           deterministic, return_attn_probs)


def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                             softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    k, v = kv.unbind(dim=2)
    return flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes,
                           deterministic, return_attn_probs)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                           alibi_slopes=None, deterministic=False, return_attn_probs=False, block_table=None):
    if block_table is not None:
        raise NotImplementedError("flash-attention CPU fallback: paged KV (block_table) is not supported")
    return _ret(varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, softmax_scale=softmax_scale,
                                 causal=causal, window_size=window_size, softcap=softcap,
                                 alibi_slopes=alibi_slopes, dropout_p=dropout_p,
                                 return_lse=return_attn_probs), return_attn_probs)


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None,
                                     causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                                     deterministic=False, return_attn_probs=False):
    q, k, v = qkv.unbind(dim=1)
    return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, dropout_p,
                                  softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                                  return_attn_probs)


def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                    dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                                    softcap=0.0, alibi_slopes=None, deterministic=False,
                                    return_attn_probs=False):
    k, v = kv.unbind(dim=1)
    return flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                  dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes,
                                  deterministic, return_attn_probs)


def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None,
                            cache_seqlens=None, cache_batch_idx=None, cache_leftpad=None, block_table=None,
                            softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                            rotary_interleaved=True, alibi_slopes=None, num_splits=0,
                            return_softmax_lse=False):
    if rotary_cos is not None or block_table is not None or cache_leftpad is not None:
        raise NotImplementedError(
            "flash-attention CPU fallback: rotary / paged / left-padded KV caches are not supported"
        )
    return kvcache_attention(q, k_cache, v_cache, k, v, cache_seqlens=cache_seqlens,
                             cache_batch_idx=cache_batch_idx, softmax_scale=softmax_scale, causal=causal,
                             window_size=window_size, softcap=softcap, alibi_slopes=alibi_slopes,
                             return_lse=return_softmax_lse)
