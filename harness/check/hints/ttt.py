"""Hint patterns for training on validation before scoring it: ttt_before_score (C3: optimizer
steps / backward over validation tokens with no scoring earlier in the loop) and delta_vs_targets
(C1: a fresh requires_grad delta / logit bias optimized against the targets before they are scored).
"""

from __future__ import annotations

import ast
import re

from harness.check.hints.index import _Index, _hint, _is_direct_step, _score_first, _scored_before
from harness.check.hints.syntax import _assigned_names, _callee, _dotted, _inside, _is_val_ident, _names, _pos, _text
from harness.check.hints.vocabulary import _DELTAY, _EVALISH, _FUNCS, _LOSSY, _LOSS_CALL, _OPT_CTOR
from harness.results import Hint


_NEW_TENSOR = {"zeros", "ones", "empty", "full", "randn", "rand", "tensor", "zeros_like", "ones_like", "empty_like",
               "full_like", "randn_like", "new_zeros", "new_ones", "new_full", "new_empty", "clone", "detach"}


def _delta_vars(ix: _Index, scope: ast.AST) -> dict[str, ast.AST]:
    """Tensors created with requires_grad in this scope (not module parameters in __init__)."""
    if getattr(scope, "name", "") == "__init__":
        return {}
    out: dict[str, ast.AST] = {}
    fresh_tensors = {t.id for n in ix.walk(scope) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
                     and _callee(n.value) in _NEW_TENSOR for t in n.targets if isinstance(t, ast.Name)}
    for n in ix.walk(scope):
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call):
            v = n.value
            fresh = any(k.arg == "requires_grad" and _text(k.value) == "True" for k in v.keywords)
            fresh = fresh or _dotted(v.func).endswith("Parameter")
            fresh = fresh or (isinstance(v.func, ast.Attribute) and v.func.attr == "requires_grad_"
                              and (not v.args or _text(v.args[0]) == "True"))
            if fresh:
                for name in _assigned_names(n.targets[0]):
                    out.setdefault(name, n)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "requires_grad_":
            # x.requires_grad_() counts only for a tensor made here (x = torch.zeros(...)), not for
            # existing parameters switched on for TTT (for p in params: p.requires_grad_(True))
            if isinstance(n.func.value, ast.Name) and (not n.args or _text(n.args[0]) == "True") and \
                    n.func.value.id in fresh_tensors:
                out.setdefault(n.func.value.id, n)
    return out


def _target_loss(ix: _Index, scope: ast.AST) -> ast.AST | None:
    for n in ix.walk(scope):
        if isinstance(n, ast.Call) and (_LOSS_CALL.search(_callee(n) or "-") or _LOSSY.search(_callee(n) or "-")):
            if any(ix.refs_target(a, scope) is not None for a in [*n.args, *(k.value for k in n.keywords)]):
                return n
    return None


def _single_value(ix: _Index, scope: ast.AST, name: str) -> ast.AST | None:
    """The value of the only assignment `name = value` in scope, else None."""
    vals = [n.value for n in ix.walk(scope) if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)]
    return vals[0] if len(vals) == 1 else None


def _head_slice(expr: ast.AST) -> ast.Slice | None:
    """The slice of `y[:s]` / `y.squeeze(0)[:s]` / `y[0, :s]` (the last slice of a subscript)."""
    if not isinstance(expr, ast.Subscript):
        return None
    sl = expr.slice
    if isinstance(sl, ast.Tuple):
        sl = next((e for e in reversed(sl.elts) if isinstance(e, ast.Slice)), None)
    return sl if isinstance(sl, ast.Slice) else None


def _fit_on_context_only(ix: _Index, scope: ast.AST, name: str) -> bool:
    """True when every loss that `name` is fitted against takes its targets from a prefix slice `[:u]`
    and the scope also slices from `u` on (`[u:...]`): the sliding-window pattern that fits on the window's
    context (scored by earlier windows) and scores the tokens after it. SLOT fits on the scored slice."""
    losses = [n for n in ix.walk(scope) if isinstance(n, ast.Call)
              and (_LOSS_CALL.search(_callee(n) or "-") or _LOSSY.search(_callee(n) or "-"))
              and any(s == name for s, _ in _names(n))]
    if not losses:
        return False
    uppers: set[str] = set()
    for loss in losses:
        tgts = [a for a in [*loss.args, *(k.value for k in loss.keywords)]
                if ix.refs_target(a, scope) is not None and not any(s == name for s, _ in _names(a))]
        if not tgts:
            return False
        for a in tgts:
            v = _single_value(ix, scope, a.id) if isinstance(a, ast.Name) else a
            sl = _head_slice(v) if v is not None else None
            if sl is None or sl.lower is not None or sl.upper is None or sl.step is not None:
                return False
            uppers.add(_text(sl.upper))
    lowers = {_text(sl.lower) for n in ix.walk(scope) if (sl := _head_slice(n)) is not None and sl.lower is not None}
    return bool(uppers) and uppers <= lowers


