"""Triton on a CPU run.

- `import triton` inside a try/except that catches ImportError (the script has a fallback): triton is
  hidden (ModuleNotFoundError), so the script takes its own CPU-capable path, installed triton or not.
- an unguarded import with triton installed (the harness's `triton` extra, `pip install ".[triton]"`) and
  TRITON_INTERPRET=1 in the environment (the runner sets it on CPU runs unless the user set it): kernels
  run on the CPU through Triton's own interpreter (numpy). Every launch calls `on_kernel_launch`, which
  records it (a `kernel_launch` ledger event per kernel and launching line). In a traced run the tracer
  follows provenance through the kernel (harness/runtime/tracer/kernels.py: the interpreter's loads,
  stores and ops, exactly; a widening where it cannot); only when that fails is the tracer part marked
  `incomplete`, so the trace rules cannot pass on outputs that carry no provenance.
- an unguarded import otherwise: the script gets triton (the installed one, or else a stub package whose
  decorators work at definition time), and the first kernel *launch* ends the run:
  `needs GPU: Triton kernel <name> launch` (naming the extra when triton is not installed).
- `importlib.util.find_spec("triton")` probes see the truth (None when triton is not installed).

Whether an import is guarded is read from the source of the importing frames (ast); code without source
(exec of a decompressed string) counts as unguarded.
"""

from __future__ import annotations

import ast
import importlib.machinery
import linecache
import os
import sys
from types import FrameType, ModuleType
from typing import Any

from harness.runtime.shim import state
from harness.runtime.shim.importhook import PostImportFinder

_CATCHES_IMPORT = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
# the harness's own frames (the shim, the bootstrap that runs the script) never count as a guard
_HARNESS_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep


def install(finder: PostImportFinder) -> None:
    def handler(fullname: str, path: Any, target: Any) -> Any:
        top = sys.modules.get("triton")
        if fullname != "triton":
            if top is not None and getattr(top, "__harness_stub__", False):
                return importlib.machinery.ModuleSpec(fullname, _StubLoader(), is_package=True)
            return finder.find_other(fullname, path, target)
        if _is_probe():
            return finder.find_other(fullname, path, target)
        if _import_guarded():
            raise ModuleNotFoundError(
                "No module named 'triton' (hidden by the harness CPU shim: the script's fallback runs)",
                name="triton",
            )
        spec = finder.find_other(fullname, path, target)
        if spec is None:
            return importlib.machinery.ModuleSpec("triton", _StubLoader(), is_package=True)
        if interpreting():
            return finder.wrap(spec, "triton", interpret_launches)
        return finder.wrap(spec, "triton", guard_launches)

    finder.handle("triton", handler, submodules=True)
    state.note("triton guard")


# deciding ---------------------------------------------------------------------------------------
def _caller_frames() -> list[FrameType]:
    """Frames outside the import machinery, runpy and the harness, innermost first."""
    out = []
    f: FrameType | None = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not (fn.startswith("<frozen ") or fn.startswith(_HARNESS_DIR)
                or fn.endswith(os.sep + "importlib" + os.sep + "__init__.py")
                or fn.endswith(os.sep + "runpy.py")):
            out.append(f)
        f = f.f_back
    return out


def _is_probe() -> bool:
    """importlib.util.find_spec (frozen in 3.11+, a file in other builds) is on the stack."""
    f: FrameType | None = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if f.f_code.co_name == "find_spec" and (
            fn == "<frozen importlib.util>" or fn.endswith(os.sep + "importlib" + os.sep + "util.py")
        ):
            return True
        f = f.f_back
    return False


def _import_guarded() -> bool:
    """True when some running frame executes the import inside a try that catches ImportError."""
    for f in _caller_frames():
        if _line_in_guarding_try(f.f_code.co_filename, f.f_lineno):
            return True
    return False


_SPANS: dict[str, list[tuple[int, int]]] = {}  # per file, parsed once


def _line_in_guarding_try(filename: str, lineno: int | None) -> bool:
    if lineno is None:
        return False
    spans = _SPANS.get(filename)
    if spans is None:
        spans = _SPANS[filename] = _guarded_spans(filename)
    return any(lo <= lineno <= hi for lo, hi in spans)


