"""Python-level hooks the dispatch mode cannot see, installed and removed as one set.

- torch<->numpy/Python boundaries: ``Tensor.tolist`` / ``numpy`` / ``__repr__`` / ``__format__``,
  ``torch.from_numpy`` / ``as_tensor`` / ``asarray`` / ``tensor``;
- collectives: ``torch.distributed.all_reduce`` / ``broadcast`` / ``all_gather_into_tensor`` /
  ``all_gather`` / ``reduce_scatter_tensor`` emit ``consume`` for scores entering them and, with
  more than one rank, replay themselves on the provenance (MIN of lo, MAX of hi) so that every
  rank sees the union;
- persistent state: parameters and buffers (module registration hooks), optimizer state (global
  optimizer step pre/post hooks, which also coalesce a step's updates);
- ``torch.compile`` -> identity when the CPU shim did not already do it (compiled kernels bypass
  the dispatcher, so a traced run must be eager);
- threads: every new thread enters its own dispatch mode (modes are per thread).
"""

from __future__ import annotations

import atexit
import functools
import inspect
import threading
from typing import Any, Callable

import numpy as np
import torch

from harness.runtime.tracer.provenance import E_HI, E_LO, NO_SID, Prov, filled
from harness.runtime.tracer.ops.common import fit, hull_prov
from harness.runtime.tracer.state import Tracer, np_values
from harness.runtime.tracer.traced_numpy import array as traced_array

_undo: list[Callable[[], None]] = []


def _setattr(obj: Any, name: str, value: Any) -> None:
    old = getattr(obj, name)
    setattr(obj, name, value)
    _undo.append(lambda: setattr(obj, name, old))


def _live(tr: Tracer) -> bool:
    return traced_array._TRACER is tr and not tr.busy


class _Guard:
    """The tracer's work at a Python-level hook: under the lock, and never fatal to the script."""

    def __init__(self, tr: Tracer, label: str) -> None:
        self.tr, self.label = tr, label

    def __enter__(self) -> None:
        self.tr.lock.acquire()

    def __exit__(self, et: Any, ev: Any, tb: Any) -> bool:
        self.tr.lock.release()
        if et is None or self.tr.strict or not issubclass(et, Exception):
            return False
        self.tr.coarse["hook_error:" + self.label] += 1
        return True


def _sum_json(v: Any) -> Any:
    try:
        f = float(np.asarray(v, dtype=np.float64).sum())
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else str(f)


# ------------------------------------------------------------------------------------------------
# torch <-> numpy / Python


def _install_tensor_methods(tr: Tracer) -> None:
    T = torch.Tensor
    orig_tolist, orig_numpy, orig_repr, orig_format = T.tolist, T.numpy, T.__repr__, T.__format__

    @functools.wraps(orig_tolist)
    def tolist(self: torch.Tensor) -> Any:
        v = orig_tolist(self)
        if _live(tr) and not getattr(tr.tls, "quiet", False):
            with _Guard(tr, "tolist"):
                p = tr.tprov(self)
                if p is not None:
                    tr.escape(p, "tolist", value=_sum_json(v), numel=self.numel())
        return v

    @functools.wraps(orig_numpy)
    def numpy(self: torch.Tensor, *a: Any, **k: Any) -> Any:
        arr = orig_numpy(self, *a, **k)
        if _live(tr) and tr.traced_tensor(self):
            return traced_array.as_traced(arr)  # shares the storage's provenance (same memory block)
        return arr

    def _quiet_escape(self: torch.Tensor, op: str, call: Callable[[], Any]) -> Any:
        if not _live(tr) or getattr(tr.tls, "quiet", False):
            return call()
        with _Guard(tr, op):
            p = tr.tprov(self)
            if p is not None:
                with tr.internal():
                    value = _sum_json(np_values(self)) if self.numel() else None
                tr.escape(p, op, value=value, numel=self.numel())
        tr.tls.quiet = True
        try:
            return call()
        finally:
            tr.tls.quiet = False

    @functools.wraps(orig_repr)
    def __repr__(self: torch.Tensor, *a: Any, **k: Any) -> Any:
        return _quiet_escape(self, "print", lambda: orig_repr(self, *a, **k))

    @functools.wraps(orig_format)
    def __format__(self: torch.Tensor, spec: str) -> Any:
        return _quiet_escape(self, "print", lambda: orig_format(self, spec))

    _setattr(T, "tolist", tolist)
    _setattr(T, "numpy", numpy)
    _setattr(T, "__repr__", __repr__)
    _setattr(T, "__format__", __format__)


