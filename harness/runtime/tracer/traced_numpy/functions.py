"""``__array_function__`` handlers: data-movement functions replayed on the provenance channels,
``where`` / ``bincount`` / ``dot`` / ``isin`` / ``copyto``, and the coarse union for the rest.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from harness.runtime.tracer.ops.common import decode_channel, encode_channel, fit, hull_prov, select
from harness.runtime.tracer.provenance import E_HI, E_LO, Prov, broadcast, filled
from harness.runtime.tracer.traced_numpy.array import TracedArray, _is_view_of, _raw, _wrap, _wrap_copy, _write
from harness.runtime.tracer.traced_numpy.ufuncs import _np_matmul


def _channel(tr: Any, x: Any, ch: str) -> Any:
    if isinstance(x, np.ndarray):
        p = tr.aprov(x)
        if p is None or (ch == "sid" and p.sid is None):
            return np.zeros(x.shape, np.int64)
        return encode_channel(getattr(p, ch), ch)
    if isinstance(x, (list, tuple)):
        return type(x)(_channel(tr, t, ch) for t in x)
    if isinstance(x, (int, float, np.generic)) and not isinstance(x, bool):
        return np.zeros((), np.int64)  # a scalar mixed into data: a constant
    return x


def _flat_arrays(x: Any) -> list[np.ndarray]:
    if isinstance(x, np.ndarray):
        return [x]
    if isinstance(x, (list, tuple)):
        out = []
        for t in x:
            out.extend(_flat_arrays(t))
        return out
    return []


# function name -> positions of data arguments (others are kept as they are)
_MOVE: dict[str, tuple[int, ...]] = {
    n: (0,) for n in (
        "concatenate", "stack", "hstack", "vstack", "dstack", "column_stack", "reshape", "ravel", "transpose",
        "moveaxis", "swapaxes", "squeeze", "expand_dims", "flip", "fliplr", "flipud", "roll", "broadcast_to",
        "atleast_1d", "atleast_2d", "atleast_3d", "tile", "copy", "diagonal", "sliding_window_view", "split",
        "array_split", "hsplit", "vsplit", "dsplit", "rot90", "diag", "tril", "triu", "pad", "resize",
        "broadcast_arrays", "block", "diagflat", "require", "ascontiguousarray", "asfortranarray",
    )
}


_MOVE["append"] = (0, 1)


_ZERO_ARGS = {"constant_values"}


def _replay(tr: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], res: Any,
            data: tuple[int, ...]) -> Any:
    ins = [a for i in data if i < len(args) for a in _flat_arrays(args[i])]
    has_sid = any((p := tr.aprov(x)) is not None and p.sid is not None for x in ins)
    chans = ("lo", "hi", "sid") if has_sid else ("lo", "hi")
    out: dict[str, Any] = {}
    for ch in chans:
        a2 = tuple(_channel(tr, a, ch) if i in data else a for i, a in enumerate(args))
        k2 = {k: (0 if k in _ZERO_ARGS else v) for k, v in kwargs.items()}
        out[ch] = func(*a2, **k2)

    def build(r: Any, parts: dict[str, Any]) -> Any:
        if isinstance(r, np.ndarray):
            p = Prov(decode_channel(parts["lo"], "lo"), decode_channel(parts["hi"], "hi"),
                     decode_channel(parts["sid"], "sid") if "sid" in parts else None)
            if isinstance(r, TracedArray) and _is_view_of(r, ins[0]) if ins else False:
                return r
            return _wrap_copy(tr, ins, r, p)
        if isinstance(r, (list, tuple)):
            return type(r)(build(x, {k: v[i] for k, v in parts.items()}) for i, x in enumerate(r))
        return r

    return build(res, out)


def _np_where(tr: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], res: Any) -> Any:
    if len(args) != 3:
        return _post_unknown(tr, "where", args, kwargs, res)

    cond, x, y = args
    shape = tuple(np.shape(res))
    sel = select(np.asarray(_raw(cond), bool), tr.aprov(x) if isinstance(x, np.ndarray) else None,
                  tr.aprov(y) if isinstance(y, np.ndarray) else None, shape)
    p = tr.union([sel, tr.aprov(cond) if isinstance(cond, np.ndarray) else None], shape, "np.where")
    return _wrap(tr, res, p)


def _np_bincount(tr: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], res: Any) -> Any:
    x = args[0]
    w = kwargs.get("weights", args[1] if len(args) > 1 else None)
    xp = tr.aprov(x) if isinstance(x, np.ndarray) else None
    wp = tr.aprov(w) if isinstance(w, np.ndarray) else None
    if xp is None and wp is None:
        return res
    vals = tr.union([xp, wp], tuple(np.shape(x)), "np.bincount")
    lo = filled(res.shape, E_LO, np.int32)
    hi = filled(res.shape, E_HI, np.int32)
    iv = np.asarray(_raw(x)).astype(np.int64).ravel()
    np.minimum.at(lo, iv, np.asarray(vals.lo).ravel())
    np.maximum.at(hi, iv, np.asarray(vals.hi).ravel())
    return _wrap(tr, res, Prov(lo, hi, None))


def _np_dot(tr: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], res: Any) -> Any:
    a, b = args[0], args[1]
    if np.ndim(a) > 2 or np.ndim(b) > 2:
        return _post_unknown(tr, "dot", args, kwargs, res)
    return _wrap(tr, res, _np_matmul(tr, a, b, tuple(np.shape(res))))


def _np_isin(tr: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], res: Any) -> Any:
    el, test = args[0], args[1] if len(args) > 1 else kwargs.get("test_elements")
    shape = tuple(np.shape(res))
    parts = [tr.aprov(el) if isinstance(el, np.ndarray) else None]
    if isinstance(test, np.ndarray):
        parts.append(hull_prov(tr, [tr.aprov(test)], shape, "np.isin"))
    p = tr.union([None if q is None else fit(q, shape) for q in parts], shape, "np.isin")
    return _wrap(tr, res, p)


def _np_copyto(tr: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], res: Any) -> Any:
    dst, src = args[0], args[1]
    if not isinstance(dst, np.ndarray):
        return res
    sp = tr.aprov(src) if isinstance(src, np.ndarray) else None
    p = None if sp is None else broadcast(sp, dst.shape)
    wh = kwargs.get("where", args[3] if len(args) > 3 else True)
    if wh is not True:

        p = select(np.broadcast_to(np.asarray(_raw(wh), bool), dst.shape), p, tr.aprov(dst), dst.shape)
    _write(tr, dst, p, "np.copyto")
    return res


def _np_coarse_write(tr: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], res: Any) -> Any:
    """put / place / putmask / put_along_axis / fill_diagonal: the whole destination widens."""
    dst = args[0]
    if not isinstance(dst, np.ndarray):
        return res
    others = [tr.aprov(x) for x in _flat_arrays(args[1:]) + _flat_arrays(list(kwargs.values()))]
    if all(p is None for p in others):
        return res
    tr.unruled["np." + func.__name__] += 1
    p = tr.union([tr.aprov(dst), hull_prov(tr, others, dst.shape, "np." + func.__name__)], dst.shape, "np." + func.__name__)
    _write(tr, dst, p, "np." + func.__name__)
    return res


def _np_like(tr: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], res: Any) -> Any:
    """zeros_like & co: the values do not depend on the prototype (full_like: on the fill value)."""
    if isinstance(res, TracedArray):
        res.__dict__.pop("_tr_src", None)
    if func.__name__ == "full_like":
        fv = args[1] if len(args) > 1 else kwargs.get("fill_value")
        fp = tr.aprov(fv) if isinstance(fv, np.ndarray) else None
        if fp is not None and isinstance(res, np.ndarray):
            return _wrap(tr, res, hull_prov(tr, [fp], res.shape, "np.full_like"))
    return res


_FUNCS: dict[str, Callable[..., Any]] = {
    "where": _np_where, "bincount": _np_bincount, "dot": _np_dot, "isin": _np_isin, "in1d": _np_isin,
    "copyto": _np_copyto, "put": _np_coarse_write, "place": _np_coarse_write, "putmask": _np_coarse_write,
    "put_along_axis": _np_coarse_write, "fill_diagonal": _np_coarse_write, "zeros_like": _np_like,
    "ones_like": _np_like, "empty_like": _np_like, "full_like": _np_like,
}


def _post_unknown(tr: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], res: Any) -> Any:
    """Results of a function without a handler: unless already traced, the union of every input."""
    ins = _flat_arrays(args) + _flat_arrays(list(kwargs.values()))
    ps = [tr.aprov(x) for x in ins]
    if all(p is None for p in ps):
        return res
    widened = False

    def fix(r: Any) -> Any:
        nonlocal widened
        if isinstance(r, np.ndarray):
            loc = tr.store.locate_array(r)
            if loc is not None and loc.key in tr.store.entries:
                return r if isinstance(r, TracedArray) else r.view(TracedArray)
            if any(_is_view_of(r, x) for x in ins):
                return r if isinstance(r, TracedArray) else r.view(TracedArray)
            widened = True
            return _wrap(tr, r, hull_prov(tr, ps, r.shape, "np." + name))
        if isinstance(r, (list, tuple)):
            return type(r)(fix(x) for x in r)
        if isinstance(r, (np.generic, float, int)) and not isinstance(r, bool):
            widened = True
            return _wrap(tr, r, hull_prov(tr, ps, (), "np." + name))
        return r

    out = fix(res)
    if widened:
        tr.unruled["np." + name] += 1
    return out


# functions about shapes and types, not values: their results never carry provenance
_META = frozenset({
    "ndim", "shape", "size", "result_type", "can_cast", "min_scalar_type", "iscomplexobj", "isrealobj",
    "isfortran", "may_share_memory", "shares_memory", "broadcast_shapes", "ravel_multi_index",
    "unravel_index", "iterable", "isscalar", "common_type", "promote_types",
})


def array_function(tr: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], res: Any) -> Any:
    """Provenance of a numpy function's result (it already ran)."""
    name = func.__name__
    if name in _MOVE:
        return _replay(tr, func, args, kwargs, res, _MOVE[name])
    h = _FUNCS.get(name)
    if h is not None:
        return h(tr, func, args, kwargs, res)
    return _post_unknown(tr, name, args, kwargs, res)
