"""Shared paths and fixtures for the tests.

Constants, for module level use (parametrize lists, paths): `from conftest import ROOT, SUBMISSIONS`
(pytest puts tests/ on sys.path for this conftest; tests/ is not a package).

Fixtures:
  root, submissions   the same paths, as fixtures
  cli                 `harness ARGS...` in process (harness.cli.main), from the repository root:
                      cli("check", "submissions/check_compliant") -> CliResult(code, out, err)
  run_harness         `python -m harness ARGS...` as a subprocess, from the repository root:
                      run_harness("check", folder) -> subprocess.CompletedProcess (text)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
SUBMISSIONS = ROOT / "submissions"
FIXTURES = TESTS / "fixtures"
GOLDEN = TESTS / "golden"


class CliResult(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def submissions() -> Path:
    return SUBMISSIONS


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run the CLI in process from the repository root (relative paths in reports stay relative)."""
    monkeypatch.chdir(ROOT)

    def run(*args: str | os.PathLike) -> CliResult:
        from harness.cli import main

        capsys.readouterr()
        code = main([os.fspath(a) for a in args])
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run


@pytest.fixture
def run_harness():
    """Run `python -m harness` in a subprocess from the repository root."""

    def run(*args: str | os.PathLike, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness", *(os.fspath(a) for a in args)],
                              capture_output=True, text=True, cwd=ROOT, timeout=timeout, **kwargs)

    return run
