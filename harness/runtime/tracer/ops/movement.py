"""Data movement replayed on the provenance channels: the op runs again on encoded lo / hi / sid
tensors (cat, stack, flip, roll, pads, tril, *_scatter, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness.runtime.tracer.ops.basic import h_unhandled
from harness.runtime.tracer.ops.call import OpCall, _tensors, handler
from harness.runtime.tracer.ops.common import decode_channel, encode_channel, hull_prov
from harness.runtime.tracer.provenance import Prov


_INDEX_NAMES = {"index", "indices", "repeats", "mask", "output_size"}


def _encode(ch: np.ndarray, which: str) -> torch.Tensor:
    # float64 holds every position exactly and lets ops without integer kernels (reflection pads) replay
    return torch.from_numpy(np.ascontiguousarray(encode_channel(ch, which).astype(np.float64)))


def _decode(t: torch.Tensor, which: str) -> np.ndarray:
    return decode_channel(np.rint(t.detach().cpu().numpy().astype(np.float64)), which)


def replay(c: OpCall, data: set[str] | None = None) -> list[Prov | None]:
    """Run the op on the provenance channels of its data arguments; one Prov per output tensor."""
    names = c.info.names
    if data is None:
        data = {n for n in names if n not in _INDEX_NAMES and _tensors(c.b.get(n)) and not (
            n in c.info.kwonly and n in c.info.mutated)}
    has_sid = any(
        (pp := c.p(t)) is not None and pp.sid is not None for n in data for t in _tensors(c.b.get(n))
    )
    chans = ("lo", "hi", "sid") if has_sid else ("lo", "hi")
    results: dict[str, list[torch.Tensor]] = {}
    for ch in chans:
        def conv(x: Any, n: str) -> Any:
            if n in data:
                if isinstance(x, torch.Tensor):
                    return _chan(c, x, ch)
                if isinstance(x, (list, tuple)):
                    return type(x)(_chan(c, t, ch) if isinstance(t, torch.Tensor) else t for t in x)
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


def _chan(c: OpCall, t: torch.Tensor, ch: str) -> torch.Tensor:
    p = c.p(t)
    if p is None or (ch == "sid" and p.sid is None):
        return torch.zeros(tuple(t.shape), dtype=torch.float64)
    return _encode(getattr(p, ch), ch)


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
    ps = replay(c)
    for t, p in zip(outs, ps):
        shape = tuple(t.shape)
        if any(e is not None for e in extra):
            p = c.tr.union([p] + [hull_prov(c.tr, [e], shape, c.short) for e in extra], shape, c.short)
        c.assign(t, p)
