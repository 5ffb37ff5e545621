"""Data movement replayed on the provenance channels: the op runs again on encoded lo / hi / sid
tensors (cat, stack, flip, roll, pads, tril, *_scatter, ...).

The channels replay as int32 (lo / hi) and int64 (sid) tensors, one shift each way; an op without an
integer kernel (reflection pads) replays them as float64, which holds every position exactly. The
backward of a select or a slice (zeros with the gradient placed in one region) is written directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness.runtime.tracer.ops.basic import h_unhandled
from harness.runtime.tracer.ops.call import OpCall, _tensors, handler
from harness.runtime.tracer.ops.common import decode_channel, encode_channel, hull_prov
from harness.runtime.tracer.provenance import E_HI, E_LO, NO_SID, Prov, filled


_INDEX_NAMES = {"index", "indices", "repeats", "mask", "output_size"}


def _encode(ch: np.ndarray, which: str, exact_int: bool) -> torch.Tensor:
    """A channel as a tensor the op replays (encode_channel: 0 is "empty"). exact_int: lo / hi as int32 and
    sid as int64; otherwise float64, which holds every position exactly, for ops without integer kernels."""
    a = encode_channel(ch, which, narrow=exact_int)
    return torch.from_numpy(np.ascontiguousarray(a if exact_int else a.astype(np.float64)))


def _decode(t: torch.Tensor, which: str) -> np.ndarray:
    a = t.detach().cpu().numpy()
    return decode_channel(a if a.dtype.kind == "i" else np.rint(a.astype(np.float64)), which)


def replay(c: OpCall, data: set[str] | None = None) -> list[Prov | None]:
    """Run the op on the provenance channels of its data arguments; one Prov per output tensor."""
    names = c.info.names
    if data is None:
        data = {n for n in names if n not in _INDEX_NAMES and _tensors(c.b.get(n)) and not (
            n in c.info.kwonly and n in c.info.mutated)}
    has_sid = any(
        (pp := c.p(t)) is not None and pp.sid is not None for n in data for t in _tensors(c.b.get(n))
    )
    try:
        return _replay(c, data, has_sid, exact_int=True)
    except (RuntimeError, TypeError, NotImplementedError):  # no integer kernel for this op: float64
        return _replay(c, data, has_sid, exact_int=False)


def _replay(c: OpCall, data: set[str], has_sid: bool, exact_int: bool) -> list[Prov | None]:
    names = c.info.names
    chans = ("lo", "hi", "sid") if has_sid else ("lo", "hi")
    results: dict[str, list[torch.Tensor]] = {}
    for ch in chans:
        def conv(x: Any, n: str) -> Any:
            if n in data:
                if isinstance(x, torch.Tensor):
                    return _chan(c, x, ch, exact_int)
                if isinstance(x, (list, tuple)):
                    return type(x)(_chan(c, t, ch, exact_int) if isinstance(t, torch.Tensor) else t for t in x)
            if n in ("value",) and isinstance(x, (int, float, bool)):
                return 0
            if isinstance(x, torch.Tensor):
                return x.detach().cpu() if x.device.type != "cpu" else x.detach()
            if isinstance(x, (list, tuple)) and any(isinstance(t, torch.Tensor) for t in x):
                return type(x)(t.detach().cpu() if isinstance(t, torch.Tensor) else t for t in x)
            return x
        pos = []
        kw = {}
        for n in names:
            if n not in c.b:
                continue
            if n in c.info.kwonly and n in c.info.mutated:
                continue  # out= destinations
            v = conv(c.b[n], n)
            if n in c.info.kwonly:
                kw[n] = v
            else:
                pos.append(v)
        func = (_functional_twin(c.func) or c.func) if c.info.mutated else c.func
        r = func(*pos, **kw)
        results[ch] = _tensors(r if isinstance(r, (list, tuple)) else [r])
    outs: list[Prov | None] = []
    for i in range(len(results["lo"])):
        lo = _decode(results["lo"][i], "lo")
        hi = _decode(results["hi"][i], "hi")
        sid = _decode(results["sid"][i], "sid") if "sid" in results else None
        outs.append(Prov(lo, hi, sid))
    return outs


def _chan(c: OpCall, t: torch.Tensor, ch: str, exact_int: bool) -> torch.Tensor:
    p = c.p(t)
    if p is None or (ch == "sid" and p.sid is None):
        dtype = (torch.int64 if ch == "sid" else torch.int32) if exact_int else torch.float64
        return torch.zeros(tuple(t.shape), dtype=dtype)
    return _encode(getattr(p, ch), ch, exact_int)


def _functional_twin(func: Any) -> Any:
    """tril_ -> tril, cat.out -> cat: the replay must return fresh channel tensors."""
    name = func._schema.name.split("::")[-1]
    over = func._overloadname
    if over == "out" or over.endswith("_out"):
        pkt = getattr(torch.ops.aten, name, None)
        over = over[: -len("_out")] if over.endswith("_out") else "default"
    elif name.endswith("_"):
        pkt = getattr(torch.ops.aten, name[:-1], None)
    else:
        return None
    if pkt is None:
        return None
    return getattr(pkt, over, None) or getattr(pkt, "default", None)


@handler("movement")
def h_movement(c: OpCall) -> None:
    if c.short == "repeat_interleave" and "self" not in c.b:
        return h_unhandled(c)
    extra = [c.p(c.b[n]) for n in ("repeats", "mask") if isinstance(c.b.get(n), torch.Tensor)]
    outs = c.outputs()
    if c.short in ("select_backward", "slice_backward") and len(outs) == 1:
        placed = _placed(c, tuple(outs[0].shape))
        if placed is not None:
            c.assign(outs[0], placed, fresh=True)
            return
    ps = replay(c)
    for t, p in zip(outs, ps):
        shape = tuple(t.shape)
        if any(e is not None for e in extra):
            p = c.tr.union([p] + [hull_prov(c.tr, [e], shape, c.short) for e in extra], shape, c.short)
        c.assign(t, p)


def _placed(c: OpCall, shape: tuple[int, ...]) -> Prov | None:
    """select_backward / slice_backward: zeros of the input's shape with the gradient in the selected
    region, so the region takes the gradient's provenance and the rest is empty (what the replay
    computes, without running the op three times on encoded channels). None: not this simple case, or an
    untraced gradient (the replay then decides)."""
    g = c.b.get("grad_output")
    sizes = c.b.get("input_sizes")
    if not isinstance(g, torch.Tensor) or not isinstance(sizes, (list, tuple)) or not shape:
        return None
    if tuple(int(s) for s in sizes) != shape:
        return None
    dim = int(c.b.get("dim", 0)) % len(shape)
    where: list[Any] = [slice(None)] * len(shape)
    if c.short == "select_backward":
        where[dim] = int(c.b.get("index", 0))
    else:
        step = int(c.b.get("step", 1))
        if step <= 0:
            return None
        where[dim] = slice(int(c.b.get("start", 0)), int(c.b.get("end", shape[dim])), step)
    key = tuple(where)
    p = c.p(g)
    if p is None:
        return None
    lo = filled(shape, E_LO, np.int32)
    try:
        region = lo[key]
    except IndexError:
        return None
    if region.shape != tuple(g.shape):
        return None
    hi = filled(shape, E_HI, np.int32)
    lo[key] = p.lo
    hi[key] = p.hi
    sid = None
    if p.sid is not None:
        sid = filled(shape, NO_SID, np.int64)
        sid[key] = p.sid
    return Prov(lo, hi, sid)
