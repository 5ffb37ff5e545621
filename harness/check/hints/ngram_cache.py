"""Hint patterns for n-gram / cache tables: target_in_hash (C1: a hashed key that mixes in the
target token and reads a table) and gate_on_target (C1: a mixing choice comparing cache and model
probabilities of the true token).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from harness.check.hints.index import _Index, _hint
from harness.check.hints.syntax import _assigned_names, _callee, _dotted, _names, _text
from harness.check.hints.vocabulary import _CACHEY, _HASH_OPS, _SCOPES, _STORE_CALLS
from harness.results import Hint


def _hash_exprs(node: ast.AST) -> Iterator[ast.AST]:
    """Top-level hashing expressions inside node: a BinOp tree using a hashing operator, or a hash() call."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.BinOp) and any(isinstance(b, ast.BinOp) and isinstance(b.op, _HASH_OPS)
                                            for b in ast.walk(n)):
            yield n
            continue
        if isinstance(n, ast.Call) and re.search(r"hash", _callee(n) or "", re.I):
            yield n
            continue
        if not isinstance(n, _SCOPES):
            stack.extend(ast.iter_child_nodes(n))


_READ_CALLS = ("get", "take", "gather", "index_select", "take_along_dim", "take_along_axis", "lookup")


def _read_sites(ix: _Index, scope: ast.AST) -> Iterator[tuple[ast.AST, ast.AST]]:
    """(read node, key expression): table[key], table.get(key), torch.gather(t, d, key), key in table."""
    for n in ix.walk(scope):
        if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load):
            yield n, n.slice
        elif isinstance(n, ast.Call) and _callee(n) in _READ_CALLS and n.args:
            for a in n.args:
                yield n, a
        elif isinstance(n, ast.Compare) and any(isinstance(o, (ast.In, ast.NotIn)) for o in n.ops):
            yield n, n.left


def _p_target_in_hash(ix: _Index, fn: str) -> list[Hint]:
    hints: list[Hint] = []
    for scope in ix.scopes:
        # keys: names assigned from a hash expression that mixes in the target
        keys: dict[str, ast.AST] = {}
        for n in ix.walk(scope):
            if isinstance(n, ast.Assign):
                for h in _hash_exprs(n.value):
                    if ix.refs_target(h, scope) is not None:
                        for name in _assigned_names(n.targets[0]):
                            keys.setdefault(name, h)
        done: set[int] = set()
        for read, key in _read_sites(ix, scope):
            h = next((h for h in _hash_exprs(key) if ix.refs_target(h, scope) is not None), None)
            if h is None:
                used = [s for s, _ in _names(key) if s in keys]
                h = keys[used[0]] if used else None
            if h is None or read.lineno in done or _is_update_read(ix, read):
                continue
            done.add(read.lineno)
            hints.append(_hint(ix, fn, "target_in_hash", read,
                               f"A table is read with a hashed key that includes the target token "
                               f"('{_text(h)[:60]}', line {h.lineno}); C1/C2 require the distribution to be "
                               f"fixed before the target is looked at and normalized over the whole vocabulary."))
    return hints


def _is_update_read(ix: _Index, read: ast.AST) -> bool:
    """A read that only serves an update: table[k] = table[k] + 1, np.add.at(table, k, 1), ..."""
    p = ix.parent.get(read)
    while p is not None and not isinstance(p, ast.stmt):
        if isinstance(p, ast.Call) and _STORE_CALLS.search(_dotted(p.func) or "-"):
            return True
        p = ix.parent.get(p)
    if isinstance(p, ast.Assign) and isinstance(read, ast.Subscript):
        for t in p.targets:
            if isinstance(t, ast.Subscript) and _text(t.value) == _text(read.value) and \
                    _text(t.slice) == _text(read.slice):
                return True
    return False


def _target_prob(ix: _Index, node: ast.AST, scope: ast.AST) -> bool:
    """Does node carry the probability (or loss) of the true token?"""
    sc = ix.scopes[scope]
    if any(isinstance(n, ast.Name) and n.id in sc.tprob for n in ast.walk(node)):
        return True  # p_model = probs[..., y] earlier in the scope
    return ix._picks_target(node, sc)


def _p_gate_on_target(ix: _Index, fn: str) -> list[Hint]:
    hints: list[Hint] = []
    for scope in ix.scopes:
        for n in ix.walk(scope):
            pairs: list[tuple[ast.AST, ast.AST]] = []
            if isinstance(n, ast.Compare) and len(n.ops) == 1 and \
                    isinstance(n.ops[0], (ast.Lt, ast.LtE, ast.Gt, ast.GtE)):
                pairs.append((n.left, n.comparators[0]))
            elif isinstance(n, ast.Call) and _callee(n) in ("maximum", "max", "fmax") and len(n.args) == 2:
                pairs.append((n.args[0], n.args[1]))
            for a, b in pairs:
                texts = [_text(a), _text(b)]
                cachey = [bool(_CACHEY.search(t)) for t in texts]
                if not (any(cachey) and not all(cachey)):
                    continue
                if _target_prob(ix, a, scope) and _target_prob(ix, b, scope):
                    hints.append(_hint(ix, fn, "gate_on_target", n,
                                       "The cache and the model are compared on the true token's probability to "
                                       "choose the mix; C1 forbids a mixing weight that depends on the target."))
                    break
    return hints
