"""Shared state of the CPU shim inside the child process: the runtime context, what was patched, and
the single way out for a script that needs a real GPU (`needs_gpu`).

Nothing here imports torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from harness.runtime.context import RuntimeContext

# Exit status of a child that needs what no shim can give; the runner maps it to reason "needs_gpu".
NEEDS_GPU_EXIT = 86

ctx: "RuntimeContext | None" = None
bf16_as_fp32: bool = True
# name of every patch applied (for debugging and tests), in order
patched: list[str] = []

_HARNESS_DIR = str(Path(__file__).resolve().parents[2]) + os.sep  # .../harness/
_SKIP_PARTS = (os.sep + "torch" + os.sep, os.sep + "triton" + os.sep, "<frozen ", os.sep + "importlib" + os.sep)


def init(context: "RuntimeContext | None") -> None:
    global ctx, bf16_as_fp32
    ctx = context
    bf16_as_fp32 = bool(getattr(getattr(context, "settings", None), "bf16_as_fp32", True))


def note(name: str) -> None:
    patched.append(name)


def site() -> str | None:
    """The submission's file:line that is running now; else the innermost frame outside the harness,
    torch, triton and importlib (a script run without a submission_dir setting still gets a site)."""
    if ctx is not None:
        s = ctx.site(skip=2)
        if s:
            return s
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_HARNESS_DIR) and not any(p in fn for p in _SKIP_PARTS):
            return f"{Path(fn).name}:{f.f_lineno}"
        f = f.f_back
    return None


def script_frame(depth: int) -> bool:
    """Whether the frame `depth` levels above the caller runs the submission's own code (its files when the
    context knows them; else any file outside the harness, torch, triton and importlib)."""
    fn = sys._getframe(depth + 1).f_code.co_filename
    if ctx is not None and getattr(ctx, "_sub_prefix", None) is not None:
        return bool(ctx.is_submission_file(fn))
    return not fn.startswith(_HARNESS_DIR) and not any(p in fn for p in _SKIP_PARTS) and "site-packages" not in fn


def emit(kind: str, **fields: object) -> None:
    if ctx is not None:
        try:
            ctx.emit(kind, **fields)
        except Exception:  # the ledger must never take the script down
            pass


def needs_gpu(what: str, where: str | None = None) -> NoReturn:
    """End the run with one clear result: a `needs_gpu` ledger event, one stderr line, exit 86.

    os._exit, not SystemExit: a script's bare `except:` must not swallow it and carry on half-shimmed.
    """
    where = where or site() or "<unknown>"
    emit("needs_gpu", site=where, what=what, where=where)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        os.write(2, f"harness: needs GPU: {what} at {where}\n".encode("utf-8", "replace"))
    except OSError:
        pass
    os._exit(NEEDS_GPU_EXIT)
