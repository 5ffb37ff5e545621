"""Parsing for the hint scan: lenient parsing (blank the f-strings Python 3.11 cannot parse), the
line-scan fallback when the source still does not parse, and the compressed exec() wrapper check.
"""

from __future__ import annotations

import ast
import re

from harness.check.hints.patterns import HINT_PATTERNS
from harness.check.hints.syntax import _callee, _text
from harness.pyast import parse_source
from harness.results import Hint


_FSTRING_START = re.compile(r"""(?<![\w])(?:[rR]?[fF]|[fF][rR])(['"])""")


def _blank_fstrings(line: str) -> str | None:
    """Replace the f-strings on one line by "" (columns shift; line numbers do not)."""
    out, i, changed = [], 0, False
    while True:
        m = _FSTRING_START.search(line, i)
        if not m:
            break
        q = m.group(1)
        last = line.rfind(q)
        if last <= m.end() - 1:
            return None  # unterminated on this line (a multi-line string): give up
        out.append(line[i:m.start()] + '""')
        i = last + 1
        changed = True
    if not changed:
        return None
    out.append(line[i:])
    return "".join(out)


def _parse(source: str) -> tuple[ast.Module | None, list[int], SyntaxError | None]:
    """Parse; on a syntax error blank f-strings on the failing line and retry (PEP 701 under 3.11)."""
    lines = source.splitlines(keepends=True)
    repaired: list[int] = []
    first_err: SyntaxError | None = None
    for _ in range(200):
        try:
            return parse_source("".join(lines)), repaired, first_err
        except SyntaxError as e:
            first_err = first_err or e
            ln = e.lineno or 0
            if not 0 < ln <= len(lines) or ln in repaired:
                return None, repaired, first_err
            fixed = _blank_fstrings(lines[ln - 1])
            if fixed is None:
                return None, repaired, first_err
            lines[ln - 1] = fixed
            repaired.append(ln)
        except (ValueError, RecursionError, MemoryError) as e:  # NUL bytes, absurd nesting
            return None, repaired, SyntaxError(str(e))
    return None, repaired, first_err


def parse_lenient(source: str) -> ast.Module | None:
    """The module's AST, blanking f-strings this Python cannot parse (PEP 701 sources under 3.11);
    None when it still does not parse. Shared with the code-file scan in harness.submission."""
    return _parse(source)[0]


_REGEX_FALLBACK: list[tuple[str, re.Pattern[str], str]] = [
    ("min_over_passes", re.compile(r"\b(?:torch|np|numpy)\.(?:minimum|fmin)\s*\(.*(?:nll|loss)", re.I),
     "Per-token losses combined with a minimum (line scan); C4 forbids best-of over passes."),
    ("delta_vs_targets", re.compile(r"\b\w*(?:delta|bias|slot)\w*\s*=.*requires_grad\s*=\s*True", re.I),
     "A delta/bias tensor with requires_grad is created (line scan); C1/C3 forbid optimizing it against the "
     "targets before scoring."),
    ("target_in_hash", re.compile(r"(?:hash\w*\s*\(|\^|%).*\b(?:tgt|targets?|next_tok\w*|target_tok\w*)\b", re.I),
     "A hash that includes the target token (line scan); C1/C2 forbid keys that look at the target."),
    ("val_calibration", re.compile(r"(?:calib|gptq|hessian)\w*\s*\(.*\bval_(?:tokens|data|files)", re.I),
     "Validation data passed to calibration (line scan); B4/D1 forbid calibrating on validation."),
    ("train_loader_after_training", re.compile(r"(?:calib|gptq|hessian)\w*\s*\(.*\b(?:train_loader|train_files)",
                                               re.I),
     "Training data passed to calibration (line scan); D2/B2 require it inside the training budget."),
]


def _regex_scan(lines: list[str], filename: str) -> list[Hint]:
    hints = []
    for i, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        for pattern, rx, msg in _REGEX_FALLBACK:
            if rx.search(s):
                hints.append(Hint(HINT_PATTERNS[pattern], pattern, f"{filename}:{i}", msg, s[:200]))
    return hints


def _wrapper_call(tree: ast.Module) -> ast.Call | None:
    """exec(<decompress>(<b85/b64 decode>(...))) at module level: a compressed-code wrapper."""
    for st in tree.body:
        if isinstance(st, ast.Expr) and isinstance(st.value, ast.Call) and _callee(st.value) == "exec":
            txt = _text(st.value)
            if re.search(r"decompress", txt) and re.search(r"b85decode|b64decode|a85decode|b32decode", txt):
                return st.value
    return None
