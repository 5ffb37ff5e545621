"""Provenance through Triton kernels run by Triton's CPU interpreter (TRITON_INTERPRET=1).

Exact dataflow, not a guess: while a launch with a traced tensor argument runs, every value the
interpreter computes (a ``TensorHandle``: a numpy array per program instance) carries a shadow
provenance (``lo``/``hi`` arrays of its shape, in ``handle.attr``), computed op by op:

- ``tl.load`` (and tensor-descriptor loads, which the interpreter turns into masked loads): the provenance of the very elements read (the pointer addresses are mapped back to the
  argument tensors' storages and their provenance blocks), plus the pointer's and the mask's own
  provenance (a gather by a traced index depends on the index); masked-off lanes take ``other``'s;
- ``tl.store``: the stored value's provenance (plus the pointer's, the mask's, and that of any traced
  value a Python branch of this program instance tested) is written into the target block, element
  by element (a kernel that writes row r from row r+1 shows exactly that);
- elementwise ops: union with broadcasting; ``tl.where``: the chosen branch's (so a causal mask with an
  untraced -inf stays causal); ``tl.dot``: union over k, skipping terms whose other factor is an exact
  0 (``p @ v`` with masked probabilities stays causal); reshape / trans / expand_dims / broadcast /
  join / split / gather: exact; ``tl.reduce``: union over the reduced axis; ``tl.associative_scan``:
  running union; any other builder op: union of its inputs (hull when shapes do not broadcast).

What it does not follow: score ids (a kernel's outputs carry no score; a loss computed by a kernel
gives no score event, counted as ``coarse[kernel:sid_dropped]`` when score-carrying inputs are read),
atomics and descriptor gathers / scatters (the launch then widens: every tensor argument gets the union of all of
them). A failure inside the shadow also widens; only a failure of the widening itself is reported to
the caller (who marks the trace incomplete).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from harness.runtime.tracer.ops.common import part_from_a, part_from_b
from harness.runtime.tracer.provenance import E_HI, E_LO, NO_SID, Entry, Prov, hull
from harness.runtime.tracer.state import Tracer

_P = "_harness_prov"  # key in TensorHandle.attr
_CUR: "_Launch | None" = None
_INSTALLED = False

Pair = tuple[np.ndarray, np.ndarray]


class _Launch:
    def __init__(self, tr: Tracer, name: str, tensors: list[torch.Tensor]) -> None:
        self.tr = tr
        self.name = name
        self.failed: str | None = None
        self.last_load: Any = None
        self.unsupported: str | None = None
        self.ctl: tuple[int, int] = (int(E_LO), int(E_HI))
        self.writes: dict[int, tuple[Any, list[np.ndarray], list[np.ndarray], int]] = {}
        self.index_writes: dict[int, tuple[Any, int, int, int]] = {}
        owners: dict[int, Any] = {}
        for t in tensors:
            o = tr.store.tensor_owner(t)
            if o is not None and o.nbytes() > 0:
                owners[id(o)] = o
        blocks = sorted(owners.values(), key=lambda o: o.data_ptr())
        self.owners = blocks
        self.bases = np.array([o.data_ptr() for o in blocks], np.uint64)
        self.ends = np.array([o.data_ptr() + o.nbytes() for o in blocks], np.uint64)

    # -- memory --------------------------------------------------------------------------------------
    def _blocks_of(self, addrs: np.ndarray) -> np.ndarray:
        if not len(self.owners):
            return np.full(addrs.shape, -1, np.int64)
        b = np.searchsorted(self.bases, addrs, side="right").astype(np.int64) - 1
        ok = (b >= 0) & (addrs < self.ends[np.maximum(b, 0)])
        return np.where(ok, b, -1)

    def read(self, addrs: np.ndarray, sel: np.ndarray, size: int) -> Pair | None:
        """Provenance of the memory at ``addrs`` (where ``sel``), shape of addrs; None if all untraced."""
        lo = np.full(addrs.shape, E_LO, np.int32)
        hi = np.full(addrs.shape, E_HI, np.int32)
        blocks = self._blocks_of(addrs)
        any_t = False
        for bi in np.unique(blocks[sel]).tolist():
            if bi < 0:
                continue
            owner = self.owners[bi]
            e = self.tr.store.entries.get(id(owner))
            if e is None:
                continue
            self.tr.store.touch(id(owner))
            m = sel & (blocks == bi)
            off = (addrs[m] - self.bases[bi]).astype(np.int64)
            first = off // e.itemsize
            last = (off + size - 1) // e.itemsize
            e.grow(int(last.max()) + 1 if last.size else 0)
            lo[m] = np.minimum(e.lo[first], e.lo[last])
            hi[m] = np.maximum(e.hi[first], e.hi[last])
            if e.sid is not None and bool((e.sid[first] != NO_SID).any()):
                self.tr.coarse["kernel:sid_dropped"] += 1
            any_t = True
        return (lo, hi) if any_t else None

    def write(self, addrs: np.ndarray, sel: np.ndarray, size: int, p: Pair | None, ptr_p: Pair | None) -> None:
        blocks = self._blocks_of(addrs)
        if bool((sel & (blocks < 0)).any()):
            self.unsupported = self.unsupported or "a store outside the launch's tensor arguments"
        for bi in np.unique(blocks[sel]).tolist():
            if bi < 0:
                continue
            owner = self.owners[bi]
            m = sel & (blocks == bi)
            off = (addrs[m] - self.bases[bi]).astype(np.int64)
            vlo = np.broadcast_to(p[0], addrs.shape)[m] if p is not None else None
            vhi = np.broadcast_to(p[1], addrs.shape)[m] if p is not None else None
            st = self.tr.store
            e = st.entries.get(id(owner))
            if e is None:
                if vhi is None or not bool((vhi >= 0).any()):
                    continue
                st._track(owner)
                e = st.entries[id(owner)] = Entry(owner.nbytes() // size, size)
            first = off // e.itemsize
            last = (off + size - 1) // e.itemsize
            e.grow(int(last.max()) + 1 if last.size else 0)
            e.writable()
            whole = size >= e.itemsize
            for k in range(int((last - first).max()) + 1 if last.size else 0):
                j = np.minimum(first + k, last)
                if whole:
                    e.lo[j] = E_LO
                    e.hi[j] = E_HI
                    if e.sid is not None:
                        e.sid[j] = NO_SID
                if vlo is not None:
                    np.minimum.at(e.lo, j, vlo)
                    np.maximum.at(e.hi, j, vhi)
            if vlo is not None:
                rec = self.writes.setdefault(id(owner), (owner, [], [], owner.nbytes() // e.itemsize))
                rec[1].append(vlo)
                rec[2].append(vhi)
            if ptr_p is not None:
                lo_, hi_ = _hull_pair(ptr_p)
                if hi_ >= 0:
                    old = self.index_writes.get(id(owner))
                    n = owner.nbytes() // e.itemsize
                    self.index_writes[id(owner)] = (owner, n, lo_ if old is None else min(old[2], lo_),
                                                    hi_ if old is None else max(old[3], hi_))

    # -- after the launch --------------------------------------------------------------------------------
    def finish(self) -> None:
        tr = self.tr
        op = f"triton:{self.name}"
        for owner, los, his, n in self.writes.values():
            tr.check_update(owner, Prov(np.concatenate(los), np.concatenate(his), None), op, n, "table")
        for owner, n, lo, hi in self.index_writes.values():
            tr.widen_indexed_table(owner, n, Prov(np.array([lo], np.int32), np.array([hi], np.int32), None), "table")


# -- shadow values --------------------------------------------------------------------------------------
def _get(h: Any) -> Pair | None:
    attr = getattr(h, "attr", None)
    return attr.get(_P) if isinstance(attr, dict) else None


def _set(h: Any, p: Pair | None) -> None:
    attr = getattr(h, "attr", None)
    if not isinstance(attr, dict):
        return
    if p is None or not bool((np.asarray(p[1]) >= 0).any()):
        attr.pop(_P, None)
        return
    shape = np.shape(h.data)
    lo, hi = p
    if lo.shape != shape:
        try:
            lo, hi = np.broadcast_to(lo, shape), np.broadcast_to(hi, shape)
        except ValueError:
            if lo.size == int(np.prod(shape)):
                lo, hi = lo.reshape(shape), hi.reshape(shape)
            else:
                a, b = _hull_pair((lo, hi))
                lo, hi = np.full(shape, a, np.int32), np.full(shape, b, np.int32)
    attr[_P] = (lo, hi)


def _hull_pair(p: Pair | None) -> tuple[int, int]:
    if p is None:
        return int(E_LO), int(E_HI)
    return hull(Prov(np.asarray(p[0]), np.asarray(p[1]), None))


def _union(ps: list[Pair | None], shape: tuple[int, ...]) -> Pair | None:
    ps = [p for p in ps if p is not None]
    if not ps:
        return None
    try:
        lo = np.array(np.broadcast_to(ps[0][0], shape), np.int32)
        hi = np.array(np.broadcast_to(ps[0][1], shape), np.int32)
        for p in ps[1:]:
            np.minimum(lo, np.broadcast_to(p[0], shape), out=lo)
            np.maximum(hi, np.broadcast_to(p[1], shape), out=hi)
        return lo, hi
    except ValueError:
        a = min(_hull_pair(p)[0] for p in ps)
        b = max(_hull_pair(p)[1] for p in ps)
        return np.full(shape, a, np.int32), np.full(shape, b, np.int32)


def _handles(x: Any) -> list[Any]:
    if hasattr(x, "data") and hasattr(x, "attr") and isinstance(getattr(x, "data"), np.ndarray):
        return [x]
    if isinstance(x, (list, tuple)):
        return [h for v in x for h in _handles(v)]
    return []


def _outs(r: Any) -> list[Any]:
    return _handles(r)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a shadow rule; any failure marks the launch failed (it then widens) instead of raising."""
    def run(*a: Any, **k: Any) -> None:
        L = _CUR
        if L is None:
            return
        try:
            fn(L, *a, **k)
        except Exception as e:  # noqa: BLE001
            L.failed = L.failed or f"{fn.__name__}: {type(e).__name__}: {e}"
    return run


