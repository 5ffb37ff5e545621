"""Ufunc handlers: elementwise union (value-aware for x*0 and x+inf), ``reduce`` / ``accumulate`` /
``outer`` / ``reduceat``, ``at`` (indexed updates into tables), derived scores from ``log``, matmul.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.runtime.tracer.ops.common import derive, fit, hull_prov, part_from_a, part_from_b, select, set_const
from harness.runtime.tracer.provenance import E_HI, E_LO, NO_SID, Prov, broadcast, filled
from harness.runtime.tracer.traced_numpy.array import _Widen, _materialize, _raw, _raw_key, _wrap, _write
from harness.runtime.tracer.traced_numpy.indexing import _index_parts


_MUL = {"multiply", "logical_and", "bitwise_and"}


_ADD = {"add", "subtract"}


_LOG = {"log", "log2", "log10"}


def _absorb(tr: Any, name: str, inputs: tuple[Any, ...], shape: tuple[int, ...], p: Prov) -> Prov:

    kind = "mul" if name in _MUL else ("add" if name in _ADD else None)
    if kind is None:
        return p
    mask = None
    for x in inputs:
        if isinstance(x, np.ndarray) or np.isscalar(x):
            v = np.asarray(_raw(x))
            if v.dtype.kind not in "biufc":
                continue
            m = (v == 0) if kind == "mul" else (np.isinf(v) if v.dtype.kind in "fc" else np.zeros(v.shape, bool))
            if not m.any():
                continue
            xp = tr.aprov(x) if isinstance(x, np.ndarray) else None
            if xp is not None:
                m = m & (np.asarray(xp.hi) < 0)
            m = np.broadcast_to(m, shape)
            mask = m if mask is None else (mask | m)
    return p if mask is None else set_const(p, mask)


def ufunc_handler(tr: Any, uf: np.ufunc, method: str, inputs: tuple[Any, ...], kwargs: dict[str, Any], res: Any,
               outs: tuple[Any, ...] | None) -> Any:
    name = uf.__name__
    op = "np." + name
    if method == "at":
        return _ufunc_at(tr, uf, inputs)
    if method == "__call__":
        results = res if uf.nout > 1 else (res,)
        wrapped = []
        for k, r in enumerate(results):
            shape = tuple(np.shape(r))
            if name == "matmul":
                p = _np_matmul(tr, inputs[0], inputs[1], shape)
            else:
                p = tr.union([tr.aprov(x) if isinstance(x, np.ndarray) else None for x in inputs], shape, op)
                if p is not None:
                    p = _absorb(tr, name, inputs, shape, p)
                if p is not None and name in _LOG and isinstance(inputs[0], np.ndarray):
                    p = _derive(tr, inputs[0], p, shape)
            dest = outs[k] if outs is not None and k < len(outs) else None
            where = kwargs.get("where", True)
            if dest is not None:
                if where is not True and p is not None:
                    old = tr.aprov(dest)
                    wm = np.broadcast_to(np.asarray(_raw(where), bool), shape)

                    p = select(wm, p, old, shape)
                if isinstance(dest, np.ndarray):
                    _write(tr, dest, p, op)
                wrapped.append(dest)
            else:
                wrapped.append(_wrap(tr, r, p))
        return tuple(wrapped) if uf.nout > 1 else wrapped[0]
    a = inputs[0]
    p = tr.aprov(a) if isinstance(a, np.ndarray) else None
    dest = outs[0] if outs else None
    shape = tuple(np.shape(res))
    newp: Prov | None = None
    if p is not None:
        nd = np.ndim(a)
        if method == "reduce":
            axis = kwargs.get("axis", 0)
            axes = tuple(range(nd)) if axis is None else tuple(int(x) % nd for x in (axis if isinstance(axis, tuple) else (axis,)))
            lo, hi = np.asarray(p.lo), np.asarray(p.hi)
            wh = kwargs.get("where", True)
            if wh is not True:
                wm = np.broadcast_to(np.asarray(_raw(wh), bool), lo.shape)
                lo, hi = np.where(wm, lo, E_LO), np.where(wm, hi, E_HI)
            if axes:
                lo = lo.min(axis=axes, keepdims=True)
                hi = hi.max(axis=axes, keepdims=True)
            sid = tr.reduce_sids(np.asarray(p.sid), axes, tuple(lo.shape), op + ".reduce") if p.sid is not None else None
            newp = fit(Prov(lo.astype(np.int32), hi.astype(np.int32), sid), shape)
        elif method == "accumulate":
            axis = int(kwargs.get("axis", 0) or 0) % max(nd, 1)
            lo = np.minimum.accumulate(np.asarray(p.lo), axis=axis)
            hi = np.maximum.accumulate(np.asarray(p.hi), axis=axis)
            sid = None
            if p.sid is not None:
                moved = np.moveaxis(np.asarray(p.sid), axis, 0)
                acc = [np.array(moved[0], np.int64)]
                for i in range(1, moved.shape[0]):
                    m = tr.merge_sids([acc[-1], moved[i]], moved.shape[1:], op)
                    acc.append(m if m is not None else filled(moved.shape[1:], NO_SID))
                sid = np.moveaxis(np.stack(acc), 0, axis)
            newp = fit(Prov(lo, hi, sid), shape)
        elif method == "outer":
            pass
        else:  # reduceat
            tr.unruled[op + "." + method] += 1
            newp = hull_prov(tr, [p] + [tr.aprov(x) for x in inputs[1:] if isinstance(x, np.ndarray)], shape, op)
    if method == "outer":
        a2 = inputs[1]
        pa = tr.aprov(a) if isinstance(a, np.ndarray) else None
        pb = tr.aprov(a2) if isinstance(a2, np.ndarray) else None
        parts = []
        if pa is not None:
            parts.append(broadcast(Prov(np.asarray(pa.lo).reshape(np.shape(a) + (1,) * np.ndim(a2)),
                                        np.asarray(pa.hi).reshape(np.shape(a) + (1,) * np.ndim(a2)), None), shape))
        if pb is not None:
            parts.append(broadcast(pb, shape))
        newp = tr.union(parts, shape, op)
    if dest is not None:
        if isinstance(dest, np.ndarray):
            _write(tr, dest, newp, op)
        return dest
    return _wrap(tr, res, newp)


def _derive(tr: Any, x: np.ndarray, p: Prov, shape: tuple[int, ...]) -> Prov:

    xp = tr.aprov(x)
    if xp is None or xp.sid is None or p.sid is None:
        return p
    vals = np.broadcast_to(np.asarray(_raw(x), np.float64), shape)
    loc = tr.store.locate_array(x)
    return derive(tr, np.broadcast_to(xp.sid, shape), vals, np.broadcast_to(xp.hi, shape), p, "np.log", False,
                  None if loc is None else loc.key)


def _ufunc_at(tr: Any, uf: np.ufunc, inputs: tuple[Any, ...]) -> None:
    a = inputs[0]
    key = inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    if not isinstance(a, np.ndarray):
        return None
    loc = tr.store.locate_array(a)
    if loc is None or loc.itemsize != a.itemsize:
        raise _Widen("a table misaligned with its memory block")
    _materialize(tr, a)
    rkey = _raw_key(key)
    sel = tr.store.offsets(loc)[rkey]
    shape = tuple(np.shape(sel))
    vp = tr.aprov(b) if isinstance(b, np.ndarray) else None
    parts, target, _ = _index_parts(tr, a, rkey, key, shape)
    new = tr.union([None if vp is None else broadcast(vp, shape)] + parts + ([target] if target is not None else []),
                   shape, "np." + uf.__name__ + ".at")
    if new is None:
        return None
    # read-modify-write: the targets keep what they had and add what was written (and where)
    tr.store.write_elements(loc.owner, loc.n_owner, loc.itemsize, np.asarray(sel), new, accumulate=True)
    tr.check_update(loc.owner, new, "np." + uf.__name__ + ".at", loc.n_owner, "array")
    if parts:
        tr.widen_indexed_table(loc.owner, loc.n_owner, tr.union(parts, shape, "np.at index"), "array")
    return None


def _np_matmul(tr: Any, a: Any, b: Any, shape: tuple[int, ...]) -> Prov | None:

    pa = tr.aprov(a) if isinstance(a, np.ndarray) else None
    pb = tr.aprov(b) if isinstance(b, np.ndarray) else None
    if pa is None and pb is None:
        return None
    av, bv = np.asarray(_raw(a)), np.asarray(_raw(b))
    a1, b1 = av.ndim == 1, bv.ndim == 1
    A = av[None, :] if a1 else av
    Bm = bv[:, None] if b1 else bv
    keep_a = keep_b = None
    if pb is not None:
        z = (A == 0) & ((np.asarray(pa.hi)[None, :] if a1 else np.asarray(pa.hi)) < 0 if pa is not None else True)
        keep_a = ~z if z.any() else None
    if pa is not None:
        z = (Bm == 0) & ((np.asarray(pb.hi)[:, None] if b1 else np.asarray(pb.hi)) < 0 if pb is not None else True)
        keep_b = ~z if z.any() else None
    full = np.broadcast_shapes(A.shape[:-2], Bm.shape[:-2]) + (A.shape[-2], Bm.shape[-1])
    lo = filled(full, E_LO, np.int32)
    hi = filled(full, E_HI, np.int32)
    if pa is not None:
        alo = np.asarray(pa.lo)[None, :] if a1 else np.asarray(pa.lo)
        ahi = np.asarray(pa.hi)[None, :] if a1 else np.asarray(pa.hi)
        plo, phi = part_from_a(alo, ahi, keep_b)
        np.minimum(lo, plo, out=lo)
        np.maximum(hi, phi, out=hi)
    if pb is not None:
        blo = np.asarray(pb.lo)[:, None] if b1 else np.asarray(pb.lo)
        bhi = np.asarray(pb.hi)[:, None] if b1 else np.asarray(pb.hi)
        plo, phi = part_from_b(blo, bhi, keep_a)
        np.minimum(lo, plo, out=lo)
        np.maximum(hi, phi, out=hi)
    sid = None
    if (pa is not None and pa.sid is not None) or (pb is not None and pb.sid is not None):
        sid = hull_prov(tr, [pa, pb], shape, "np.matmul").sid  # type: ignore[union-attr]
    return fit(Prov(lo, hi, sid), shape)
