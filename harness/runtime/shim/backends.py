"""SDP backend switches made no-ops.

Scripts disable the math backend and force flash (`enable_math_sdp(False)`); on the CPU the same global
flags would leave scaled_dot_product_attention with no kernel for GQA or masks. The switches change
nothing; `sdp_kernel` / `sdpa_kernel` become empty contexts. TF32 and cudnn flags
are plain settings that work on a CPU build and are left alone.
"""

from __future__ import annotations

import contextlib
import functools
from types import ModuleType
from typing import Any

from harness.runtime.shim import state


def _null_context_like(orig: Any) -> Any:
    # functools.wraps keeps __wrapped__: torch._dynamo reads sdpa_kernel.__wrapped__ when it is imported
    @functools.wraps(orig)
    def null_context(*args: Any, **kwargs: Any) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    return null_context


def _constant_like(orig: Any, value: Any) -> Any:
    @functools.wraps(orig)
    def constant(*args: Any, **kwargs: Any) -> Any:
        return value

    return constant


def install(torch: ModuleType) -> None:
    bc = torch.backends.cuda
    for name in ("enable_flash_sdp", "enable_mem_efficient_sdp", "enable_math_sdp", "enable_cudnn_sdp",
                 "allow_fp16_bf16_reduction_math_sdp"):
        if hasattr(bc, name):
            setattr(bc, name, _constant_like(getattr(bc, name), None))
    for name in ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "math_sdp_enabled", "cudnn_sdp_enabled"):
        if hasattr(bc, name):
            setattr(bc, name, _constant_like(getattr(bc, name), True))
    if hasattr(bc, "sdp_kernel"):
        bc.sdp_kernel = _null_context_like(bc.sdp_kernel)
    attention = getattr(torch.nn, "attention", None)
    if attention is not None and hasattr(attention, "sdpa_kernel"):
        attention.sdpa_kernel = _null_context_like(attention.sdpa_kernel)
    state.note("sdp switches")