# -- rules ------------------------------------------------------------------------------------------------
@_guard
def _r_generic(L: _Launch, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], ret: Any) -> None:
    ins = [_get(h) for h in _handles(list(args) + list(kwargs.values()))]
    ins = [p for p in ins if p is not None]
    for h in _outs(ret):
        prior = _get(h)  # an inner builder call already attached a finer provenance
        if not ins:
            continue
        _set(h, _union(ins + [prior], np.shape(h.data)))
    if name.startswith("create_atomic") or name in ("create_descriptor_gather", "create_descriptor_scatter"):
        L.unsupported = L.unsupported or name


@_guard
def _r_masked_load(L: _Launch, args: tuple[Any, ...], kwargs: dict[str, Any], ret: Any) -> None:
    b = _bind(("ptrs", "mask", "other", "cache_policy", "is_volatile"), args, kwargs)
    ptrs, mask, other = b["ptrs"], b["mask"], b.get("other")
    shape = np.shape(ret.data)
    sel = np.broadcast_to(np.asarray(mask.data, bool), shape)
    mem = L.read(np.broadcast_to(ptrs.data, shape).astype(np.uint64), sel, ret.data.dtype.itemsize)
    lo_hi = _union([mem, _get(ptrs)], shape)
    if other is not None and _get(other) is not None:
        op = _union([_get(other)], shape)
        lo_hi = op if lo_hi is None else (np.where(sel, lo_hi[0], op[0]).astype(np.int32),
                                           np.where(sel, lo_hi[1], op[1]).astype(np.int32))
    _set(ret, _union([lo_hi, _get(mask)], shape))
    L.last_load = ret


