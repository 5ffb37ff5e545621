"""Which provenance op handler each aten op gets.

Handler kinds (implemented in the ``ops`` package):
    view        outputs alias an input: nothing to do (provenance lives per storage)
    noop        no data flow to follow here (collectives are replayed at the Python level)
    pointwise   elementwise union with broadcasting (value-aware: x*0, x+(-inf), where, masked_fill)
    overwrite   the destination is overwritten with untraced values (fill_, zero_, random fills)
    factory_like a new tensor shaped like an input, values independent of it (zeros_like, new_empty)
    copy        exact copy / dtype or device move / reshape-copy
    movement    pure data movement: the op is replayed on the provenance channels
    gather, index, index_select, take, masked_select, embedding
                selection by index: the index's provenance is included (except target selection)
    write_index index_put_/scatter*/index_add_/...: writes at data-dependent places
    reduce, along, scan
                union over reduced dims / along a dim broadcast back / running union along a dim
    matmul      per output (i, j): union over k of row i and column j (exact zeros skip)
    attention, attention_backward, attention_bshd
                causal / masked running union along the sequence
    layer_norm, layer_norm_backward, rms_norm, rms_norm_backward
    nll, nll_backward, embedding_backward
    foreach, foreach_reduce, fused_optim
    bincount, set_membership
    escape      a value leaves as a Python scalar (.item(), float(), bool())
    unruled     everything else (no handler): union of every input into every output (counted by name)
"""

from __future__ import annotations

from typing import Any

import torch

_EXPLICIT: dict[str, str] = {}


def _add(kind: str, *names: str) -> None:
    for n in names:
        _EXPLICIT[n] = kind


_add("view", "_unsafe_view_noop")
_add(
    "noop", "_record_function_enter", "_record_function_enter_new", "_record_function_exit", "record_stream",
    "_assert_async", "_functional_assert_async", "set_", "resize_", "resize_as_", "_assert_scalar",
    "_print", "sym_constrain_range", "_assert_tensor_metadata", "detach_",
)
_add(
    "overwrite", "fill_", "zero_", "normal_", "uniform_", "random_", "bernoulli_", "exponential_", "geometric_",
    "log_normal_", "cauchy_",
)
_add(
    "copy", "clone", "_to_copy", "copy_", "lift_fresh_copy", "detach_copy", "alias_copy", "_copy_from",
    "_copy_from_and_resize", "_unsafe_view", "view_copy", "_reshape_copy", "contiguous",
    "_to_dense", "to_dense", "positive", "_conj_physical", "resolve_conj", "resolve_neg", "_neg_view_copy",
)
_add(
    "movement", "cat", "stack", "flip", "roll", "repeat", "narrow_copy", "constant_pad_nd", "reflection_pad1d",
    "reflection_pad2d", "reflection_pad3d", "replication_pad1d", "replication_pad2d", "replication_pad3d",
    "tril", "triu", "diag_embed", "diag", "diagonal_copy", "permute_copy", "transpose_copy", "expand_copy",
    "slice_copy", "select_copy", "unsqueeze_copy", "squeeze_copy", "t_copy", "unbind_copy", "split_copy",
    "split_with_sizes_copy", "as_strided_copy", "unfold_copy", "slice_scatter", "select_scatter",
    "diagonal_scatter", "as_strided_scatter", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle",
    "hstack", "vstack", "column_stack", "_unsafe_split", "_unsafe_split_with_sizes", "rot90", "fliplr", "flipud",
    "movedim_copy", "view_as_real_copy", "view_as_complex_copy", "_cat", "concat", "concatenate",
    "repeat_interleave", "tril_", "triu_", "slice_backward", "select_backward", "diagonal_backward",
    "permute_backward", "_unsafe_masked_index",
)
_add(
    "factory_like", "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
    "randint_like", "new_zeros", "new_ones", "new_empty", "new_full", "new_empty_strided",
)
_add("gather", "gather")
_add("index", "index", "_unsafe_index")
_add("index_select", "index_select")
_add("take", "take")
_add("masked_select", "masked_select")
_add("embedding", "embedding")
_add("embedding_backward", "embedding_dense_backward")
_add(
    "write_index", "index_put_", "index_put", "_index_put_impl_", "_unsafe_index_put", "scatter", "scatter_",
    "scatter_add", "scatter_add_", "scatter_reduce", "scatter_reduce_", "index_add", "index_add_", "index_copy",
    "index_copy_", "index_fill", "index_fill_", "index_reduce", "index_reduce_", "put_", "put",
    "masked_scatter", "masked_scatter_",
)
_add(
    "reduce", "sum", "mean", "amax", "amin", "max", "min", "prod", "logsumexp", "var", "std", "var_mean",
    "std_mean", "norm", "linalg_vector_norm", "argmax", "argmin", "any", "all", "count_nonzero", "nansum",
    "nanmean", "median", "nanmedian", "mode", "kthvalue", "aminmax", "_linalg_vector_norm",
)
_add(
    "along", "_softmax", "_log_softmax", "_softmax_backward_data", "_log_softmax_backward_data", "sort", "topk",
    "argsort", "_safe_softmax", "softmax", "log_softmax", "msort",
)
_add("scan", "cumsum", "cumsum_", "cumprod", "cumprod_", "cummax", "cummin", "logcumsumexp", "_cummax_helper",
     "_cummin_helper")
