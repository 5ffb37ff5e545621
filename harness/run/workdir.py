"""The run's fresh working directory: a copy of the submission, the served data, a pylib for the runtime.

Layout under one temp root (its path never contains "train_gpt.py": a wrapper script does
`__file__.replace("train_gpt.py", ...)`):
    <root>/work/        copy of the submission folder: the script's cwd, HOME; work/tmp is TMPDIR
    <root>/data/        DATA_DIR, the challenge repo's data layout (harness.run.serve):
                        datasets/fineweb10B_sp<V>/ (DATA_PATH) and tokenizers/fineweb_<V>_bpe.model
    <root>/pylib/       `harness` (a link to this package): the only thing added to PYTHONPATH
                        besides the sitecustomize folder, so nothing else of this repo shadows the
                        script's imports
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import BadInput
from harness.fsutil import CopyLimitExceeded, regular_file_inside, safe_copy_tree

SCRIPT_NAME = "train_gpt.py"
MAX_COPY_FILE_BYTES = 512 * 1024 * 1024  # bigger files in a submission folder are not copied
# the whole copy ([run] copy_max_bytes / copy_max_files override): a submission is code, logs and a 16 MB model
COPY_MAX_BYTES = 2 * 1024 * 1024 * 1024
COPY_MAX_FILES = 20_000
_IGNORE = frozenset({".git", "__pycache__", ".ipynb_checkpoints"})


@dataclass
class Workdir:
    root: Path
    work: Path
    data: Path
    tmp: Path
    pylib: Path
    script: Path  # inside work
    skipped: list[str]

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def entry_script(folder: Path) -> Path | None:
    """The script a folder is run through: train_gpt.py, else the one its README or run script
    launches (`torchrun ... train_gpt_cuda_ternary.py`), else its only train_gpt*.py."""
    script = folder / SCRIPT_NAME
    if script.is_file():
        return script
    from harness.check.run_commands import find_entry_script

    name, _ = find_entry_script(folder)
    return folder / name if name else None


def locate_script(path: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """(script, folder to copy): a folder holding train_gpt.py (or the script its run command names),
    or a script file (copied alone)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise BadInput(f"no such file or folder: {p}")
    if p.is_dir():
        script = entry_script(p)
        if script is None or not script.is_file():
            raise BadInput(f"{p}: no {SCRIPT_NAME} in this folder (and no run command naming another script)")
        return script.resolve(), p.resolve()
    if p.suffix != ".py":
        raise BadInput(f"{p}: not a Python script (expected a submission folder or a train_gpt.py)")
    return p.resolve(), None


def copy_caps(run_cfg: dict[str, Any]) -> dict[str, int]:
    """The copy's caps from [run] copy_max_bytes / copy_max_files (positive integers; BadInput otherwise)."""
    caps = {}
    for key, arg, default in (("copy_max_bytes", "max_bytes", COPY_MAX_BYTES),
                              ("copy_max_files", "max_files", COPY_MAX_FILES)):
        v = run_cfg.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise BadInput(f"harness.toml [run] {key}: expected a positive integer, got {v!r}")
        caps[arg] = v
    return caps


def _copy_tree(src: Path, dst: Path, skipped: list[str], max_bytes: int, max_files: int) -> None:
    """Never follows a link out of the folder, never reads a device or FIFO; capped (exit 3 past a cap)."""
    try:
        rep = safe_copy_tree(src, dst, max_bytes=max_bytes, max_files=max_files,
                             max_file_bytes=MAX_COPY_FILE_BYTES, ignore=_IGNORE)
    except CopyLimitExceeded as e:
        raise BadInput(f"{src}: too large to copy for a run: {e} ([run] copy_max_bytes / copy_max_files)") from None
    skipped.extend(rep.skipped)


def prepare_workdir(
    path: str | os.PathLike[str], temp_root: str | None = None, *, max_bytes: int = COPY_MAX_BYTES,
    max_files: int = COPY_MAX_FILES,
) -> Workdir:
    script_src, folder = locate_script(path)
    why = regular_file_inside(script_src, folder or script_src.parent)
    if why is not None:
        raise BadInput(f"{script_src}: the script is {why}")
    base = Path(temp_root).expanduser() if temp_root else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="pgh-run-", dir=base)).resolve()
    if SCRIPT_NAME in str(root):
        shutil.rmtree(root, ignore_errors=True)
        raise BadInput(f"temp root {base} contains {SCRIPT_NAME!r} in its path; choose another")
    work, data, pylib = root / "work", root / "data", root / "pylib"
    skipped: list[str] = []
    try:
        if folder is not None:
            _copy_tree(folder, work, skipped, max_bytes, max_files)
        else:
            work.mkdir()
            safe_copy_tree(script_src.parent, work, max_bytes=max_bytes, max_files=1,
                           max_file_bytes=MAX_COPY_FILE_BYTES, only=script_src.name)
        tmp = work / "tmp"
        tmp.mkdir(exist_ok=True)
        data.mkdir()
        pylib.mkdir()
        pkg = Path(__file__).resolve().parent.parent  # the harness package
        os.symlink(pkg, pylib / "harness", target_is_directory=True)
    except BaseException as e:
        shutil.rmtree(root, ignore_errors=True)
        if isinstance(e, OSError):  # an unreadable file of the submission (EIO ...), a full disk
            raise BadInput(f"cannot prepare the run's working copy: {e}") from None
        raise
    return Workdir(root, work, data, tmp, pylib, work / script_src.name, skipped)
