"""Provenance helpers shared by the torch op handlers and the traced numpy side (shape fitting,
unions, constant masks, selection, index placement, matrix-product parts, distribution checks,
derived scores), and the codec for provenance channels that data movement is replayed on."""

from __future__ import annotations

import math

import numpy as np

from harness.runtime.tracer.provenance import E_HI, E_LO, NO_SID, Prov, broadcast, filled, hull
from harness.runtime.tracer.state import Tracer

_CHUNK_ELEMS = 4_000_000  # elements per temporary in masked (exact-zero aware) reductions


def fit(p: Prov, shape: tuple[int, ...]) -> Prov:
    """Make a provenance match an output shape: same size -> reshape, else broadcast, else hull."""
    size = math.prod(shape)  # np.prod builds an array first: this runs for most outputs
    if p.lo.size == size:
        sid = None if p.sid is None else np.ascontiguousarray(p.sid).reshape(shape)
        return Prov(np.ascontiguousarray(p.lo).reshape(shape), np.ascontiguousarray(p.hi).reshape(shape), sid)
    try:
        return broadcast(p, shape)
    except ValueError:
        lo, hi = hull(p)
        return Prov(filled(shape, lo, np.int32), filled(shape, hi, np.int32), None)


def hull_prov(tr: Tracer, ps: list[Prov | None], shape: tuple[int, ...], op: str) -> Prov | None:
    """Every element gets the union of everything in ``ps`` (the coarse handler)."""
    ps = [p for p in ps if p is not None]
    if not ps:
        return None
    lo = min(hull(p)[0] for p in ps)
    hi = max(hull(p)[1] for p in ps)
    sids = [p.sid[p.sid != NO_SID] for p in ps if p.sid is not None]
    sid = None
    if sids:
        cat = np.concatenate([s.ravel() for s in sids])
        if cat.size:
            v = tr.bag_of(cat)
            sid = filled(shape, v, np.int64)
    return Prov(filled(shape, lo, np.int32), filled(shape, hi, np.int32), sid)


def set_const(p: Prov, mask: np.ndarray) -> Prov:
    """Elements under ``mask`` become constants: empty provenance, no score."""
    if not mask.any():
        return p
    lo = np.array(p.lo, copy=True)
    hi = np.array(p.hi, copy=True)
    lo[mask] = E_LO
    hi[mask] = E_HI
    sid = None
    if p.sid is not None:
        sid = np.array(p.sid, copy=True)
        sid[mask] = NO_SID
    return Prov(lo, hi, sid)


def select(cond: np.ndarray, a: Prov | None, b: Prov | None, shape: tuple[int, ...]) -> Prov | None:
    """Elementwise choice of provenance by a boolean array (where / masked_fill)."""
    if a is None and b is None:
        return None
    cond = np.broadcast_to(cond, shape)
    alo = np.broadcast_to(a.lo, shape) if a is not None else E_LO
    ahi = np.broadcast_to(a.hi, shape) if a is not None else E_HI
    blo = np.broadcast_to(b.lo, shape) if b is not None else E_LO
    bhi = np.broadcast_to(b.hi, shape) if b is not None else E_HI
    lo = np.where(cond, alo, blo).astype(np.int32)
    hi = np.where(cond, ahi, bhi).astype(np.int32)
    sid = None
    if (a is not None and a.sid is not None) or (b is not None and b.sid is not None):
        asid = np.broadcast_to(a.sid, shape) if a is not None and a.sid is not None else NO_SID
        bsid = np.broadcast_to(b.sid, shape) if b is not None and b.sid is not None else NO_SID
        sid = np.where(cond, asid, bsid).astype(np.int64)
    return Prov(lo, hi, sid)


def derive(tr: Tracer, xs: np.ndarray, vals: np.ndarray, xhi: np.ndarray, p: Prov, op: str, grad: bool,
           src_key: int | None = None) -> Prov:
    """New scores for the log of values made of scores. ``src_key``: the block of the values the log was
    taken of; when it holds normalized raw picks as picked (Store.picked), the new scores keep ``norm``."""
    # any positive value: an unnormalized "probability" (> 1) is still what the script scores with
    cand = (xs != NO_SID) & (vals > 0) & np.isfinite(vals)
    if not cand.any():
        return p
    idx = np.nonzero(cand)
    sv = xs[idx]
    pos = filled(sv.shape, -1, np.int64)
    plain = sv >= 0
    pos[plain] = tr.book.pos_of(sv[plain])
    for j in np.nonzero(~plain)[0].tolist():
        q = tr.book.single_position(int(sv[j]))
        pos[j] = -1 if q is None else q
    ok = pos >= 0
    if not ok.any():
        return p
    sel = tuple(a[ok] for a in idx)
    nll = -np.log(np.maximum(vals[sel], 1e-300))
    # what the value depends on, and what the scores it is made of depended on (a gated mixture)
    dep = np.maximum(xhi[sel].astype(np.int64), tr.book.max_dep(sv[ok]))
    dep[dep < 0] = -1
    # -log of a normalized pick's own value is that pick's score: it keeps the pick's ``norm``
    norm = src_key is not None and src_key in tr.store.picked and tr.book.same_normalized(sv[ok], nll)
    sids = tr.new_scores(pos[ok], nll, dep, grad, op, norm=norm)
    sid = np.array(p.sid, np.int64, copy=True)
    sid[sel] = sids
    # a value made of several scores of its position (max over passes, then log): the new score
    # stands for a combination of them, which the verdict must see
    combos = []
    for old, new, q in zip(sv[ok].tolist(), sids.tolist(), pos[ok].tolist()):
        if old <= -2:
            combos.extend((q, int(s), new) for s in tr.book.flatten(np.array([old])).tolist())
    if combos:
        tr.emitter.combine(combos, op + "(combined scores)", tr.site())
    return Prov(p.lo, p.hi, sid)