@_guard
def _r_descriptor_load(L: _Launch, args: tuple[Any, ...], kwargs: dict[str, Any], ret: Any) -> None:
    """A descriptor load is a masked load (its inner call); a tf32 rounding after it makes a new handle."""
    last = L.last_load
    if last is not None and last is not ret and _get(ret) is None and _get(last) is not None \
            and np.shape(last.data) == np.shape(ret.data):
        _set(ret, _get(last))


@_guard
def _r_masked_store(L: _Launch, args: tuple[Any, ...], kwargs: dict[str, Any], ret: Any) -> None:
    b = _bind(("ptrs", "value", "mask", "cache_policy"), args, kwargs)
    ptrs, value, mask = b["ptrs"], b["value"], b["mask"]
    shape = np.broadcast_shapes(np.shape(ptrs.data), np.shape(mask.data))
    addrs = np.broadcast_to(ptrs.data, shape).astype(np.uint64)
    sel = np.broadcast_to(np.asarray(mask.data, bool), shape)
    ctl = None
    if L.ctl[1] >= 0:
        ctl = (np.full((1,), L.ctl[0], np.int32), np.full((1,), L.ctl[1], np.int32))
    p = _union([_get(value), _get(ptrs), _get(mask), ctl], shape)
    L.write(addrs, sel, np.asarray(value.data).dtype.itemsize, p, _get(ptrs))


