"""What no shim can give ends the run with one clear result (state.needs_gpu: exit 86).

- FP8 matrix products (`torch._scaled_mm`),
- CUDA graph capture (`torch.cuda.CUDAGraph`, `torch.cuda.graph`); `make_graphed_callables` returns the
  callables themselves, which compute the same thing,
- building CUDA extensions (`torch.utils.cpp_extension.load / load_inline` with CUDA sources; a C++-only
  extension is left to build), custom op libraries that need libcuda,
- and, as a net under everything, an uncaught exception whose message says CUDA was needed ("Torch not
  compiled with CUDA enabled", "Found no NVIDIA driver", a kernel with no CPU implementation ...).
"""

from __future__ import annotations

import functools
import sys
import traceback
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from harness.runtime.shim import state

# messages of an uncaught exception that mean "this needed a GPU"
CUDA_MESSAGES = (
    "Torch not compiled with CUDA enabled",
    "Cannot access accelerator device when none is available",
    "Found no NVIDIA driver",
    "libcuda.so",
    "CUDA driver",
    "no CUDA GPUs are available",
    "with arguments from the 'CUDA' backend",
    "from the 'CPU' backend",
)


def install(torch: ModuleType) -> None:
    def scaled_mm(*args: Any, **kwargs: Any) -> Any:
        state.needs_gpu("FP8 matrix product torch._scaled_mm")

    if hasattr(torch, "_scaled_mm"):
        torch._scaled_mm = scaled_mm

    class CUDAGraph:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            state.needs_gpu("CUDA graph capture torch.cuda.CUDAGraph")

    def graph(*args: Any, **kwargs: Any) -> Any:
        state.needs_gpu("CUDA graph capture torch.cuda.graph")

    def make_graphed_callables(callables: Any, *args: Any, **kwargs: Any) -> Any:
        return callables

    torch.cuda.CUDAGraph = CUDAGraph
    torch.cuda.graph = graph
    torch.cuda.make_graphed_callables = make_graphed_callables

    ops = getattr(torch, "ops", None)
    orig_load_library = getattr(ops, "load_library", None)
    if orig_load_library is not None:

        @functools.wraps(orig_load_library)
        def load_library(path: Any) -> Any:
            try:
                return orig_load_library(path)
            except OSError as exc:
                if "cuda" in str(exc).lower():
                    state.needs_gpu(f"custom CUDA op library {Path(str(path)).name}")
                raise

        ops.load_library = load_library
    state.note("needs-gpu: _scaled_mm, CUDA graphs, op libraries")


def install_cpp_extension(mod: ModuleType) -> None:
    def needs_cuda(kwargs: dict[str, Any], sources: Any) -> bool:
        if kwargs.get("with_cuda") or kwargs.get("cuda_sources"):
            return True
        srcs = [sources] if isinstance(sources, (str, Path)) else list(sources or [])
        return any(str(s).endswith((".cu", ".cuh")) for s in srcs)

    for name in ("load", "load_inline"):
        orig = getattr(mod, name, None)
        if orig is None:
            continue

        def make(orig: Any, name: str) -> Any:
            @functools.wraps(orig)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                ext = kwargs.get("name", args[0] if args else "?")
                sources = kwargs.get("sources", args[1] if len(args) > 1 else None)
                if name == "load_inline":
                    sources = None
                if needs_cuda(kwargs, sources):
                    state.needs_gpu(f"CUDA extension build torch.utils.cpp_extension.{name}({ext!r})")
                return orig(*args, **kwargs)

            return wrapper

        setattr(mod, name, make(orig, name))
    state.note("needs-gpu: cpp_extension")


def install_excepthook() -> None:
    prev = sys.excepthook
    if getattr(prev, "_harness_shim", False):
        return

    def excepthook(etype: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        msg = str(value)
        if any(m in msg for m in CUDA_MESSAGES):
            first = msg.strip().splitlines()[0] if msg.strip() else etype.__name__
            state.needs_gpu(f"a CUDA call the CPU shim does not cover ({etype.__name__}: {first[:200]})",
                            _tb_site(tb))
        prev(etype, value, tb)

    excepthook._harness_shim = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook


def _tb_site(tb: TracebackType | None) -> str | None:
    """Innermost traceback frame in the submission's files (else the innermost outside torch)."""
    frames = traceback.extract_tb(tb)
    ctx = state.ctx
    for fr in reversed(frames):
        if ctx is not None and ctx.is_submission_file(fr.filename):
            return f"{Path(fr.filename).name}:{fr.lineno}"
    for fr in reversed(frames):
        if "/torch/" not in fr.filename and "/harness/" not in fr.filename:
            return f"{Path(fr.filename).name}:{fr.lineno}"
    return None
