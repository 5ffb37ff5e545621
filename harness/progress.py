"""Live progress on long steps: the data build, a run's phases on the harness clock, the probes' variant
streams, an audit's folders.

One rich Progress on stderr shared by every step of a command, one line per step (a key). The hooks in
other modules are one call each (`show` / `done`, `step`, `run_phase`), so those modules stay about their
own work. Quiet when stderr is not a terminal (pipes, CI logs, an audit's child processes, pytest) or
with `harness --quiet` (configure(quiet=True)): reports and logs never get control codes. Lines are
transient: the display is gone once its last step is done, before the command prints its report.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.RLock()
_quiet = False
_progress: Any = None  # rich.progress.Progress while a step is shown
_tasks: dict[str, Any] = {}  # key -> rich TaskID


def configure(quiet: bool) -> None:
    """--quiet: no live display for the rest of the process."""
    global _quiet
    _quiet = bool(quiet)
    if _quiet:
        close()


def enabled() -> bool:
    if _quiet or os.environ.get("HARNESS_QUIET"):
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def _start() -> Any:
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class _Count(ProgressColumn):  # "3/30" for counted steps, nothing for open-ended ones
        def render(self, task: Any) -> Text:
            return Text("" if task.total is None else f"{int(task.completed)}/{int(task.total)}", style="cyan")

    # stdout is redirected through the display only when it is the same terminal; a piped stdout stays
    # untouched (a report written to a pipe must not land on stderr)
    p = Progress(SpinnerColumn(), TextColumn("{task.description}"), _Count(), TimeElapsedColumn(),
                 console=Console(stderr=True), transient=True, refresh_per_second=4,
                 redirect_stdout=_isatty(sys.stdout), redirect_stderr=True)
    p.start()
    return p


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def show(key: str, text: str, *, completed: float | None = None, total: float | None = None) -> None:
    """Show (or update) the line of step `key`."""
    if not enabled():
        return
    global _progress
    with _lock:
        if _progress is None:
            _progress = _start()
        if key in _tasks:
            kw: dict[str, Any] = {"description": text}
            if completed is not None:
                kw["completed"] = completed
            if total is not None:
                kw["total"] = total
            _progress.update(_tasks[key], **kw)
        else:
            _tasks[key] = _progress.add_task(text, total=total, completed=completed or 0)


def done(key: str) -> None:
    """Drop step `key`'s line; the display stops with its last line (before anything prints a report)."""
    with _lock:
        tid = _tasks.pop(key, None)
        if tid is not None and _progress is not None:
            _progress.remove_task(tid)
        if not _tasks:
            close()


def close() -> None:
    """Stop the display (end of a command, --quiet, interpreter exit)."""
    global _progress
    with _lock:
        _tasks.clear()
        p, _progress = _progress, None
        if p is not None:
            p.stop()


@contextmanager
def step(key: str, text: str) -> Iterator[None]:
    show(key, text)
    try:
        yield
    finally:
        done(key)


def run_phase(tracker: Any, now: float) -> None:
    """A run's line: its phase (from the runner's PhaseTracker) and the harness clock."""
    if enabled():
        show("run", f"run: {phase_text(tracker)} · harness clock {now:.1f} s")


def phase_text(t: Any) -> str:
    """The phase a PhaseTracker has seen last, with the harness-clock time it began."""
    line = getattr(t, "line", None)
    if getattr(t, "child_exit", None) is not None:
        return f"exiting (at {t.child_exit:.1f} s)"
    if line is not None:
        return f"evaluating (artifact written at {line:.1f} s)"
    if getattr(t, "first_train_read", None) is not None:
        return f"training (first training read at {t.first_train_read:.1f} s)"
    if getattr(t, "run_start", None) is not None:
        return f"setting up (script started at {t.run_start:.1f} s)"
    return "starting the script"


atexit.register(close)