@_guard
def _r_select(L: _Launch, args: tuple[Any, ...], kwargs: dict[str, Any], ret: Any) -> None:
    cond, a, b = (list(args) + [kwargs.get(k) for k in ("cond", "lhs", "rhs")])[:3]
    shape = np.shape(ret.data)
    pa, pb = _get(a), _get(b)
    sel = None
    if pa is not None or pb is not None:
        c = np.broadcast_to(np.asarray(cond.data, bool), shape)
        alo, ahi = (np.broadcast_to(pa[0], shape), np.broadcast_to(pa[1], shape)) if pa is not None else (E_LO, E_HI)
        blo, bhi = (np.broadcast_to(pb[0], shape), np.broadcast_to(pb[1], shape)) if pb is not None else (E_LO, E_HI)
        sel = (np.where(c, alo, blo).astype(np.int32), np.where(c, ahi, bhi).astype(np.int32))
    _set(ret, _union([sel, _get(cond)], shape))


@_guard
def _r_dot(L: _Launch, args: tuple[Any, ...], kwargs: dict[str, Any], ret: Any) -> None:
    a, b, d = (list(args) + [kwargs.get(k) for k in ("a", "b", "d")])[:3]
    shape = np.shape(ret.data)
    pa, pb = _get(a), _get(b)
    parts: list[Pair | None] = [_get(d)]
    if pa is not None:
        bv = np.asarray(b.data)
        keep_b = (bv != 0) if bv.dtype.kind in "fiub" else None
        parts.append(part_from_a(np.asarray(pa[0]), np.asarray(pa[1]), keep_b))
    if pb is not None:
        av = np.asarray(a.data)
        keep_a = (av != 0) if av.dtype.kind in "fiub" else None
        parts.append(part_from_b(np.asarray(pb[0]), np.asarray(pb[1]), keep_a))
    _set(ret, _union(parts, shape))


def _shape_rule(f: Callable[..., Any]) -> Callable[..., Any]:
    @_guard
    def rule(L: _Launch, args: tuple[Any, ...], kwargs: dict[str, Any], ret: Any) -> None:
        p = _get(args[0]) if args else None
        if p is None:
            return
        outs = f(p, args, kwargs)
        for h, q in zip(_outs(ret), outs):
            _set(h, q)
    rule.__name__ = f.__name__
    return rule


