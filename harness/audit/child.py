"""One folder's check, run as `python -m harness check FOLDER --json FILE ...` in a child process of its own
session: a crash, a hang or a memory kill of one folder never stops the others, and Ctrl-C (which reaches
only the audit's own process group) is passed on by the audit, not by the terminal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.check.options import CheckOptions
from harness.run.options import RunOptions

POLL_S = 0.1
GRACE_S = 5.0  # after SIGINT, time for the child's runner to stop its own sandboxed script


@dataclass
class ChildResult:
    exit_code: int  # the child's exit status (a signal: negative)
    report: dict[str, Any] | None  # its JSON report, when it wrote one
    seconds: float
    stderr_tail: str
    timed_out: bool = False
    stopped: bool = False  # stopped by the audit (Ctrl-C): never cached

    def why(self) -> str:
        """The child's last `harness:` line (its one-line error), else its last stderr line."""
        lines = [ln.strip() for ln in self.stderr_tail.splitlines() if ln.strip()]
        said = [ln for ln in lines if ln.startswith("harness:")]
        return (said or lines or [f"exit {self.exit_code}, no report and nothing on stderr"])[-1]


def check_flags(check: CheckOptions, run: RunOptions | None, probes: str = "default") -> list[str]:
    """`harness check` flags for these options (the folder, --json and --out are added per folder).
    `probes`: default (the cheap ones), full (--probes) or none (--no-probes); only with a run."""
    f: list[str] = []
    if check.score_tag:
        f += ["--score-tag", check.score_tag]
    if check.reference_val_loss is not None:
        f += ["--reference-val-loss", repr(check.reference_val_loss)]
    if check.p_value is not None:
        f += ["--p-value", repr(check.p_value)]
    if not check.hints:
        f.append("--no-hints")
    if run is None:
        return f
    f += ["--run", "--device", run.device, "--nproc", str(run.nproc), "--scale", run.scale]
    f += {"full": ["--probes"], "none": ["--no-probes"]}.get(probes, [])
    for flag, value in (("--data-path", run.data_path), ("--tokenizer", run.tokenizer),
                        ("--vocab-size", run.vocab_size), ("--python", run.python), ("--timeout", run.timeout)):
        if value is not None:
            f += [flag, str(value)]
    for k, v in sorted(run.env.items()):
        f += ["--env", f"{k}={v}"]
    f += [flag for flag, on in (("--no-trace", not run.trace), ("--keep-workdir", run.keep_workdir),
                                ("--no-infer-env", not run.infer_env)) if on]
    return f


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT first (the child's runner then ends its sandboxed script), then SIGTERM (a child that ignores
    SIGINT, as one started in the background does), SIGKILL last."""
    for sig, wait in ((signal.SIGINT, GRACE_S), (signal.SIGTERM, 2.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_check(folder: Path, flags: Sequence[str], report_path: Path, *, timeout: float, stop: threading.Event,
              config: str | None = None, out_dir: str | None = None,
              command: Sequence[str] | None = None) -> ChildResult:
    """Check one folder in a child process; `command` replaces the whole command line (tests)."""
    cmd = list(command) if command is not None else [
        sys.executable, "-m", "harness", "--quiet", *(["--config", config] if config else []),
        "check", str(folder), "--json", str(report_path), *flags, *(["--out", out_dir] if out_dir else [])]
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.unlink(missing_ok=True)
    err_path = report_path.with_suffix(".stderr")
    env = dict(os.environ, HARNESS_QUIET="1")
    t0 = time.monotonic()
    timed_out = stopped = False
    with open(err_path, "wb") as err:  # a file, not a pipe: a chatty child never blocks on a full pipe
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True)
        try:
            while proc.poll() is None:
                if stop.is_set():
                    stopped = True
                elif time.monotonic() - t0 > timeout:
                    timed_out = True
                if stopped or timed_out:
                    _kill(proc)
                    break
                time.sleep(POLL_S)
        except BaseException:
            _kill(proc)
            raise
    seconds = time.monotonic() - t0
    tail = err_path.read_bytes()[-4000:].decode("utf-8", "replace")
    err_path.unlink(missing_ok=True)
    report = None
    if not (timed_out or stopped):
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = None
    report_path.unlink(missing_ok=True)
    rc = proc.returncode if proc.returncode is not None else -9
    return ChildResult(int(rc), report if isinstance(report, dict) else None, seconds, tail, timed_out, stopped)
