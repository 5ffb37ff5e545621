"""The submission folders a pull request touches, from `git diff --name-only BASE...HEAD` (or its output).

A changed path under `records/` belongs to the deepest folder above it that holds a `train_gpt*.py` in the
head checkout (harness.audit.discover.is_submission_folder); without one, to `records/<track>/<name>/` when
that folder exists (the check then says what is missing). Paths whose folder is gone (a deleted record)
and paths outside `records/` are left out, each with a note on stderr.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from harness.audit.discover import is_submission_folder
from harness.errors import BadInput


def git_changed_paths(root: Path, base: str, head: str) -> list[str]:
    """`git diff --name-only base...head` (changes on head since the merge base), run in `root`."""
    try:
        proc = subprocess.run(["git", "-C", str(root), "diff", "--name-only", "--no-renames", f"{base}...{head}"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BadInput(f"git diff failed: {e}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise BadInput(f"git diff {base}...{head} failed: {last} (a shallow checkout? use fetch-depth: 0)")
    return read_paths(proc.stdout)


def read_paths(text: str) -> list[str]:
    """Paths of `git diff --name-only` output, one a line (git quotes unusual names: unquoted here)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('"') and line.endswith('"'):
            line = line[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape").encode(
                "latin-1").decode("utf-8", "replace")
        if line:
            out.append(line)
    return out


def changed_folders(paths: Iterable[str], root: Path, records: str = "records") -> tuple[list[str], list[str]]:
    """(the submission folders, relative to `root`, sorted; notes on paths left out)."""
    prefix = PurePosixPath(records.strip("/"))
    folders: set[str] = set()
    notes: list[str] = []
    for raw in paths:
        rel = PurePosixPath(raw)
        if prefix not in rel.parents:
            continue  # outside records/: not a submission
        folder = _owner(rel, prefix, root)
        if folder is None:
            notes.append(f"{raw}: no submission folder holds it in the checkout (deleted?); left out")
        else:
            folders.add(folder)
    return sorted(folders), notes


def _owner(rel: PurePosixPath, prefix: PurePosixPath, root: Path) -> str | None:
    for parent in rel.parents:  # deepest first
        if parent == prefix:
            break
        if is_submission_folder(root / parent):
            return parent.as_posix()
    parts = rel.parts[len(prefix.parts):]
    if len(parts) >= 3:  # records/<track>/<name>/...: the challenge's layout, even without a script
        cand = prefix.joinpath(*parts[:2])
        if (root / cand).is_dir():
            return cand.as_posix()
    return None


def slug(folder: str) -> str:
    """An artifact-safe name for a folder (no slashes, quotes or colons)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", folder).strip("_") or "folder"


def matrix(folders: list[str]) -> dict[str, Any]:
    """GitHub's matrix: `include` entries with the folder and a unique artifact-safe slug."""
    seen: dict[str, int] = {}
    include = []
    for f in folders:
        s = slug(f)
        seen[s] = seen.get(s, 0) + 1
        include.append({"folder": f, "slug": s if seen[s] == 1 else f"{s}_{seen[s]}"})
    return {"include": include}


def github_output(path: str, mat: dict[str, Any]) -> None:
    """Append `matrix=<json>` and `count=<n>` to $GITHUB_OUTPUT (the file GitHub reads step outputs from)."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"matrix={json.dumps(mat, separators=(',', ':'))}\ncount={len(mat['include'])}\n")
    except OSError as e:
        raise BadInput(f"cannot write the step outputs to {path}: {e}") from None
