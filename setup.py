"""Build step only (the metadata lives in pyproject.toml): ship rules/*.toml and harness.toml in the wheel.

rules/ (the rules as data) and harness.toml (the default settings) stay at the project's top level, the one
source of truth; build_py copies them into the package as harness/shipped/rules/*.toml and
harness/shipped/harness.toml, where an installed (non-editable) harness finds them (harness.rules.SHIPPED).
An editable install reads them from the checkout instead, so nothing is copied there.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def shipped_files() -> list[tuple[Path, str]]:
    """(source, path inside harness/shipped/) for every file that ships."""
    rules = sorted((ROOT / "rules").glob("*.toml"))
    if not rules:
        raise SystemExit("rules/*.toml not found: cannot build a harness without its rules")
    return [(ROOT / "harness.toml", "harness.toml")] + [(f, f"rules/{f.name}") for f in rules]


class BuildPyWithRules(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for src, rel in shipped_files():
            dest = os.path.join(self.build_lib, "harness", "shipped", rel)
            self.mkpath(os.path.dirname(dest))
            self.copy_file(str(src), dest, preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        out = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            out += [os.path.join(self.build_lib, "harness", "shipped", rel) for _, rel in shipped_files()]
        return out


setup(cmdclass={"build_py": BuildPyWithRules})