def _guarded_spans(filename: str) -> list[tuple[int, int]]:
    """Line spans of the bodies of try statements whose handlers catch ImportError (none without source)."""
    lines = linecache.getlines(filename)
    if not lines:
        return []
    try:
        tree = ast.parse("".join(lines), filename)
    except (SyntaxError, ValueError):
        return []
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))) and any(
            _catches_import(h.type) for h in node.handlers
        ) and node.body:
            spans.append((node.body[0].lineno, max(s.end_lineno or s.lineno for s in node.body)))
    return spans


def _catches_import(t: ast.expr | None) -> bool:
    if t is None:
        return True
    if isinstance(t, ast.Tuple):
        return any(_catches_import(e) for e in t.elts)
    name = t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", None)
    return name in _CATCHES_IMPORT


# launches ---------------------------------------------------------------------------------------
EXTRA_HINT = 'pip install ".[triton]" runs it on the CPU through Triton\'s interpreter'


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _kernel_name(kernel: Any) -> str:
    return getattr(kernel, "__name__", None) or getattr(getattr(kernel, "fn", None), "__name__", None) \
        or type(kernel).__name__


def _launch_blocked(kernel: Any) -> Any:
    name = _kernel_name(kernel)
    top = sys.modules.get("triton")
    if top is None or getattr(top, "__harness_stub__", False):
        state.needs_gpu(f"Triton kernel {name} launch (triton is not installed: {EXTRA_HINT})")
    state.needs_gpu(f"Triton kernel {name} launch")


# kernels run by Triton's interpreter --------------------------------------------------------------
launches: dict[tuple[str, str], int] = {}  # (kernel, where) -> launches so far
_marked_incomplete = False


def on_kernel_launch(kernel_name: str, args: tuple[Any, ...], grid: Any, where: str | None,
                     provenance: str = "untracked") -> None:
    """Called before every kernel launch run by Triton's CPU interpreter.

    Records the launch (a `kernel_launch` ledger event the first time each kernel is launched from each
    line: name, where, grid, the tensor arguments' shapes, and how its provenance is handled:
    "followed" when the tracer follows it, "untracked" otherwise). With provenance "untracked" in a
    traced run it marks the tracer part incomplete (see `mark_incomplete`).
    """
    where = where or "<unknown>"
    key = (kernel_name, where)
    n = launches.get(key, 0) + 1
    launches[key] = n
    if n == 1:
        tensors = [list(a.shape) for a in args if hasattr(a, "shape") and hasattr(a, "dtype")][:16]
        state.emit("kernel_launch", site=where, name=kernel_name, where=where, grid=_short(grid),
                   tensors=tensors, interpreter=True, provenance=provenance)
    if provenance == "untracked":
        mark_incomplete(kernel_name, where, "the tracer does not see through this kernel, so its outputs "
                                            "carry no provenance")


def mark_incomplete(kernel_name: str, where: str | None, why: str) -> None:
    """The first time in a traced run: a `phase runtime_ready` event with parts {"tracer": "incomplete:
    ..."}; the verdict then cannot pass a trace rule on this run."""
    global _marked_incomplete
    ctx = state.ctx
    if not _marked_incomplete and ctx is not None and getattr(ctx.settings, "trace", False):
        _marked_incomplete = True
        state.emit("phase", site="", name="runtime_ready", parts={
            "tracer": f"incomplete: Triton kernel {kernel_name} (at {where or '<unknown>'}) ran in Triton's CPU "
                      f"interpreter; {why}",
        })


kernel_time: dict[str, list[float]] = {}  # kernel -> [launches, seconds in the interpreter (+ shadow)]


def _emit_kernel_time() -> None:
    """A `kernel_time` ledger event: per kernel, launches and seconds (bench/corpus_cpu.py reads the last)."""
    state.emit("kernel_time", site="", kernels={k: [int(v[0]), round(v[1], 3)] for k, v in kernel_time.items()},
               seconds=round(sum(v[1] for v in kernel_time.values()), 3),
               launches=int(sum(v[0] for v in kernel_time.values())))


def _traced_launch(kernel: Any, args: tuple[Any, ...], grid: Any, kwargs: dict[str, Any], launch: Any) -> Any:
    import time

    t0 = time.perf_counter()
    try:
        return _traced_launch_inner(kernel, args, grid, kwargs, launch)
    finally:
        rec = kernel_time.setdefault(_kernel_name(kernel), [0, 0.0])
        rec[0] += 1
        rec[1] += time.perf_counter() - t0
        n = sum(v[0] for v in kernel_time.values())
        if n == 1:
            import atexit

            atexit.register(lambda: _safe(_emit_kernel_time))
        if n % 50 == 0:
            _safe(_emit_kernel_time)


