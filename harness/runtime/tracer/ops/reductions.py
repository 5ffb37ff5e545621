"""Reductions, along-dim ops (softmax, sort, topk) and scans (cumsum, cummax, ...).
"""

from __future__ import annotations

import numpy as np
import torch

from harness.runtime.tracer.ops.call import OpCall, _dim, _dims, handler
from harness.runtime.tracer.ops.common import fit, set_const
from harness.runtime.tracer.provenance import NO_SID, Prov, broadcast, filled
from harness.runtime.tracer.state import np_values


def _reduce_input(c: OpCall) -> torch.Tensor:
    for n in ("self", "input", "a"):
        if isinstance(c.b.get(n), torch.Tensor):
            return c.b[n]
    return c.operands()[0]


@handler("reduce")
def h_reduce(c: OpCall) -> None:
    x = _reduce_input(c)
    p = c.p(x)
    outs = c.outputs()
    if p is None:
        for t in outs:
            c.assign(t, None)
        return
    nd = x.dim()
    dims = _dims(c.b.get("dim"), nd)
    if dims:
        lo = p.lo.min(axis=dims, keepdims=True)
        hi = p.hi.max(axis=dims, keepdims=True)
    else:
        lo, hi = np.array(p.lo), np.array(p.hi)
    red_shape = tuple(lo.shape)
    sid = c.tr.reduce_sids(p.sid, dims, red_shape, c.short) if p.sid is not None else None
    red = Prov(lo, hi, sid)
    for t in outs:
        c.assign(t, fit(red, tuple(t.shape)))


_SOFTMAX = {"_softmax", "_safe_softmax", "softmax"}


_LOG_SOFTMAX = {"_log_softmax", "log_softmax"}


@handler("along")
def h_along(c: OpCall) -> None:
    name = c.short
    if name.endswith("_backward_data"):
        xs = [c.b["grad_output"], c.b["output"]]
    else:
        xs = [_reduce_input(c)]
    ref = xs[0]
    nd = ref.dim()
    dim = _dim(c.b.get("dim", -1), nd)
    shape = tuple(ref.shape)
    if len(xs) == 1 and not c.info.mutated and (p1 := c.p(ref)) is not None and p1.shape == shape:
        p = p1  # the union of one input is itself: read it in place (no output can alias it)
    else:
        p = c.tr.union([c.p(x) for x in xs], shape, name)
    outs = c.outputs()
    if p is None:
        for t in outs:
            c.assign(t, None)
        return
    lo = p.lo.min(axis=dim, keepdims=True) if nd else p.lo
    hi = p.hi.max(axis=dim, keepdims=True) if nd else p.hi
    sid = c.tr.reduce_sids(p.sid, (dim,), tuple(lo.shape), name) if (p.sid is not None and nd) else None
    row = Prov(lo, hi, sid)
    for t in outs:
        tp = broadcast(row, tuple(t.shape)) if nd else fit(row, tuple(t.shape))
        if (name in _SOFTMAX | _LOG_SOFTMAX and tuple(t.shape) == shape and ref.is_floating_point()
                and not (p.hi.size and p.hi.min() >= 0)):  # all traced: no untraced -inf to find
            vals = np_values(ref)
            const = np.isneginf(vals) & (np.broadcast_to(p.hi, shape) < 0)  # masked entries: exact 0 / -inf
            if const.any():
                tp = set_const(Prov(np.array(tp.lo), np.array(tp.hi), None if tp.sid is None else np.array(tp.sid)),
                                const)
        c.assign(t, tp)
    if name in _SOFTMAX or name in _LOG_SOFTMAX:
        kind = "prob" if name in _SOFTMAX else "logp"
        for t in outs[:1]:
            c.set_mark(t, (kind, shape[dim] if nd else 1))


@handler("scan")
def h_scan(c: OpCall) -> None:
    x = _reduce_input(c)
    p = c.p(x)
    outs = c.outputs()
    if p is None:
        for t in outs:
            c.assign(t, None)
        return
    nd = x.dim()
    dim = _dim(c.b.get("dim", 0), nd)
    if nd:
        lo = np.minimum.accumulate(p.lo, axis=dim).astype(np.int32)
        hi = np.maximum.accumulate(p.hi, axis=dim).astype(np.int32)
    else:
        lo, hi = np.array(p.lo), np.array(p.hi)
    sid = None
    if p.sid is not None and nd:
        moved = np.moveaxis(np.asarray(p.sid), dim, 0)
        acc = [np.array(moved[0], np.int64)]
        for k in range(1, moved.shape[0]):
            acc.append(c.tr.merge_sids([acc[-1], moved[k]], moved.shape[1:], c.short))
        sid = np.moveaxis(np.stack([a if a is not None else filled(moved.shape[1:], NO_SID) for a in acc]), 0, dim)
    for t in outs:
        c.assign(t, fit(Prov(lo, hi, sid), tuple(t.shape)))
