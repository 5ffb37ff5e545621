"""Lists of tensors: ``_foreach_*`` ops, their reductions, and fused optimizers.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.runtime.tracer.ops.basic import h_unhandled
from harness.runtime.tracer.ops.call import OpCall, handler
from harness.runtime.tracer.ops.common import fit, hull_prov, set_const
from harness.runtime.tracer.ops.pointwise import _const_mask
from harness.runtime.tracer.provenance import broadcast


@handler("foreach")
def h_foreach(c: OpCall) -> None:
    """_foreach_<op>(lists..., tensors/scalars): the pointwise handler per list index."""
    name = c.short
    b = c.b
    lists = [b[n] for n in c.info.names
             if isinstance(b.get(n), (list, tuple)) and b[n] and isinstance(b[n][0], torch.Tensor)]
    if not lists:
        return h_unhandled(c)
    singles = [b[n] for n in c.info.names if isinstance(b.get(n), (torch.Tensor, int, float))]
    outs = c.outputs()
    for i, t in enumerate(outs[: len(lists[0])]):
        shape = tuple(t.shape)
        if name == "_foreach_zero_":
            c.assign(t, None)
            continue
        if name in ("_foreach_copy_", "_foreach_copy"):
            sp = c.p(b["src"][i])
            c.assign(t, None if sp is None else fit(sp, shape))
            continue
        ops: list[Any] = [lst[i] for lst in lists] + singles
        ps = []
        for x in ops:
            p = c.p(x)
            if p is not None:
                try:
                    ps.append(broadcast(p, shape))
                except ValueError:
                    ps.append(hull_prov(c.tr, [p], shape, name))
        p = c.tr.union(ps, shape, name)
        if p is not None and name.rstrip("_") == "_foreach_mul":
            m = _const_mask(c, [x for x in ops if not isinstance(x, torch.Tensor) or x.numel() in (1, t.numel())],
                            shape, "mul")
            if m is not None:
                p = set_const(p, m)
        c.assign(t, p)


@handler("foreach_reduce")
def h_foreach_reduce(c: OpCall) -> None:
    src = c.b["self"]
    outs = c.outputs()
    for x, t in zip(src, outs):
        c.assign(t, hull_prov(c.tr, [c.p(x)], tuple(t.shape), c.short))


@handler("fused_optim")
def h_fused_optim(c: OpCall) -> None:
    b = c.b
    lists = [b[n] for n in c.info.names if isinstance(b.get(n), (list, tuple)) and b[n] and isinstance(b[n][0], torch.Tensor)]
    mutated = [b[n] for n in c.info.mutated if isinstance(b.get(n), (list, tuple))]
    singles = [b[n] for n in c.info.names if isinstance(b.get(n), torch.Tensor)]
    n_items = len(b["self"])
    for i in range(n_items):
        ref = b["self"][i]
        shape = tuple(ref.shape)
        ps = []
        for lst in lists:
            if i < len(lst):
                x = lst[i]
                p = c.p(x)
                if p is not None:
                    ps.append(broadcast(p, shape) if tuple(x.shape) == shape else hull_prov(c.tr, [p], shape, c.short))
        ps += [hull_prov(c.tr, [c.p(s)], shape, c.short) for s in singles]
        p = c.tr.union(ps, shape, c.short)
        for lst in mutated:
            if i < len(lst) and tuple(lst[i].shape) == shape:
                c.assign(lst[i], p)
