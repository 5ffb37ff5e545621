"""Provenance rules for aten ops (see rules_table for which op gets which rule).

Every rule gets an ``OpCall`` after the op ran (inputs not written by the op still hold their
values) and assigns provenance to the op's non-view outputs. Conventions: a ``Prov`` of None is
untraced; unions are hulls [min lo, max hi]; the score-id channel follows values exactly where the
rule can say so and otherwise becomes a bag of every score involved.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from harness.runtime.tracer import rules_table as rt
from harness.runtime.tracer.provenance import E_HI, E_LO, NO_SID, Loc, Prov, broadcast, filled, hull
from harness.runtime.tracer.shared_rules import (
    _CHUNK_ELEMS, derive, exact, fit, hull_prov, part_from_a, part_from_b, place, rows_distribution, select,
    set_const,
)
from harness.runtime.tracer.state import Tracer, np_values

Rule = Callable[["OpCall"], None]
RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

    return deco


# ------------------------------------------------------------------------------------------------
# op metadata and the per-call context


class OpInfo:
    __slots__ = ("names", "kwonly", "mutated", "returns", "rule", "short")

    def __init__(self, func: Any) -> None:
        s = func._schema
        self.names = [a.name for a in s.arguments]
        self.kwonly = {a.name for a in s.arguments if a.kwarg_only}
        self.mutated = [a.name for a in s.arguments if a.alias_info is not None and a.alias_info.is_write]
        self.returns = [
            (r.alias_info is not None and not r.alias_info.is_write, "[]" in str(r.type) or "List" in str(r.type))
            for r in s.returns
        ]
        self.rule = rt.classify(func)
        self.short = rt.base_name(func)


_INFO: dict[Any, OpInfo] = {}


def op_info(func: Any) -> OpInfo:
    info = _INFO.get(func)
    if info is None:
        info = _INFO[func] = OpInfo(func)
    return info


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for t in x if isinstance(t, torch.Tensor)]
    return []


class OpCall:
    def __init__(self, tr: Tracer, func: Any, info: OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any):
        self.tr = tr
        self.func = func
        self.info = info
        self.args = args
        self.kwargs = kwargs
        self.out = out
        self.short = info.short
        self.b: dict[str, Any] = dict(zip(info.names, args))
        self.b.update(kwargs)
        self._pc: dict[int, Prov | None] = {}

    def p(self, x: Any) -> Prov | None:
        if not isinstance(x, torch.Tensor):
            return None
        k = id(x)
        if k not in self._pc:
            self._pc[k] = self.tr.tprov(x)
        return self._pc[k]

    def dests(self) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for n in self.info.mutated:
            out.extend(_tensors(self.b.get(n)))
        return out

    def is_dest(self, t: torch.Tensor) -> bool:
        return any(t is d for d in self.dests())

    def operands(self) -> list[torch.Tensor]:
        """Tensor inputs whose values flow into the result (not pure out= destinations)."""
        res: list[torch.Tensor] = []
        for n in self.info.names:
            if n in self.info.kwonly and n in self.info.mutated:
                continue
            res.extend(_tensors(self.b.get(n)))
        return res

    def outputs(self) -> list[torch.Tensor]:
        rets = self.info.returns
        if not rets:
            return self.dests()
        vals = [self.out] if len(rets) == 1 else list(self.out)
        res: list[torch.Tensor] = []
        for (is_view, _is_list), v in zip(rets, vals):
            if is_view:
                continue
            res.extend(_tensors(v))
        return res

    # -- writing -------------------------------------------------------------------------------------
    def assign(self, t: torch.Tensor, p: Prov | None, op: str | None = None) -> None:
        tr = self.tr
        loc = tr.store.locate_tensor(t)
        if loc is None:
            if p is not None and p.traced():
                tr.coarse["no_storage_output"] += 1
            return
        shape = tuple(t.shape)
        if p is not None and p.shape != shape:
            p = fit(p, shape)
        tr.store.write(loc, p)
        if self.is_dest(t):
            meta = tr.store.metas.get(loc.key)
            if meta is not None:
                meta.mark = None
            if isinstance(t, torch.nn.Parameter) or (t.is_leaf and t.requires_grad):
                tr.register(loc.owner, "param")
            tr.check_update(loc.owner, p, op or self.short, loc.n_owner, "table")

    def mark_of(self, t: Any) -> tuple[str, int] | None:
        if not isinstance(t, torch.Tensor):
            return None
        owner = self.tr.store.tensor_owner(t)
        m = self.tr.store.metas.get(id(owner)) if owner is not None else None
        return m.mark if m is not None else None

    def set_mark(self, t: torch.Tensor, mark: tuple[str, int] | None) -> None:
        owner = self.tr.store.tensor_owner(t)
        if owner is None:
            return
        m = self.tr.store.meta(owner, create=mark is not None)
        if m is not None:
            m.mark = mark


def _dim(d: Any, nd: int) -> int:
    return int(d) % nd if nd else 0


def _dims(d: Any, nd: int) -> tuple[int, ...]:
    if d is None:
        return tuple(range(nd))
    if isinstance(d, (list, tuple)):
        if len(d) == 0:
            return tuple(range(nd))
        return tuple(sorted({int(x) % nd for x in d})) if nd else ()
    return (int(d) % nd,) if nd else ()


# ------------------------------------------------------------------------------------------------
# trivial rules


@rule("view")
def r_view(c: OpCall) -> None:
    return


@rule("noop")
def r_noop(c: OpCall) -> None:
    return


@rule("unruled")
def r_unruled(c: OpCall) -> None:
    c.tr.unruled[c.short] += 1
    ps = [c.p(t) for t in c.operands()]
    for t in c.outputs():
        c.assign(t, hull_prov(c.tr, ps, tuple(t.shape), c.short))


@rule("overwrite")
def r_overwrite(c: OpCall) -> None:
    src = None
    for n in ("value", "p"):  # fill_.Tensor(value), bernoulli_.Tensor(p)
        if isinstance(c.b.get(n), torch.Tensor):
            src = c.p(c.b[n])
    for t in c.outputs():
        c.assign(t, None if src is None else broadcast(src, tuple(t.shape)))


@rule("factory_like")
def r_factory_like(c: OpCall) -> None:
    fill = c.b.get("fill_value")
    fp = c.p(fill) if isinstance(fill, torch.Tensor) else None
    for t in c.outputs():
        c.assign(t, None if fp is None else hull_prov(c.tr, [fp], tuple(t.shape), c.short))
        owner = c.tr.store.tensor_owner(t)
        if owner is not None:
            c.tr.note_birth(owner)


@rule("copy")
def r_copy(c: OpCall) -> None:
    src = c.b.get("src", c.b.get("self"))
    p = c.p(src)
    mark = c.mark_of(src)
    for t in c.outputs():
        c.assign(t, None if p is None else fit(p, tuple(t.shape)))
        if mark is not None:  # a dtype/device copy of a softmax output is still that distribution
            c.set_mark(t, mark)


@rule("escape")
def r_escape(c: OpCall) -> None:
    """.item() / float() / bool() (and equal, allclose): the value leaves as a Python scalar."""
    op = "item" if c.short == "_local_scalar_dense" else c.short
    for t in c.operands():
        p = c.p(t)
        if p is not None:
            c.tr.escape(p, op, value=_jsonable(c.out), numel=t.numel())


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bool, int, float)) or v is None:
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


# ------------------------------------------------------------------------------------------------
# pointwise

_MUL = {"mul", "mul_", "_foreach_mul", "_foreach_mul_", "bitwise_and", "logical_and", "bitwise_and_", "logical_and_"}
_ADD = {"add", "add_", "sub", "sub_", "rsub", "_foreach_add", "_foreach_add_", "_foreach_sub", "_foreach_sub_"}


def _const_mask(c: OpCall, operands: list[Any], shape: tuple[int, ...], kind: str) -> np.ndarray | None:
    """Elements whose result is fixed by an untraced absorbing operand (x*0, x+(-inf))."""
    mask = None
    for x in operands:
        if isinstance(x, torch.Tensor):
            if x.numel() == 0 or c.is_dest(x):  # an in-place op's destination already holds the result
                continue
            vals = np_values(x)
            if kind == "mul":
                m = vals == 0
            else:
                m = np.isinf(vals) if vals.dtype.kind in "fc" else np.zeros(vals.shape, bool)
            if not m.any():
                continue
            p = c.p(x)
            if p is not None:
                m = m & (p.hi < 0)
            m = np.broadcast_to(m, shape)
        elif isinstance(x, (int, float, bool)) and not isinstance(x, complex):
            if kind == "mul" and x == 0:
                m = np.ones(shape, bool)
            elif kind == "add" and isinstance(x, float) and math.isinf(x):
                m = np.ones(shape, bool)
            else:
                continue
        else:
            continue
        mask = m if mask is None else (mask | m)
    return mask


def _unless_branches_agree(c: OpCall, cp: Prov | None, a: Any, b: Any, shape: tuple[int, ...]) -> Prov | None:
    """A choice between two equal untraced constants does not depend on the condition
    (``masked_fill(~same_doc, -inf)`` on entries already masked -inf by a causal mask)."""
    if cp is None:
        return None
    vals = []
    for x in (a, b):
        if isinstance(x, torch.Tensor):
            v = np_values(x)
            xp = c.p(x)
            vals.append((v, None if xp is None else np.broadcast_to(xp.hi < 0, v.shape)))
        elif isinstance(x, (int, float, bool)):
            vals.append((np.asarray(x), None))
        else:
            return cp
    (va, ua), (vb, ub) = vals
    with np.errstate(invalid="ignore"):
        agree = np.broadcast_to(va == vb, shape)
    for u in (ua, ub):
        if u is not None:
            agree = agree & np.broadcast_to(u, shape)
    if not agree.any():
        return cp
    return set_const(broadcast(cp, shape), agree)


def pointwise_prov(c: OpCall, shape: tuple[int, ...], operands: list[Any], name: str) -> Prov | None:
    tr = c.tr
    b = c.b
    if name in ("where",) and "condition" in b:
        cond = b["condition"]
        sel = select(np_values(cond).astype(bool), c.p(b.get("self")), c.p(b.get("other")), shape)
        cp = _unless_branches_agree(c, c.p(cond), b.get("self"), b.get("other"), shape)
        return tr.union([sel, cp], shape, name)
    if name in ("masked_fill", "masked_fill_"):
        mask = b["mask"]
        val = b.get("value")
        sel = select(np_values(mask).astype(bool), c.p(val), c.p(b["self"]), shape)
        mp = c.p(mask)
        if name == "masked_fill":  # in place, the overwritten branch is gone: no refinement
            mp = _unless_branches_agree(c, mp, val, b["self"], shape)
        return tr.union([sel, mp], shape, name)
    p = tr.union([c.p(x) for x in operands], shape, name)
    if p is None:
        return None
    base = name.rstrip("_")
    if name in _MUL or base in _MUL:
        m = _const_mask(c, operands, shape, "mul")
        if m is not None:
            p = set_const(p, m)
    elif name in _ADD or base in _ADD:
        m = _const_mask(c, operands, shape, "add")
        if m is not None:
            p = set_const(p, m)
    return p


def derived_scores(c: OpCall, x: torch.Tensor, p: Prov, shape: tuple[int, ...], op: str) -> Prov:
    """log of a value made of one position's scores is that position's (final) NLL: a new score."""
    tr = c.tr
    xp = c.p(x)
    if xp is None or xp.sid is None or p.sid is None:
        return p
    xs = np.broadcast_to(xp.sid, shape)
    vals = np.broadcast_to(np_values(x), shape).astype(np.float64)
    if c.is_dest(x):  # log_ in place: x now holds the log; its input was base ** x
        base = {"log_": math.e, "log2_": 2.0, "log10_": 10.0}.get(c.short, math.e)
        vals = np.power(base, vals)
    return derive(tr, xs, vals, np.broadcast_to(xp.hi, shape), p, op, torch.is_grad_enabled() and x.requires_grad)


@rule("pointwise")
def r_pointwise(c: OpCall) -> None:
    if c.short == "where" and "self" not in c.b:  # where(cond) is nonzero(cond): data-dependent shape
        return r_unruled(c)
    operands: list[Any] = [c.b.get(n) for n in c.info.names if not (n in c.info.kwonly and n in c.info.mutated)]
    operands = [x for x in operands if isinstance(x, (torch.Tensor, int, float, bool))]
    name = c.short
    for t in c.outputs():
        shape = tuple(t.shape)
        p = pointwise_prov(c, shape, operands, name)
        src = c.b.get("self")
        if p is not None and name in rt.LOG_OPS and isinstance(src, torch.Tensor):
            p = derived_scores(c, src, p, shape, "log")
        c.assign(t, p)
        if isinstance(src, torch.Tensor):
            mark = c.mark_of(src)
            if mark is not None and name in rt.EXP_OPS and mark[0] == "logp":
                c.set_mark(t, ("prob", mark[1]))
            elif mark is not None and name in rt.LOG_OPS and mark[0] == "prob":
                c.set_mark(t, ("logp", mark[1]))


# ------------------------------------------------------------------------------------------------
# replaying data movement on provenance channels

_INDEX_NAMES = {"index", "indices", "repeats", "mask", "output_size"}


def _encode(ch: np.ndarray, which: str) -> torch.Tensor:
    # channels are shifted so that 0 means "empty": zero fills (pads, tril) then stay empty; float64
    # holds every position exactly and lets ops without integer kernels (reflection pads) replay
    a = np.asarray(ch).astype(np.float64)
    if which == "lo":
        a = a - float(E_LO)
    else:
        a = a + 1.0
    return torch.from_numpy(np.ascontiguousarray(a))


def _decode(t: torch.Tensor, which: str) -> np.ndarray:
    a = np.rint(t.detach().cpu().numpy().astype(np.float64)).astype(np.int64)
    if which == "lo":
        return (a + int(E_LO)).astype(np.int32)
    if which == "hi":
        return (a - 1).astype(np.int32)
    return a - 1


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


@rule("movement")
def r_movement(c: OpCall) -> None:
    if c.short == "repeat_interleave" and "self" not in c.b:
        return r_unruled(c)
    extra = [c.p(c.b[n]) for n in ("repeats", "mask") if isinstance(c.b.get(n), torch.Tensor)]
    outs = c.outputs()
    ps = replay(c)
    for t, p in zip(outs, ps):
        shape = tuple(t.shape)
        if any(e is not None for e in extra):
            p = c.tr.union([p] + [hull_prov(c.tr, [e], shape, c.short) for e in extra], shape, c.short)
        c.assign(t, p)


# ------------------------------------------------------------------------------------------------
# selection by index (and the target-selection exception)


def target_selection(c: OpCall, src: torch.Tensor, dim: int, ip: Prov | None,
                     rowwise: bool = True) -> tuple[bool, tuple[str, int] | None]:
    """Is this selecting the target's entry from a full-vocabulary row?  (exclude?, source mark).

    Only a per-row pick along the last dim qualifies (gather, or ``logp[rows, y]``): a lookup along
    the rows of a [V, D] table is an embedding, and there the token's position always counts.
    """
    if ip is None or src.dim() < 2 or dim != src.dim() - 1 or not rowwise:
        return False, None
    n = src.shape[dim]
    mark = c.mark_of(src)
    if mark is not None and mark[1] != n:
        mark = None
    vocab = c.tr.vocab
    if vocab is not None:
        ok = n == vocab
    else:
        ok = mark is not None
    if not ok:
        return False, None
    if not exact(ip):
        c.tr.imprecise_targets += 1
        return False, None
    if mark is None:
        mark = infer_distribution(src)
    if mark is None:  # not a distribution (raw counts, a bias table): the target's position counts
        c.tr.coarse["target_pick_from_unnormalized_row"] += 1
        return False, None
    return True, mark


def infer_distribution(src: torch.Tensor) -> tuple[str, int] | None:
    """A vocabulary row that is not a softmax output may still be one (a mixture of distributions):
    rows of non-negative values summing to 1 are probabilities, rows whose logsumexp is 0 log-probs."""
    if not src.is_floating_point() or src.numel() == 0:
        return None
    return rows_distribution(np_values(src))


def _score_selection(c: OpCall, out: torch.Tensor, p: Prov, tpos: Prov, mark: tuple[str, int]) -> Prov:
    """Selected entries of a log-prob / prob distribution at target positions become scores."""
    tr = c.tr
    shape = tuple(out.shape)
    tlo = np.broadcast_to(tpos.lo, shape)
    thi = np.broadcast_to(tpos.hi, shape)
    m = thi >= 0
    if not m.any():
        return p
    vals = np_values(out).astype(np.float64)
    nll = -vals[m] if mark[0] == "logp" else -np.log(np.maximum(vals[m], 1e-300))
    dep = np.broadcast_to(p.hi, shape)[m].astype(np.int64)
    if p.sid is not None:  # the row was built from values selected at targets (a gate on the target)
        dep = np.maximum(dep, tr.book.max_pos(np.broadcast_to(p.sid, shape)[m]))
    dep[dep < 0] = -1
    grad = torch.is_grad_enabled() and out.requires_grad
    sids = tr.new_scores(tlo[m], nll, dep, grad, c.short)
    sid = filled(shape, NO_SID, np.int64) if p.sid is None else np.array(np.broadcast_to(p.sid, shape), np.int64)
    sid[m] = sids
    return Prov(np.broadcast_to(p.lo, shape), np.broadcast_to(p.hi, shape), sid)


@rule("gather")
def r_gather(c: OpCall) -> None:
    src = c.b["self"]
    index = c.b["index"]
    out = c.outputs()[0]
    shape = tuple(out.shape)
    dim = _dim(c.b["dim"], src.dim())
    (p,) = replay(c, {"self"}) if c.p(src) is not None else (None,)
    ip = c.p(index)
    excl, mark = target_selection(c, src, dim, ip)
    if excl:
        base = p if p is not None else Prov(filled(shape, E_LO, np.int32), filled(shape, E_HI, np.int32), None)
        if mark is not None:
            base = _score_selection(c, out, base, ip, mark)  # type: ignore[arg-type]
        c.assign(out, base if (p is not None or mark is not None) else None)
        return
    c.assign(out, c.tr.union([p, ip], shape, c.short))


def adv_layout(indices: list[Any], out_ndim: int) -> tuple[int, tuple[int, ...]] | None:
    """Where the broadcast block of advanced indices lands in the output: (first dim, block shape)."""
    pos = [i for i, x in enumerate(indices) if x is not None]
    if not pos:
        return None
    shapes = [tuple(x.shape) for x in indices if x is not None]
    try:
        block = tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None
    adjacent = pos == list(range(pos[0], pos[-1] + 1))
    start = pos[0] if adjacent else 0
    if start + len(block) > out_ndim:
        return None
    return start, block


@rule("index")
def r_index(c: OpCall) -> None:
    src = c.b["self"]
    indices = list(c.b["indices"])
    out = c.outputs()[0]
    shape = tuple(out.shape)
    (p,) = replay(c, {"self"}) if c.p(src) is not None else (None,)
    extra: list[Prov | None] = []
    target: Prov | None = None
    mark = None
    layout = adv_layout(indices, len(shape))
    has_bool = any(isinstance(x, torch.Tensor) and x.dtype in (torch.bool, torch.uint8) for x in indices)
    for d, ix in enumerate(indices):
        if not isinstance(ix, torch.Tensor):
            continue
        ip = c.p(ix)
        if ip is None:
            continue
        if has_bool or layout is None:
            extra.append(hull_prov(c.tr, [ip], shape, c.short))
            continue
        others = sum(1 for j, o in enumerate(indices) if j != d and isinstance(o, torch.Tensor))
        excl, mk = target_selection(c, src, d, ip, rowwise=others > 0)
        placed = place(ip, layout[0], layout[1], shape)
        if excl:
            if mk is not None:
                target, mark = placed, mk
            continue
        extra.append(placed)
    res = c.tr.union([p] + extra, shape, c.short)
    if target is not None and mark is not None:
        base = res if res is not None else Prov(filled(shape, E_LO, np.int32), filled(shape, E_HI, np.int32), None)
        res = _score_selection(c, out, base, target, mark)
    c.assign(out, res)


@rule("index_select")
def r_index_select(c: OpCall) -> None:
    src = c.b["self"]
    out = c.outputs()[0]
    shape = tuple(out.shape)
    dim = _dim(c.b["dim"], src.dim())
    (p,) = replay(c, {"self"}) if c.p(src) is not None else (None,)
    ip = c.p(c.b["index"])
    placed = None
    if ip is not None:
        placed = place(Prov(ip.lo.reshape(-1), ip.hi.reshape(-1), None if ip.sid is None else ip.sid.reshape(-1)),
                        dim, (ip.lo.size,), shape) if len(shape) else hull_prov(c.tr, [ip], shape, c.short)
    c.assign(out, c.tr.union([p, placed], shape, c.short))


@rule("take")
def r_take(c: OpCall) -> None:
    out = c.outputs()[0]
    shape = tuple(out.shape)
    (p,) = replay(c, {"self"}) if c.p(c.b["self"]) is not None else (None,)
    c.assign(out, c.tr.union([p, c.p(c.b["index"])], shape, c.short))


@rule("masked_select")
def r_masked_select(c: OpCall) -> None:
    out = c.outputs()[0]
    shape = tuple(out.shape)
    (p,) = replay(c, {"self"}) if c.p(c.b["self"]) is not None else (None,)
    mp = c.p(c.b["mask"])
    c.assign(out, c.tr.union([p, hull_prov(c.tr, [mp], shape, c.short)], shape, c.short))


@rule("embedding")
def r_embedding(c: OpCall) -> None:
    w, idx = c.b["weight"], c.b["indices"]
    out = c.outputs()[0]
    shape = tuple(out.shape)
    ip, wp = c.p(idx), c.p(w)
    parts: list[Prov | None] = []
    if ip is not None:
        parts.append(broadcast(Prov(ip.lo[..., None], ip.hi[..., None], None if ip.sid is None else ip.sid[..., None]),
                               shape))
    if wp is not None:
        iv = np_values(idx).astype(np.int64)
        parts.append(Prov(wp.lo[iv], wp.hi[iv], None if wp.sid is None else wp.sid[iv]))
    c.assign(out, c.tr.union(parts, shape, c.short))


@rule("embedding_backward")
def r_embedding_backward(c: OpCall) -> None:
    g, idx = c.b["grad_output"], c.b["indices"]
    out = c.outputs()[0]
    shape = tuple(out.shape)
    gp, ip = c.p(g), c.p(idx)
    if gp is None and ip is None:
        return c.assign(out, None)
    iv = np_values(idx).astype(np.int64).reshape(-1)
    d = shape[-1]
    vlo = filled((iv.size, d), E_LO, np.int32)
    vhi = filled((iv.size, d), E_HI, np.int32)
    if gp is not None:
        vlo = np.minimum(vlo, np.broadcast_to(gp.lo, tuple(g.shape)).reshape(iv.size, d))
        vhi = np.maximum(vhi, np.broadcast_to(gp.hi, tuple(g.shape)).reshape(iv.size, d))
    if ip is not None:
        vlo = np.minimum(vlo, ip.lo.reshape(-1, 1))
        vhi = np.maximum(vhi, ip.hi.reshape(-1, 1))
    pad = int(c.b.get("padding_idx", -1) if c.b.get("padding_idx") is not None else -1)
    keep = iv != pad
    lo = filled(shape, E_LO, np.int32)
    hi = filled(shape, E_HI, np.int32)
    np.minimum.at(lo, iv[keep], vlo[keep])
    np.maximum.at(hi, iv[keep], vhi[keep])
    c.assign(out, Prov(lo, hi, None))


# ------------------------------------------------------------------------------------------------
# indexed writes


def _offsets_tensor(tr: Tracer, loc: Loc) -> torch.Tensor:
    return torch.from_numpy(tr.store.offsets(loc))


@rule("write_index")
def r_write_index(c: OpCall) -> None:
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
        return r_unruled(c)
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
        return r_unruled(c)
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


# ------------------------------------------------------------------------------------------------
# reductions, along-dim ops, scans


def _reduce_input(c: OpCall) -> torch.Tensor:
    for n in ("self", "input", "a"):
        if isinstance(c.b.get(n), torch.Tensor):
            return c.b[n]
    return c.operands()[0]


@rule("reduce")
def r_reduce(c: OpCall) -> None:
    x = _reduce_input(c)
    p = c.p(x)
    outs = c.outputs()
    if p is None:
        for t in outs:
            c.assign(t, None)
        return
    nd = x.dim()
    dims = _dims(c.b.get("dim"), nd)
    if dims:
        lo = p.lo.min(axis=dims, keepdims=True)
        hi = p.hi.max(axis=dims, keepdims=True)
    else:
        lo, hi = np.array(p.lo), np.array(p.hi)
    red_shape = tuple(lo.shape)
    sid = c.tr.reduce_sids(p.sid, dims, red_shape, c.short) if p.sid is not None else None
    red = Prov(lo, hi, sid)
    for t in outs:
        c.assign(t, fit(red, tuple(t.shape)))


_SOFTMAX = {"_softmax", "_safe_softmax", "softmax"}
_LOG_SOFTMAX = {"_log_softmax", "log_softmax"}


@rule("along")
def r_along(c: OpCall) -> None:
    name = c.short
    if name.endswith("_backward_data"):
        xs = [c.b["grad_output"], c.b["output"]]
    else:
        xs = [_reduce_input(c)]
    ref = xs[0]
    nd = ref.dim()
    dim = _dim(c.b.get("dim", -1), nd)
    shape = tuple(ref.shape)
    p = c.tr.union([c.p(x) for x in xs], shape, name)
    outs = c.outputs()
    if p is None:
        for t in outs:
            c.assign(t, None)
        return
    lo = p.lo.min(axis=dim, keepdims=True) if nd else p.lo
    hi = p.hi.max(axis=dim, keepdims=True) if nd else p.hi
    sid = c.tr.reduce_sids(p.sid, (dim,), tuple(lo.shape), name) if (p.sid is not None and nd) else None
    row = Prov(lo, hi, sid)
    for t in outs:
        tp = broadcast(row, tuple(t.shape)) if nd else fit(row, tuple(t.shape))
        if name in _SOFTMAX | _LOG_SOFTMAX and tuple(t.shape) == shape and ref.is_floating_point():
            vals = np_values(ref)
            const = np.isneginf(vals) & (np.broadcast_to(p.hi, shape) < 0)  # masked entries: exact 0 / -inf
            tp = set_const(Prov(np.array(tp.lo), np.array(tp.hi), None if tp.sid is None else np.array(tp.sid)),
                            const)
        c.assign(t, tp)
    if name in _SOFTMAX or name in _LOG_SOFTMAX:
        kind = "prob" if name in _SOFTMAX else "logp"
        for t in outs[:1]:
            c.set_mark(t, (kind, shape[dim] if nd else 1))


@rule("scan")
def r_scan(c: OpCall) -> None:
    x = _reduce_input(c)
    p = c.p(x)
    outs = c.outputs()
    if p is None:
        for t in outs:
            c.assign(t, None)
        return
    nd = x.dim()
    dim = _dim(c.b.get("dim", 0), nd)
    if nd:
        lo = np.minimum.accumulate(p.lo, axis=dim).astype(np.int32)
        hi = np.maximum.accumulate(p.hi, axis=dim).astype(np.int32)
    else:
        lo, hi = np.array(p.lo), np.array(p.hi)
    sid = None
    if p.sid is not None and nd:
        moved = np.moveaxis(np.asarray(p.sid), dim, 0)
        acc = [np.array(moved[0], np.int64)]
        for k in range(1, moved.shape[0]):
            acc.append(c.tr.merge_sids([acc[-1], moved[k]], moved.shape[1:], c.short))
        sid = np.moveaxis(np.stack([a if a is not None else filled(moved.shape[1:], NO_SID) for a in acc]), 0, dim)
    for t in outs:
        c.assign(t, fit(Prov(lo, hi, sid), tuple(t.shape)))


# ------------------------------------------------------------------------------------------------
# matrix products



def _const_zero(c: OpCall, t: torch.Tensor, p: Prov | None) -> np.ndarray | None:
    """Elements that are exact untraced zeros: a product term with them contributes nothing."""
    if t.numel() == 0:
        return None
    vals = np_values(t)
    z = vals == 0
    if p is not None:
        z &= p.hi < 0
    return z if z.any() else None


def matmul_prov(c: OpCall, a: torch.Tensor, b_: torch.Tensor, out_shape: tuple[int, ...],
                b_transposed: bool = False) -> Prov | None:
    pa, pb = c.p(a), c.p(b_)
    if pa is None and pb is None:
        return None
    a_shape = tuple(a.shape)
    b_shape = tuple(b_.shape)
    va_t, vb_t = a, b_
    alo = ahi = blo = bhi = None
    if pa is not None:
        alo, ahi = pa.lo, pa.hi
    if pb is not None:
        blo, bhi = pb.lo, pb.hi
    if b_transposed:
        b_shape = b_shape[:-2] + (b_shape[-1], b_shape[-2]) if len(b_shape) >= 2 else b_shape
        if pb is not None and blo.ndim >= 2:
            blo, bhi = np.swapaxes(blo, -1, -2), np.swapaxes(bhi, -1, -2)
    a1 = len(a_shape) == 1
    b1 = len(b_shape) == 1
    if a1:
        a_shape = (1,) + a_shape
        if alo is not None:
            alo, ahi = alo[None, :], ahi[None, :]
    if b1:
        b_shape = b_shape + (1,)
        if blo is not None:
            blo, bhi = blo[:, None], bhi[:, None]
    keep_a = keep_b = None
    if pb is not None:
        z = _const_zero(c, va_t, pa)
        if z is not None:
            keep_a = ~(z[None, :] if a1 else z)
    if pa is not None:
        z = _const_zero(c, vb_t, pb)
        if z is not None:
            if b_transposed and z.ndim >= 2:
                z = np.swapaxes(z, -1, -2)
            keep_b = ~(z[:, None] if b1 else z)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    if alo is not None:
        parts.append(part_from_a(alo, ahi, keep_b))
    if blo is not None:
        parts.append(part_from_b(blo, bhi, keep_a))
    full = np.broadcast_shapes(a_shape[:-2], b_shape[:-2]) + (a_shape[-2], b_shape[-1])
    lo = filled(full, E_LO, np.int32)
    hi = filled(full, E_HI, np.int32)
    for plo, phi in parts:
        np.minimum(lo, plo, out=lo)
        np.maximum(hi, phi, out=hi)
    if a1:
        lo, hi = lo[..., 0, :], hi[..., 0, :]
    if b1:
        lo, hi = lo[..., 0], hi[..., 0]
    sid = None
    if (pa is not None and pa.sid is not None) or (pb is not None and pb.sid is not None):
        c.tr.coarse["matmul_scores"] += 1
        sid = hull_prov(c.tr, [pa, pb], tuple(lo.shape), c.short).sid
    return fit(Prov(lo, hi, sid), out_shape)


@rule("matmul")
def r_matmul(c: OpCall) -> None:
    b = c.b
    n = c.short.rstrip("_")
    out = c.outputs()[0]
    shape = tuple(out.shape)
    extra: list[Prov | None] = []
    if n in ("mm", "bmm", "matmul", "_int_mm"):
        p = matmul_prov(c, b["self"], b.get("mat2", b.get("other")), shape)
    elif n in ("dot", "vdot", "inner"):
        p = matmul_prov(c, b["self"], b.get("tensor", b.get("other")), shape)
    elif n == "mv":
        p = matmul_prov(c, b["self"], b["vec"], shape)
    elif n in ("addmm", "_addmm_activation"):
        p = matmul_prov(c, b["mat1"], b["mat2"], shape)
        extra.append(c.p(b["self"]))
    elif n == "addmv":
        p = matmul_prov(c, b["mat"], b["vec"], shape)
        extra.append(c.p(b["self"]))
    elif n == "baddbmm":
        p = matmul_prov(c, b["batch1"], b["batch2"], shape)
        extra.append(c.p(b["self"]))
    elif n == "addbmm":
        full = matmul_prov(c, b["batch1"], b["batch2"], (b["batch1"].shape[0],) + shape)
        p = None if full is None else Prov(full.lo.min(0), full.hi.max(0), None)
        extra.append(c.p(b["self"]))
    elif n == "linear":
        p = matmul_prov(c, b["input"], b["weight"], shape, b_transposed=True)
        extra.append(c.p(b.get("bias")) if isinstance(b.get("bias"), torch.Tensor) else None)
    elif n == "_scaled_mm":
        p = matmul_prov(c, b["self"], b["mat2"], shape)
        for k in ("scale_a", "scale_b", "scale_result"):
            if isinstance(b.get(k), torch.Tensor):
                extra.append(hull_prov(c.tr, [c.p(b[k])], shape, c.short))
        if isinstance(b.get("bias"), torch.Tensor):
            extra.append(c.p(b["bias"]))
    else:
        return r_unruled(c)
    extra = [None if e is None else broadcast(e, shape) for e in extra]
    c.assign(out, c.tr.union([p] + extra, shape, c.short))


# ------------------------------------------------------------------------------------------------
# attention


def _rows(p: Prov | None, layout: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Union over the head dim -> [B, H, S] (from BHSD or BSHD)."""
    if p is None:
        return None
    lo, hi = p.lo.min(-1), p.hi.max(-1)
    if layout == "bshd":
        lo, hi = np.swapaxes(lo, 1, 2), np.swapaxes(hi, 1, 2)
    return lo, hi