def _prov_of_data(tr: Tracer, data: Any) -> tuple[Prov | None, bool]:
    """(provenance, exact) of what torch.tensor & co. were given."""
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return tr.prov(data), True
    if isinstance(data, (list, tuple)) and data:
        items = [x for x in data if isinstance(x, (np.ndarray, torch.Tensor))]
        for x in data:
            if isinstance(x, (list, tuple)):
                items.extend(y for y in x if isinstance(y, (np.ndarray, torch.Tensor)))
        ps = [tr.prov(x) for x in items]
        ps = [p for p in ps if p is not None]
        if ps:
            return ps[0] if len(ps) == 1 and len(items) == 1 and len(data) == 1 else _merge_hull(tr, ps), False
    return None, True


def _merge_hull(tr: Tracer, ps: list[Prov]) -> Prov:
    return hull_prov(tr, ps, (), "tensor(list)")  # type: ignore[return-value]


def _raw_data(tr: Tracer, data: Any, res: torch.Tensor) -> bool:
    """A tensor made from an array or tensor of raw tokens (Store.raw) with an integer type for every id."""
    ints = (torch.int64, torch.int32, torch.uint16) + ((torch.int16,) if tr.vocab and tr.vocab <= 32768 else ())
    if res.dtype not in ints:
        return False
    if isinstance(data, np.ndarray):
        loc = tr.store.locate_array(data)
    elif isinstance(data, torch.Tensor):
        loc = tr.store.locate_tensor(data)
    else:
        return False
    return loc is not None and loc.key in tr.store.raw


def _install_constructors(tr: Tracer) -> None:
    def wrap(name: str) -> None:
        orig = getattr(torch, name)

        @functools.wraps(orig)
        def f(data: Any, *a: Any, **k: Any) -> Any:
            res = orig(data, *a, **k)
            if not _live(tr) or not isinstance(res, torch.Tensor) or res is data:
                return res
            if not isinstance(data, (np.ndarray, torch.Tensor, list, tuple)):
                return res
            with _Guard(tr, "torch." + name):
                p, exact = _prov_of_data(tr, data)
                if p is None:
                    return res
                if not exact:
                    tr.coarse[f"torch.{name}(list)"] += 1
                loc = tr.store.locate_tensor(res)
                if exact and p.lo.size == res.numel():
                    tr.store.raw_write = _raw_data(tr, data, res)  # the values themselves: raw stays raw
                    try:
                        tr.store.write(loc, fit(p, tuple(res.shape)))
                    finally:
                        tr.store.raw_write = False
                else:
                    lo, hi = int(np.min(p.lo)) if p.lo.size else int(E_LO), int(np.max(p.hi)) if p.hi.size else int(E_HI)
                    sid = tr.bag_of(None if p.sid is None else np.asarray(p.sid))
                    shape = tuple(res.shape)
                    tr.store.write(loc, Prov(filled(shape, lo, np.int32), filled(shape, hi, np.int32),
                                             None if sid == NO_SID else filled(shape, sid, np.int64)))
            return res

        _setattr(torch, name, f)

    for n in ("from_numpy", "as_tensor", "asarray", "tensor"):
        if hasattr(torch, n):
            wrap(n)


# ------------------------------------------------------------------------------------------------
# collectives


def _world(group: Any) -> int:
    d = torch.distributed
    try:
        return d.get_world_size(group) if d.is_available() and d.is_initialized() else 1
    except Exception:  # noqa: BLE001
        return 1


def _chan_tensor(p: Prov | None, t: torch.Tensor, ch: str) -> torch.Tensor:
    if p is None:
        fill = int(E_LO) if ch == "lo" else int(E_HI)
        return torch.full(tuple(t.shape), fill, dtype=torch.int32, device=t.device)
    return torch.from_numpy(np.ascontiguousarray(getattr(p, ch))).to(t.device)


