"""The committed reference submissions are exactly what submissions/_build/build.py writes (issue 8).

The traced references (legal_*, illegal_*) share one script, submissions/_build/base.py, and differ by a
few blocks (submissions/_build/variants/<folder>.py); the check_* folders are built whole. After editing
base.py or a variant, run `python submissions/_build/build.py` and commit what it writes.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SUBMISSIONS

BUILD = SUBMISSIONS / "_build" / "build.py"
# written by hand: a different script
HAND_WRITTEN = {"adversarial_tracer_evasion"}


def _build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUILD), *args], capture_output=True, text=True, timeout=300)


def _first_difference(committed: bytes, built: bytes, rel: str) -> str:
    try:
        a, b = committed.decode("utf-8").splitlines(), built.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return f"{rel}: binary content differs ({len(committed)} B committed, {len(built)} B built)"
    diff = list(difflib.unified_diff(a, b, f"committed/{rel}", f"built/{rel}", n=1, lineterm=""))
    return "\n".join([f"{rel}: differs"] + diff[:30])


@pytest.fixture(scope="module")
def built_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built")
    p = _build("--out", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    return out


def test_committed_files_are_what_the_builder_writes(built_dir: Path):
    tmp_path = built_dir
    built = sorted(q.relative_to(tmp_path).as_posix() for q in tmp_path.rglob("*") if q.is_file())
    assert built
    problems = []
    for rel in built:
        committed = SUBMISSIONS / rel
        data = (tmp_path / rel).read_bytes()
        if not committed.is_file():
            problems.append(f"{rel}: built but not committed")
        elif committed.read_bytes() != data:
            problems.append(_first_difference(committed.read_bytes(), data, rel))
    assert not problems, "\n".join(problems) + "\n(run: python submissions/_build/build.py)"


def test_check_mode_is_clean():
    """--check also names stale files left in the folders it builds whole (check_*)."""
    p = _build("--check")
    assert p.returncode == 0, p.stdout + p.stderr


def test_every_reference_folder_is_built(built_dir: Path):
    tmp_path = built_dir
    built = {q.name for q in tmp_path.iterdir() if (q / "train_gpt.py").is_file()}
    folders = {q.name for q in SUBMISSIONS.iterdir()
               if q.is_dir() and (q / "train_gpt.py").is_file()} - HAND_WRITTEN
    assert folders - built == set(), "reference folders the builder does not write (add a variant)"
    for name in built:
        text = (tmp_path / name / "train_gpt.py").read_text(encoding="utf-8")
        assert "@build" not in text, name  # slots and directives never reach a script
        assert "_build" not in text and "base.py" not in text, name  # standalone: nothing imports the base
