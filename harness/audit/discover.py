"""Which folders an audit checks.

Each PATH is one of:
- a submission folder: it holds a `train_gpt*.py` (the harness's own name for a record's script;
  `train_gpt_cuda_ternary.py` counts, since the check finds the script a README launches);
- a tree (e.g. `records/`): every folder below it that is a submission folder, not looking further inside
  one (a record's own sub-folders are its files), hidden folders and `__pycache__` skipped;
- a file listing folders, one a line (`@FILE` or a plain file; blank lines and `#` comments skipped,
  relative paths taken from the current folder): each line is read as a PATH, except that a listed folder
  is checked even without a script (the check then says what is missing).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from harness.errors import BadInput

_SKIP_DIRS = {"__pycache__", "node_modules"}


def is_submission_folder(folder: Path) -> bool:
    try:
        return any(e.is_file() and e.name.startswith("train_gpt") and e.name.endswith(".py")
                   for e in os.scandir(folder))
    except OSError:
        return False


def _below(root: Path) -> list[Path]:
    found: list[Path] = []
    for here, dirs, _files in os.walk(root):
        p = Path(here)
        if is_submission_folder(p):
            found.append(p)
            dirs[:] = []  # a record's own sub-folders are its files, never other records
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
    return found


def _list_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read the folder list {path}: {e}") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def find_folders(paths: Iterable[str]) -> list[Path]:
    """The folders to check, each once, in the order given (a tree's folders sorted)."""
    out: list[Path] = []
    for arg in paths:
        if Path(arg).is_file() and arg.endswith(".py"):  # a script: its folder
            out.append(Path(arg).parent)
            continue
        if arg.startswith("@") or Path(arg).is_file():
            listed = _list_file(Path(arg[1:] if arg.startswith("@") else arg))
            for entry in listed:
                p = Path(entry)
                if not p.is_dir():
                    raise BadInput(f"{arg}: {entry} is not a folder")
                out.extend([p] if is_submission_folder(p) or not _below(p) else _below(p))
            continue
        p = Path(arg)
        if not p.exists():
            raise BadInput(f"no such folder: {arg}")
        if not p.is_dir():
            raise BadInput(f"not a folder: {arg}")
        found = _below(p)
        if not found:
            raise BadInput(f"no submission folder (one holding a train_gpt*.py) in {arg}")
        out.extend(found)
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    if not unique:
        raise BadInput("no folders to audit")
    return unique
