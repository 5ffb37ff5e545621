"""The traced ndarray subclass (``TracedArray``) and what it stands on: the active tracer, reading
and writing an array's provenance in the shared store, the guard that widens when an op handler
fails, escapes to Python values, and ``as_traced`` / ``traced_type`` (traced twins of subclasses).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from harness.runtime.tracer.ops.common import fit, hull_prov, place
from harness.runtime.tracer.provenance import E_HI, E_LO, Prov, Store, broadcast, filled


_TRACER: Any = None  # the active Tracer (set by patching.install_patches)


def active() -> Any:
    tr = _TRACER
    if tr is None or getattr(tr.tls, "busy", False):
        return None
    return tr


def _raw(x: Any) -> Any:
    if isinstance(x, TracedArray):
        return x.view(np.ndarray)
    return x


def _raw_key(key: Any) -> Any:
    if isinstance(key, tuple):
        return tuple(_raw(k) for k in key)
    if isinstance(key, list) and any(isinstance(k, TracedArray) for k in key):
        return [_raw(k) for k in key]
    return _raw(key)


def _root(a: np.ndarray) -> Any:
    return Store.array_root(a)[0]


def _is_view_of(res: np.ndarray, src: np.ndarray) -> bool:
    try:
        return _root(res) is _root(src)
    except Exception:  # noqa: BLE001
        return False


def _set(tr: Any, a: np.ndarray, p: Prov | None) -> None:
    """Give a freshly created array (its own root) explicit provenance."""
    if isinstance(a, TracedArray):
        a.__dict__.pop("_tr_src", None)
    if p is None:
        return
    tr.store.write(tr.store.locate_array(a), p)


def _wrap(tr: Any, r: Any, p: Prov | None) -> Any:
    """A result as the traced subclass carrying ``p`` (scalars become 0-d arrays when traced)."""
    if isinstance(r, np.ndarray):
        a = r if isinstance(r, TracedArray) else r.view(TracedArray)
        _set(tr, a, None if p is None else fit(p, a.shape))
        return a
    if isinstance(r, (np.generic, int, float, bool)) and p is not None and (p.traced() or p.has_sid()):
        a = np.asarray(r).view(TracedArray)
        _set(tr, a, fit(p, ()))
        return a
    return r


def _materialize(tr: Any, a: np.ndarray) -> None:
    """Before writing into an array derived by an unruled method: pin its coarse provenance
    (the union of its source) on its whole memory block, so a partial write keeps the rest."""
    if getattr(a, "_tr_src", None) is None:
        return
    p = tr.aprov(a)
    a.__dict__.pop("_tr_src", None)
    if p is None:
        return
    loc = tr.store.locate_array(a)
    if loc is None or loc.key in tr.store.entries:
        return
    root = loc.owner if isinstance(loc.owner, np.ndarray) else a
    lo, hi = int(np.min(p.lo)), int(np.max(p.hi))
    tr.store.write(tr.store.locate_array(root),
                   Prov(filled(root.shape, lo, np.int32), filled(root.shape, hi, np.int32), None))


def raw_result(tr: Any, ins: list[np.ndarray], res: Any) -> bool:
    """``res`` is an integer copy of raw blocks' values (Store.raw): every traced input is raw, and the
    result's integer type holds every token id."""
    raw = tr.store.raw
    if not raw or not isinstance(res, np.ndarray) or res.dtype.kind not in "iu":
        return False
    if res.itemsize < 2 or (res.dtype == np.int16 and not (tr.vocab and tr.vocab <= 32768)):
        return False
    n = 0
    for a in ins:
        loc = tr.store.locate_array(a) if isinstance(a, np.ndarray) else None
        if loc is None or loc.key not in tr.store.entries:
            continue
        if loc.key not in raw:
            return False
        n += 1
    return n > 0


def _wrap_copy(tr: Any, ins: list[np.ndarray], res: Any, p: Prov | None) -> Any:
    """_wrap for a copy of ``ins``' values: the result stays raw when they were (raw_result)."""
    tr.store.raw_write = raw_result(tr, ins, res)
    try:
        return _wrap(tr, res, p)
    finally:
        tr.store.raw_write = False


