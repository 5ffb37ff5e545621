"""Matrix products: per output (i, j) the union over k of row i and column j (exact zeros skip).
"""

from __future__ import annotations

import numpy as np
import torch

from harness.runtime.tracer.ops.basic import h_unhandled
from harness.runtime.tracer.ops.call import OpCall, handler
from harness.runtime.tracer.ops.common import fit, hull_prov, part_from_a, part_from_b
from harness.runtime.tracer.provenance import Prov, _np_empty, broadcast
from harness.runtime.tracer.state import np_values


def _const_zero(c: OpCall, t: torch.Tensor, p: Prov | None) -> np.ndarray | None:
    """Elements that are exact untraced zeros: a product term with them contributes nothing."""
    if t.numel() == 0:
        return None
    if p is not None and p.hi.size and p.hi.min() >= 0:
        return None  # every element traced: no untraced zero (one reduction instead of reading values)
    key = c.tr.absorbing_key(t, "mul") if p is None else None
    if c.tr.known_without_absorbing(key):
        return None  # an untraced weight checked before, unchanged since (its version counter)
    vals = np_values(t)
    z = vals == 0
    if p is not None:
        z &= p.hi < 0
    if z.any():
        return z
    c.tr.note_without_absorbing(key)
    return None


def matmul_prov(c: OpCall, a: torch.Tensor, b_: torch.Tensor, out_shape: tuple[int, ...],
                b_transposed: bool = False) -> Prov | None:
    pa, pb = c.p(a), c.p(b_)
    if pa is None and pb is None:
        return None
    a_shape = tuple(a.shape)
    b_shape = tuple(b_.shape)
    va_t, vb_t = a, b_
    alo = ahi = blo = bhi = None
    if pa is not None:
        alo, ahi = pa.lo, pa.hi
    if pb is not None:
        blo, bhi = pb.lo, pb.hi
    if b_transposed:
        b_shape = b_shape[:-2] + (b_shape[-1], b_shape[-2]) if len(b_shape) >= 2 else b_shape
        if pb is not None and blo.ndim >= 2:
            blo, bhi = np.swapaxes(blo, -1, -2), np.swapaxes(bhi, -1, -2)
    a1 = len(a_shape) == 1
    b1 = len(b_shape) == 1
    if a1:
        a_shape = (1,) + a_shape
        if alo is not None:
            alo, ahi = alo[None, :], ahi[None, :]
    if b1:
        b_shape = b_shape + (1,)
        if blo is not None:
            blo, bhi = blo[:, None], bhi[:, None]
    keep_a = keep_b = None
    if pb is not None:
        z = _const_zero(c, va_t, pa)
        if z is not None:
            keep_a = ~(z[None, :] if a1 else z)
    if pa is not None:
        z = _const_zero(c, vb_t, pb)
        if z is not None:
            if b_transposed and z.ndim >= 2:
                z = np.swapaxes(z, -1, -2)
            keep_b = ~(z[:, None] if b1 else z)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    if alo is not None:
        parts.append(part_from_a(alo, ahi, keep_b))
    if blo is not None:
        parts.append(part_from_b(blo, bhi, keep_a))
    full = np.broadcast_shapes(a_shape[:-2], b_shape[:-2]) + (a_shape[-2], b_shape[-1])
    # one pass into the output (the parts broadcast to it): no fill with the empty interval first
    lo = _np_empty(full, np.int32)
    hi = _np_empty(full, np.int32)
    if len(parts) == 2:
        np.minimum(parts[0][0], parts[1][0], out=lo, casting="unsafe")
        np.maximum(parts[0][1], parts[1][1], out=hi, casting="unsafe")
    else:
        np.copyto(lo, parts[0][0], casting="unsafe")
        np.copyto(hi, parts[0][1], casting="unsafe")
    if a1:
        lo, hi = lo[..., 0, :], hi[..., 0, :]
    if b1:
        lo, hi = lo[..., 0], hi[..., 0]
    sid = None
    if (pa is not None and pa.sid is not None) or (pb is not None and pb.sid is not None):
        c.tr.coarse["matmul_scores"] += 1
        sid = hull_prov(c.tr, [pa, pb], tuple(lo.shape), c.short).sid
    return fit(Prov(lo, hi, sid), out_shape)


@handler("matmul")
def h_matmul(c: OpCall) -> None:
    b = c.b
    n = c.short.rstrip("_")
    out = c.outputs()[0]
    shape = tuple(out.shape)
    extra: list[Prov | None] = []
    if n in ("mm", "bmm", "matmul", "_int_mm"):
        p = matmul_prov(c, b["self"], b.get("mat2", b.get("other")), shape)
    elif n in ("dot", "vdot", "inner"):
        p = matmul_prov(c, b["self"], b.get("tensor", b.get("other")), shape)
    elif n == "mv":
        p = matmul_prov(c, b["self"], b["vec"], shape)
    elif n in ("addmm", "_addmm_activation"):
        p = matmul_prov(c, b["mat1"], b["mat2"], shape)
        extra.append(c.p(b["self"]))
    elif n == "addmv":
        p = matmul_prov(c, b["mat"], b["vec"], shape)
        extra.append(c.p(b["self"]))
    elif n == "baddbmm":
        p = matmul_prov(c, b["batch1"], b["batch2"], shape)
        extra.append(c.p(b["self"]))
    elif n == "addbmm":
        full = matmul_prov(c, b["batch1"], b["batch2"], (b["batch1"].shape[0],) + shape)
        p = None if full is None else Prov(full.lo.min(0), full.hi.max(0), None)
        extra.append(c.p(b["self"]))
    elif n == "linear":
        p = matmul_prov(c, b["input"], b["weight"], shape, b_transposed=True)
        extra.append(c.p(b.get("bias")) if isinstance(b.get("bias"), torch.Tensor) else None)
    elif n == "_scaled_mm":
        p = matmul_prov(c, b["self"], b["mat2"], shape)
        for k in ("scale_a", "scale_b", "scale_result"):
            if isinstance(b.get(k), torch.Tensor):
                extra.append(hull_prov(c.tr, [c.p(b[k])], shape, c.short))
        if isinstance(b.get("bias"), torch.Tensor):
            extra.append(c.p(b["bias"]))
    else:
        return h_unhandled(c)
    extra = [None if e is None else broadcast(e, shape) for e in extra]
    c.assign(out, c.tr.union([p] + extra, shape, c.short), fresh=True)