_add(
    "matmul", "mm", "bmm", "addmm", "addmm_", "baddbmm", "baddbmm_", "addbmm", "addbmm_", "mv", "addmv",
    "addmv_", "dot", "vdot", "matmul", "linear", "_addmm_activation", "_int_mm", "_scaled_mm", "inner",
)
_add(
    "attention", "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable", "_flash_attention_forward",
    "_efficient_attention_forward", "scaled_dot_product_attention", "_scaled_dot_product_attention_math",
)
_add(
    "attention_backward", "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_cudnn_attention_backward", "_scaled_dot_product_fused_attention_overrideable_backward",
    "_flash_attention_backward", "_efficient_attention_backward",
)
_add("layer_norm", "native_layer_norm")
_add("layer_norm_backward", "native_layer_norm_backward")
_add("rms_norm", "_fused_rms_norm")
_add("rms_norm_backward", "_fused_rms_norm_backward")
_add("nll", "nll_loss_forward", "nll_loss2d_forward")
_add("nll_backward", "nll_loss_backward", "nll_loss2d_backward")
_add("escape", "_local_scalar_dense", "equal", "is_nonzero", "allclose", "is_same_size")
_add("foreach_reduce", "_foreach_norm", "_foreach_max")
_add("fused_optim", "_fused_adam_", "_fused_adamw_", "_fused_sgd_", "_fused_adagrad_", "_fused_adam", "_fused_adamw",
     "_fused_sgd")
_add("bincount", "bincount", "histc")
_add("set_membership", "isin", "searchsorted", "bucketize")
_add(
    "pointwise", "where", "masked_fill", "masked_fill_", "native_dropout", "native_dropout_backward", "dropout",
    "clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "lerp", "lerp_", "addcmul",
    "addcmul_", "addcdiv", "addcdiv_", "threshold_backward", "_masked_scale", "masked_fill", "polar", "complex",
    "_conj", "conj_physical", "_fused_dropout", "_make_dep_token", "heaviside", "nan_to_num", "nan_to_num_",
)

# Factories whose outputs get a birth epoch (tables the script allocates itself).
FACTORIES = frozenset(
    {
        "empty", "empty_strided", "zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "empty_like",
        "new_zeros", "new_ones", "new_full", "new_empty", "new_empty_strided", "scalar_tensor",
    }
)

# log ops: an element carrying one target position's score becomes a new (derived) score
LOG_OPS = frozenset({"log", "log_", "log2", "log2_", "log10", "log10_"})
EXP_OPS = frozenset({"exp", "exp_"})


def base_name(func: Any) -> str:
    """'aten::add_' -> 'add_'; other namespaces keep theirs ('flash_attn::fwd')."""
    name = func._schema.name
    return name[6:] if name.startswith("aten::") else name


def classify(func: Any) -> str:
    name = func._schema.name
    ns, _, short = name.partition("::")
    if ns in ("c10d", "_c10d_functional", "profiler", "c10d_functional"):
        return "noop"
    if ns != "aten":
        low = name.lower()
        if "flash" in low and ("attn" in low or "attention" in low) and "bwd" not in low and "backward" not in low:
            return "attention_bshd"
        return "unruled"
    kind = _EXPLICIT.get(short)
    if kind is not None:
        return kind
    if short.startswith("_foreach_"):
        return "foreach"
    returns = func._schema.returns
    if returns and all(r.alias_info is not None and not r.alias_info.is_write for r in returns):
        return "view"
    tags = getattr(func, "tags", ())
    if torch.Tag.pointwise in tags:
        return "pointwise"
    return "unruled"
