"""Hint pattern val_calibration (B4): validation data passed to a calibration / GPTQ / Hessian
function.
"""

from __future__ import annotations

import ast

from harness.check.hints.index import _Index, _SKIP_DATA, _hint
from harness.check.hints.syntax import _callee, _is_val_ident, _names, _text
from harness.check.hints.vocabulary import _CALIB, _NOT_CALIB
from harness.results import Hint


def _p_val_calibration(ix: _Index, fn: str) -> list[Hint]:
    hints: list[Hint] = []
    done: set[int] = set()
    for scope in ix.scopes:
        for n in ix.walk(scope):
            if not isinstance(n, ast.Call):
                continue
            name = _callee(n)
            if not (name and _CALIB.search(name) and not _NOT_CALIB.search(name)):
                continue
            for a in [*n.args, *(k.value for k in n.keywords)]:
                ref = ix.refs_val(a, scope)
                if ref is not None and n.lineno not in done:
                    done.add(n.lineno)
                    hints.append(_hint(ix, fn, "val_calibration", n,
                                       f"Validation data ('{_text(ref)[:40]}') is passed to {name}(); B4/D1 forbid "
                                       f"calibrating quantization (GPTQ, Hessians) on validation tokens."))
                    break
    # calibration functions that read validation data themselves
    for name, fs in ix.funcs.items():
        if not (_CALIB.search(name) and not _NOT_CALIB.search(name)):
            continue
        for f in fs:
            for s, node in _names(f, _SKIP_DATA):
                if _is_val_ident(s) and not any(_is_val_ident(a.arg) for a in f.args.args):
                    ln = getattr(node, "lineno", f.lineno)
                    if ln not in done:
                        done.add(ln)
                        hints.append(_hint(ix, fn, "val_calibration", ln,
                                           f"{name}() reads validation data ('{s}'); B4/D1 forbid calibrating "
                                           f"quantization on validation tokens."))
                    break
    return hints
