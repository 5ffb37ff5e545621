"""Negative log-likelihood: nll_loss forward (score events) and backward.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.runtime.tracer.ops.call import OpCall, handler
from harness.runtime.tracer.ops.common import exact, hull_prov
from harness.runtime.tracer.provenance import E_HI, E_LO, NO_SID, Prov, broadcast, filled, hull
from harness.runtime.tracer.state import np_values


@handler("nll")
def h_nll(c: OpCall) -> None:
    tr = c.tr
    x, target = c.b["self"], c.b["target"]
    w = c.b.get("weight")
    reduction = int(c.b.get("reduction", 1))
    ignore = int(c.b.get("ignore_index", -100))
    outs = c.outputs()
    out, total = outs[0], (outs[1] if len(outs) > 1 else None)
    cdim = 1 if x.dim() >= 2 else 0
    C = x.shape[cdim]
    tv = np_values(target).astype(np.int64)
    valid = tv != ignore
    safe = np.where(valid, tv, 0)
    xp, tp = c.p(x), c.p(target)
    wp = c.p(w) if isinstance(w, torch.Tensor) else None
    tshape = tuple(target.shape)
    # selected entry of the class dim for every target element
    if x.dim() >= 2:
        sel_idx = np.expand_dims(safe, cdim)
        take = lambda a: np.take_along_axis(np.asarray(a), sel_idx, axis=cdim).squeeze(cdim)  # noqa: E731
    else:
        take = lambda a: np.asarray(a)[safe]  # noqa: E731
    parts: list[Prov | None] = []
    if xp is not None:
        parts.append(Prov(take(xp.lo), take(xp.hi), None if xp.sid is None else take(xp.sid)))
    if wp is not None:
        parts.append(Prov(wp.lo[safe], wp.hi[safe], None))
    exclude = tr.vocab is None or C == tr.vocab
    exact_target = tp is None or exact(tp)
    if tp is not None and not exact_target:
        tr.imprecise_targets += 1
    if tp is not None and (not exclude or not exact_target):
        parts.append(tp)  # not a target selection from a vocabulary row: the index counts
    el = tr.union(parts, tshape, c.short)
    sid = None
    if tp is not None:
        m = (np.broadcast_to(tp.hi, tshape) >= 0) & valid
        if m.any():
            vals = take(np_values(x)).astype(np.float64)
            nll = -vals[m]
            dep_src = el.hi if el is not None else filled(tshape, -1)
            dep = np.asarray(dep_src)[m].astype(np.int64)
            if el is not None and el.sid is not None:  # log-probs built from target-selected values
                dep = np.maximum(dep, tr.book.max_pos(np.broadcast_to(el.sid, tshape)[m]))
            dep[dep < 0] = -1
            pos = np.broadcast_to(tp.hi, tshape)[m].astype(np.int64)
            grad = torch.is_grad_enabled() and x.requires_grad
            op = "nll_loss2d" if "2d" in c.short else "nll_loss"
            # C2's premise: log-probs of a log_softmax over the whole vocabulary, picked by the token itself
            norm = (w is None and cdim == x.dim() - 1 and tr.vocab is not None and C == tr.vocab
                    and c.mark_of(x) == ("logp", C)
                    and tr.raw_pick(target, np.broadcast_to(tv, tshape)[m], pos))
            sids = tr.new_scores(pos, nll, dep, grad, op, norm=norm)
            sid = filled(tshape, NO_SID, np.int64)
            sid[m] = sids
    if el is None and sid is None:
        c.assign(out, None)
        return
    if el is None:
        el = Prov(filled(tshape, E_LO, np.int32), filled(tshape, E_HI, np.int32), None)
    el = Prov(np.where(valid, el.lo, E_LO).astype(np.int32), np.where(valid, el.hi, E_HI).astype(np.int32), sid)
    if reduction == 0:
        c.assign(out, el)
    else:
        bag = tr.reduce_sids(el.sid, tuple(range(len(tshape))), (), "nll_loss") if el.sid is not None else None
        lo, hi = hull(el)
        c.assign(out, Prov(filled((), lo, np.int32), filled((), hi, np.int32), bag))
    if total is not None:
        c.assign(total, None)  # the normalizer's dependence on which targets are ignored is not followed


@handler("nll_backward")
def h_nll_backward(c: OpCall) -> None:
    x, target = c.b["self"], c.b["target"]
    out = c.outputs()[0]
    shape = tuple(out.shape)
    cdim = 1 if x.dim() >= 2 else 0
    tp, gp = c.p(target), c.p(c.b["grad_output"])
    w = c.b.get("weight")
    wp = c.p(w) if isinstance(w, torch.Tensor) else None
    parts: list[Prov | None] = []
    if tp is not None:
        parts.append(broadcast(Prov(np.expand_dims(tp.lo, cdim) if x.dim() >= 2 else tp.lo,
                                    np.expand_dims(tp.hi, cdim) if x.dim() >= 2 else tp.hi, None), shape))
    if gp is not None:
        if gp.lo.size == target.numel() and target.numel() > 1:
            parts.append(broadcast(Prov(np.expand_dims(gp.lo.reshape(tuple(target.shape)), cdim),
                                        np.expand_dims(gp.hi.reshape(tuple(target.shape)), cdim), None), shape))
        else:
            parts.append(hull_prov(c.tr, [gp], shape, c.short))
    if wp is not None:
        parts.append(hull_prov(c.tr, [wp], shape, c.short))
    c.assign(out, c.tr.union(parts, shape, c.short))