def _check_update(tr: Any, a: np.ndarray, p: Prov | None, op: str) -> None:
    if p is None:
        return
    loc = tr.store.locate_array(a)
    if loc is None:
        return
    tr.check_update(loc.owner, p, op, loc.n_owner, "array")


def _write(tr: Any, dest: np.ndarray, p: Prov | None, op: str) -> None:
    _materialize(tr, dest)
    loc = tr.store.locate_array(dest)
    tr.store.write(loc, None if p is None else fit(p, dest.shape))
    _check_update(tr, dest, p, op)


# failures of an op handler must not break the script: widen instead (tests set tr.strict to see them)

class _Widen(Exception):
    """Raised by an op handler that cannot be exact here: the guard then widens (also in strict mode)."""


class _HandlerGuard:
    """``with _HandlerGuard(...) as g: return <handler>`` then ``return g.fallback(res)`` after the block."""

    def __init__(self, tr: Any, label: str, inputs: Any = (), dest: np.ndarray | None = None) -> None:
        self.tr, self.label, self.inputs, self.dest = tr, label, inputs, dest

    def __enter__(self) -> "_HandlerGuard":
        self.tr.lock.acquire()
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> bool:
        self.tr.lock.release()
        if et is not None and issubclass(et, _Widen):
            self.tr.coarse["widened:" + self.label] += 1
            return True
        if et is None or self.tr.strict or not issubclass(et, Exception):
            return False
        self.tr.coarse["rule_error:" + self.label] += 1
        return True

    def fallback(self, res: Any) -> Any:
        """Every result (and the written destination) gets the union of every traced input."""
        tr = self.tr
        with tr.lock:
            try:
                items = _H.flat_arrays(self.inputs) + [x for x in _flat_tensors(self.inputs)]
                ps = [p for p in (tr.prov(x) for x in items) if p is not None]
                if self.dest is not None and ps:
                    _write(tr, self.dest, hull_prov(tr, ps + [tr.aprov(self.dest)], self.dest.shape, self.label),
                           self.label)
                if ps:
                    return _widen(tr, res, ps, self.label)
            except Exception:  # noqa: BLE001
                tr.coarse["untraced_output:" + self.label] += 1
        return res


def _flat_tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for y in x for t in _flat_tensors(y)]
    if isinstance(x, dict):
        return _flat_tensors(list(x.values()))
    return []


def _widen(tr: Any, r: Any, ps: list[Prov], label: str) -> Any:
    if isinstance(r, np.ndarray) or (isinstance(r, (np.generic, float, int)) and not isinstance(r, bool)):
        return _wrap(tr, r, hull_prov(tr, ps, tuple(np.shape(r)), label))
    if isinstance(r, (list, tuple)):
        return type(r)(_widen(tr, x, ps, label) for x in r)
    return r


