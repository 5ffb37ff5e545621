"""Pointwise op handler: elementwise union with broadcasting, value-aware (x*0, x+(-inf), where /
masked_fill with equal branches), and derived scores from ``log`` of one position's scores.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from harness.runtime.tracer import op_table
from harness.runtime.tracer.ops.basic import h_unhandled
from harness.runtime.tracer.ops.call import OpCall, handler
from harness.runtime.tracer.ops.common import derive, select, set_const
from harness.runtime.tracer.provenance import Prov, broadcast
from harness.runtime.tracer.state import np_values


_MUL = {"mul", "mul_", "_foreach_mul", "_foreach_mul_", "bitwise_and", "logical_and", "bitwise_and_", "logical_and_"}


_ADD = {"add", "add_", "sub", "sub_", "rsub", "_foreach_add", "_foreach_add_", "_foreach_sub", "_foreach_sub_"}


def _const_mask(c: OpCall, operands: list[Any], shape: tuple[int, ...], kind: str) -> np.ndarray | None:
    """Elements whose result is fixed by an untraced absorbing operand (x*0, x+(-inf))."""
    mask = None
    for x in operands:
        if isinstance(x, torch.Tensor):
            if x.numel() == 0 or c.is_dest(x):  # an in-place op's destination already holds the result
                continue
            p = c.p(x)
            if p is not None and p.hi.size and p.hi.min() >= 0:
                continue  # every element traced: none is an untraced constant (one reduction, no values)
            key = c.tr.absorbing_key(x, kind) if p is None else None
            if c.tr.known_without_absorbing(key):
                continue  # the same untraced values were checked before (weights, rotary tables)
            vals = np_values(x)
            if kind == "mul":
                m = vals == 0
            else:
                m = np.isinf(vals) if vals.dtype.kind in "fc" else np.zeros(vals.shape, bool)
            if not m.any():
                c.tr.note_without_absorbing(key)
                continue
            if p is not None:
                m = m & (p.hi < 0)
            m = np.broadcast_to(m, shape)
        elif isinstance(x, (int, float, bool)) and not isinstance(x, complex):
            if kind == "mul" and x == 0:
                m = np.ones(shape, bool)
            elif kind == "add" and isinstance(x, float) and math.isinf(x):
                m = np.ones(shape, bool)
            else:
                continue
        else:
            continue
        mask = m if mask is None else (mask | m)
    return mask


def _unless_branches_agree(c: OpCall, cp: Prov | None, a: Any, b: Any, shape: tuple[int, ...]) -> Prov | None:
    """A choice between two equal untraced constants does not depend on the condition
    (``masked_fill(~same_doc, -inf)`` on entries already masked -inf by a causal mask)."""
    if cp is None:
        return None
    vals = []
    for x in (a, b):
        if isinstance(x, torch.Tensor):
            v = np_values(x)
            xp = c.p(x)
            vals.append((v, None if xp is None else np.broadcast_to(xp.hi < 0, v.shape)))
        elif isinstance(x, (int, float, bool)):
            vals.append((np.asarray(x), None))
        else:
            return cp
    (va, ua), (vb, ub) = vals
    with np.errstate(invalid="ignore"):
        agree = np.broadcast_to(va == vb, shape)
    for u in (ua, ub):
        if u is not None:
            agree = agree & np.broadcast_to(u, shape)
    if not agree.any():
        return cp
    return set_const(broadcast(cp, shape), agree)


def pointwise_prov(c: OpCall, shape: tuple[int, ...], operands: list[Any], name: str) -> Prov | None:
    tr = c.tr
    b = c.b
    if name in ("where",) and "condition" in b:
        cond = b["condition"]
        sel = select(np_values(cond).astype(bool), c.p(b.get("self")), c.p(b.get("other")), shape)
        cp = _unless_branches_agree(c, c.p(cond), b.get("self"), b.get("other"), shape)
        return tr.union([sel, cp], shape, name)
    if name in ("masked_fill", "masked_fill_"):
        mask = b["mask"]
        val = b.get("value")
        sel = select(np_values(mask).astype(bool), c.p(val), c.p(b["self"]), shape)
        mp = c.p(mask)
        if name == "masked_fill":  # in place, the overwritten branch is gone: no refinement
            mp = _unless_branches_agree(c, mp, val, b["self"], shape)
        return tr.union([sel, mp], shape, name)
    p = tr.union([c.p(x) for x in operands], shape, name)
    if p is None:
        return None
    base = name.rstrip("_")
    if name in _MUL or base in _MUL:
        m = _const_mask(c, operands, shape, "mul")
        if m is not None:
            p = set_const(p, m)
    elif name in _ADD or base in _ADD:
        m = _const_mask(c, operands, shape, "add")
        if m is not None:
            p = set_const(p, m)
    return p


def derived_scores(c: OpCall, x: torch.Tensor, p: Prov, shape: tuple[int, ...], op: str) -> Prov:
    """log of a value made of one position's scores is that position's (final) NLL: a new score."""
    tr = c.tr
    xp = c.p(x)
    if xp is None or xp.sid is None or p.sid is None:
        return p
    xs = np.broadcast_to(xp.sid, shape)
    vals = np.broadcast_to(np_values(x), shape).astype(np.float64)
    if c.is_dest(x):  # log_ in place: x now holds the log; its input was base ** x
        base = {"log_": math.e, "log2_": 2.0, "log10_": 10.0}.get(c.short, math.e)
        vals = np.power(base, vals)
    loc = tr.store.locate_tensor(x)
    key = None if loc is None or c.is_dest(x) else loc.key
    return derive(tr, xs, vals, np.broadcast_to(xp.hi, shape), p, op, torch.is_grad_enabled() and x.requires_grad,
                  key)


@handler("pointwise")
def h_pointwise(c: OpCall) -> None:
    if c.short == "where" and "self" not in c.b:  # where(cond) is nonzero(cond): data-dependent shape
        return h_unhandled(c)
    operands: list[Any] = [c.b.get(n) for n in c.info.names if not (n in c.info.kwonly and n in c.info.mutated)]
    operands = [x for x in operands if isinstance(x, (torch.Tensor, int, float, bool))]
    name = c.short
    for t in c.outputs():
        shape = tuple(t.shape)
        p = pointwise_prov(c, shape, operands, name)
        src = c.b.get("self")
        if p is not None and name in op_table.LOG_OPS and isinstance(src, torch.Tensor):
            p = derived_scores(c, src, p, shape, "log")
        c.assign(t, p, fresh=True)  # pointwise_prov builds a new union for each output
        if isinstance(src, torch.Tensor):
            mark = c.mark_of(src)
            if mark is not None and name in op_table.EXP_OPS and mark[0] == "logp":
                c.set_mark(t, ("prob", mark[1]))
            elif mark is not None and name in op_table.LOG_OPS and mark[0] == "prob":
                c.set_mark(t, ("logp", mark[1]))
