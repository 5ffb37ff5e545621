"""Small AST helpers for the hint patterns: scoped walks, callee / dotted names, source text and
positions, the names an expression uses, assignment targets.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from harness.check.hints.vocabulary import _CONFIGISH, _SCOPES, _TARGET, _TARGET_NOT, _TRAIN_DATA, _VAL_DATA


def _walk_scope(node: ast.AST) -> Iterator[ast.AST]:
    """Descendants of node, not entering nested functions, lambdas or classes."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        n = stack.pop()
        yield n
        if not isinstance(n, _SCOPES):
            stack.extend(ast.iter_child_nodes(n))


def _callee(call: ast.Call) -> str:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return ""


def _callee_or_attr(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    return ""


def _text(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # unparse of odd nodes: text only feeds regexes
        return ""


def _pos(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "lineno", 0), getattr(node, "col_offset", 0)


def _end(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "end_lineno", 0) or 0, getattr(node, "end_col_offset", 0) or 0


def _inside(node: ast.AST, outer: ast.AST) -> bool:
    return _pos(outer) <= _pos(node) and _end(node) <= _end(outer)


def _names(node: ast.AST, skip_calls=None, deep: bool = False) -> Iterator[tuple[str, ast.AST]]:
    """Identifiers (Name ids, attribute names, string constants) in node, skipping calls whose callee
    matches skip_calls (their arguments are not data flowing here: logging, eval calls ...). Nested
    functions and classes are entered only when deep (or when node itself is one)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Call) and skip_calls is not None and skip_calls.search(_callee(n) or "-"):
            continue
        if isinstance(n, ast.Name):
            yield n.id, n
        elif isinstance(n, ast.Attribute):
            yield n.attr, n
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and len(n.value) < 300:
            yield n.value, n
        if n is node or deep or not isinstance(n, _SCOPES):
            stack.extend(ast.iter_child_nodes(n))


def _is_val_ident(s: str) -> bool:
    if "fineweb_val" in s:
        return True
    return bool(s.isidentifier() and _VAL_DATA.search(s) and not _CONFIGISH.search(s))


def _is_train_ident(s: str) -> bool:
    return "fineweb_train" in s or bool(s.isidentifier() and _TRAIN_DATA.search(s) and not _CONFIGISH.search(s))


def _is_target_ident(s: str) -> bool:
    return bool(s.isidentifier() and _TARGET.search(s) and not _TARGET_NOT.search(s))


def _assigned_names(target: ast.AST) -> Iterator[str]:
    for n in ast.walk(target):
        if isinstance(n, ast.Name):
            yield n.id