def _expand_heads(x: np.ndarray, hq: int) -> np.ndarray:
    hk = x.shape[1]
    if hk == hq:
        return x
    if hk == 1 or hq % hk:
        return np.broadcast_to(x.min(1, keepdims=True) if x.dtype == np.int32 else x, (x.shape[0], hq) + x.shape[2:])
    return np.repeat(x, hq // hk, axis=1)


def _allowed(c: OpCall, mask: Any, causal: bool, L: int, S: int, bh: tuple[int, int], offset: int) -> np.ndarray | None:
    """Boolean [B or 1, H or 1, L, S] of keys each query may see, or None (all / pure causal)."""
    allowed = None
    if isinstance(mask, torch.Tensor):
        mv = np_values(mask)
        allowed = mv.astype(bool) if mv.dtype == np.bool_ else ~np.isneginf(mv)
        while allowed.ndim < 4:
            allowed = allowed[None]
        allowed = np.broadcast_to(allowed, (allowed.shape[0], allowed.shape[1], L, S))
    if causal and allowed is not None:
        tri = np.arange(S)[None, :] <= (np.arange(L)[:, None] + offset)
        allowed = allowed & tri
    return allowed


def _key_union(kv_lo: np.ndarray, kv_hi: np.ndarray, allowed: np.ndarray | None, causal: bool, L: int,
               offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query row i: union of kv over the keys it may see -> [B, H, L]."""
    S = kv_lo.shape[-1]
    if allowed is None and not causal:
        return (np.broadcast_to(kv_lo.min(-1, keepdims=True), kv_lo.shape[:-1] + (L,)),
                np.broadcast_to(kv_hi.max(-1, keepdims=True), kv_hi.shape[:-1] + (L,)))
    if allowed is None:
        pre_lo = np.minimum.accumulate(kv_lo, axis=-1)
        pre_hi = np.maximum.accumulate(kv_hi, axis=-1)
        j = np.arange(L) + offset
        valid = j >= 0
        jj = np.clip(j, 0, S - 1)
        lo = np.where(valid, pre_lo[..., jj], E_LO)
        hi = np.where(valid, pre_hi[..., jj], E_HI)
        return lo, hi
    los, his = [], []
    step = max(1, _CHUNK_ELEMS // max(1, kv_lo.size))
    for i0 in range(0, L, step):
        al = allowed[..., i0 : i0 + step, :]
        los.append(np.where(al, kv_lo[..., None, :], E_LO).min(-1))
        his.append(np.where(al, kv_hi[..., None, :], E_HI).max(-1))
    return np.concatenate(los, -1), np.concatenate(his, -1)


def _attn_inputs(c: OpCall, layout: str) -> dict[str, Any]:
    b = c.b
    q = b.get("query", b.get("q"))
    k = b.get("key", b.get("k"))
    v = b.get("value", b.get("v"))
    mask = b.get("attn_mask", b.get("attn_bias", b.get("bias")))
    causal = bool(b.get("is_causal", b.get("causal", False)))
    if layout == "bshd":
        B, L, H = q.shape[0], q.shape[1], q.shape[2]
        S = k.shape[1]
    else:
        B, H, L = q.shape[0], q.shape[1], q.shape[2]
        S = k.shape[2]
    # torch SDPA aligns a causal mask top-left; flash-attention (seqlen_q != seqlen_k) bottom-right
    offset = (S - L) if layout == "bshd" else 0
    return dict(q=q, k=k, v=v, mask=mask, causal=causal, B=B, H=H, L=L, S=S, offset=offset)


def _to_layout(lo: np.ndarray, layout: str) -> np.ndarray:
    return np.swapaxes(lo, 1, 2) if layout == "bshd" else lo


def attention_forward(c: OpCall, layout: str) -> None:
    a = _attn_inputs(c, layout)
    H, L, S = a["H"], a["L"], a["S"]
    qr, kr, vr = _rows(c.p(a["q"]), layout), _rows(c.p(a["k"]), layout), _rows(c.p(a["v"]), layout)
    kvshape = (a["B"], a["k"].shape[2] if layout == "bshd" else a["k"].shape[1], S)
    kv_lo = filled(kvshape, E_LO, np.int32)
    kv_hi = filled(kvshape, E_HI, np.int32)
    for r in (kr, vr):
        if r is not None:
            np.minimum(kv_lo, r[0], out=kv_lo)
            np.maximum(kv_hi, r[1], out=kv_hi)
    kv_lo, kv_hi = _expand_heads(kv_lo, H), _expand_heads(kv_hi, H)
    allowed = _allowed(c, a["mask"], a["causal"], L, S, (a["B"], H), a["offset"])
    lo, hi = _key_union(kv_lo, kv_hi, allowed, a["causal"], L, a["offset"])
    lo = np.broadcast_to(lo, (a["B"], H, L)).copy()
    hi = np.broadcast_to(hi, (a["B"], H, L)).copy()
    if qr is not None:
        np.minimum(lo, qr[0], out=lo)
        np.maximum(hi, qr[1], out=hi)
    mp = c.p(a["mask"]) if isinstance(a["mask"], torch.Tensor) else None
    if mp is not None:  # a traced mask (document boundaries from tokens): the row depends on it
        mlo = np.broadcast_to(mp.lo.min(-1), (a["B"], H, L)) if mp.lo.ndim else mp.lo
        mhi = np.broadcast_to(mp.hi.max(-1), (a["B"], H, L)) if mp.hi.ndim else mp.hi
        lo = np.minimum(lo, mlo)
        hi = np.maximum(hi, mhi)
    outs = c.outputs()
    if not outs:
        return
    out = outs[0]
    row = Prov(_to_layout(lo, layout)[..., None], _to_layout(hi, layout)[..., None], None)
    c.assign(out, broadcast(row, tuple(out.shape)))
    for t in outs[1:2]:  # logsumexp: one value per query row
        if t.numel() == lo.size:
            c.assign(t, fit(Prov(lo, hi, None), tuple(t.shape)))
    if any(p is not None and p.sid is not None for p in (c.p(a["q"]), c.p(a["k"]), c.p(a["v"]))):
        c.tr.coarse["attention_scores_dropped"] += 1


@rule("attention")
def r_attention(c: OpCall) -> None:
    layout = "bshd" if c.short in ("_flash_attention_forward", "_efficient_attention_forward") else "bhsd"
    attention_forward(c, layout)


@rule("attention_bshd")
def r_attention_bshd(c: OpCall) -> None:
    b = c.b
    if not all(isinstance(b.get(n), torch.Tensor) for n in ("q", "k", "v")) and not all(
        isinstance(b.get(n), torch.Tensor) for n in ("query", "key", "value")
    ):
        return r_unruled(c)
    attention_forward(c, "bshd")


@rule("attention_backward")
def r_attention_backward(c: OpCall) -> None:
    layout = "bshd" if c.short in ("_flash_attention_backward", "_efficient_attention_backward") else "bhsd"
    a = _attn_inputs(c, layout)
    B, H, L, S = a["B"], a["H"], a["L"], a["S"]
    Hk = a["k"].shape[2] if layout == "bshd" else a["k"].shape[1]
    kv = [r for r in (_rows(c.p(a["k"]), layout), _rows(c.p(a["v"]), layout)) if r is not None]
    kv_lo = filled((B, Hk, S), E_LO, np.int32)
    kv_hi = filled((B, Hk, S), E_HI, np.int32)
    for r in kv:
        np.minimum(kv_lo, r[0], out=kv_lo)
        np.maximum(kv_hi, r[1], out=kv_hi)
    kvq_lo, kvq_hi = _expand_heads(kv_lo, H), _expand_heads(kv_hi, H)
    allowed = _allowed(c, a["mask"], a["causal"], L, S, (B, H), a["offset"])
    p_lo, p_hi = _key_union(kvq_lo, kvq_hi, allowed, a["causal"], L, a["offset"])
    r_lo = np.broadcast_to(p_lo, (B, H, L)).copy()
    r_hi = np.broadcast_to(p_hi, (B, H, L)).copy()
    names = [n for n in ("grad_out", "grad_out_", "out", "query", "q", "dout") if isinstance(c.b.get(n), torch.Tensor)]
    for n in names:
        r = _rows(c.p(c.b[n]), layout)
        if r is not None:
            np.minimum(r_lo, r[0], out=r_lo)
            np.maximum(r_hi, r[1], out=r_hi)
    lse = c.b.get("logsumexp", c.b.get("softmax_lse"))
    lp = c.p(lse) if isinstance(lse, torch.Tensor) else None
    if lp is not None and lp.lo.size == r_lo.size:
        np.minimum(r_lo, lp.lo.reshape(r_lo.shape), out=r_lo)
        np.maximum(r_hi, lp.hi.reshape(r_hi.shape), out=r_hi)
    # keys/values: union over the queries that see them
    if allowed is None and a["causal"]:
        # query i sees key j iff j <= i + offset  <=>  i >= j - offset
        suf_lo = np.minimum.accumulate(r_lo[..., ::-1], axis=-1)[..., ::-1]
        suf_hi = np.maximum.accumulate(r_hi[..., ::-1], axis=-1)[..., ::-1]
        i0 = np.arange(S) - a["offset"]
        valid = i0 <= L - 1
        ii = np.clip(i0, 0, L - 1)
        g_lo = np.where(valid, suf_lo[..., ii], E_LO)
        g_hi = np.where(valid, suf_hi[..., ii], E_HI)
    elif allowed is None:
        g_lo = np.broadcast_to(r_lo.min(-1, keepdims=True), (B, H, S))
        g_hi = np.broadcast_to(r_hi.max(-1, keepdims=True), (B, H, S))
    else:
        al = np.broadcast_to(allowed, (B, H, L, S))
        g_lo = np.where(al, r_lo[..., :, None], E_LO).min(-2)
        g_hi = np.where(al, r_hi[..., :, None], E_HI).max(-2)
    if Hk != H:
        if H % Hk == 0:
            g_lo = g_lo.reshape(B, Hk, H // Hk, S).min(2)
            g_hi = g_hi.reshape(B, Hk, H // Hk, S).max(2)
        else:
            g_lo = np.broadcast_to(g_lo.min(1, keepdims=True), (B, Hk, S))
            g_hi = np.broadcast_to(g_hi.max(1, keepdims=True), (B, Hk, S))
    g_lo = np.minimum(g_lo, kv_lo)
    g_hi = np.maximum(g_hi, kv_hi)
    outs = c.outputs()
    qrow = Prov(_to_layout(r_lo, layout)[..., None], _to_layout(r_hi, layout)[..., None], None)
    krow = Prov(_to_layout(g_lo, layout)[..., None], _to_layout(g_hi, layout)[..., None], None)
    for i, t in enumerate(outs):
        if i == 0:
            c.assign(t, broadcast(qrow, tuple(t.shape)))
        elif i in (1, 2):
            c.assign(t, broadcast(krow, tuple(t.shape)) if t.dim() == 4 else hull_prov(c.tr, [qrow, krow], tuple(t.shape), c.short))
        else:
            c.assign(t, hull_prov(c.tr, [qrow, krow], tuple(t.shape), c.short))


# ------------------------------------------------------------------------------------------------
# normalization


def _norm_forward(c: OpCall, with_bias: bool) -> None:
    x = c.b["input"]
    k = len(c.b["normalized_shape"])
    shape = tuple(x.shape)
    p = c.p(x)
    axes = tuple(range(len(shape) - k, len(shape)))
    parts: list[Prov | None] = []
    row = None
    if p is not None:
        row = Prov(p.lo.min(axis=axes, keepdims=True), p.hi.max(axis=axes, keepdims=True), None)
        parts.append(broadcast(row, shape))
    for n in ("weight", "bias") if with_bias else ("weight",):
        w = c.b.get(n)
        if isinstance(w, torch.Tensor):
            parts.append(None if c.p(w) is None else broadcast(c.p(w), shape))
    outs = c.outputs()
    if not outs:
        return
    c.assign(outs[0], c.tr.union(parts, shape, c.short))
    for t in outs[1:]:
        c.assign(t, None if row is None else fit(row, tuple(t.shape)))


def _norm_backward(c: OpCall) -> None:
    x = c.b["input"]
    k = len(c.b["normalized_shape"])
    shape = tuple(x.shape)
    axes = tuple(range(len(shape) - k, len(shape)))
    lead = tuple(range(len(shape) - k))
    stats = [c.p(c.b[n]) for n in ("mean", "rstd") if isinstance(c.b.get(n), torch.Tensor)]
    stats = [None if s is None else fit(s, shape[: len(shape) - k] + (1,) * k) for s in stats]
    elem = c.tr.union([c.p(c.b["grad_out"]), c.p(x)] + [None if s is None else broadcast(s, shape) for s in stats],
                      shape, c.short)
    w = c.b.get("weight")
    wp = c.p(w) if isinstance(w, torch.Tensor) else None
    outs = c.outputs()
    if elem is None and wp is None:
        for t in outs:
            c.assign(t, None)
        return
    for i, t in enumerate(outs):
        ts = tuple(t.shape)
        if i == 0:
            parts = []
            if elem is not None:
                parts.append(broadcast(Prov(elem.lo.min(axis=axes, keepdims=True), elem.hi.max(axis=axes, keepdims=True),
                                            None), shape))
            if wp is not None:
                parts.append(hull_prov(c.tr, [wp], shape, c.short))
            c.assign(t, c.tr.union(parts, ts, c.short))
        else:
            if elem is None:
                c.assign(t, None)
            else:
                red = Prov(elem.lo.min(axis=lead), elem.hi.max(axis=lead), None) if lead else elem
                c.assign(t, fit(red, ts))


@rule("layer_norm")
def r_layer_norm(c: OpCall) -> None:
    _norm_forward(c, with_bias=True)


@rule("rms_norm")
def r_rms_norm(c: OpCall) -> None:
    _norm_forward(c, with_bias=False)


@rule("layer_norm_backward")
def r_layer_norm_backward(c: OpCall) -> None:
    _norm_backward(c)


@rule("rms_norm_backward")
def r_rms_norm_backward(c: OpCall) -> None:
    _norm_backward(c)


# ------------------------------------------------------------------------------------------------
# negative log-likelihood


@rule("nll")
def r_nll(c: OpCall) -> None:
    tr = c.tr
    x, target = c.b["self"], c.b["target"]
    w = c.b.get("weight")
    reduction = int(c.b.get("reduction", 1))
    ignore = int(c.b.get("ignore_index", -100))
    outs = c.outputs()
    out, total = outs[0], (outs[1] if len(outs) > 1 else None)
    cdim = 1 if x.dim() >= 2 else 0
    C = x.shape[cdim]
    tv = np_values(target).astype(np.int64)
    valid = tv != ignore
    safe = np.where(valid, tv, 0)
    xp, tp = c.p(x), c.p(target)
    wp = c.p(w) if isinstance(w, torch.Tensor) else None
    tshape = tuple(target.shape)
    # selected entry of the class dim for every target element
    if x.dim() >= 2:
        sel_idx = np.expand_dims(safe, cdim)
        take = lambda a: np.take_along_axis(np.asarray(a), sel_idx, axis=cdim).squeeze(cdim)  # noqa: E731
    else:
        take = lambda a: np.asarray(a)[safe]  # noqa: E731
    parts: list[Prov | None] = []
    if xp is not None:
        parts.append(Prov(take(xp.lo), take(xp.hi), None if xp.sid is None else take(xp.sid)))
    if wp is not None:
        parts.append(Prov(wp.lo[safe], wp.hi[safe], None))
    exclude = tr.vocab is None or C == tr.vocab
    exact_target = tp is None or exact(tp)
    if tp is not None and not exact_target:
        tr.imprecise_targets += 1
    if tp is not None and (not exclude or not exact_target):
        parts.append(tp)  # not a target selection from a vocabulary row: the index counts
    el = tr.union(parts, tshape, c.short)
    sid = None
    if tp is not None:
        m = (np.broadcast_to(tp.hi, tshape) >= 0) & valid
        if m.any():
            vals = take(np_values(x)).astype(np.float64)
            nll = -vals[m]
            dep_src = el.hi if el is not None else filled(tshape, -1)
            dep = np.asarray(dep_src)[m].astype(np.int64)
            if el is not None and el.sid is not None:  # log-probs built from target-selected values
                dep = np.maximum(dep, tr.book.max_pos(np.broadcast_to(el.sid, tshape)[m]))
            dep[dep < 0] = -1
            pos = np.broadcast_to(tp.hi, tshape)[m].astype(np.int64)
            grad = torch.is_grad_enabled() and x.requires_grad
            op = "nll_loss2d" if "2d" in c.short else "nll_loss"
            sids = tr.new_scores(pos, nll, dep, grad, op)
            sid = filled(tshape, NO_SID, np.int64)
            sid[m] = sids
    if el is None and sid is None:
        c.assign(out, None)
        return
    if el is None:
        el = Prov(filled(tshape, E_LO, np.int32), filled(tshape, E_HI, np.int32), None)
    el = Prov(np.where(valid, el.lo, E_LO).astype(np.int32), np.where(valid, el.hi, E_HI).astype(np.int32), sid)
    if reduction == 0:
        c.assign(out, el)
    else:
        bag = tr.reduce_sids(el.sid, tuple(range(len(tshape))), (), "nll_loss") if el.sid is not None else None
        lo, hi = hull(el)
        c.assign(out, Prov(filled((), lo, np.int32), filled((), hi, np.int32), bag))
    if total is not None:
        c.assign(total, None)  # the normalizer's dependence on which targets are ignored is not followed


@rule("nll_backward")
def r_nll_backward(c: OpCall) -> None:
    x, target = c.b["self"], c.b["target"]
    out = c.outputs()[0]
    shape = tuple(out.shape)
    cdim = 1 if x.dim() >= 2 else 0
    tp, gp = c.p(target), c.p(c.b["grad_output"])
    w = c.b.get("weight")
    wp = c.p(w) if isinstance(w, torch.Tensor) else None
    parts: list[Prov | None] = []
    if tp is not None:
        parts.append(broadcast(Prov(np.expand_dims(tp.lo, cdim) if x.dim() >= 2 else tp.lo,
                                    np.expand_dims(tp.hi, cdim) if x.dim() >= 2 else tp.hi, None), shape))
    if gp is not None:
        if gp.lo.size == target.numel() and target.numel() > 1:
            parts.append(broadcast(Prov(np.expand_dims(gp.lo.reshape(tuple(target.shape)), cdim),
                                        np.expand_dims(gp.hi.reshape(tuple(target.shape)), cdim), None), shape))
        else:
            parts.append(hull_prov(c.tr, [gp], shape, c.short))
    if wp is not None:
        parts.append(hull_prov(c.tr, [wp], shape, c.short))
    c.assign(out, c.tr.union(parts, shape, c.short))


# ------------------------------------------------------------------------------------------------
# lists of tensors: _foreach_*, fused optimizers


@rule("foreach")
def r_foreach(c: OpCall) -> None:
    """_foreach_<op>(lists..., tensors/scalars): the pointwise rule per list index."""
    name = c.short
    b = c.b
    lists = [b[n] for n in c.info.names
             if isinstance(b.get(n), (list, tuple)) and b[n] and isinstance(b[n][0], torch.Tensor)]
    if not lists:
        return r_unruled(c)
    singles = [b[n] for n in c.info.names if isinstance(b.get(n), (torch.Tensor, int, float))]
    outs = c.outputs()
    for i, t in enumerate(outs[: len(lists[0])]):
        shape = tuple(t.shape)
        if name == "_foreach_zero_":
            c.assign(t, None)
            continue
        if name in ("_foreach_copy_", "_foreach_copy"):
            sp = c.p(b["src"][i])
            c.assign(t, None if sp is None else fit(sp, shape))
            continue
        ops: list[Any] = [lst[i] for lst in lists] + singles
        ps = []
        for x in ops:
            p = c.p(x)
            if p is not None:
                try:
                    ps.append(broadcast(p, shape))
                except ValueError:
                    ps.append(hull_prov(c.tr, [p], shape, name))
        p = c.tr.union(ps, shape, name)
        if p is not None and name.rstrip("_") == "_foreach_mul":
            m = _const_mask(c, [x for x in ops if not isinstance(x, torch.Tensor) or x.numel() in (1, t.numel())],
                            shape, "mul")
            if m is not None:
                p = set_const(p, m)
        c.assign(t, p)


@rule("foreach_reduce")
def r_foreach_reduce(c: OpCall) -> None:
    src = c.b["self"]
    outs = c.outputs()
    for x, t in zip(src, outs):
        c.assign(t, hull_prov(c.tr, [c.p(x)], tuple(t.shape), c.short))


@rule("fused_optim")
def r_fused_optim(c: OpCall) -> None:
    b = c.b
    lists = [b[n] for n in c.info.names if isinstance(b.get(n), (list, tuple)) and b[n] and isinstance(b[n][0], torch.Tensor)]
    mutated = [b[n] for n in c.info.mutated if isinstance(b.get(n), (list, tuple))]
    singles = [b[n] for n in c.info.names if isinstance(b.get(n), torch.Tensor)]
    n_items = len(b["self"])
    for i in range(n_items):
        ref = b["self"][i]
        shape = tuple(ref.shape)
        ps = []
        for lst in lists:
            if i < len(lst):
                x = lst[i]
                p = c.p(x)
                if p is not None:
                    ps.append(broadcast(p, shape) if tuple(x.shape) == shape else hull_prov(c.tr, [p], shape, c.short))
        ps += [hull_prov(c.tr, [c.p(s)], shape, c.short) for s in singles]
        p = c.tr.union(ps, shape, c.short)
        for lst in mutated:
            if i < len(lst) and tuple(lst[i].shape) == shape:
                c.assign(lst[i], p)


# ------------------------------------------------------------------------------------------------
# counting and membership


@rule("bincount")
def r_bincount(c: OpCall) -> None:
    if c.short != "bincount":
        return r_unruled(c)
    x = c.b["self"]
    out = c.outputs()[0]
    shape = tuple(out.shape)
    xp = c.p(x)
    w = c.b.get("weights")
    wp = c.p(w) if isinstance(w, torch.Tensor) else None
    if xp is None and wp is None:
        return c.assign(out, None)
    iv = np_values(x).astype(np.int64).ravel()
    vals = c.tr.union([xp, wp], tuple(x.shape), c.short)
    lo = filled(shape, E_LO, np.int32)
    hi = filled(shape, E_HI, np.int32)
    np.minimum.at(lo, iv, np.asarray(vals.lo).ravel())  # type: ignore[union-attr]
    np.maximum.at(hi, iv, np.asarray(vals.hi).ravel())  # type: ignore[union-attr]
    c.assign(out, Prov(lo, hi, None))


@rule("set_membership")
def r_set_membership(c: OpCall) -> None:
    b = c.b
    if c.short == "isin":
        elem, test = b.get("elements"), b.get("test_elements")
    elif c.short == "searchsorted":
        elem, test = b.get("self", b.get("input")), b.get("sorted_sequence")
    else:
        elem, test = b.get("self"), b.get("boundaries")
    out = c.outputs()[0]
    shape = tuple(out.shape)
    parts = []
    if isinstance(elem, torch.Tensor) and c.p(elem) is not None:
        parts.append(fit(c.p(elem), shape))
    if isinstance(test, torch.Tensor):
        parts.append(hull_prov(c.tr, [c.p(test)], shape, c.short))
    c.assign(out, c.tr.union(parts, shape, c.short))
