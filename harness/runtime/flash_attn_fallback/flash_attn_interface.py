"""`flash_attn_interface` (FlashAttention-3, Hopper build) for CPU runs of the Parameter Golf compliance
harness: the FA3 signatures, computed with torch's scaled_dot_product_attention.

FA3 returns `out`, or `(out, softmax_lse)` with return_attn_probs=True. FP8 descale factors, qv,
attention_chunk and split/pack knobs are accepted; descales and qv are refused (no CPU meaning).
"""

from __future__ import annotations

from flash_attn._cpu_attention import attention, kvcache_attention, varlen_attention

HARNESS_CPU_FALLBACK = True


def _refuse(qv=None, q_descale=None, k_descale=None, v_descale=None, attention_chunk=0) -> None:
    if qv is not None:
        raise NotImplementedError("flash-attention CPU fallback: qv is not supported")
    if q_descale is not None or k_descale is not None or v_descale is not None:
        raise NotImplementedError("flash-attention CPU fallback: FP8 descale factors are not supported")
    if attention_chunk:
        raise NotImplementedError("flash-attention CPU fallback: attention_chunk is not supported")


def flash_attn_func(q, k, v, softmax_scale=None, causal=False, qv=None, q_descale=None, k_descale=None,
                    v_descale=None, window_size=(-1, -1), attention_chunk=0, softcap=0.0, num_splits=1,
                    pack_gqa=None, deterministic=False, sm_margin=0, return_attn_probs=False):
    _refuse(qv, q_descale, k_descale, v_descale, attention_chunk)
    return attention(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                     softcap=softcap, return_lse=return_attn_probs)


def flash_attn_qkvpacked_func(qkv, softmax_scale=None, causal=False, q_descale=None, k_descale=None,
                              v_descale=None, window_size=(-1, -1), attention_chunk=0, softcap=0.0,
                              deterministic=False, num_heads_q=None, sm_margin=0, return_attn_probs=False):
    if qkv.dim() == 5:  # (batch, seqlen, 3, nheads, headdim)
        q, k, v = qkv.unbind(dim=2)
    else:  # (batch, seqlen, nheads_q + 2 * nheads_k, headdim)
        hq = num_heads_q if num_heads_q is not None else qkv.shape[2] // 3
        hk = (qkv.shape[2] - hq) // 2
        q, k, v = qkv.split([hq, hk, hk], dim=2)
    return flash_attn_func(q, k, v, softmax_scale, causal, None, q_descale, k_descale, v_descale,
                           window_size, attention_chunk, softcap, 1, None, deterministic, sm_margin,
                           return_attn_probs)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_q=None,
                           seqused_k=None, softmax_scale=None, causal=False, qv=None, q_descale=None,
                           k_descale=None, v_descale=None, window_size=(-1, -1), attention_chunk=0,
                           softcap=0.0, num_splits=1, pack_gqa=None, deterministic=False, sm_margin=0,
                           return_attn_probs=False):
    _refuse(qv, q_descale, k_descale, v_descale, attention_chunk)
    return varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_q=seqused_q, seqused_k=seqused_k,
                            softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                            softcap=softcap, return_lse=return_attn_probs)


def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, qv=None, rotary_cos=None, rotary_sin=None,
                            cache_seqlens=None, cache_batch_idx=None, cache_leftpad=None, page_table=None,
                            cu_seqlens_q=None, cu_seqlens_k_new=None, max_seqlen_q=None,
                            rotary_seqlens=None, q_descale=None, k_descale=None, v_descale=None,
                            softmax_scale=None, causal=False, window_size=(-1, -1), attention_chunk=0,
                            softcap=0.0, rotary_interleaved=True, scheduler_metadata=None, num_splits=0,
                            pack_gqa=None, sm_margin=0, return_softmax_lse=False):
    _refuse(qv, q_descale, k_descale, v_descale, attention_chunk)
    if rotary_cos is not None or page_table is not None or cache_leftpad is not None or cu_seqlens_q is not None:
        raise NotImplementedError(
            "flash-attention CPU fallback: rotary / paged / left-padded / varlen KV caches are not supported"
        )
    return kvcache_attention(q, k_cache, v_cache, k, v, cache_seqlens=cache_seqlens,
                             cache_batch_idx=cache_batch_idx, softmax_scale=softmax_scale, causal=causal,
                             window_size=window_size, softcap=softcap, return_lse=return_softmax_lse)
