"""bf16 on the CPU: kept, or mapped to fp32 (setting `bf16_as_fp32`, default on: bf16 matmuls are ~50x
slower than fp32 on these CPUs), and CUDA autocast / GradScaler moved to the CPU.

The mapping replaces the *attribute* `torch.bfloat16` with `torch.float32` (torch's own modules bound the
real dtype when they were imported, so only code that looks it up later, i.e. the script, sees fp32): every
`dtype=torch.bfloat16`, `.to(torch.bfloat16)`, `getattr(torch, "bfloat16")` follows; `.bfloat16()` becomes
`.float()`; autocast to a 16-bit type is switched off (the run computes in fp32).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from harness.runtime.shim import state

REAL_BF16: Any = None


def install(torch: ModuleType) -> None:
    global REAL_BF16
    REAL_BF16 = torch.bfloat16
    real_fp16 = torch.float16
    to_fp32 = state.bf16_as_fp32
    if to_fp32:
        # torch builds its storage-type tables lazily from the attribute: build them with the real dtype
        # first, or the bf16 entry would overwrite fp32's and torch.load could not read FloatStorage
        storage = getattr(torch, "storage", None)
        for table in ("_dtype_to_storage_type_map", "_storage_type_to_dtype_map"):
            fn = getattr(storage, table, None)
            if fn is not None:
                fn()
        torch.bfloat16 = torch.float32
        torch.Tensor.bfloat16 = lambda self, memory_format=torch.preserve_format: self.float(
            memory_format=memory_format
        )
        state.note("bf16->fp32")

    real_autocast = torch.amp.autocast_mode.autocast

    class autocast(real_autocast):  # noqa: N801 - replaces torch.autocast
        """torch.autocast with CUDA mapped to the CPU (and off when bf16 runs as fp32)."""

        def __init__(
            self,
            device_type: str = "cuda",
            dtype: Any = None,
            enabled: bool = True,
            cache_enabled: bool | None = None,
        ) -> None:
            was_cuda = isinstance(device_type, str) and device_type.startswith("cuda")
            if was_cuda:
                device_type = "cpu"
                if dtype is None:
                    dtype = real_fp16  # CUDA autocast's default
            if to_fp32:
                # fp32 throughout: a 16-bit autocast would only slow the CPU down
                enabled, dtype = False, REAL_BF16
            elif dtype is torch.float32:
                enabled = False
            super().__init__(device_type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

    class cuda_amp_autocast(autocast):  # noqa: N801 - torch.cuda.amp.autocast(enabled, dtype, cache_enabled)
        def __init__(self, enabled: bool = True, dtype: Any = None, cache_enabled: bool = True) -> None:
            super().__init__("cuda", dtype=dtype if dtype is not None else real_fp16, enabled=enabled,
                             cache_enabled=cache_enabled)

    torch.autocast = autocast
    torch.amp.autocast = autocast
    torch.amp.autocast_mode.autocast = autocast
    torch.cuda.amp.autocast = cuda_amp_autocast
    if hasattr(torch.cuda.amp, "autocast_mode"):
        torch.cuda.amp.autocast_mode.autocast = cuda_amp_autocast
    state.note("autocast")

    real_scaler = torch.amp.GradScaler

    class GradScaler(real_scaler):
        def __init__(self, device: str = "cuda", *args: Any, **kwargs: Any) -> None:
            if isinstance(device, str) and device.startswith("cuda"):
                device = "cpu"
            super().__init__(device, *args, **kwargs)

    class CudaGradScaler(GradScaler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__("cpu", *args, **kwargs)

    torch.amp.GradScaler = GradScaler
    torch.cuda.amp.GradScaler = CudaGradScaler
    state.note("GradScaler")