@_shape_rule
def _r_reshape(p: Pair, args: tuple[Any, ...], kw: dict[str, Any]) -> list[Pair]:
    shape = np.shape(np.asarray(args[0].data).reshape(args[1] if len(args) > 1 else kw["shape"]))
    return [(np.reshape(p[0], shape), np.reshape(p[1], shape))]


@_shape_rule
def _r_trans(p: Pair, args: tuple[Any, ...], kw: dict[str, Any]) -> list[Pair]:
    perm = args[1] if len(args) > 1 else kw["perm"]
    return [(np.transpose(p[0], perm), np.transpose(p[1], perm))]


@_shape_rule
def _r_expand(p: Pair, args: tuple[Any, ...], kw: dict[str, Any]) -> list[Pair]:
    axis = args[1] if len(args) > 1 else kw["axis"]
    return [(np.expand_dims(p[0], axis), np.expand_dims(p[1], axis))]


@_shape_rule
def _r_split(p: Pair, args: tuple[Any, ...], kw: dict[str, Any]) -> list[Pair]:
    return [(p[0][..., 0], p[1][..., 0]), (p[0][..., 1], p[1][..., 1])]


@_guard
def _r_join(L: _Launch, args: tuple[Any, ...], kwargs: dict[str, Any], ret: Any) -> None:
    a, b = args[:2]
    pa, pb = _get(a), _get(b)
    if pa is None and pb is None:
        return
    sa, sb = np.shape(a.data), np.shape(b.data)
    pa = pa or (np.full(sa, E_LO, np.int32), np.full(sa, E_HI, np.int32))
    pb = pb or (np.full(sb, E_LO, np.int32), np.full(sb, E_HI, np.int32))
    ja = np.broadcast_to(pa[0], sa), np.broadcast_to(pa[1], sa)
    jb = np.broadcast_to(pb[0], sb), np.broadcast_to(pb[1], sb)
    _set(ret, (np.stack([ja[0], jb[0]], -1), np.stack([ja[1], jb[1]], -1)))


@_guard
def _r_cat(L: _Launch, args: tuple[Any, ...], kwargs: dict[str, Any], ret: Any) -> None:
    a, b = args[:2]
    pa, pb = _get(a), _get(b)
    if pa is None and pb is None:
        return
    sa, sb = np.shape(a.data), np.shape(b.data)
    pa = pa or (np.full(sa, E_LO, np.int32), np.full(sa, E_HI, np.int32))
    pb = pb or (np.full(sb, E_LO, np.int32), np.full(sb, E_HI, np.int32))
    _set(ret, (np.concatenate([np.broadcast_to(pa[0], sa), np.broadcast_to(pb[0], sb)]),
               np.concatenate([np.broadcast_to(pa[1], sa), np.broadcast_to(pb[1], sb)])))


@_guard
def _r_gather(L: _Launch, args: tuple[Any, ...], kwargs: dict[str, Any], ret: Any) -> None:
    src, idx, axis = args[:3]
    ps, pi = _get(src), _get(idx)
    shape = np.shape(ret.data)
    parts: list[Pair | None] = [pi]
    if ps is not None:
        s = np.shape(src.data)
        lo, hi = np.broadcast_to(ps[0], s), np.broadcast_to(ps[1], s)
        parts.append((np.take_along_axis(lo, idx.data.astype(np.int64), axis=axis),
                      np.take_along_axis(hi, idx.data.astype(np.int64), axis=axis)))
    _set(ret, _union(parts, shape))


_PASS = {"create_load", "create_store", "create_descriptor_store"}  # delegate to the masked forms
_RULES: dict[str, Callable[..., Any]] = {
    "create_masked_load": _r_masked_load,
    "create_masked_store": _r_masked_store,
    "create_descriptor_load": _r_descriptor_load,
    "create_select": _r_select,
    "create_dot": _r_dot,
    "create_reshape": _r_reshape,
    "create_trans": _r_trans,
    "create_expand_dims": _r_expand,
    "create_split": _r_split,
    "create_join": _r_join,
    "create_cat": _r_cat,
    "create_gather": _r_gather,
}


