"""Normalization: layer_norm / rms_norm forward and backward (per row union).
"""

from __future__ import annotations

import torch

from harness.runtime.tracer.ops.call import OpCall, handler
from harness.runtime.tracer.ops.common import fit, hull_prov
from harness.runtime.tracer.provenance import Prov, broadcast


def _norm_forward(c: OpCall, with_bias: bool) -> None:
    x = c.b["input"]
    k = len(c.b["normalized_shape"])
    shape = tuple(x.shape)
    p = c.p(x)
    axes = tuple(range(len(shape) - k, len(shape)))
    parts: list[Prov | None] = []
    row = None
    if p is not None:
        row = Prov(p.lo.min(axis=axes, keepdims=True), p.hi.max(axis=axes, keepdims=True), None)
        parts.append(broadcast(row, shape))
    for n in ("weight", "bias") if with_bias else ("weight",):
        w = c.b.get(n)
        if isinstance(w, torch.Tensor):
            parts.append(None if c.p(w) is None else broadcast(c.p(w), shape))
    outs = c.outputs()
    if not outs:
        return
    c.assign(outs[0], c.tr.union(parts, shape, c.short), fresh=True)
    for t in outs[1:]:
        c.assign(t, None if row is None else fit(row, tuple(t.shape)))


def _norm_backward(c: OpCall) -> None:
    x = c.b["input"]
    k = len(c.b["normalized_shape"])
    shape = tuple(x.shape)
    axes = tuple(range(len(shape) - k, len(shape)))
    lead = tuple(range(len(shape) - k))
    stats = [c.p(c.b[n]) for n in ("mean", "rstd") if isinstance(c.b.get(n), torch.Tensor)]
    stats = [None if s is None else fit(s, shape[: len(shape) - k] + (1,) * k) for s in stats]
    elem = c.tr.union([c.p(c.b["grad_out"]), c.p(x)] + [None if s is None else broadcast(s, shape) for s in stats],
                      shape, c.short)
    w = c.b.get("weight")
    wp = c.p(w) if isinstance(w, torch.Tensor) else None
    outs = c.outputs()
    if elem is None and wp is None:
        for t in outs:
            c.assign(t, None)
        return
    for i, t in enumerate(outs):
        ts = tuple(t.shape)
        if i == 0:
            parts = []
            if elem is not None:
                parts.append(broadcast(Prov(elem.lo.min(axis=axes, keepdims=True), elem.hi.max(axis=axes, keepdims=True),
                                            None), shape))
            if wp is not None:
                parts.append(hull_prov(c.tr, [wp], shape, c.short))
            c.assign(t, c.tr.union(parts, ts, c.short))
        else:
            if elem is None:
                c.assign(t, None)
            else:
                red = Prov(elem.lo.min(axis=lead), elem.hi.max(axis=lead), None) if lead else elem
                c.assign(t, fit(red, ts))


@handler("layer_norm")
def h_layer_norm(c: OpCall) -> None:
    _norm_forward(c, with_bias=True)


@handler("rms_norm")
def h_rms_norm(c: OpCall) -> None:
    _norm_forward(c, with_bias=False)


@handler("layer_norm_backward")
def h_layer_norm_backward(c: OpCall) -> None:
    _norm_backward(c)


@handler("rms_norm_backward")
def h_rms_norm_backward(c: OpCall) -> None:
    _norm_backward(c)
