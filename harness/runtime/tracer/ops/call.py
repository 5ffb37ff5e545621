"""The per-call context every aten op handler gets (``OpCall``), op metadata from the schema
(``OpInfo``, cached by ``op_info``), the handler registry (``HANDLERS``, filled by ``@handler``), and
dim normalisation.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from harness.runtime.tracer import op_table
from harness.runtime.tracer.ops.common import fit
from harness.runtime.tracer.provenance import Prov
from harness.runtime.tracer.state import Tracer


Handler = Callable[["OpCall"], None]


HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return deco


class OpInfo:
    __slots__ = ("names", "kwonly", "mutated", "returns", "kind", "short")

    def __init__(self, func: Any) -> None:
        s = func._schema
        self.names = [a.name for a in s.arguments]
        self.kwonly = {a.name for a in s.arguments if a.kwarg_only}
        self.mutated = [a.name for a in s.arguments if a.alias_info is not None and a.alias_info.is_write]
        self.returns = [
            (r.alias_info is not None and not r.alias_info.is_write, "[]" in str(r.type) or "List" in str(r.type))
            for r in s.returns
        ]
        self.kind = op_table.classify(func)
        self.short = op_table.base_name(func)


_INFO: dict[Any, OpInfo] = {}


def op_info(func: Any) -> OpInfo:
    info = _INFO.get(func)
    if info is None:
        info = _INFO[func] = OpInfo(func)
    return info


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for t in x if isinstance(t, torch.Tensor)]
    return []


class OpCall:
    def __init__(self, tr: Tracer, func: Any, info: OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any):
        self.tr = tr
        self.func = func
        self.info = info
        self.args = args
        self.kwargs = kwargs
        self.out = out
        self.short = info.short
        self.b: dict[str, Any] = dict(zip(info.names, args))
        self.b.update(kwargs)
        self._pc: dict[int, Prov | None] = {}
        self._dests: list[torch.Tensor] | None = None

    def p(self, x: Any) -> Prov | None:
        if not isinstance(x, torch.Tensor):
            return None
        k = id(x)
        if k not in self._pc:
            self._pc[k] = self.tr.tprov(x)
        return self._pc[k]

    def dests(self) -> list[torch.Tensor]:
        if self._dests is None:  # asked once per output and operand: build the list once per call
            out: list[torch.Tensor] = []
            for n in self.info.mutated:
                out.extend(_tensors(self.b.get(n)))
            self._dests = out
        return list(self._dests)

    def is_dest(self, t: torch.Tensor) -> bool:
        if not self.info.mutated:
            return False
        return any(t is d for d in self.dests())

    def operands(self) -> list[torch.Tensor]:
        """Tensor inputs whose values flow into the result (not pure out= destinations)."""
        res: list[torch.Tensor] = []
        for n in self.info.names:
            if n in self.info.kwonly and n in self.info.mutated:
                continue
            res.extend(_tensors(self.b.get(n)))
        return res

    def outputs(self) -> list[torch.Tensor]:
        rets = self.info.returns
        if not rets:
            return self.dests()
        vals = [self.out] if len(rets) == 1 else list(self.out)
        res: list[torch.Tensor] = []
        for (is_view, _is_list), v in zip(rets, vals):
            if is_view:
                continue
            res.extend(_tensors(v))
        return res

    # -- writing -------------------------------------------------------------------------------------
    def assign(self, t: torch.Tensor, p: Prov | None, op: str | None = None, fresh: bool = False) -> None:
        """``fresh``: ``p`` was built for this output alone (see ``Store.write``)."""
        tr = self.tr
        loc = tr.store.locate_tensor(t)
        if loc is None:
            if p is not None and p.traced():
                tr.coarse["no_storage_output"] += 1
            return
        shape = tuple(t.shape)
        if p is not None and p.shape != shape:
            p = fit(p, shape)
        tr.store.write(loc, p, fresh)
        if self.is_dest(t):
            meta = tr.store.metas.get(loc.key)
            if meta is not None:
                meta.mark = None
            if isinstance(t, torch.nn.Parameter) or (t.is_leaf and t.requires_grad):
                tr.register(loc.owner, "param")
            tr.check_update(loc.owner, p, op or self.short, loc.n_owner, "table")

    def mark_of(self, t: Any) -> tuple[str, int] | None:
        if not isinstance(t, torch.Tensor):
            return None
        owner = self.tr.store.tensor_owner(t)
        m = self.tr.store.metas.get(id(owner)) if owner is not None else None
        return m.mark if m is not None else None

    def set_mark(self, t: torch.Tensor, mark: tuple[str, int] | None) -> None:
        owner = self.tr.store.tensor_owner(t)
        if owner is None:
            return
        m = self.tr.store.meta(owner, create=mark is not None)
        if m is not None:
            m.mark = mark


def _dim(d: Any, nd: int) -> int:
    return int(d) % nd if nd else 0


def _dims(d: Any, nd: int) -> tuple[int, ...]:
    if d is None:
        return tuple(range(nd))
    if isinstance(d, (list, tuple)):
        if len(d) == 0:
            return tuple(range(nd))
        return tuple(sorted({int(x) % nd for x in d})) if nd else ()
    return (int(d) % nd,) if nd else ()