def _bind(names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    b = dict(zip(names, args))
    b.update(kwargs)
    return b


def _wrap_method(cls: Any, name: str, orig: Callable[..., Any]) -> None:
    rule = _RULES.get(name)

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        ret = orig(self, *args, **kwargs)
        if _CUR is None or name in _PASS:
            return ret
        if name == "set_grid_idx":
            _CUR.ctl = (int(E_LO), int(E_HI))
        elif rule is not None:
            rule(args, kwargs, ret)
        else:
            _r_generic(name, args, kwargs, ret)
        return ret

    method._harness_orig = orig  # type: ignore[attr-defined]
    setattr(cls, name, method)


def _note_ctl(h: Any) -> None:
    """A Python branch / loop bound / index took a value: later stores of this program depend on it."""
    L = _CUR
    p = _get(h)
    if L is None or p is None:
        return
    lo, hi = _hull_pair(p)
    L.ctl = (min(L.ctl[0], lo), max(L.ctl[1], hi))


def _install(interp: Any) -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    B = interp.InterpreterBuilder
    for name in dir(B):
        if (name.startswith("create_") or name == "set_grid_idx") and callable(getattr(B, name)):
            _wrap_method(B, name, getattr(B, name))

    def clone(self: Any, _orig: Any = interp.TensorHandle.clone) -> Any:
        out = _orig(self)
        if _CUR is not None and _get(self) is not None:
            _set(out, _get(self))
        return out

    interp.TensorHandle.clone = clone

    for cls_name, rule in (("ReduceOps", _reduce_rule), ("ScanOps", _scan_rule)):
        cls = getattr(interp, cls_name)
        orig_apply = cls.apply

        def apply(self: Any, input: Any, _orig: Any = orig_apply, _rule: Any = rule) -> Any:
            ret = _orig(self, input)
            if _CUR is not None:
                _rule(self, input, ret)
            return ret

        cls.apply = apply

    orig_plt = interp._patch_lang_tensor

    def patch_lang_tensor(tensor: Any, scope: Any, _orig: Any = orig_plt) -> None:
        _orig(tensor, scope)
        idx, boolean, T = tensor.__index__, tensor.__bool__, tensor.T

        def index(self: Any) -> int:
            _note_ctl(self.handle)
            return idx(self)

        def to_bool(self: Any) -> bool:
            _note_ctl(self.handle)
            return boolean(self)

        def transpose(self: Any) -> Any:
            out = T.fget(self)
            if _CUR is not None and _get(self.handle) is not None:
                p = _get(self.handle)
                shape = np.shape(self.handle.data)
                _set(out.handle, (np.transpose(np.broadcast_to(p[0], shape)), np.transpose(np.broadcast_to(p[1], shape))))
            return out

        scope.set_attr(tensor, "__index__", index)
        scope.set_attr(tensor, "__bool__", to_bool)
        scope.set_attr(tensor, "T", property(transpose))

    interp._patch_lang_tensor = patch_lang_tensor
    _INSTALLED = True


def _tl_handles(x: Any) -> list[Any]:
    if isinstance(x, (list, tuple)):
        return [h for v in x for h in _tl_handles(v)]
    h = getattr(x, "handle", None)
    return [h] if h is not None and hasattr(h, "attr") else []


@_guard
def _reduce_rule(L: _Launch, op: Any, input: Any, ret: Any) -> None:
    ins = _tl_handles(input)
    ps = [_get(h) for h in ins]
    if all(p is None for p in ps):
        return
    shape = np.shape(ins[0].data)
    p = _union(ps, shape)
    if op.axis is None:
        a, b = _hull_pair(p)
        red = (np.array([a], np.int32), np.array([b], np.int32))
    else:
        red = (p[0].min(axis=op.axis, keepdims=bool(op.keep_dims)), p[1].max(axis=op.axis, keepdims=bool(op.keep_dims)))
    for h in _tl_handles(ret):
        _set(h, red)


@_guard
def _scan_rule(L: _Launch, op: Any, input: Any, ret: Any) -> None:
    ins = _tl_handles(input)
    ps = [_get(h) for h in ins]
    if all(p is None for p in ps):
        return
    shape = np.shape(ins[0].data)
    lo, hi = _union(ps, shape)
    ax = op.axis
    if getattr(op, "reverse", False):
        lo, hi = np.flip(lo, ax), np.flip(hi, ax)
    lo, hi = np.minimum.accumulate(lo, axis=ax), np.maximum.accumulate(hi, axis=ax)
    if getattr(op, "reverse", False):
        lo, hi = np.flip(lo, ax), np.flip(hi, ax)
    for h in _tl_handles(ret):
        _set(h, (np.ascontiguousarray(lo), np.ascontiguousarray(hi)))


# -- entry point ---------------------------------------------------------------------------------------------
def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    base = getattr(x, "base", None)  # triton's TensorWrapper / TensorDescriptor
    if isinstance(base, torch.Tensor):
        return [base]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _tensors(v)]
    return []


