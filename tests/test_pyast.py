"""Syntax trees in the harness parent are parsed behind one lock (harness.pyast): the probes start variant
runs from threads, and CPython 3.11's AST conversion fails when two threads parse at once."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_parse_in_the_harness_goes_through_the_lock():
    # harness/runtime runs inside the script's own process (one parse per kernel source), not the parent's threads
    direct = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "harness").rglob("*.py")
              if p.name != "pyast.py" and "runtime" not in p.relative_to(ROOT).parts
              for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
              if re.search(r"\bast\.parse\(", line)]
    assert not direct, direct

