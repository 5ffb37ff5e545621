"""GPU-only pieces: emulated on the CPU where that computes the same thing, else one clear result
(state.needs_gpu: exit 86).

Emulated:
- FP8 matrix products (`torch._scaled_mm`): computed in fp32 with the same scaling (tensor-wise or
  row-wise scales, bias, scale_result, out_dtype; an FP8 output saturates like cuBLAS); block-wise scales
  -> needs GPU;
- CUDA graphs (`torch.cuda.CUDAGraph`, `torch.cuda.graph(...)`, `torch.cuda.graphs.*`): run eagerly. The
  capture runs its body once for real and records the aten ops it dispatched (a dispatch mode active
  only while capturing); `replay()` re-runs them on the same tensors, writing each result into the
  tensor the capture produced, as replaying a graph does. `make_graphed_callables` returns the
  callables themselves, which compute the same thing.

Needs GPU (one line naming the piece and the script's line):
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
    "libcudart.so",
    "libcublas",
    "libnvrtc",
    "libc10_cuda.so",
    "libtorch_cuda.so",
)


def scaled_mm_fp32(torch: ModuleType, a: Any, b: Any, scale_a: Any = None, scale_b: Any = None, bias: Any = None,
                   scale_result: Any = None, out_dtype: Any = None, use_fast_accum: bool = False) -> Any:
    """torch._scaled_mm computed in fp32: (a * scale_a) @ (b * scale_b) [+ bias] [* scale_result]."""
    try:
        x = a.float() * (scale_a.float() if scale_a is not None else 1.0)
        y = b.float() * (scale_b.float() if scale_b is not None else 1.0)
    except RuntimeError:  # scales that do not broadcast: block-wise scaling
        state.needs_gpu(f"FP8 matrix product torch._scaled_mm with block-wise scales "
                        f"{tuple(getattr(scale_a, 'shape', ()))} x {tuple(getattr(scale_b, 'shape', ()))}")
    out = x @ y
    if bias is not None:
        out = out + bias.float()
    if scale_result is not None:
        out = out * scale_result.float()
    dtype = out_dtype if out_dtype is not None else a.dtype
    if dtype.is_floating_point and dtype.itemsize == 1:  # an FP8 output saturates, as cuBLAS does
        fi = torch.finfo(dtype)
        out = out.clamp(fi.min, fi.max)
    return out.to(dtype)


class _Recorder:
    """The aten ops dispatched while a CUDA graph captures, for replay."""

    def __init__(self) -> None:
        self.ops: list[tuple[Any, tuple[Any, ...], dict[str, Any], Any]] = []


def _graph_classes(torch: ModuleType) -> tuple[type, Any]:
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    capturing: list[Any] = []

    class _Capture(TorchDispatchMode):
        def __init__(self, rec: _Recorder) -> None:
            super().__init__()
            self.rec = rec

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            self.rec.ops.append((func, args, kwargs, out))
            return out

    class CUDAGraph:
        """torch.cuda.CUDAGraph run eagerly: capture records, replay re-runs the recorded ops."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._rec = _Recorder()
            self._mode: Any = None

        def capture_begin(self, *args: Any, **kwargs: Any) -> None:
            self._rec = _Recorder()
            self._mode = _Capture(self._rec)
            self._mode.__enter__()
            capturing.append(self)

        def capture_end(self) -> None:
            if self._mode is not None:
                self._mode.__exit__(None, None, None)
                self._mode = None
            if capturing and capturing[-1] is self:
                capturing.pop()

        def replay(self) -> None:
            with torch.no_grad():
                for func, args, kwargs, out in self._rec.ops:
                    new = func(*args, **kwargs)
                    for old_t, new_t in zip(tree_leaves(out), tree_leaves(new)):
                        if isinstance(old_t, torch.Tensor) and isinstance(new_t, torch.Tensor) \
                                and old_t is not new_t and old_t.shape == new_t.shape:
                            old_t.copy_(new_t)

        def reset(self) -> None:
            self._rec = _Recorder()

        def pool(self) -> Any:
            return None

        def enable_debug_mode(self) -> None:
            pass

        def debug_dump(self, *args: Any, **kwargs: Any) -> None:
            pass

    class graph:
        """`with torch.cuda.graph(g): ...` runs its body once, eagerly, recording it into g."""

        default_capture_stream = None

        def __init__(self, cuda_graph: Any, pool: Any = None, stream: Any = None,
                     capture_error_mode: str = "global") -> None:
            self.cuda_graph = cuda_graph

        def __enter__(self) -> None:
            self.cuda_graph.capture_begin()

        def __exit__(self, *exc: Any) -> None:
            self.cuda_graph.capture_end()

    graph.capturing = capturing  # type: ignore[attr-defined]
    return CUDAGraph, graph


def install(torch: ModuleType) -> None:
    if hasattr(torch, "_scaled_mm"):
        torch._scaled_mm = functools.partial(scaled_mm_fp32, torch)

    CUDAGraph, graph = _graph_classes(torch)

    def make_graphed_callables(callables: Any, *args: Any, **kwargs: Any) -> Any:
        return callables

    targets = [torch.cuda]
    graphs_mod = sys.modules.get("torch.cuda.graphs") or getattr(torch.cuda, "graphs", None)
    if graphs_mod is not None:
        targets.append(graphs_mod)
    for mod in targets:
        mod.CUDAGraph = CUDAGraph
        mod.graph = graph
        mod.make_graphed_callables = make_graphed_callables
        mod.graph_pool_handle = lambda: None
        mod.is_current_stream_capturing = lambda: bool(graph.capturing)

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
    state.note("gpu-only: _scaled_mm in fp32, CUDA graphs eager, op libraries")


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
        from harness.runtime.shim import triton_guard

        failed = triton_guard.interpreter_failure_of(value)
        if failed is not None:
            # a kernel Triton's CPU interpreter cannot execute (it compiles and runs on a GPU)
            kernel, where, err = failed
            state.needs_gpu(f"Triton kernel {kernel}, which Triton's CPU interpreter cannot run ({err})",
                            where or _tb_site(tb))
        msg = str(value)
        if any(m in msg for m in CUDA_MESSAGES):
            first = msg.strip().splitlines()[0] if msg.strip() else etype.__name__
            if isinstance(value, ImportError) and (value.name or value.path):
                # importing a compiled CUDA module: name the module
                mod = value.name or Path(str(value.path)).name
                state.needs_gpu(f"compiled CUDA module {mod} (ImportError: {first[:200]})", _tb_site(tb))
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
