"""Live progress: shown on a terminal (a pseudo-terminal here) during a run's phases and the data build,
never with --quiet, never when stderr is not a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from types import SimpleNamespace

from conftest import ROOT

from harness import progress

HIDE_CURSOR = "\x1b[?25l"  # what rich's live display writes first
LIVE_LINE = "· harness clock"  # the run's live line: "run: <phase> · harness clock 4.2 s"


def _in_pty(*args: str, timeout: float = 240) -> tuple[int, str]:
    """`python -m harness ARGS` with stdin, stdout and stderr on a pseudo-terminal; (exit code, screen bytes)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_QUIET", "NO_COLOR", "TTY_INTERACTIVE")}
    env.update(TERM="xterm-256color", COLUMNS="160", LINES="50")
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], stdin=slave, stdout=slave, stderr=slave,
                            cwd=ROOT, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_run_phases_show_live_in_a_terminal(tmp_path):
    code, screen = _in_pty("run", "submissions/check_compliant", "--no-trace", "--out", str(tmp_path / "a"))
    assert code == 0, screen[-2000:]
    assert HIDE_CURSOR in screen and LIVE_LINE in screen
    assert any(f"run: {p}" in screen for p in ("setting up", "training", "evaluating")), screen[-2000:]
    assert "verdict" in screen  # the report still follows the (transient) display


def test_data_build_shows_in_a_terminal_and_nothing_with_quiet(tmp_path):
    code, screen = _in_pty("data", "--force", "--cache-dir", str(tmp_path / "data"))
    assert code == 0, screen[-2000:]
    assert HIDE_CURSOR in screen and "data: building vocab1024" in screen
    code, quiet = _in_pty("--quiet", "data", "--force", "--cache-dir", str(tmp_path / "data"))
    assert code == 0, quiet[-2000:]
    assert HIDE_CURSOR not in quiet and "data: building" not in quiet and "built-in data" in quiet


def test_quiet_when_stderr_is_not_a_terminal(capsys):
    assert not progress.enabled()  # pytest's captured stderr is no terminal
    progress.show("x", "never shown")
    assert progress._progress is None
    progress.configure(quiet=True)
    assert not progress.enabled()
    progress.configure(quiet=False)


def test_phase_text_follows_the_tracker():
    t = SimpleNamespace(run_start=None, first_train_read=None, line=None, child_exit=None)
    assert progress.phase_text(t) == "starting the script"
    t.run_start = 0.4
    assert progress.phase_text(t).startswith("setting up")
    t.first_train_read = 1.25
    assert progress.phase_text(t) == "training (first training read at 1.2 s)"
    t.line = 3.0
    assert progress.phase_text(t).startswith("evaluating (artifact written at 3.0 s")
