"""Hint pattern min_over_passes (C4): a minimum / best-of over per-token losses, or scores
overwritten inside an epoch loop that trains on validation (the last epoch's scores kept).
"""

from __future__ import annotations

import ast
import re

from harness.check.hints.index import _Index, _hint
from harness.check.hints.syntax import _callee, _dotted, _names, _text
from harness.check.hints.vocabulary import _EPOCHY, _LOSSY, _evalish
from harness.results import Hint


_STACKING = ("stack", "vstack", "hstack", "cat", "concatenate", "array", "tensor")


def _loss_like(node: ast.AST) -> bool:
    return any(_LOSSY.search(s) for s, _ in _names(node) if s.isidentifier())


def _eval_context(ix: _Index, scope: ast.AST, node: ast.AST) -> bool:
    """Evaluation code (touches validation data, or is named like it), or per-token losses (nll)."""
    if any(re.search(r"nll|per_tok|token_loss|tok_loss", s, re.I) for s, _ in _names(node)):
        return True
    name = getattr(scope, "name", "")
    return bool(re.search(r"eval|ttt|score|pass|val", name, re.I)) or ix.refs_val(scope, scope) is not None


def _p_min_over_passes(ix: _Index, fn: str) -> list[Hint]:
    hints: list[Hint] = []
    for scope in ix.scopes:
        for n in ix.walk(scope):
            if isinstance(n, ast.Call):
                name = _callee(n)
                d = _dotted(n.func)
                args = [*n.args, *(k.value for k in n.keywords)]
                hit = False
                if name in ("minimum", "fmin") and any(_loss_like(a) for a in args):
                    hit = True  # torch.minimum(best_nll, nll), np.minimum(...)
                elif name in ("min", "amin", "nanmin") and isinstance(n.func, ast.Attribute):
                    stacked = any(isinstance(x, ast.Call) and _callee(x) in _STACKING
                                  for a in [n.func.value, *args] for x in ast.walk(a))
                    two_tensors = len(n.args) >= 2 and not any(isinstance(a, ast.Constant) for a in n.args[:2])
                    if (stacked or two_tensors) and (_loss_like(n) or _loss_like(n.func.value)):
                        hit = True  # torch.min(torch.stack(per_pass_nll), dim=0), torch.min(a_nll, b_nll)
                elif name == "min" and isinstance(n.func, ast.Name) and ix.loops_around(n) and len(n.args) >= 2 \
                        and all(isinstance(a, (ast.Name, ast.Subscript, ast.Attribute)) for a in n.args):
                    # min(best_nll[i], nll[i]); not min(nll.numel(), limit)
                    if any(re.search(r"nll|per_tok|tok(?:en)?_loss|losses", s) for a in args for s, _ in _names(a)):
                        hit = True
                elif name == "where" and n.args and isinstance(n.args[0], ast.Compare):
                    cmp = n.args[0]
                    if isinstance(cmp.ops[0], (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) and \
                            _loss_like(cmp.left) and _loss_like(cmp.comparators[0]):
                        hit = True  # torch.where(nll < best_nll, nll, best_nll)
                if hit and not d.startswith(("math.", "builtins.")) and _eval_context(ix, scope, n):
                    hints.append(_hint(ix, fn, "min_over_passes", n,
                                       "Per-token losses are combined with a minimum / best-of; C4 forbids "
                                       "picking, per token, the best of several passes after seeing the target."))
        # scores overwritten inside an epoch/pass loop that trains on validation: the last epoch's are kept
        for loop in (n for n in ix.walk(scope) if isinstance(n, (ast.For, ast.AsyncFor))):
            if not (_EPOCHY.search(_text(loop.target)) or _EPOCHY.search(_text(loop.iter))):
                continue
            if ix.refs_val(loop, scope) is None or not ix.steps_in(loop):
                continue
            for st in ix.walk(loop):
                if not isinstance(st, ast.Assign):
                    continue
                t = st.targets[0]
                kept = isinstance(t, ast.Subscript) and _loss_like(t.value)
                if isinstance(st.value, ast.Call) and isinstance(t, (ast.Name, ast.Tuple)):
                    # val_loss, val_bpb = ttt_epoch(...) / eval_val(...): rebound every pass
                    callee = _callee(st.value)
                    scores = _evalish(callee) and callee != "eval"
                    scores = scores or (callee in ix.stepping() and _loss_like(t))
                    kept = kept or scores
                if kept:
                    hints.append(_hint(ix, fn, "min_over_passes", st,
                                       f"Scores are assigned inside the epoch/pass loop at line {loop.lineno} that "
                                       f"trains on validation, so the last pass's scores are kept; C4 requires "
                                       f"one scoring pass."))
                    break
    return hints
