"""Trivial op handlers: views, no-ops, the coarse union for ops without a handler (``unruled``),
overwrites, ``*_like`` factories, copies, and escapes to Python scalars.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from harness.runtime.tracer.ops.call import OpCall, handler
from harness.runtime.tracer.ops.common import fit, hull_prov
from harness.runtime.tracer.provenance import broadcast


@handler("view")
def h_view(c: OpCall) -> None:
    return


@handler("noop")
def h_noop(c: OpCall) -> None:
    return


@handler("unruled")
def h_unhandled(c: OpCall) -> None:
    c.tr.unruled[c.short] += 1
    ps = [c.p(t) for t in c.operands()]
    for t in c.outputs():
        c.assign(t, hull_prov(c.tr, ps, tuple(t.shape), c.short))


@handler("overwrite")
def h_overwrite(c: OpCall) -> None:
    src = None
    for n in ("value", "p"):  # fill_.Tensor(value), bernoulli_.Tensor(p)
        if isinstance(c.b.get(n), torch.Tensor):
            src = c.p(c.b[n])
    for t in c.outputs():
        c.assign(t, None if src is None else broadcast(src, tuple(t.shape)))


@handler("factory_like")
def h_factory_like(c: OpCall) -> None:
    fill = c.b.get("fill_value")
    fp = c.p(fill) if isinstance(fill, torch.Tensor) else None
    for t in c.outputs():
        c.assign(t, None if fp is None else hull_prov(c.tr, [fp], tuple(t.shape), c.short))
        owner = c.tr.store.tensor_owner(t)
        if owner is not None:
            c.tr.note_birth(owner)


def _onto_itself(dst: Any, src: Any) -> bool:
    """``dst.copy_(src)`` where both are the same elements of the same memory: no value changes. Triton's
    interpreter does this for every tensor argument after a launch on a CPU (its host copy is the storage
    itself); read as a write, it would turn a kernel's output buffer into a cache write."""
    return (isinstance(dst, torch.Tensor) and isinstance(src, torch.Tensor) and dst.device == src.device
            and dst.dtype == src.dtype and dst.shape == src.shape and dst.stride() == src.stride()
            and dst.numel() > 0 and dst.data_ptr() == src.data_ptr())


@handler("copy")
def h_copy(c: OpCall) -> None:
    src = c.b.get("src", c.b.get("self"))
    if c.short == "copy_" and _onto_itself(c.b.get("self"), src):
        return
    p = c.p(src)
    mark = c.mark_of(src)
    for t in c.outputs():
        c.assign(t, None if p is None else fit(p, tuple(t.shape)))
        if mark is not None:  # a dtype/device copy of a softmax output is still that distribution
            c.set_mark(t, mark)


@handler("escape")
def h_escape(c: OpCall) -> None:
    """.item() / float() / bool() (and equal, allclose): the value leaves as a Python scalar."""
    op = "item" if c.short == "_local_scalar_dense" else c.short
    for t in c.operands():
        p = c.p(t)
        if p is not None:
            c.tr.escape(p, op, value=_jsonable(c.out), numel=t.numel())


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bool, int, float)) or v is None:
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)
