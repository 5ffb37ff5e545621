"""Selection by index (gather, index, index_select, take, masked_select, embedding and its
backward): the index's provenance is included, except the target's pick from a vocabulary row,
which becomes a score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness.runtime.tracer.ops.call import OpCall, _dim, handler
from harness.runtime.tracer.ops.common import exact, hull_prov, place, rows_distribution
from harness.runtime.tracer.ops.movement import replay
from harness.runtime.tracer.provenance import E_HI, E_LO, NO_SID, Prov, broadcast, filled
from harness.runtime.tracer.state import np_values


def target_selection(c: OpCall, src: torch.Tensor, dim: int, ip: Prov | None,
                     rowwise: bool = True) -> tuple[bool, tuple[str, int] | None]:
    """Is this selecting the target's entry from a full-vocabulary row?  (exclude?, source mark).

    Only a per-row pick along the last dim qualifies (gather, or ``logp[rows, y]``): a lookup along
    the rows of a [V, D] table is an embedding, and there the token's position always counts.
    """
    if ip is None or src.dim() < 2 or dim != src.dim() - 1 or not rowwise:
        return False, None
    n = src.shape[dim]
    mark = c.mark_of(src)
    if mark is not None and mark[1] != n:
        mark = None
    vocab = c.tr.vocab
    if vocab is not None:
        ok = n == vocab
    else:
        ok = mark is not None
    if not ok:
        return False, None
    if not exact(ip):
        c.tr.imprecise_targets += 1
        return False, None
    if mark is None:
        mark = infer_distribution(src)
    if mark is None and probability_rows(src):
        # values in [0, 1] over the whole vocabulary, not summing to 1 (a mixture of probabilities that is
        # not normalized): the pick is scored as -log of the value, with the row's sum, so that a reported
        # number made of these picks is a C2 FAIL with the sums (a pick divided later never matches the
        # printed number and proves nothing). A gate built from the pick still reaches the target through
        # the score-id channel, as for a normalized pick.
        c.tr.coarse["target_pick_from_unnormalized_probs"] += 1
        return True, ("punnorm", n)
    if mark is None:  # not a distribution (raw counts, signed logits, a bias table): the target's position counts
        c.tr.coarse["target_pick_from_unnormalized_row"] += 1
        return False, None
    return True, mark


def probability_rows(src: torch.Tensor) -> bool:
    if not src.is_floating_point() or src.numel() == 0:
        return False
    v = np_values(src)
    return bool(np.isfinite(v).all() and v.min() >= 0 and v.max() <= 1)


def _row_sums(src: torch.Tensor, out_shape: tuple[int, ...]) -> np.ndarray | None:
    """Each picked value's row sum, when the pick (a gather along the last dim) keeps the rows' shape."""
    sums = np_values(src).astype(np.float64).sum(-1, keepdims=True)
    try:
        return np.broadcast_to(sums, out_shape)
    except ValueError:
        return None


def infer_distribution(src: torch.Tensor) -> tuple[str, int] | None:
    """A vocabulary row that is not a softmax output may still be one (a mixture of distributions):
    rows of non-negative values summing to 1 are probabilities, rows whose logsumexp is 0 log-probs."""
    if not src.is_floating_point() or src.numel() == 0:
        return None
    return rows_distribution(np_values(src))


def _score_selection(c: OpCall, out: torch.Tensor, p: Prov, tpos: Prov, mark: tuple[str, int],
                     zsum: np.ndarray | None = None, index: torch.Tensor | None = None,
                     index_vals: np.ndarray | None = None) -> Prov:
    """Selected entries of a log-prob / prob distribution at target positions become scores.
    ``index`` / ``index_vals``: the target index tensor and its values laid out like ``out`` (for the
    score event's ``norm``: the pick is the target token's own entry, Tracer.raw_pick)."""
    tr = c.tr
    shape = tuple(out.shape)
    tlo = np.broadcast_to(tpos.lo, shape)
    thi = np.broadcast_to(tpos.hi, shape)
    m = thi >= 0
    if not m.any():
        return p
    vals = np_values(out).astype(np.float64)
    nll = -vals[m] if mark[0] == "logp" else -np.log(np.maximum(vals[m], 1e-300))
    dep = np.broadcast_to(p.hi, shape)[m].astype(np.int64)
    if p.sid is not None:  # the row was built from values selected at targets (a gate on the target)
        dep = np.maximum(dep, tr.book.max_pos(np.broadcast_to(p.sid, shape)[m]))
    dep[dep < 0] = -1
    grad = torch.is_grad_enabled() and out.requires_grad
    if mark[0] == "punnorm":
        z = zsum[m] if zsum is not None else np.full(int(m.sum()), np.nan)
        sids = tr.new_scores(tlo[m], nll, dep, grad, c.short, zsum=z)
    else:
        norm = (tr.vocab is not None and mark[1] == tr.vocab and index is not None and index_vals is not None
                and tr.raw_pick(index, np.broadcast_to(index_vals, shape)[m], tlo[m]))
        sids = tr.new_scores(tlo[m], nll, dep, grad, c.short, norm=norm)
        if norm:
            c.picked = out  # the caller marks the output's block once its provenance is written
    sid = filled(shape, NO_SID, np.int64) if p.sid is None else np.array(np.broadcast_to(p.sid, shape), np.int64)
    sid[m] = sids
    return Prov(np.broadcast_to(p.lo, shape), np.broadcast_to(p.hi, shape), sid)


def _mark_picked(c: OpCall) -> None:
    out = getattr(c, "picked", None)
    if out is not None:
        loc = c.tr.store.locate_tensor(out)
        if loc is not None and loc.offset == 0 and loc.key in c.tr.store.entries:
            c.tr.store.picked.add(loc.key)


@handler("gather")
def h_gather(c: OpCall) -> None:
    src = c.b["self"]
    index = c.b["index"]
    out = c.outputs()[0]
    shape = tuple(out.shape)
    dim = _dim(c.b["dim"], src.dim())
    (p,) = replay(c, {"self"}) if c.p(src) is not None else (None,)
    ip = c.p(index)
    excl, mark = target_selection(c, src, dim, ip)
    if excl:
        base = p if p is not None else Prov(filled(shape, E_LO, np.int32), filled(shape, E_HI, np.int32), None)
        if mark is not None:
            zs = _row_sums(src, shape) if mark[0] == "punnorm" else None
            base = _score_selection(c, out, base, ip, mark, zs, index, np_values(index))  # type: ignore[arg-type]
        c.assign(out, base if (p is not None or mark is not None) else None)
        _mark_picked(c)
        return
    c.assign(out, c.tr.union([p, ip], shape, c.short))


def adv_layout(indices: list[Any], out_ndim: int) -> tuple[int, tuple[int, ...]] | None:
    """Where the broadcast block of advanced indices lands in the output: (first dim, block shape)."""
    pos = [i for i, x in enumerate(indices) if x is not None]
    if not pos:
        return None
    shapes = [tuple(x.shape) for x in indices if x is not None]
    try:
        block = tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None
    adjacent = pos == list(range(pos[0], pos[-1] + 1))
    start = pos[0] if adjacent else 0
    if start + len(block) > out_ndim:
        return None
    return start, block


@handler("index")
def h_index(c: OpCall) -> None:
    src = c.b["self"]
    indices = list(c.b["indices"])
    out = c.outputs()[0]
    shape = tuple(out.shape)
    (p,) = replay(c, {"self"}) if c.p(src) is not None else (None,)
    extra: list[Prov | None] = []
    target: Prov | None = None
    target_ix: torch.Tensor | None = None
    target_vals: np.ndarray | None = None
    mark = None
    layout = adv_layout(indices, len(shape))
    has_bool = any(isinstance(x, torch.Tensor) and x.dtype in (torch.bool, torch.uint8) for x in indices)
    for d, ix in enumerate(indices):
        if not isinstance(ix, torch.Tensor):
            continue
        ip = c.p(ix)
        if ip is None:
            continue
        if has_bool or layout is None:
            extra.append(hull_prov(c.tr, [ip], shape, c.short))
            continue
        others = sum(1 for j, o in enumerate(indices) if j != d and isinstance(o, torch.Tensor))
        excl, mk = target_selection(c, src, d, ip, rowwise=others > 0)
        placed = place(ip, layout[0], layout[1], shape)
        if excl:
            if mk is not None:
                target, mark, target_ix = placed, mk, ix
                v = np_values(ix).astype(np.int32)  # the index's values, laid out like the output
                target_vals = place(Prov(v, v, None), layout[0], layout[1], shape).lo
            continue
        extra.append(placed)
    res = c.tr.union([p] + extra, shape, c.short)
    if target is not None and mark is not None:
        base = res if res is not None else Prov(filled(shape, E_LO, np.int32), filled(shape, E_HI, np.int32), None)
        res = _score_selection(c, out, base, target, mark, None, target_ix, target_vals)
    c.assign(out, res)
    _mark_picked(c)


@handler("index_select")
def h_index_select(c: OpCall) -> None:
    src = c.b["self"]
    out = c.outputs()[0]
    shape = tuple(out.shape)
    dim = _dim(c.b["dim"], src.dim())
    (p,) = replay(c, {"self"}) if c.p(src) is not None else (None,)
    ip = c.p(c.b["index"])
    placed = None
    if ip is not None:
        placed = place(Prov(ip.lo.reshape(-1), ip.hi.reshape(-1), None if ip.sid is None else ip.sid.reshape(-1)),
                        dim, (ip.lo.size,), shape) if len(shape) else hull_prov(c.tr, [ip], shape, c.short)
    c.assign(out, c.tr.union([p, placed], shape, c.short))


@handler("take")
def h_take(c: OpCall) -> None:
    out = c.outputs()[0]
    shape = tuple(out.shape)
    (p,) = replay(c, {"self"}) if c.p(c.b["self"]) is not None else (None,)
    c.assign(out, c.tr.union([p, c.p(c.b["index"])], shape, c.short))


@handler("masked_select")
def h_masked_select(c: OpCall) -> None:
    out = c.outputs()[0]
    shape = tuple(out.shape)
    (p,) = replay(c, {"self"}) if c.p(c.b["self"]) is not None else (None,)
    mp = c.p(c.b["mask"])
    c.assign(out, c.tr.union([p, hull_prov(c.tr, [mp], shape, c.short)], shape, c.short))


@handler("embedding")
def h_embedding(c: OpCall) -> None:
    w, idx = c.b["weight"], c.b["indices"]
    out = c.outputs()[0]
    shape = tuple(out.shape)
    ip, wp = c.p(idx), c.p(w)
    parts: list[Prov | None] = []
    if ip is not None:
        parts.append(broadcast(Prov(ip.lo[..., None], ip.hi[..., None], None if ip.sid is None else ip.sid[..., None]),
                               shape))
    if wp is not None:
        iv = np_values(idx).astype(np.int64)
        parts.append(Prov(wp.lo[iv], wp.hi[iv], None if wp.sid is None else wp.sid[iv]))
    c.assign(out, c.tr.union(parts, shape, c.short))


@handler("embedding_backward")
def h_embedding_backward(c: OpCall) -> None:
    g, idx = c.b["grad_output"], c.b["indices"]
    out = c.outputs()[0]
    shape = tuple(out.shape)
    gp, ip = c.p(g), c.p(idx)
    if gp is None and ip is None:
        return c.assign(out, None)
    iv = np_values(idx).astype(np.int64).reshape(-1)
    d = shape[-1]
    vlo = filled((iv.size, d), E_LO, np.int32)
    vhi = filled((iv.size, d), E_HI, np.int32)
    if gp is not None:
        vlo = np.minimum(vlo, np.broadcast_to(gp.lo, tuple(g.shape)).reshape(iv.size, d))
        vhi = np.maximum(vhi, np.broadcast_to(gp.hi, tuple(g.shape)).reshape(iv.size, d))
    if ip is not None:
        vlo = np.minimum(vlo, ip.lo.reshape(-1, 1))
        vhi = np.maximum(vhi, ip.hi.reshape(-1, 1))
    pad = int(c.b.get("padding_idx", -1) if c.b.get("padding_idx") is not None else -1)
    keep = iv != pad
    lo = filled(shape, E_LO, np.int32)
    hi = filled(shape, E_HI, np.int32)
    np.minimum.at(lo, iv[keep], vlo[keep])
    np.maximum.at(hi, iv[keep], vhi[keep])
    c.assign(out, Prov(lo, hi, None))
