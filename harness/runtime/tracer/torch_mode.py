"""The TorchDispatchMode that follows provenance through every aten op (forward, backward, optimizer).

Fast path: when no argument's storage is traced the op just runs (factories note a birth epoch so
that tables the script allocates can later be told apart from temporaries). Otherwise the op runs
and its op handler (the ``ops`` package) computes the outputs' provenance. A handler that fails falls back to the
coarse union, and if even that fails the failure is counted: the run is then reported imprecise,
never silently clean.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from harness.runtime.tracer import op_table, ops
from harness.runtime.tracer.state import Tracer

_FACTORY: dict[Any, bool] = {}


def _is_factory(func: Any) -> bool:
    hit = _FACTORY.get(func)
    if hit is None:
        hit = _FACTORY[func] = op_table.base_name(func) in op_table.FACTORIES
    return hit


class TraceMode(TorchDispatchMode):
    def __init__(self, tracer: Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        tr = self.tracer
        if getattr(tr.tls, "busy", False):
            return func(*args, **kwargs)
        if not _any_traced(tr.store.entries, args, kwargs):
            out = func(*args, **kwargs)
            tr.fast_ops += 1
            if _is_factory(func) and isinstance(out, torch.Tensor):
                owner = tr.store.tensor_owner(out)
                if owner is not None:
                    with tr.lock:
                        tr.note_birth(owner)
            return out
        out = func(*args, **kwargs)
        with tr.lock:
            apply(tr, func, args, kwargs, out)
        return out


def _traced(entries: dict[int, Any], t: Any) -> bool:
    try:
        return id(t.untyped_storage()) in entries
    except (RuntimeError, NotImplementedError, TypeError):
        return False


def _any_traced(entries: dict[int, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if not entries:
        return False
    for a in args:
        if isinstance(a, torch.Tensor):
            if _traced(entries, a):
                return True
        elif isinstance(a, (list, tuple)):
            for x in a:
                if isinstance(x, torch.Tensor) and _traced(entries, x):
                    return True
    for a in kwargs.values():
        if isinstance(a, torch.Tensor):
            if _traced(entries, a):
                return True
        elif isinstance(a, (list, tuple)):
            for x in a:
                if isinstance(x, torch.Tensor) and _traced(entries, x):
                    return True
    return False


def apply(tr: Tracer, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
    """Run the op's provenance handler (the op itself already ran)."""
    info = ops.op_info(func)
    tr.handler_counts[info.kind] += 1
    tr.tick()
    with tr.internal():
        call = ops.OpCall(tr, func, info, args, kwargs, out)
        try:
            ops.HANDLERS.get(info.kind, ops.h_unhandled)(call)
        except Exception as e:  # noqa: BLE001 - a handler bug must not kill the script: widen instead
            if tr.strict:
                raise
            tr.coarse[f"rule_error:{info.short}:{type(e).__name__}"] += 1
            try:
                fallback = ops.OpCall(tr, func, info, args, kwargs, out)
                ops.h_unhandled(fallback)
            except Exception as e2:  # noqa: BLE001
                tr.coarse[f"untraced_output:{info.short}:{type(e2).__name__}"] += 1
