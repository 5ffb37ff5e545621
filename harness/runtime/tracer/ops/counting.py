"""Counting and membership: bincount / histc, isin / searchsorted / bucketize.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.runtime.tracer.ops.basic import h_unhandled
from harness.runtime.tracer.ops.call import OpCall, handler
from harness.runtime.tracer.ops.common import fit, hull_prov
from harness.runtime.tracer.provenance import E_HI, E_LO, Prov, filled
from harness.runtime.tracer.state import np_values


@handler("bincount")
def h_bincount(c: OpCall) -> None:
    if c.short != "bincount":
        return h_unhandled(c)
    x = c.b["self"]
    out = c.outputs()[0]
    shape = tuple(out.shape)
    xp = c.p(x)
    w = c.b.get("weights")
    wp = c.p(w) if isinstance(w, torch.Tensor) else None
    if xp is None and wp is None:
        return c.assign(out, None)
    iv = np_values(x).astype(np.int64).ravel()
    vals = c.tr.union([xp, wp], tuple(x.shape), c.short)
    lo = filled(shape, E_LO, np.int32)
    hi = filled(shape, E_HI, np.int32)
    np.minimum.at(lo, iv, np.asarray(vals.lo).ravel())  # type: ignore[union-attr]
    np.maximum.at(hi, iv, np.asarray(vals.hi).ravel())  # type: ignore[union-attr]
    c.assign(out, Prov(lo, hi, None))


@handler("set_membership")
def h_set_membership(c: OpCall) -> None:
    b = c.b
    if c.short == "isin":
        elem, test = b.get("elements"), b.get("test_elements")
    elif c.short == "searchsorted":
        elem, test = b.get("self", b.get("input")), b.get("sorted_sequence")
    else:
        elem, test = b.get("self"), b.get("boundaries")
    out = c.outputs()[0]
    shape = tuple(out.shape)
    parts = []
    if isinstance(elem, torch.Tensor) and c.p(elem) is not None:
        parts.append(fit(c.p(elem), shape))
    if isinstance(test, torch.Tensor):
        parts.append(hull_prov(c.tr, [c.p(test)], shape, c.short))
    c.assign(out, c.tr.union(parts, shape, c.short))
