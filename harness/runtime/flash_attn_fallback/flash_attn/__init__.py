"""`flash_attn` (FlashAttention-2 API) for CPU runs of the Parameter Golf compliance harness.

Same function names and signatures as the real package, computed with torch's
scaled_dot_product_attention. Only on the child's path for CPU runs (harness.runtime.shim.FALLBACK_DIR).
"""

from flash_attn.flash_attn_interface import (
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
    flash_attn_with_kvcache,
)

__version__ = "2.8.3+harness.cpu.fallback"
HARNESS_CPU_FALLBACK = True

__all__ = [
    "flash_attn_func",
    "flash_attn_kvpacked_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_varlen_func",
    "flash_attn_varlen_kvpacked_func",
    "flash_attn_varlen_qkvpacked_func",
    "flash_attn_with_kvcache",
]