def _steps_context_fit(ix: _Index, scope: ast.AST, step: ast.Call) -> bool:
    """`opt.step()` where opt optimizes only fresh tensors fitted on context slices (_fit_on_context_only),
    or `loss.backward()` where loss is such a fit (a step on other parameters is its own site)."""
    if not (isinstance(step.func, ast.Attribute) and isinstance(step.func.value, ast.Name)):
        return False
    if step.func.attr == "backward":
        value = _single_value(ix, scope, step.func.value.id)
        deltas = _delta_vars(ix, scope)
        fitted = {s for s, _ in _names(value)} & set(deltas) if value is not None else set()
        return bool(fitted) and all(_fit_on_context_only(ix, scope, d) for d in fitted)
    ctor = _single_value(ix, scope, step.func.value.id)
    if not (isinstance(ctor, ast.Call) and _OPT_CTOR.search(_dotted(ctor.func)) and ctor.args):
        return False
    deltas = _delta_vars(ix, scope)
    params = {s for s, _ in _names(ctor.args[0])}
    return bool(params) and params <= set(deltas) and all(_fit_on_context_only(ix, scope, p) for p in params)


def _p_steps(ix: _Index, fn: str) -> list[Hint]:
    """ttt_before_score and delta_vs_targets: gradient steps on validation data not preceded by scoring."""
    hints: list[Hint] = []
    direct: dict[ast.AST, list[ast.Call]] = {}
    for node in ast.walk(ix.tree):
        if isinstance(node, ast.Call) and _is_direct_step(node):
            direct.setdefault(ix.scope_of(node), []).append(node)

    # functions that contain an unscored step (directly, or by calling such a function)
    unscored: set[str] = set()
    for scope, steps in direct.items():
        if isinstance(scope, _FUNCS) and any(not any(_scored_before(ix, lp, s) for lp in ix.loops_around(s))
                                             for s in steps):
            unscored.add(scope.name)
    changed = True
    while changed:
        changed = False
        for name, calls in ix.calls.items():
            if name not in unscored:
                continue
            for c in calls:
                sc = ix.scope_of(c)
                if isinstance(sc, _FUNCS) and sc.name not in unscored and sc.name != name:
                    if not any(_scored_before(ix, lp, c) for lp in ix.loops_around(c)):
                        unscored.add(sc.name)
                        changed = True

    flagged_funcs: set[str] = set()
    seen_loops: set[ast.AST] = set()

    # 1. SLOT-like: a fresh requires_grad tensor optimized against the targets
    for scope in ix.scopes:
        deltas = _delta_vars(ix, scope)
        if not deltas:
            continue
        loss = _target_loss(ix, scope)
        if loss is None:
            continue
        for name, created in deltas.items():
            optimized = any(
                isinstance(n, ast.Call)
                and (_OPT_CTOR.search(_dotted(n.func)) or _dotted(n.func).endswith("autograd.grad"))
                and any(s == name for s, _ in _names(n))
                for n in ix.walk(scope)
            )
            if not optimized or _fit_on_context_only(ix, scope, name):
                continue
            steps = [s for s in direct.get(scope, []) if not _score_first(ix, s)
                     and not any(ix.reads_train(lp) is not None for lp in ix.loops_around(s))]
            evalish = (ix.refs_val(scope, scope) is not None or _EVALISH.search(ix.scopes[scope].name)
                       or _DELTAY.search(name) or re.search(r"ttt|slot|adapt", ix.scopes[scope].name, re.I))
            if steps and evalish:
                hints.append(_hint(
                    ix, fn, "delta_vs_targets", created,
                    f"'{name}' is created with requires_grad and optimized against the targets "
                    f"(loss at line {loss.lineno}, step at line {steps[0].lineno}) before they are scored; "
                    f"C1/C3 forbid choosing parameters with the tokens being scored (SLOT)."))
                flagged_funcs.add(ix.scopes[scope].name)
                break

    # 2. TTT before score: steps (or calls to unscored-stepping functions) in loops over validation data
    sites: list[tuple[ast.AST, ast.Call, bool]] = []
    for scope, steps in direct.items():
        sites += [(scope, s, False) for s in steps]
    for name in unscored:
        for c in ix.calls.get(name, []):
            sites.append((ix.scope_of(c), c, True))
    sites.sort(key=lambda t: (0 if not t[2] else 1, _pos(t[1])))
    for scope, site, via_call in sites:
        sname = ix.scopes[scope].name if scope in ix.scopes else "<module>"
        if sname in flagged_funcs:
            continue
        if via_call and _callee(site) in flagged_funcs:
            continue  # the callee already carries the hint
        if via_call and ix.reads_train(site) is not None:
            continue  # it trains on training data (the main training run), even if it is handed val data
        if _score_first(ix, site):
            continue
        if _steps_context_fit(ix, scope, site):
            continue  # fits a fresh delta on the window's already-scored context, then scores after it
        if isinstance(scope, _FUNCS) and scope.name not in ix.used:
            continue  # never called nor passed anywhere: its callers would decide, and there are none
        loops = ix.loops_around(site)
        outer = loops[-1] if loops else None
        if outer is not None:
            if outer in seen_loops or ix.reads_train(outer) is not None:
                continue  # the main training loop (it reads training data) is not TTT
            ref = _val_loss_ref(ix, outer, scope) if not via_call else ix.refs_val(outer, scope)
        elif via_call:
            ref = next((r for a in [*site.args, *(k.value for k in site.keywords)]
                        if (r := ix.refs_val(a, scope)) is not None), None)
        else:
            continue  # a lone step outside any loop: its callers decide
        if ref is None:
            continue
        if outer is not None:
            seen_loops.add(outer)
        chain = _call_chain(ix, scope)
        flagged_funcs.update(name for name, _ in chain)
        if isinstance(scope, _FUNCS):
            flagged_funcs.add(scope.name)
        what = f"calls {_callee(site)}(), which takes gradient steps," if via_call else "takes a gradient step"
        where = (f"The loop at line {outer.lineno} {what}" if outer is not None else f"This code {what}")
        scored = "with no scoring before it in the same loop" if outer is not None else "with nothing scored first"
        reached = (" (reached from " + " <- ".join(f"{n}() line {ln}" if n != "<module>" else f"module line {ln}"
                                                   for n, ln in chain) + ")") if chain else ""
        hints.append(_hint(
            ix, fn, "ttt_before_score", site,
            f"{where} on validation data ('{_text(ref)[:40]}', line {getattr(ref, 'lineno', '?')}) {scored}"
            f"{reached}; C3 requires every token to be scored before any update uses it."))
    return hints


