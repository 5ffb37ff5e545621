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

# per op overload: (OpInfo, its handler, is a factory); the schema is parsed and the handler looked up once
_CACHE: dict[Any, tuple[Any, Any, bool]] = {}


def _entry(func: Any) -> tuple[Any, Any, bool]:
    hit = _CACHE.get(func)
    if hit is None:
        info = ops.op_info(func)
        hit = _CACHE[func] = (info, ops.HANDLERS.get(info.kind, ops.h_unhandled),
                              op_table.base_name(func) in op_table.FACTORIES)
    return hit


# handler kinds with no provenance work: counted, without building an op call or entering internal()
_NOTHING_TO_DO = frozenset({"view", "noop"})


def _is_factory(func: Any) -> bool:
    return _entry(func)[2]


def _compile_is_identity() -> bool:
    """torch.compile replaced by the CPU shim: nothing is ever compiled in this process."""
    return str(getattr(torch.compile, "__module__", "")).startswith("harness.runtime.shim")


class TraceMode(TorchDispatchMode):
    """The dispatch mode. torch wraps a mode's ``__torch_dispatch__`` in ``torch._disable_dynamo``, which
    enters and leaves a dynamo context on every op (and imports torch._dynamo on the first); where the
    CPU shim made torch.compile the identity there is no compiler to keep out, so this class is left
    unwrapped and ``_DynamoSafeTraceMode`` (wrapped) is used otherwise."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __new__(cls, *args: Any, **kwargs: Any) -> "TraceMode":
        if cls is TraceMode and not _compile_is_identity():
            cls = _DynamoSafeTraceMode
        return super().__new__(cls)

    def __init__(self, tracer: Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        tr = self.tracer
        if getattr(tr.tls, "busy", False):
            return func(*args, **kwargs)
        entries = tr.store.entries
        entry = _CACHE.get(func) or _entry(func)
        if not entries or not _any_traced(entries, args, kwargs):
            out = func(*args, **kwargs)
            tr.fast_ops += 1
            if entry[2] and isinstance(out, torch.Tensor):
                owner = tr.store.tensor_owner(out)
                if owner is not None:
                    with tr.lock:
                        tr.note_birth(owner)
            return out
        out = func(*args, **kwargs)
        with tr.lock:
            if entry[0].kind in _NOTHING_TO_DO:  # provenance lives per storage: a view shares its base's
                tr.handler_counts[entry[0].kind] += 1
                tr.tick()
            else:
                apply(tr, func, args, kwargs, out)
        return out


class _DynamoSafeTraceMode(TraceMode):
    """TraceMode with torch's dynamo guard around ``__torch_dispatch__`` (a real torch.compile is present)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return True

    __torch_dispatch__ = TraceMode.__torch_dispatch__  # in this class's dict: __init_subclass__ wraps it


def _any_traced(entries: dict[int, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if not entries:
        return False
    Tensor = torch.Tensor
    for group in (args, kwargs.values()) if kwargs else (args,):
        for a in group:
            if isinstance(a, Tensor):
                try:
                    if id(a.untyped_storage()) in entries:
                        return True
                except (RuntimeError, NotImplementedError, TypeError):
                    pass
            elif isinstance(a, (list, tuple)):
                for x in a:
                    if isinstance(x, Tensor):
                        try:
                            if id(x.untyped_storage()) in entries:
                                return True
                        except (RuntimeError, NotImplementedError, TypeError):
                            pass
    return False


# handler kinds whose outputs are the inputs' values moved (copy, movement) or picked by an index
# (the data argument's values): a pure integer copy of raw validation tokens stays raw (Store.raw)
_COPY_KINDS = frozenset({"copy", "movement"})
_PICK_KINDS = frozenset({"index", "index_select", "gather", "take"})
# selects between raw tokens and constants by a condition no validation value shaped (a padded window:
# torch.where(valid, tokens, 0), tokens.masked_fill(pad, 0)): every traced element is still a token copy.
# The value: the condition's argument index.
_SELECT_OPS = {"where": 0, "masked_fill": 1, "masked_fill_": 1}


def _tensors_in(xs: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for a in xs:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, torch.Tensor))
    return out


def _raw_copy(tr: Tracer, kind: str, short: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> bool:
    """The op writes only integer copies of raw blocks' values (wide enough for every token id)."""
    raw = tr.store.raw
    cond = _SELECT_OPS.get(short)
    if not raw or (kind not in _COPY_KINDS and kind not in _PICK_KINDS and cond is None):
        return False
    ints = (torch.int64, torch.int32, torch.uint16) + ((torch.int16,) if tr.vocab and tr.vocab <= 32768 else ())
    outs = _tensors_in(out if isinstance(out, (list, tuple)) else (out,))
    if not outs or any(o.dtype not in ints for o in outs):
        return False
    given = list(args) + list(kwargs.values())
    if cond is not None:  # the data: every argument but the condition, which must stay untraced (as an index)
        data, rest = given[:cond] + given[cond + 1:], given[cond:cond + 1]
    else:
        data, rest = (given, []) if kind in _COPY_KINDS else (given[:1], given[1:])
    entries, n_raw = tr.store.entries, 0
    for t in _tensors_in(data):
        owner = tr.store.tensor_owner(t)
        if owner is None or id(owner) not in entries:
            continue
        if id(owner) not in raw:
            return False
        n_raw += 1
    for t in _tensors_in(rest):  # an index computed from validation values picks by them: not a copy
        owner = tr.store.tensor_owner(t)
        if owner is not None and id(owner) in entries:
            return False
    return n_raw > 0


def apply(tr: Tracer, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
    """Run the op's provenance handler (the op itself already ran)."""
    info, h, _ = _entry(func)
    tr.handler_counts[info.kind] += 1
    tr.tick()
    with tr.internal():
        call = ops.OpCall(tr, func, info, args, kwargs, out)
        try:
            tr.store.raw_write = _raw_copy(tr, info.kind, info.short, args, kwargs, out)
            h(call)
        except Exception as e:  # noqa: BLE001 - a handler bug must not kill the script: widen instead
            tr.store.raw_write = False
            if tr.strict:
                raise
            tr.coarse[f"rule_error:{info.short}:{type(e).__name__}"] += 1
            try:
                fallback = ops.OpCall(tr, func, info, args, kwargs, out)
                ops.h_unhandled(fallback)
            except Exception as e2:  # noqa: BLE001
                tr.coarse[f"untraced_output:{info.short}:{type(e2).__name__}"] += 1
        finally:
            tr.store.raw_write = False
