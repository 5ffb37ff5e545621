"""Hint pattern train_loader_after_training (D2): training data read after the main training loop.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from harness.check.hints.index import _Index, _hint
from harness.check.hints.syntax import _end, _pos
from harness.check.hints.vocabulary import _FUNCS, _LOOPS, _SCOPES
from harness.results import Hint


def _p_train_after_training(ix: _Index, fn: str) -> list[Hint]:
    reads_train = ix.reads_train

    # the main training loop: the largest loop that steps and reads training data
    best: tuple[int, ast.AST, ast.AST] | None = None
    for scope in ix.scopes:
        for loop in (n for n in ix.walk(scope) if isinstance(n, _LOOPS)):
            if ix.loops_around(loop):
                continue  # outermost loops only
            if not ix.steps_in(loop):
                continue
            if reads_train(loop) is None:
                continue
            span = _end(loop)[0] - loop.lineno
            if best is None or span > best[0]:
                best = (span, loop, scope)
    if best is None:
        return []
    _, loop, scope = best
    # positions, not lines: minified and unwrapped sources put several statements on one line
    regions: list[tuple[ast.AST, tuple[int, int]]] = [(scope, _end(loop))]
    if isinstance(scope, _FUNCS):  # the loop's function is called: what follows the call also counts
        for c in ix.calls.get(scope.name, []):
            regions.append((ix.scope_of(c), _end(c)))
    hints: list[Hint] = []
    for region, after in regions:
        body = getattr(region, "body", [])
        found = 0
        for stmt in _stmts_after(body, after):
            hit = reads_train(stmt)
            if hit is None:
                continue
            node, what = hit
            hints.append(_hint(ix, fn, "train_loader_after_training", node,
                               f"Training data is read after the main training loop (line {loop.lineno}) via "
                               f"{what}; D2/B2 require training-data reads (GPTQ calibration, Hessians) to finish "
                               f"inside the 600 s training budget."))
            found += 1
            if found >= 3:
                break
    return hints


def _stmts_after(body: list[ast.stmt], pos: tuple[int, int]) -> Iterator[ast.stmt]:
    """Statements starting at or after pos (line, column), recursing into compound statements that
    straddle it. `a = train(); serialize()` on one line: serialize() is after the call."""
    for st in body:
        if _pos(st) >= pos:
            yield st
        elif _end(st) > pos and not isinstance(st, _SCOPES):
            for part in ("body", "orelse", "finalbody", "handlers"):
                yield from _stmts_after(getattr(st, part, []) or [], pos)
