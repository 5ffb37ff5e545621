"""Indexed writes (index_put_, scatter*, index_add_, put_, masked_scatter, ...): writes at
data-dependent places, and ``update`` events for persistent tables.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.runtime.tracer.ops.basic import h_unhandled
from harness.runtime.tracer.ops.call import OpCall, _dim, handler
from harness.runtime.tracer.ops.common import fit, hull_prov, place
from harness.runtime.tracer.ops.indexing import adv_layout
from harness.runtime.tracer.provenance import E_HI, E_LO, Loc, Prov, broadcast, filled
from harness.runtime.tracer.state import Tracer, np_values


def _offsets_tensor(tr: Tracer, loc: Loc) -> torch.Tensor:
    return torch.from_numpy(tr.store.offsets(loc))


@handler("write_index")
def h_write_index(c: OpCall) -> None:
    tr = c.tr
    name = c.short.rstrip("_")
    self_t = c.b["self"]
    inplace = bool(c.info.mutated) and "self" in c.info.mutated
    if inplace:
        dest = self_t
    else:
        outs = c.outputs()
        if not outs:
            return
        dest = outs[0]
        c.assign(dest, c.p(self_t))  # the untouched part is a copy of self
    loc = tr.store.locate_tensor(dest)
    if loc is None:
        return
    entry = tr.store.entry_for(loc)
    if entry is not None and entry.itemsize != loc.itemsize:
        return h_unhandled(c)
    offs = _offsets_tensor(tr, loc)
    b = c.b
    accumulate = False
    idx_prov: Prov | None = None
    vals: Prov | None = None
    if name in ("index_put", "_index_put_impl", "_unsafe_index_put"):
        indices = [None if x is None else x.detach().cpu() for x in b["indices"]]
        sel = torch.ops.aten.index.Tensor(offs, indices).numpy()
        accumulate = bool(b.get("accumulate", False))
        vp = c.p(b["values"])
        vals = None if vp is None else broadcast(vp, sel.shape)
        layout = adv_layout(list(b["indices"]), sel.ndim)
        has_bool = any(isinstance(x, torch.Tensor) and x.dtype in (torch.bool, torch.uint8) for x in b["indices"])
        parts = []
        for ix in b["indices"]:
            ip = c.p(ix) if isinstance(ix, torch.Tensor) else None
            if ip is None:
                continue
            if layout is None or has_bool:
                parts.append(hull_prov(tr, [ip], sel.shape, c.short))
            else:
                parts.append(place(ip, layout[0], layout[1], sel.shape))
        idx_prov = tr.union(parts, sel.shape, c.short) if parts else None
    elif name in ("scatter", "scatter_add", "scatter_reduce"):
        index = b["index"].detach().cpu()
        dim = _dim(b["dim"], dest.dim())
        sel = torch.gather(offs, dim, index).numpy()
        src = b.get("src")
        if isinstance(src, torch.Tensor) and c.p(src) is not None:
            sp = c.p(src)
            sl = tuple(slice(0, n) for n in sel.shape)
            vals = Prov(sp.lo[sl], sp.hi[sl], None if sp.sid is None else sp.sid[sl])
        elif isinstance(b.get("value"), torch.Tensor):
            vals = c.p(b["value"])
            vals = None if vals is None else broadcast(vals, sel.shape)
        accumulate = name in ("scatter_add",) or b.get("reduce") is not None
        if name == "scatter_reduce":
            accumulate = bool(b.get("include_self", True))
        idx_prov = c.p(b["index"])
    elif name in ("index_add", "index_copy", "index_fill", "index_reduce"):
        index = b["index"].detach().cpu()
        dim = _dim(b["dim"], dest.dim())
        sel = torch.index_select(offs, dim, index).numpy()
        source = b.get("source", b.get("value"))
        sp = c.p(source) if isinstance(source, torch.Tensor) else None
        vals = None if sp is None else broadcast(sp, sel.shape)
        accumulate = name == "index_add" or (name == "index_reduce" and bool(b.get("include_self", True)))
        ip = c.p(b["index"])
        if ip is not None:
            idx_prov = place(Prov(ip.lo.reshape(-1), ip.hi.reshape(-1), None), dim, (ip.lo.size,), sel.shape)
    elif name == "put":
        index = b["index"].detach().cpu().reshape(-1)
        sel = offs.reshape(-1)[index].numpy().reshape(tuple(b["index"].shape))
        sp = c.p(b["source"])
        vals = None if sp is None else fit(sp, sel.shape)
        accumulate = bool(b.get("accumulate", False))
        idx_prov = c.p(b["index"])
    elif name == "masked_scatter":
        m = np.broadcast_to(np_values(b["mask"]).astype(bool), tuple(dest.shape))
        sel = offs.numpy()[m]
        sp = c.p(b["source"])
        if sp is not None:
            k = sel.size
            vals = Prov(np.ascontiguousarray(sp.lo).ravel()[:k], np.ascontiguousarray(sp.hi).ravel()[:k],
                        None if sp.sid is None else np.ascontiguousarray(sp.sid).ravel()[:k])
        idx_prov = hull_prov(tr, [c.p(b["mask"])], sel.shape, c.short)
    else:
        return h_unhandled(c)
    new = tr.union([vals, idx_prov], tuple(sel.shape), c.short)
    src_t = b.get("values", b.get("src", b.get("source")))
    if new is not None and accumulate and isinstance(src_t, torch.Tensor) and name != "masked_scatter":
        # adding an exact untraced zero changes nothing: neither its value nor where it lands counts
        zv = np_values(src_t) == 0
        sp = c.p(src_t)
        if sp is not None:
            zv &= np.asarray(sp.hi) < 0
        if zv.any():
            try:
                keep = ~np.broadcast_to(zv if zv.shape != tuple(src_t.shape) or name != "scatter_add" else
                                        zv[tuple(slice(0, n) for n in sel.shape)], sel.shape)
            except ValueError:
                keep = None
            if keep is not None:
                sel = sel[keep]
                new = Prov(np.broadcast_to(new.lo, keep.shape)[keep], np.broadcast_to(new.hi, keep.shape)[keep],
                           None if new.sid is None else np.broadcast_to(new.sid, keep.shape)[keep])
    if new is None:
        if accumulate:
            return
        new = Prov(filled(sel.shape, E_LO, np.int32), filled(sel.shape, E_HI, np.int32), None)
    # accumulate: the targets keep what they had (write_elements unions); the update reports what was added
    tr.store.write_elements(loc.owner, loc.n_owner, loc.itemsize, sel, new, accumulate)
    if inplace:
        meta = tr.store.metas.get(loc.key)
        if meta is not None:
            meta.mark = None
        if isinstance(dest, torch.nn.Parameter) or (dest.is_leaf and dest.requires_grad):
            tr.register(loc.owner, "param")
        tr.check_update(loc.owner, new, c.short, loc.n_owner, "table")
        tr.widen_indexed_table(loc.owner, loc.n_owner, idx_prov, "table")
