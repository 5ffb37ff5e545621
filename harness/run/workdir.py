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

from harness.errors import BadInput

SCRIPT_NAME = "train_gpt.py"
MAX_COPY_FILE_BYTES = 512 * 1024 * 1024  # bigger files in a submission folder are not copied
_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".ipynb_checkpoints")


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


def _copy_tree(src: Path, dst: Path, skipped: list[str]) -> None:
    def copy(s: str, d: str) -> str:
        if os.path.getsize(s) > MAX_COPY_FILE_BYTES:
            skipped.append(os.path.relpath(s, src))
            return d
        return shutil.copy2(s, d)

    shutil.copytree(src, dst, ignore=_IGNORE, copy_function=copy, symlinks=False, dirs_exist_ok=True)


def prepare_workdir(path: str | os.PathLike[str], temp_root: str | None = None) -> Workdir:
    script_src, folder = locate_script(path)
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
            _copy_tree(folder, work, skipped)
        else:
            work.mkdir()
            shutil.copy2(script_src, work / script_src.name)
        tmp = work / "tmp"
        tmp.mkdir(exist_ok=True)
        data.mkdir()
        pylib.mkdir()
        pkg = Path(__file__).resolve().parent.parent  # the harness package
        os.symlink(pkg, pylib / "harness", target_is_directory=True)
    except OSError as e:
        shutil.rmtree(root, ignore_errors=True)
        raise BadInput(f"cannot prepare the run's working copy: {e}") from None
    return Workdir(root, work, data, tmp, pylib, work / script_src.name, skipped)
