"""torch.compile and TorchScript as the identity (eager on the CPU), and compiler settings made harmless.

TORCH_COMPILE_DISABLE=1 is not enough: with fullgraph=True it raises. A compiled nn.Module comes back
wrapped like torch's OptimizedModule (`_orig_mod`, state_dict keys prefixed "_orig_mod.") because scripts
rely on that shape; functions come back unchanged. torch.jit.script / trace return their argument: the
TorchScript compiler cannot resolve the shim's Python wrappers of torch functions, and eager code is what
the tracer can follow.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from harness.runtime.shim import state


def install(torch: ModuleType) -> None:
    nn = torch.nn

    class EagerCompiledModule(nn.Module):
        """What torch.compile(module) returns under the shim: the module, run eagerly."""

        def __init__(self, mod: Any) -> None:
            super().__init__()
            self._orig_mod = mod

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self._orig_mod(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self._modules["_orig_mod"], name)

    def compile(model: Any = None, **_: Any) -> Any:  # noqa: A001 - replaces torch.compile
        if model is None:  # @torch.compile(fullgraph=True, ...) on a function or class
            return lambda m: compile(m)
        if isinstance(model, nn.Module):
            return EagerCompiledModule(model)
        return model

    torch.compile = compile
    torch.nn.Module.compile = lambda self, *a, **k: None  # in-place module.compile(): stays eager

    def _identity_decorator(fn: Any = None, *args: Any, **kwargs: Any) -> Any:
        if fn is None or not callable(fn):
            return lambda f: f
        return fn

    jit = torch.jit
    jit.script = lambda obj=None, *a, **k: obj if obj is not None else (lambda o: o)
    jit.trace = lambda func, *a, **k: func
    jit.trace_module = lambda mod, *a, **k: mod
    jit.script_method = lambda fn: fn
    jit.freeze = lambda mod, *a, **k: mod
    jit.optimize_for_inference = lambda mod, *a, **k: mod

    compiler = getattr(torch, "compiler", None)
    if compiler is not None:
        compiler.disable = _identity_decorator
        compiler.cudagraph_mark_step_begin = lambda: None
        compiler.reset = lambda: None
    state.note("torch.compile=identity")
    state.note("torch.jit=identity")


def permissive_config(mod: ModuleType) -> None:
    """torch._dynamo.config / torch._inductor.config: writes to names this torch lacks are kept, not
    refused (scripts set knobs of other torch versions: cache_size_limit, recompile_limit ...)."""
    cls = type(mod)
    if getattr(cls, "_harness_permissive", False):
        return

    class Permissive(cls):  # type: ignore[misc, valid-type]
        _harness_permissive = True

        def __setattr__(self, name: str, value: Any) -> None:
            try:
                super().__setattr__(name, value)
            except AttributeError:
                object.__setattr__(self, name, value)

    ModuleType.__setattr__(mod, "__class__", Permissive)  # ConfigModule refuses a plain setattr
    state.note(f"{mod.__name__} permissive")


def install_dynamo(mod: ModuleType) -> None:
    """torch._dynamo: disable() as identity (it would wrap with eval-frame machinery); reset() a no-op
    (nothing was compiled, and with torch.cuda.is_available() True it imports CUDA-graph code that a CPU
    build of torch lacks)."""
    mod.reset = lambda: None

    def disable(fn: Any = None, *args: Any, **kwargs: Any) -> Any:
        if fn is None or not callable(fn):
            return lambda f: f
        return fn

    mod.disable = disable
