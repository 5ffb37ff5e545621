"""Module-level numpy patches: constructors and converters called from the submission's own files
return the traced subclass (with a birth epoch); tagging validation tokens.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import numpy as np
import torch

from harness.runtime.tracer.ops.common import fit, hull_prov
from harness.runtime.tracer.provenance import Prov, _covers_block, apply_labels
from harness.runtime.tracer.traced_numpy import array as traced_array
from harness.runtime.tracer.traced_numpy.array import (
    TracedArray, _HandlerGuard, _is_view_of, _root, _wrap, active, as_traced,
)


_CONSTRUCTORS = ("zeros", "ones", "empty", "full", "zeros_like", "ones_like", "empty_like", "full_like")


_CONVERTERS = ("array", "asarray", "asanyarray", "ascontiguousarray")


_saved: dict[str, Any] = {}

# argument types a converter returns as the untraced result anyway (see _convert): skip the guard
_PLAIN = frozenset({np.ndarray, int, float, bool})


def _is_submission_caller(tr: Any, depth: int = 2) -> bool:
    try:
        return bool(tr.ctx.is_submission_file(sys._getframe(depth).f_code.co_filename))
    except ValueError:
        return False


def _make_constructor(name: str, orig: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(orig)
    def ctor(*a: Any, **k: Any) -> Any:
        res = orig(*a, **k)
        tr = active()
        if tr is None or not isinstance(res, np.ndarray) or not _is_submission_caller(tr):
            return res
        with _HandlerGuard(tr, "np." + name, ()):
            t = as_traced(res)
            t.__dict__.pop("_tr_src", None)
            tr.note_birth(_root(t))
            return t
        return res

    return ctor


def _make_converter(name: str, orig: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(orig)
    def conv(obj: Any, *a: Any, **k: Any) -> Any:
        if type(obj) in _PLAIN:  # nothing traced can come out of these (and the tracer's own calls are these)
            return orig(obj, *a, **k)
        res = orig(obj, *a, **k)
        tr = active()
        if tr is None or not isinstance(res, np.ndarray):
            return res
        with _HandlerGuard(tr, "np." + name, (obj,)) as g:
            return _convert(tr, name, obj, res)
        return g.fallback(res)

    return conv


def _convert(tr: Any, name: str, obj: Any, res: np.ndarray) -> Any:
    """np.array & co. of a traced array, a tensor, or a list holding them: keep the provenance."""
    if isinstance(obj, np.ndarray):
        if not isinstance(obj, TracedArray):
            return res
        if _is_view_of(res, obj):
            return as_traced(res)
        p = tr.aprov(obj)
        return _wrap(tr, res, None if p is None else fit(p, res.shape))
    if isinstance(obj, torch.Tensor):
        p = tr.tprov(obj)
        if p is None:
            return res
        if tr.store.read(tr.store.locate_array(res)) is not None:  # shares the tensor's memory
            return as_traced(res)
        return _wrap(tr, res, fit(p, res.shape))
    if isinstance(obj, (list, tuple)) and obj:
        items = [x for x in obj if isinstance(x, (np.ndarray, torch.Tensor))]
        ps = [tr.prov(x) for x in items]
        if all(p is None for p in ps):
            return res
        tr.coarse["np." + name + "(list)"] += 1
        return _wrap(tr, res, hull_prov(tr, ps, res.shape, "np." + name))
    return res


def install_patches(tr: Any) -> None:
    traced_array._TRACER = tr
    if _saved:
        return
    for n in _CONSTRUCTORS:
        _saved[n] = getattr(np, n)
        setattr(np, n, _make_constructor(n, _saved[n]))
    for n in _CONVERTERS:
        _saved[n] = getattr(np, n)
        setattr(np, n, _make_converter(n, _saved[n]))


def uninstall_patches() -> None:
    traced_array._TRACER = None
    for n, f in _saved.items():
        setattr(np, n, f)
    _saved.clear()


def tag_array(tr: Any, arr: np.ndarray, lo: int) -> np.ndarray:
    """Validation tokens: element i (C order) is stream position lo + i."""
    n = arr.size
    pos = apply_labels(np.arange(lo, lo + n, dtype=np.int64), getattr(tr, "labels", None))
    if n and pos.max() > np.iinfo(np.int32).max - 1:
        raise OverflowError("validation positions beyond int32")
    p = Prov(pos.astype(np.int32).reshape(arr.shape), pos.astype(np.int32).reshape(arr.shape), None)
    with tr.lock:
        loc = tr.store.locate_array(arr)
        fresh = loc is not None and loc.key not in tr.store.entries
        tr.store.write(loc, p)
        if getattr(tr, "labels", None) is None and loc is not None and arr.dtype.kind in "iu":
            with tr.internal():
                tr.note_tokens(pos, np.asarray(arr))  # the read's tokens; its block as raw (Tracer.raw_pick)
            if arr.itemsize >= 2 and (fresh or _covers_block(loc)):
                tr.store.raw.add(loc.key)
    t = as_traced(arr)
    t.__dict__.pop("_tr_src", None)
    return t
