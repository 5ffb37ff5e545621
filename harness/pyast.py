"""ast.parse behind one process-wide lock.

CPython 3.11 keeps the recursion depth of its AST-to-object conversion in interpreter-wide state, so two
threads parsing at once can fail with "SystemError: AST constructor recursion depth mismatch"
(python/cpython gh-106905). The probes start their variant runs from threads, and each run reads the
script's syntax tree (configuration hints, the Python 3.12 rewrite, wrapper unpacking), so every parse in
the harness goes through here.
"""

from __future__ import annotations

import ast
import threading
from typing import Any

_LOCK = threading.Lock()


def parse_source(source: str | bytes, filename: str = "<unknown>", **kwargs: Any) -> ast.Module:
    with _LOCK:
        return ast.parse(source, filename, **kwargs)