def _safe(fn: Any) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - a closed ledger at exit
        pass


def _traced_launch_inner(kernel: Any, args: tuple[Any, ...], grid: Any, kwargs: dict[str, Any], launch: Any) -> Any:
    name, where = _kernel_name(kernel), state.site()
    try:
        from harness.runtime import tracer

        tr = tracer.current()
    except Exception:  # noqa: BLE001
        tr = None
    if tr is None:
        on_kernel_launch(name, args, grid, where)
        return launch()
    on_kernel_launch(name, args, grid, where, provenance="followed")
    from harness.runtime.tracer import kernels

    out, why = kernels.run_traced(tr, name, args, kwargs, launch)
    if why is not None:
        mark_incomplete(name, where, f"the tracer could not follow it ({why[:300]})")
    return out


# The last kernel Triton's interpreter could not run: (kernel, where, error). The script may catch the
# error and fall back to another path, so it ends the run only if it goes uncaught (gpu_only's excepthook).
interpreter_failure: tuple[str, str | None, str] | None = None


def note_interpreter_failure(kernel_name: str, where: str | None, err: BaseException) -> None:
    global interpreter_failure
    interpreter_failure = (kernel_name, where, str(err).strip().splitlines()[0][:200] if str(err).strip() else "")


def interpreter_failure_of(value: BaseException) -> tuple[str, str | None, str] | None:
    """The recorded interpreter failure when `value` (or what it was raised from) is Triton's InterpreterError."""
    seen: set[int] = set()
    e: BaseException | None = value
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__name__ == "InterpreterError" and interpreter_failure is not None:
            return interpreter_failure
        e = e.__cause__ or e.__context__
    return None


def _short(grid: Any) -> str:
    try:
        return repr(grid)[:120] if not callable(grid) else f"<callable {getattr(grid, '__name__', 'grid')}>"
    except Exception:  # noqa: BLE001
        return "?"


def interpret_launches(triton: ModuleType) -> None:
    """Installed triton under TRITON_INTERPRET=1: kernels run on the CPU; every launch is recorded."""
    try:
        from triton.runtime import interpreter as interp  # type: ignore[import-not-found]

        fn_cls = interp.InterpretedFunction
    except Exception:  # noqa: BLE001 - a triton without the interpreter: launches need a GPU
        guard_launches(triton)
        return
    if getattr(fn_cls.run, "_harness_hooked", False):
        return
    orig_run = fn_cls.run

    def run(self: Any, *args: Any, grid: Any, warmup: bool, **kwargs: Any) -> Any:
        if warmup:
            return orig_run(self, *args, grid=grid, warmup=warmup, **kwargs)
        try:
            return _traced_launch(self, args, grid, kwargs,
                                  lambda: orig_run(self, *args, grid=grid, warmup=warmup, **kwargs))
        except Exception as e:
            if type(e).__name__ == "InterpreterError":
                note_interpreter_failure(_kernel_name(self), state.site(), e)
            raise

    run._harness_hooked = True  # type: ignore[attr-defined]
    fn_cls.run = run
    _autotune_without_benchmarks()
    try:
        _bf16_arithmetic(interp)
    except Exception as e:  # noqa: BLE001 - an interpreter of another shape: leave it as it is
        state.note(f"triton interpreter bf16 fix not applied ({type(e).__name__})")
    state.note("triton interpreter launches")


def _bf16_to_f32(bits: Any) -> Any:
    import numpy as np

    a = np.asarray(bits)
    return (np.ascontiguousarray(a).astype(np.uint32) << np.uint32(16)).view(np.float32).reshape(a.shape)


def _f32_to_bf16(x: Any) -> Any:
    """Round to nearest even, NaN kept a NaN (what the GPU's cvt.rn.bf16.f32 does)."""
    import numpy as np

    a = np.ascontiguousarray(np.asarray(x, np.float32))
    b = a.view(np.uint32)
    out = ((b + (((b >> np.uint32(16)) & np.uint32(1)) + np.uint32(0x7FFF))) >> np.uint32(16)).astype(np.uint16)
    out = np.where(np.isnan(a), np.uint16(0x7FC0), out)
    return out.reshape(a.shape)


