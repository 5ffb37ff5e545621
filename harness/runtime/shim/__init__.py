"""The CPU device shim: lets a challenge script written for 8xH100 run unmodified on a CPU.

`install(ctx)` is called in the child process (every rank) by harness.runtime.bootstrap when
`ctx.settings.device == "cpu"`, before the script's first line. It is lazy: it registers a post-import
hook and patches torch right after torch's own import finishes, so a process that never imports torch
pays one meta-path lookup per import and nothing else.

What the patches do, one module each:
    devices       cuda devices/strings/ints -> cpu (torch.device, factories, .to/.cuda, Module.to, load)
    dtypes        bf16 -> fp32 (setting bf16_as_fp32), autocast / GradScaler on the CPU
    cuda_api      torch.cuda.*: an H100 per local rank, wall-clock events, streams, memory statistics
    backends      SDP backend switches and sdpa_kernel contexts become no-ops
    compile       torch.compile / torch.jit.script / trace = identity (modules wrapped like OptimizedModule),
                  permissive dynamo/inductor configs
    grad_mode     torch.inference_mode = no_grad
    optim         fused=True / capturable=True dropped
    distributed   nccl -> gloo, device_id / device_ids dropped
    subprocs      nvidia-smi answered in-process (nvidia_smi renders the output)
    gpu_only      FP8 _scaled_mm, CUDA graphs, CUDA extensions -> needs GPU (exit 86); an uncaught error
                  saying CUDA was needed -> the same result
    triton_guard  guarded `import triton` hidden; unguarded: kernels run in Triton's CPU interpreter
                  (TRITON_INTERPRET=1, the `triton` extra), each launch recorded; without triton a stub,
                  and a launch -> needs GPU

`python -m harness.runtime.shim SCRIPT` runs one script under the shim alone (debugging, tests).

No TorchFunctionMode is used: modes are per thread (loader threads would escape them) and would sit on
every op next to the tracer's dispatch mode. Monkeypatches apply to every thread.

FALLBACK_DIR holds importable `flash_attn_interface` and `flash_attn` (SDPA-based); the runner puts it on
the child's PYTHONPATH on CPU runs, and install() puts it on sys.path as well, ahead of site-packages.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from harness.runtime.shim import importhook, state
from harness.runtime.shim.state import NEEDS_GPU_EXIT, needs_gpu

if TYPE_CHECKING:
    from harness.runtime.context import RuntimeContext

FALLBACK_DIR: Path = Path(__file__).resolve().parent.parent / "flash_attn_fallback"

__all__ = ["FALLBACK_DIR", "NEEDS_GPU_EXIT", "install", "installed", "needs_gpu", "patched"]

_installed = False


def install(ctx: "RuntimeContext | None") -> None:
    """Install the shim in this process (idempotent). ctx may be None (tests, tools)."""
    global _installed
    if _installed:
        return
    _installed = True
    state.init(ctx)
    _put_fallback_on_path()

    from harness.runtime.shim import gpu_only, subprocs, triton_guard

    hooks = importhook.finder()
    triton_guard.install(hooks)
    if "triton" in sys.modules and not getattr(sys.modules["triton"], "__harness_stub__", False):
        if triton_guard.interpreting():
            triton_guard.interpret_launches(sys.modules["triton"])
        else:
            triton_guard.guard_launches(sys.modules["triton"])
    subprocs.install()
    gpu_only.install_excepthook()
    hooks.when_imported("torch", _patch_torch)


def _put_fallback_on_path() -> None:
    """FALLBACK_DIR before the first site-packages: it shadows a (CUDA-only) flash_attn installed there, but
    not a module of the submission's own folder."""
    fallback = str(FALLBACK_DIR)
    if fallback in sys.path:
        return
    at = next((i for i, p in enumerate(sys.path) if p.rstrip("/").endswith(("site-packages", "dist-packages"))),
              len(sys.path))
    sys.path.insert(at, fallback)


def installed() -> bool:
    return _installed


def patched() -> list[str]:
    """Names of the patches applied so far, in order."""
    return list(state.patched)


def _patch_torch(torch: ModuleType) -> None:
    from harness.runtime.shim import (
        backends,
        compile,
        cuda_api,
        devices,
        distributed,
        dtypes,
        gpu_only,
        grad_mode,
        optim,
    )

    for part in (devices, dtypes, cuda_api, backends, compile, grad_mode, optim, distributed, gpu_only):
        try:
            part.install(torch)
        except Exception as exc:  # one missing attribute in another torch version must not stop the rest
            sys.stderr.write(f"harness: shim: {part.__name__} not installed: {type(exc).__name__}: {exc}\n")
    hooks = importhook.finder()
    hooks.when_imported("torch.nn.attention.flex_attention", devices.install_flex_attention)
    hooks.when_imported("torch.utils.cpp_extension", gpu_only.install_cpp_extension)
    hooks.when_imported("torch._dynamo.config", compile.permissive_config)
    hooks.when_imported("torch._inductor.config", compile.permissive_config)
    hooks.when_imported("torch._dynamo", compile.install_dynamo)