def _install_collectives(tr: Tracer) -> None:
    d = getattr(torch, "distributed", None)
    if d is None or not d.is_available():
        return
    RO = d.ReduceOp

    def consume(t: Any, op: str) -> Prov | None:
        """Scores entering a collective are consumed; returns a copy of the input's provenance."""
        with _Guard(tr, op):
            p = tr.tprov(t) if isinstance(t, torch.Tensor) else None
            if p is None:
                return None
            with tr.internal():
                value = _sum_json(np_values(t)) if t.numel() else None
            tr.escape(p, op, value=value, numel=t.numel())
            return Prov(np.array(p.lo), np.array(p.hi), None if p.sid is None else np.array(p.sid))
        return None

    def chans(p: Prov | None, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # every rank must take part in the replay whatever happens here, or the ranks would hang
        try:
            return _chan_tensor(p, t, "lo"), _chan_tensor(p, t, "hi")
        except Exception:  # noqa: BLE001
            tr.coarse["hook_error:collective_channels"] += 1
            return _chan_tensor(None, t, "lo"), _chan_tensor(None, t, "hi")

    def write(t: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, sid: np.ndarray | None, op: str) -> None:
        with _Guard(tr, op):
            p = Prov(lo.cpu().numpy().astype(np.int32), hi.cpu().numpy().astype(np.int32), sid)
            tr.store.write(tr.store.locate_tensor(t), p)

    def wrap(name: str, replay: Callable[[Any, dict[str, Any], Prov | None], None]) -> None:
        orig = getattr(d, name, None)
        if orig is None:
            return
        sig = inspect.signature(orig)

        @functools.wraps(orig)
        def f(*a: Any, **k: Any) -> Any:
            if not _live(tr):
                return orig(*a, **k)
            try:
                b = sig.bind(*a, **k)
                b.apply_defaults()
                args = dict(b.arguments)
            except TypeError:
                return orig(*a, **k)
            src = next((v for n, v in args.items() if n in ("tensor", "input_tensor", "input")), None)
            pre = consume(src, name) if isinstance(src, torch.Tensor) else None
            work = orig(*a, **k)
            if args.get("async_op") and work is not None:
                work.wait()  # the replay needs the result: the op is made synchronous
            if _world(args.get("group")) > 1 or name in ("all_gather", "all_gather_into_tensor"):
                with tr.internal():
                    replay(orig, args, pre)
            return work

        _setattr(d, name, f)

    def r_all_reduce(orig: Any, a: dict[str, Any], pre: Prov | None) -> None:
        t = a["tensor"]
        lo, hi = chans(pre, t)
        orig(lo, op=RO.MIN, group=a.get("group"))
        orig(hi, op=RO.MAX, group=a.get("group"))
        write(t, lo, hi, None if pre is None else pre.sid, "all_reduce")

    def r_broadcast(orig: Any, a: dict[str, Any], pre: Prov | None) -> None:
        t = a["tensor"]
        lo, hi = chans(pre, t)
        orig(lo, a.get("src"), group=a.get("group"))
        orig(hi, a.get("src"), group=a.get("group"))
        write(t, lo, hi, None, "broadcast")

    def r_gather(orig: Any, a: dict[str, Any], pre: Prov | None) -> None:
        names = list(a)
        out, inp = a[names[0]], a[names[1]]
        lo, hi = chans(pre, inp)
        if isinstance(out, torch.Tensor):
            olo = torch.empty(tuple(out.shape), dtype=torch.int32, device=out.device)
            ohi = torch.empty_like(olo)
            orig(olo, lo, group=a.get("group"))
            orig(ohi, hi, group=a.get("group"))
            write(out, olo, ohi, None, "all_gather")
        elif isinstance(out, (list, tuple)):
            los = [torch.empty(tuple(o.shape), dtype=torch.int32, device=o.device) for o in out]
            his = [torch.empty_like(x) for x in los]
            orig(los, lo, group=a.get("group"))
            orig(his, hi, group=a.get("group"))
            for o, x, y in zip(out, los, his):
                write(o, x, y, None, "all_gather")

    def r_reduce_scatter(orig: Any, a: dict[str, Any], pre: Prov | None) -> None:
        names = list(a)
        out, inp = a[names[0]], a[names[1]]
        lo, hi = chans(pre, inp)
        olo = torch.empty(tuple(out.shape), dtype=torch.int32, device=out.device)
        ohi = torch.empty_like(olo)
        orig(olo, lo, op=RO.MIN, group=a.get("group"))
        orig(ohi, hi, op=RO.MAX, group=a.get("group"))
        write(out, olo, ohi, None, "reduce_scatter")

    wrap("all_reduce", r_all_reduce)
    wrap("broadcast", r_broadcast)
    wrap("all_gather_into_tensor", r_gather)
    wrap("all_gather", r_gather)
    wrap("reduce_scatter_tensor", r_reduce_scatter)


# ------------------------------------------------------------------------------------------------
# parameters, buffers, optimizer state


def _install_state_hooks(tr: Tracer) -> None:
    from torch.nn.modules import module as M
    from torch.optim import optimizer as O

    def on_param(module: Any, name: str, param: Any) -> None:
        if isinstance(param, torch.Tensor):
            with _Guard(tr, "register_parameter"):
                tr.register(tr.store.tensor_owner(param), "param")

    def on_buffer(module: Any, name: str, buf: Any) -> None:
        if isinstance(buf, torch.Tensor):
            with _Guard(tr, "register_buffer"):
                tr.register(tr.store.tensor_owner(buf), "buffer")

    handles = [M.register_module_parameter_registration_hook(on_param),
               M.register_module_buffer_registration_hook(on_buffer)]

    def state_tensors(opt: Any) -> list[torch.Tensor]:
        out = []
        for st in getattr(opt, "state", {}).values():
            if isinstance(st, dict):
                out.extend(v for v in st.values() if isinstance(v, torch.Tensor))
        return out

    def pre(opt: Any, args: Any, kwargs: Any) -> None:
        tr.emitter.begin_step()
        with _Guard(tr, "optimizer_pre_hook"):
            tr.step_updated.clear()
            for g in getattr(opt, "param_groups", []):
                for p in g.get("params", []):
                    if isinstance(p, torch.Tensor):
                        tr.register(tr.store.tensor_owner(p), "param")
            for t in state_tensors(opt):
                tr.register(tr.store.tensor_owner(t), "optimizer_state")

    def post(opt: Any, args: Any, kwargs: Any) -> None:
        with _Guard(tr, "optimizer_post_hook"):
            op = f"{type(opt).__name__}.step"
            for t in state_tensors(opt):
                owner = tr.store.tensor_owner(t)
                if owner is None:
                    continue
                tr.register(owner, "optimizer_state")
                if id(owner) in tr.step_updated:
                    continue
                p = tr.tprov(t)
                if p is not None and p.traced():  # state created during this step: written untracked as such
                    tr.check_update(owner, p, op, t.numel(), "optimizer_state")
        with tr.lock:
            tr.emitter.end_step()

    handles.append(O.register_optimizer_step_pre_hook(pre))
    handles.append(O.register_optimizer_step_post_hook(post))
    for h in handles:
        _undo.append(h.remove)


# ------------------------------------------------------------------------------------------------
# compile, threads, exit


def _install_compile() -> None:
    if getattr(torch.compile, "__module__", "").startswith("harness.runtime.shim"):
        return

    def compile(model: Any = None, **_: Any) -> Any:  # noqa: A001 - compiled kernels bypass the tracer
        if model is None:
            return lambda m: m
        return model

    _setattr(torch, "compile", compile)


def _install_threads(tr: Tracer, make_mode: Callable[[], Any]) -> None:
    orig = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def _bootstrap_inner(self: threading.Thread) -> None:
        if traced_array._TRACER is not tr:
            return orig(self)
        mode = make_mode()
        with mode:
            return orig(self)

    _setattr(threading.Thread, "_bootstrap_inner", _bootstrap_inner)


def install_all(tr: Tracer, make_mode: Callable[[], Any]) -> None:
    _install_tensor_methods(tr)
    _install_constructors(tr)
    _install_collectives(tr)
    _install_state_hooks(tr)
    _install_compile()
    _install_threads(tr, make_mode)

    def at_exit() -> None:
        if traced_array._TRACER is tr:
            tr.emit_stats()

    atexit.register(at_exit)
    _undo.append(lambda: atexit.unregister(at_exit))


def uninstall_all() -> None:
    while _undo:
        f = _undo.pop()
        try:
            f()
        except Exception:  # noqa: BLE001
            pass