def _bf16_arithmetic(interp: Any) -> None:
    """Triton's interpreter keeps bfloat16 values as their uint16 bit patterns and then computes on the bits
    (``a > 0``, ``0.5 * a``, ``tl.dot(a, b)``, ``tl.exp(a)``, sums on bf16 blocks): garbage, NaN in the
    records' fused bf16 kernels. Here bf16 operands are widened to float32 for the arithmetic and the
    results rounded back to bf16 (the GPU computes bf16 arithmetic in fp32 too). The handles' ``attr``
    (where the tracer keeps its shadow provenance) travels with the values."""
    import numpy as np
    import triton.language as tl  # type: ignore[import-not-found]

    B, TH = interp.InterpreterBuilder, interp.TensorHandle
    if getattr(B.binary_op, "_harness_bf16", False):
        return
    bf16, f32 = tl.bfloat16, tl.float32

    def is_bf(h: Any) -> bool:
        return isinstance(h, TH) and getattr(h.dtype, "scalar", h.dtype) == bf16 and h.data.dtype == np.uint16

    def up(h: Any) -> Any:
        return TH(_bf16_to_f32(h.data), f32, dict(h.attr)) if is_bf(h) else h

    def down(out: Any) -> Any:
        if isinstance(out, TH) and out.data.dtype == np.float32:
            return TH(_f32_to_bf16(out.data), bf16, dict(out.attr))
        return out

    def widen(name: str, result_bf: Any) -> None:
        orig = getattr(B, name)

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not any(is_bf(a) for a in args):
                return orig(self, *args, **kwargs)
            out = orig(self, *[up(a) for a in args], **kwargs)
            return down(out) if result_bf(args) else out

        method._harness_bf16 = True  # type: ignore[attr-defined]
        setattr(B, name, method)

    first_bf = lambda args: any(is_bf(a) for a in args[:1])  # noqa: E731 - result has the first operand's type
    widen("binary_op", first_bf)
    widen("unary_op", first_bf)
    widen("ternary_op", lambda args: is_bf(args[2]) if len(args) > 2 else False)  # (cond|x, a, b): b's type
    widen("create_fma", lambda args: is_bf(args[2]))
    widen("create_rsqrt", first_bf)
    widen("create_erf", first_bf)
    widen("create_dot", lambda args: is_bf(args[2]))  # the accumulator's type

    orig_cast = B.cast_impl

    def cast_impl(self: Any, src: Any, dst_type: Any) -> Any:
        dst = getattr(dst_type, "scalar", dst_type)
        if is_bf(src) and dst != f32:
            return orig_cast(self, up(src), dst_type)
        if dst == bf16 and not is_bf(src) and getattr(src.dtype, "scalar", src.dtype) != f32:
            return TH(_f32_to_bf16(np.asarray(src.data).astype(np.float32)), bf16, dict(src.attr))
        return orig_cast(self, src, dst_type)

    B.cast_impl = cast_impl

    for cls in (interp.ReduceOps, interp.ScanOps):
        orig_apply = cls.apply

        def apply(self: Any, input: Any, _orig: Any = orig_apply) -> Any:
            single = not isinstance(input, tuple)
            ins = (input,) if single else input
            if not any(is_bf(getattr(t, "handle", None)) for t in ins):
                return _orig(self, input)
            conv, was = [], []
            for t in ins:
                if is_bf(getattr(t, "handle", None)):
                    shape = list(t.shape)
                    ty = tl.block_type(f32, shape) if shape else f32
                    conv.append(tl.core.tensor(up(t.handle), ty))
                    was.append(True)
                else:
                    conv.append(t)
                    was.append(False)
            ret = _orig(self, conv[0] if single else tuple(conv))
            outs = (ret,) if single else tuple(ret)
            fixed = []
            for i, o in enumerate(outs):
                h = getattr(o, "handle", None)
                if i < len(was) and was[i] and isinstance(h, TH) and h.data.dtype == np.float32:
                    shape = list(o.shape)
                    fixed.append(tl.core.tensor(down(h), tl.block_type(bf16, shape) if shape else bf16))
                else:
                    fixed.append(o)
            return fixed[0] if single else tuple(fixed)

        cls.apply = apply
    B.binary_op._harness_bf16 = True  # type: ignore[attr-defined]