class TracedArray(np.ndarray):
    """An ndarray whose operations carry provenance (see the module docstring)."""

    __array_priority__ = 30.0

    def __array_finalize__(self, obj: Any) -> None:
        if obj is None or not isinstance(obj, TracedArray) or _TRACER is None:
            return
        try:
            same = _root(self) is _root(obj)
        except Exception:  # noqa: BLE001
            return
        src = obj.__dict__.get("_tr_src")
        if same:
            if src is not None:
                self._tr_src = src
        else:
            self._tr_src = obj

    # -- ufuncs / functions ------------------------------------------------------------------------
    def __array_ufunc__(self, uf: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        raw_in = tuple(_raw(x) for x in inputs)
        outs = kwargs.get("out")
        if outs is not None:
            kwargs["out"] = tuple(_raw(o) for o in outs)
        if isinstance(kwargs.get("where"), np.ndarray):
            kwargs["where"] = _raw(kwargs["where"])
        if method == "at" and len(raw_in) > 1:
            raw_in = (raw_in[0], _raw_key(inputs[1])) + raw_in[2:]
        res = getattr(uf, method)(*raw_in, **kwargs)
        tr = active()
        if tr is None:
            if outs is not None and method != "at":
                return outs if uf.nout > 1 else outs[0]
            return res
        with _HandlerGuard(tr, "np." + uf.__name__ + "." + method, inputs) as g:
            return _H.ufunc(tr, uf, method, inputs, kwargs, res, outs)
        if method == "at":
            g.dest = inputs[0] if isinstance(inputs[0], np.ndarray) else None
            g.fallback(None)
            return None
        if outs is not None:
            for o in outs:
                if isinstance(o, np.ndarray):
                    g.dest = o
                    g.fallback(None)
            return outs if uf.nout > 1 else outs[0]
        return g.fallback(res)

    def __array_function__(self, func: Any, types: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        res = super().__array_function__(func, types, args, kwargs)
        tr = active()
        if tr is None or func.__name__ in _H.meta:
            return res
        with _HandlerGuard(tr, "np." + func.__name__, (args, kwargs)) as g:
            return _H.array_function(tr, func, args, kwargs, res)
        return g.fallback(res)

    # -- indexing ------------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        rkey = _raw_key(key)
        res = super().__getitem__(rkey)
        tr = active()
        if tr is None:
            return res
        with _HandlerGuard(tr, "np.getitem", (self, key)) as g:
            if isinstance(res, np.ndarray):
                if _is_view_of(res, self):
                    return res
                p = tr.aprov(self)
                shape = tuple(res.shape)
                parts: list[Prov | None] = []
                if p is not None:
                    parts.append(Prov(np.asarray(p.lo)[rkey], np.asarray(p.hi)[rkey],
                                      None if p.sid is None else np.asarray(p.sid)[rkey]))
                iparts, target, _ = _H.index_parts(tr, self, rkey, key, shape)
                newp = tr.union(parts + iparts, shape, "np.getitem")
                return _wrap(tr, res, newp)
            p = tr.aprov(self)
            if p is not None:
                try:
                    ep = Prov(np.asarray(np.asarray(p.lo)[rkey]), np.asarray(np.asarray(p.hi)[rkey]),
                              None if p.sid is None else np.asarray(np.asarray(p.sid)[rkey]))
                except (IndexError, TypeError):
                    ep = p
                tr.escape(ep, "getitem", value=_scalar_json(res))
            return res
        return g.fallback(res) if isinstance(res, np.ndarray) else res

    def __setitem__(self, key: Any, value: Any) -> None:
        rkey = _raw_key(key)
        super().__setitem__(rkey, _raw(value))
        tr = active()
        if tr is None:
            return
        with _HandlerGuard(tr, "np.setitem", (key, value), dest=self) as g:
            self._setitem_indexed(tr, key, rkey, value)
            return
        g.fallback(None)

    def _setitem_indexed(self, tr: Any, key: Any, rkey: Any, value: Any) -> None:
        vp = tr.aprov(value) if isinstance(value, np.ndarray) else None
        if vp is None and isinstance(value, torch.Tensor):
            vp = tr.tprov(value)
        keys = rkey if isinstance(rkey, tuple) else (rkey,)
        if not any(isinstance(k, (np.ndarray, list)) for k in keys):
            vkey = rkey if any(k is Ellipsis for k in keys) else keys + (Ellipsis,)
            view = np.ndarray.__getitem__(self, vkey)
            _write(tr, view, None if vp is None else broadcast(vp, view.shape), "np.setitem")
            return
        loc = tr.store.locate_array(self)
        if loc is None or loc.itemsize != self.itemsize:
            raise _Widen("a table misaligned with its memory block")
        _materialize(tr, self)
        sel = np.asarray(tr.store.offsets(loc)[rkey])
        shape = tuple(sel.shape)
        iparts, target, _ = _H.index_parts(tr, self, rkey, key, shape)
        new = tr.union([None if vp is None else broadcast(vp, shape)] + iparts
                       + ([target] if target is not None else []), shape, "np.setitem")
        if new is None:
            if loc.key in tr.store.entries:
                tr.store.write_elements(loc.owner, loc.n_owner, loc.itemsize, sel,
                                        Prov(filled(shape, E_LO, np.int32), filled(shape, E_HI, np.int32), None),
                                        accumulate=False)
            return
        tr.store.write_elements(loc.owner, loc.n_owner, loc.itemsize, sel, new, accumulate=False)
        tr.check_update(loc.owner, new, "np.setitem", loc.n_owner, "array")
        if iparts:
            tr.widen_indexed_table(loc.owner, loc.n_owner, tr.union(iparts, shape, "np.setitem index"), "array")

    # -- copying methods -----------------------------------------------------------------------------
    def _same_layout(self, res: Any, how: Callable[[np.ndarray], np.ndarray] | None = None) -> Any:
        tr = active()
        if tr is None or not isinstance(res, np.ndarray):
            return res
        with _HandlerGuard(tr, "np.copy-method", (self,)) as g:
            if _is_view_of(res, self):
                return res
            p = tr.aprov(self)
            if p is None:
                return _wrap(tr, res, None)
            if how is None:
                newp = fit(p, res.shape)
            else:
                newp = Prov(how(np.asarray(p.lo)), how(np.asarray(p.hi)), None if p.sid is None else how(np.asarray(p.sid)))
            return _wrap_copy(tr, [self], res, newp)
        return g.fallback(res)

    def astype(self, *a: Any, **k: Any) -> Any:
        return self._same_layout(super().astype(*a, **k))

    def copy(self, *a: Any, **k: Any) -> Any:
        return self._same_layout(super().copy(*a, **k), lambda x: x.copy(*a, **k))

    def flatten(self, *a: Any, **k: Any) -> Any:
        return self._same_layout(super().flatten(*a, **k), lambda x: x.flatten(*a, **k))

    def ravel(self, *a: Any, **k: Any) -> Any:
        return self._same_layout(super().ravel(*a, **k), lambda x: x.ravel(*a, **k))

    def reshape(self, *a: Any, **k: Any) -> Any:
        return self._same_layout(super().reshape(*a, **k), lambda x: x.reshape(*a, **k))

    def squeeze(self, *a: Any, **k: Any) -> Any:
        return self._same_layout(super().squeeze(*a, **k), lambda x: x.squeeze(*a, **k))

    def transpose(self, *a: Any) -> Any:
        return self._same_layout(super().transpose(*a), lambda x: x.transpose(*a))

    def repeat(self, repeats: Any, axis: Any = None) -> Any:
        res = super().repeat(_raw(repeats), axis)
        tr = active()
        if tr is None:
            return res
        with _HandlerGuard(tr, "np.repeat", (self, repeats)) as g:
            p = tr.aprov(self)
            rp = tr.aprov(repeats) if isinstance(repeats, np.ndarray) else None
            newp = None
            if p is not None:
                rr = _raw(repeats)
                newp = Prov(np.asarray(p.lo).repeat(rr, axis), np.asarray(p.hi).repeat(rr, axis),
                            None if p.sid is None else np.asarray(p.sid).repeat(rr, axis))
            if rp is not None:
                newp = tr.union([newp, hull_prov(tr, [rp], res.shape, "np.repeat")], res.shape, "np.repeat")
            return _wrap(tr, res, newp)
        return g.fallback(res)

    def take(self, indices: Any, axis: Any = None, out: Any = None, mode: str = "raise") -> Any:
        ri = _raw(indices)
        res = super().take(ri, axis=axis, mode=mode)
        tr = active()
        if tr is None:
            return res
        r = None
        with _HandlerGuard(tr, "np.take", (self, indices)) as g:
            shape = tuple(np.shape(res))
            p = tr.aprov(self)
            parts: list[Prov | None] = []
            if p is not None:
                parts.append(Prov(np.asarray(p.lo).take(ri, axis=axis, mode=mode),
                                  np.asarray(p.hi).take(ri, axis=axis, mode=mode),
                                  None if p.sid is None else np.asarray(p.sid).take(ri, axis=axis, mode=mode)))
            ip = tr.aprov(indices) if isinstance(indices, np.ndarray) else None
            if ip is not None:

                start = 0 if axis is None else int(axis) % self.ndim
                parts.append(place(ip, start, tuple(np.shape(ri)), shape))
            r = _wrap(tr, res, tr.union(parts, shape, "np.take"))
        if r is None:
            r = g.fallback(res)
        if out is not None:
            out[...] = r
            return out
        return r

    def dot(self, b: Any, out: Any = None) -> Any:
        return np.dot(self, b) if out is None else np.dot(self, b, out)

    def _along(self, res: Any, axis: Any, op: str) -> Any:
        tr = active()
        if tr is None:
            return res
        with _HandlerGuard(tr, op, (self,)) as g:
            p = tr.aprov(self)
            if p is None:
                return _wrap(tr, res, None) if isinstance(res, np.ndarray) else res
            shape = tuple(np.shape(res))
            if axis is None:
                newp = hull_prov(tr, [p], shape, op)
            else:
                ax = int(axis) % self.ndim
                row = Prov(np.asarray(p.lo).min(axis=ax, keepdims=True), np.asarray(p.hi).max(axis=ax, keepdims=True), None)
                newp = fit(row, shape) if np.ndim(res) < self.ndim else broadcast(row, shape)
            return _wrap(tr, res, newp)
        return g.fallback(res)

    def argsort(self, axis: Any = -1, *a: Any, **k: Any) -> Any:
        return self._along(super().argsort(axis, *a, **k), axis, "np.argsort")

    def argmax(self, axis: Any = None, *a: Any, **k: Any) -> Any:
        return self._along(super().argmax(axis, *a, **k), axis, "np.argmax")

    def argmin(self, axis: Any = None, *a: Any, **k: Any) -> Any:
        return self._along(super().argmin(axis, *a, **k), axis, "np.argmin")

    def sort(self, axis: Any = -1, *a: Any, **k: Any) -> None:
        super().sort(axis, *a, **k)
        self._permuted_along(axis, "np.sort")

    def partition(self, kth: Any, axis: Any = -1, *a: Any, **k: Any) -> None:
        super().partition(kth, axis, *a, **k)
        self._permuted_along(axis, "np.partition")

    def argpartition(self, kth: Any, axis: Any = -1, *a: Any, **k: Any) -> Any:
        return self._along(super().argpartition(kth, axis, *a, **k), axis, "np.argpartition")

    def _permuted_along(self, axis: Any, op: str) -> None:
        """Values were reordered in place along an axis: each element may now be any of them."""
        tr = active()
        if tr is None:
            return
        with _HandlerGuard(tr, op, (), dest=self) as g:
            p = tr.aprov(self)
            if p is not None:
                if axis is None:
                    _write(tr, self, hull_prov(tr, [p], self.shape, op), op)
                    return
                row = Prov(np.asarray(p.lo).min(axis=axis, keepdims=True), np.asarray(p.hi).max(axis=axis, keepdims=True),
                           None)
                _write(tr, self, broadcast(row, self.shape), op)
            return
        g.inputs = (self,)
        g.fallback(None)

    def searchsorted(self, v: Any, *a: Any, **k: Any) -> Any:
        res = super().searchsorted(_raw(v), *a, **k)
        tr = active()
        if tr is None:
            return res
        with _HandlerGuard(tr, "np.searchsorted", (self, v)) as g:
            shape = tuple(np.shape(res))
            vp = tr.aprov(v) if isinstance(v, np.ndarray) else None
            p = tr.union([None if vp is None else fit(vp, shape), hull_prov(tr, [tr.aprov(self)], shape, "np.searchsorted")],
                         shape, "np.searchsorted")
            return _wrap(tr, res, p)
        return g.fallback(res)

    def nonzero(self) -> Any:
        res = super().nonzero()
        tr = active()
        if tr is None:
            return res
        with _HandlerGuard(tr, "np.nonzero", (self,)) as g:
            p = tr.aprov(self)
            if p is None:
                return res
            return tuple(_wrap(tr, r, hull_prov(tr, [p], r.shape, "np.nonzero")) for r in res)
        return g.fallback(res)

    def fill(self, value: Any) -> None:
        super().fill(value)
        tr = active()
        if tr is not None:
            with _HandlerGuard(tr, "np.fill", ()):
                _write(tr, self, None, "np.fill")

    def put(self, *a: Any, **k: Any) -> None:
        super().put(*(_raw(x) for x in a), **k)
        tr = active()
        if tr is not None:
            with _HandlerGuard(tr, "np.put", a, dest=self) as g:
                _H.coarse_write(tr, np.put, (self,) + a, k, None)
                return
            g.fallback(None)

    # -- escapes -------------------------------------------------------------------------------------
    def _escape(self, op: str, value: Any = None) -> None:
        tr = active()
        if tr is None:
            return
        with _HandlerGuard(tr, "np.escape", ()):
            p = tr.aprov(self)
            if p is not None:
                tr.escape(p, op, value=value, numel=self.size)

    def item(self, *args: Any) -> Any:
        v = super().item(*args)
        tr = active()
        if tr is not None:
            with _HandlerGuard(tr, "np.escape", ()):
                p = tr.aprov(self)
                if p is not None:
                    if args:
                        i = np.ravel_multi_index(args, self.shape) if len(args) > 1 else int(args[0])
                        p = Prov(np.asarray(p.lo).ravel()[i:i + 1], np.asarray(p.hi).ravel()[i:i + 1],
                                 None if p.sid is None else np.asarray(p.sid).ravel()[i:i + 1])
                    tr.escape(p, "item", value=_scalar_json(v), numel=1)
        return v

    def tolist(self) -> Any:
        v = super().tolist()
        self._escape("tolist", _sum_json(self))
        return v

    def __float__(self) -> float:
        v = float(self.view(np.ndarray))  # type: ignore[arg-type]
        self._escape("float", v)
        return v

    def __int__(self) -> int:
        v = int(self.view(np.ndarray))  # type: ignore[arg-type]
        self._escape("int", v)
        return v

    def __index__(self) -> int:
        v = self.view(np.ndarray).__index__()
        self._escape("int", v)
        return v

    def __bool__(self) -> bool:
        v = bool(self.view(np.ndarray))
        self._escape("bool", v)
        return v

    def __format__(self, spec: str) -> str:
        if self.ndim == 0:
            v = self.view(np.ndarray).item()
            self._escape("print", _scalar_json(v))
            return format(v, spec)
        self._escape("print", _sum_json(self))
        return self.view(np.ndarray).__format__(spec)

    def __repr__(self) -> str:
        self._escape("print", _sum_json(self))
        return repr(self.view(np.ndarray))

    def __str__(self) -> str:
        self._escape("print", _sum_json(self))
        return str(self.view(np.ndarray))

    def __iter__(self) -> Any:
        if self.ndim == 1:
            self._escape("iter", _sum_json(self))
            return iter(self.view(np.ndarray))
        return (self[i] for i in range(len(self)))

    def tobytes(self, *a: Any, **k: Any) -> bytes:
        self._escape("tobytes")
        return self.view(np.ndarray).tobytes(*a, **k)


def _scalar_json(v: Any) -> Any:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f if np.isfinite(f) else str(f)


def _sum_json(a: np.ndarray) -> Any:
    try:
        if a.dtype.kind in "biuf":
            return _scalar_json(np.asarray(a.view(np.ndarray), np.float64).sum())
    except Exception:  # noqa: BLE001
        pass
    return None


_SUBCLASSES: dict[type, type] = {}


def traced_type(cls: type) -> type:
    """TracedArray, or a traced twin of another ndarray subclass (np.memmap keeps its hooks)."""
    if cls is np.ndarray or issubclass(cls, TracedArray):
        return TracedArray if cls is np.ndarray else cls
    t = _SUBCLASSES.get(cls)
    if t is None:
        t = _SUBCLASSES[cls] = type("Traced" + cls.__name__, (TracedArray, cls), {})
    return t


def as_traced(a: np.ndarray) -> np.ndarray:
    if isinstance(a, TracedArray):
        return a
    return a.view(traced_type(type(a)))


class _Handlers:
    """The handler modules (functions, indexing, ufuncs) import this one; the package binds their entry
    points here at import (traced_numpy/__init__.py), so this module imports none of them."""

    meta: frozenset[str] | set[str] = frozenset()
    flat_arrays: Callable[..., list[Any]]
    coarse_write: Callable[..., Any]
    array_function: Callable[..., Any]
    index_parts: Callable[..., Any]
    ufunc: Callable[..., Any]


_H = _Handlers()


def bind_handlers(*, meta: Any, flat_arrays: Callable[..., list[Any]], coarse_write: Callable[..., Any],
                  array_function: Callable[..., Any], index_parts: Callable[..., Any], ufunc: Callable[..., Any]) -> None:
    _H.meta, _H.flat_arrays, _H.coarse_write = meta, flat_arrays, coarse_write
    _H.array_function, _H.index_parts, _H.ufunc = array_function, index_parts, ufunc