def exact(p: Prov | None) -> bool:
    if p is None:
        return False
    m = p.hi >= 0
    return bool(m.any()) and bool((p.lo[m] == p.hi[m]).all())


def rows_distribution(vals: np.ndarray) -> tuple[str, int] | None:
    """("prob" | "logp", row length) when every last-dim row is a normalized distribution."""
    if vals.dtype.kind != "f" or vals.size == 0:
        return None
    vals = vals.astype(np.float64)
    n = vals.shape[-1]
    if not np.isfinite(vals).all():
        finite = np.where(np.isneginf(vals), -np.inf, vals)
        if np.isnan(finite).any() or np.isposinf(finite).any():
            return None
        vals = finite
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if vals.min() >= 0 and np.allclose(vals.sum(-1), 1.0, atol=1e-3):
            return ("prob", n)
        m = vals.max(-1, keepdims=True)
        lse = (m + np.log(np.exp(vals - m).sum(-1, keepdims=True)))[..., 0]
        if vals.max() <= 1e-6 and np.allclose(lse, 0.0, atol=1e-3):
            return ("logp", n)
    return None


def place(p: Prov, start: int, block: tuple[int, ...], shape: tuple[int, ...]) -> Prov:
    tail = len(shape) - start - len(block)
    nshape = (1,) * start + block + (1,) * tail
    lo = np.broadcast_to(p.lo, block).reshape(nshape)
    hi = np.broadcast_to(p.hi, block).reshape(nshape)
    sid = None if p.sid is None else np.broadcast_to(p.sid, block).reshape(nshape)
    return broadcast(Prov(lo, hi, sid), shape)


def part_from_a(alo: np.ndarray, ahi: np.ndarray, keep_b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Union over k of A[i,k] (only where B[k,j] is not an exact zero) -> [..., I, J or 1]."""
    if keep_b is None:
        return alo.min(-1)[..., :, None], ahi.max(-1)[..., :, None]
    if (alo.min(-1) == alo.max(-1)).all() and (ahi.min(-1) == ahi.max(-1)).all():
        anyj = keep_b.any(-2)[..., None, :]
        return np.where(anyj, alo[..., :, :1], E_LO), np.where(anyj, ahi[..., :, :1], E_HI)
    J = keep_b.shape[-1]
    step = max(1, _CHUNK_ELEMS // max(1, alo.size))
    los, his = [], []
    for j0 in range(0, J, step):
        kb = keep_b[..., None, :, j0 : j0 + step]
        los.append(np.where(kb, alo[..., :, :, None], E_LO).min(-2))
        his.append(np.where(kb, ahi[..., :, :, None], E_HI).max(-2))
    return np.concatenate(los, -1), np.concatenate(his, -1)


def part_from_b(blo: np.ndarray, bhi: np.ndarray, keep_a: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Union over k of B[k,j] (only where A[i,k] is not an exact zero) -> [..., I or 1, J]."""
    if keep_a is None:
        return blo.min(-2)[..., None, :], bhi.max(-2)[..., None, :]
    if (blo.min(-1) == blo.max(-1)).all() and (bhi.min(-1) == bhi.max(-1)).all():
        bl, bh = blo[..., :, 0], bhi[..., :, 0]  # [..., K]
        lo = np.where(keep_a, bl[..., None, :], E_LO).min(-1)[..., :, None]
        hi = np.where(keep_a, bh[..., None, :], E_HI).max(-1)[..., :, None]
        return lo, hi
    I = keep_a.shape[-2]
    step = max(1, _CHUNK_ELEMS // max(1, blo.size))
    los, his = [], []
    for i0 in range(0, I, step):
        ka = keep_a[..., i0 : i0 + step, :, None]
        los.append(np.where(ka, blo[..., None, :, :], E_LO).min(-2))
        his.append(np.where(ka, bhi[..., None, :, :], E_HI).max(-2))
    return np.concatenate(los, -2), np.concatenate(his, -2)


def encode_channel(ch: np.ndarray, which: str, narrow: bool = False) -> np.ndarray:
    """A provenance channel ('lo', 'hi' or 'sid') as int64, shifted so that 0 means "empty": zero
    fills (pads, tril) made by a replayed op then stay empty. narrow: lo / hi stay int32 (one pass;
    lo - E_LO and hi + 1 of a position both fit)."""
    if narrow and which in ("lo", "hi"):
        return (np.subtract(ch, np.int32(E_LO), dtype=np.int32) if which == "lo"
                else np.add(ch, np.int32(1), dtype=np.int32))
    a = np.asarray(ch).astype(np.int64)
    return a - int(E_LO) if which == "lo" else a + 1


def decode_channel(a: np.ndarray, which: str) -> np.ndarray:
    """Undo ``encode_channel`` (lo / hi come back as int32, sid as int64)."""
    a = np.asarray(a)
    if a.dtype == np.int32 and which in ("lo", "hi"):  # a narrow encoding: undone in int32
        return (np.add(a, np.int32(E_LO), dtype=np.int32) if which == "lo"
                else np.subtract(a, np.int32(1), dtype=np.int32))
    a = a.astype(np.int64, copy=False)
    if which == "lo":
        return (a + int(E_LO)).astype(np.int32)
    if which == "hi":
        return (a - 1).astype(np.int32)
    return a - 1