def _call_chain(ix: _Index, scope: ast.AST, depth: int = 4) -> list[tuple[str, int]]:
    """Who calls this function without scoring first: [(caller, line), ...] up to `depth` levels."""
    chain: list[tuple[str, int]] = []
    seen: set[str] = set()
    while depth > 0 and isinstance(scope, _FUNCS) and scope.name not in seen:
        seen.add(scope.name)
        site = next((c for c in ix.calls.get(scope.name, [])
                     if not _inside(c, scope) and not _score_first(ix, c)), None)
        if site is None:
            break
        scope = ix.scope_of(site)
        chain.append((getattr(scope, "name", "<module>"), site.lineno))
        depth -= 1
    return chain


def _val_loss_ref(ix: _Index, loop: ast.AST, scope: ast.AST) -> ast.AST | None:
    """The validation data a loop's gradient comes from: what its backward() losses derive from; for
    loops without backward() (closures, manual updates) any validation read in the loop."""
    backs = [c for c in ix.walk(loop) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
             and c.func.attr == "backward"]
    if not backs:
        return ix.refs_val(loop, scope)
    val = ix.scopes[scope].val
    if not any(s in val or _is_val_ident(s) for b in backs for s, _ in _names(b.func.value)):
        return None
    return ix.refs_val(loop, scope)