def _autotune_without_benchmarks() -> None:
    """@triton.autotune with several configs benchmarks them through the GPU driver: on the CPU it takes
    the first config that survives the kernel's own pruning (every config computes the same thing)."""
    try:
        from triton.runtime.autotuner import Autotuner  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001
        return
    orig = getattr(Autotuner, "prune_configs", None)
    if orig is None or getattr(orig, "_harness_hooked", False):
        return

    def prune_configs(self: Any, *args: Any, **kwargs: Any) -> Any:
        return list(orig(self, *args, **kwargs))[:1]

    prune_configs._harness_hooked = True  # type: ignore[attr-defined]
    Autotuner.prune_configs = prune_configs


def guard_launches(triton: ModuleType) -> None:
    """Installed (or script-supplied) triton: a kernel launch needs a GPU."""
    jit_mod = sys.modules.get("triton.runtime.jit")
    ki = getattr(jit_mod, "KernelInterface", None) if jit_mod else None
    if ki is not None:
        ki.__getitem__ = lambda self, grid: (lambda *a, **k: _launch_blocked(self))
        ki.run = lambda self, *a, **k: _launch_blocked(self)
        state.note("triton launches")
        return
    # a triton without KernelInterface (a stand-in on sys.path): wrap what its decorators return
    for name in ("jit", "autotune", "heuristics"):
        deco = getattr(triton, name, None)
        if callable(deco):
            setattr(triton, name, _guarding_decorator(deco))
    state.note("triton launches (decorators)")


def _guarding_decorator(deco: Any) -> Any:
    def guard(obj: Any) -> Any:
        return obj if isinstance(obj, GuardedKernel) else GuardedKernel(obj)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]) and not isinstance(args[0], (list, dict)):
            return guard(deco(args[0]))  # @triton.jit
        inner = deco(*args, **kwargs)  # @triton.jit(...) / @triton.autotune(configs=..., key=...)
        if callable(inner):
            return lambda fn: guard(inner(fn.wrapped if isinstance(fn, GuardedKernel) else fn))
        return inner

    return wrapper


class GuardedKernel:
    """A Triton kernel object whose launch (kernel[grid](...), kernel.run(...), kernel(...)) needs a GPU."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        self.__name__ = getattr(wrapped, "__name__", None) or getattr(
            getattr(wrapped, "fn", None), "__name__", "kernel"
        )

    def __getitem__(self, grid: Any) -> Any:
        return lambda *a, **k: _launch_blocked(self)

    def run(self, *a: Any, **k: Any) -> Any:
        _launch_blocked(self)

    def __call__(self, *a: Any, **k: Any) -> Any:
        _launch_blocked(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


# the stub package (no triton installed, unguarded import) ----------------------------------------
class _Anything:
    """Stands for any triton attribute at definition time (tl.constexpr, tl.float32, triton.Config ...)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, name: str) -> "_Anything":
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(f"{self._name}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _Anything(f"{self._name}()")

    def __getitem__(self, item: Any) -> "_Anything":
        return self

    def __repr__(self) -> str:
        return f"<triton stub {self._name}>"

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        return (object,)


def _stub_decorator(*args: Any, **kwargs: Any) -> Any:
    if len(args) == 1 and not kwargs and callable(args[0]):
        return args[0] if isinstance(args[0], GuardedKernel) else GuardedKernel(args[0])
    return lambda fn: fn if isinstance(fn, GuardedKernel) else GuardedKernel(fn)


class _StubLoader:
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        mod = _StubModule(spec.name)
        mod.__path__ = []  # a package: triton.language, triton.runtime ... resolve to stubs too
        mod.__harness_stub__ = True
        if spec.name == "triton":
            mod.__version__ = "0.0+harness.cpu.stub"
            mod.jit = _stub_decorator
            mod.autotune = _stub_decorator
            mod.heuristics = _stub_decorator
            mod.Config = _Anything("triton.Config")
            mod.cdiv = lambda a, b: -(-a // b)
            mod.next_power_of_2 = lambda n: 1 << max(int(n) - 1, 0).bit_length()
        return mod

    def exec_module(self, module: ModuleType) -> None:
        parent, _, child = module.__name__.rpartition(".")
        if parent and parent in sys.modules:
            setattr(sys.modules[parent], child, module)


class _StubModule(ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(f"{self.__name__}.{name}")
