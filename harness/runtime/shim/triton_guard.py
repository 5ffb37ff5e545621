"""Triton on a CPU run.

- `import triton` inside a try/except that catches ImportError (the script has a fallback): triton is
  hidden (ModuleNotFoundError), so the script takes its own CPU-capable path, installed triton or not.
- an unguarded import with triton installed (the harness's `triton` extra, `pip install ".[triton]"`) and
  TRITON_INTERPRET=1 in the environment (the runner sets it on CPU runs unless the user set it): kernels
  run on the CPU through Triton's own interpreter (numpy). Every launch calls `on_kernel_launch`, which
  records it (a `kernel_launch` ledger event per kernel and launching line) and, when the run is traced,
  marks the tracer part `incomplete`: the interpreter computes through numpy, out of the tracer's sight,
  so a kernel's outputs carry no provenance and the trace rules must not pass on them.
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


def on_kernel_launch(kernel_name: str, args: tuple[Any, ...], grid: Any, where: str | None) -> None:
    """Called before every kernel launch run by Triton's CPU interpreter.

    Records the launch (a `kernel_launch` ledger event the first time each kernel is launched from each
    line: name, where, grid, the tensor arguments' shapes) and, the first time in a traced run, marks
    the tracer part incomplete (a `phase runtime_ready` event with parts {"tracer": "incomplete: ..."}):
    the kernel reads and writes tensors through numpy, unseen by the tracer, so whatever flows through
    it has no provenance. The verdict then cannot pass a trace rule on this run.
    """
    global _marked_incomplete
    where = where or "<unknown>"
    key = (kernel_name, where)
    n = launches.get(key, 0) + 1
    launches[key] = n
    if n == 1:
        tensors = [list(a.shape) for a in args if hasattr(a, "shape") and hasattr(a, "dtype")][:16]
        state.emit("kernel_launch", site=where, name=kernel_name, where=where, grid=_short(grid),
                   tensors=tensors, interpreter=True, provenance="untracked")
    ctx = state.ctx
    if not _marked_incomplete and ctx is not None and getattr(ctx.settings, "trace", False):
        _marked_incomplete = True
        state.emit("phase", site="", name="runtime_ready", parts={
            "tracer": f"incomplete: Triton kernel {kernel_name} (at {where}) ran in Triton's CPU interpreter; "
                      f"the tracer does not see through kernels, so their outputs carry no provenance",
        })


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
        if not warmup:
            on_kernel_launch(_kernel_name(self), args, grid, state.site())
        return orig_run(self, *args, grid=grid, warmup=warmup, **kwargs)

    run._harness_hooked = True  # type: ignore[attr-defined]
    fn_cls.run = run
    _autotune_without_benchmarks()
    state.note("triton interpreter launches")


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