def run_traced(tr: Tracer, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
               launch: Callable[[], Any]) -> tuple[Any, str | None]:
    """Run one kernel launch, following provenance through it.

    Returns (the launch's result, None) when provenance was handled (exactly, or by widening), or
    (result, why) when even the widening failed: the caller then marks the trace incomplete.
    """
    global _CUR
    tensors = _tensors(list(args) + list(kwargs.values()))
    if not any(tr.traced_tensor(t) for t in tensors):
        return launch(), None  # nothing traced in or out: untraced results, stale provenance only widens
    try:
        from triton.runtime import interpreter as interp  # type: ignore[import-not-found]

        _install(interp)
        L = _Launch(tr, name, tensors)
    except Exception as e:  # noqa: BLE001
        L = None
        setup_err = f"{type(e).__name__}: {e}"
    if L is None:
        out = launch()
        return out, _widen(tr, name, tensors, f"shadow setup failed ({setup_err})")
    prev = _CUR
    _CUR = L
    try:
        with tr.lock:
            out = launch()
    finally:
        _CUR = prev
    why = L.failed or (f"unsupported: {L.unsupported}" if L.unsupported else None)
    if why is None:
        try:
            L.finish()
            tr.coarse["kernel:exact"] += 1
            return out, None
        except Exception as e:  # noqa: BLE001
            why = f"finish: {type(e).__name__}: {e}"
    return out, _widen(tr, name, tensors, why)


def _widen(tr: Tracer, name: str, tensors: list[torch.Tensor], why: str) -> str | None:
    """Every tensor argument gets its own provenance united with everything the launch could read."""
    tr.coarse[f"kernel:widened:{name}"] += 1
    try:
        ps = [tr.tprov(t) for t in tensors]
        lo = min((hull(p)[0] for p in ps if p is not None), default=int(E_LO))
        hi = max((hull(p)[1] for p in ps if p is not None), default=int(E_HI))
        if hi < 0:
            return None
        for t in tensors:
            owner = tr.store.tensor_owner(t)
            if owner is None or owner.nbytes() == 0:
                continue
            e = tr.store.entries.get(id(owner))
            if e is None:
                tr.store._track(owner)
                e = tr.store.entries[id(owner)] = Entry(owner.nbytes() // t.element_size(), t.element_size())
            e.writable()
            np.minimum(e.lo, lo, out=e.lo)
            np.maximum(e.hi, hi, out=e.hi)
            n = e.lo.size
            tr.check_update(owner, Prov(np.array([lo], np.int32), np.array([hi], np.int32), None),
                            f"triton:{name}", n, "table")
        return None
    except Exception as e:  # noqa: BLE001
        return f"{why}; widening failed: {type(e).__name__}: {e}"
