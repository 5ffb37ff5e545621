"""Why a run ended, in one word and one line, from its exit status, output tail and ledger."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

from harness.run.monitor import PhaseTracker

_RANK = re.compile(r"^\[(?:rank|default)\d*\]:\s*")
_EXC = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Blocked|Failure)\w*)(?::\s*(.*))?$")
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
_MEMORY = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "std::bad_alloc", "out of memory")
NEEDS_GPU_EXIT = 86  # harness.runtime.shim: a script that needs what no CPU shim can give
NET_PHRASE = "network access blocked by the harness sandbox"
PROC_PHRASE = "subprocess blocked by the harness sandbox"


def _lines(text: str) -> list[str]:
    return [_RANK.sub("", ln).rstrip() for ln in text.splitlines()]


def exception_line(stderr: str) -> str | None:
    """The script's own exception (the last one; not torchrun's ChildFailedError wrapper)."""
    found = None
    for ln in _lines(stderr):
        m = _EXC.match(ln.strip())
        if m and "ChildFailedError" not in m.group(1):
            found = ln.strip()
    return found


def script_frame(stderr: str, script_names: set[str]) -> str | None:
    where = None
    for ln in _lines(stderr):
        m = _FRAME.search(ln)
        if m and Path(m.group(1)).name in script_names:
            where = f"{Path(m.group(1)).name}:{m.group(2)}"
    return where


def last_line(text: str) -> str:
    for ln in reversed(_lines(text)):
        if ln.strip():
            return ln.strip()[:300]
    return ""


def classify(
    rc: int | None,
    killed: tuple[str, str] | None,
    ph: PhaseTracker,
    stderr_tail: str,
    script_names: set[str],
    has_score: bool,
) -> tuple[str, str]:
    """(reason, one-line message)."""
    if killed is not None:
        return killed
    if rc is None:
        return "crash", "the child's exit status is unknown"
    if rc != 0:
        exc = exception_line(stderr_tail)
        where = script_frame(stderr_tail, script_names)
        at = f" (at {where})" if where else ""
        if ph.needs_gpu:
            g = ph.needs_gpu[0]
            what = g.get("what", "a GPU-only kernel")
            loc = g.get("where") or g.get("site") or ""
            return "needs_gpu", f"needs GPU: {what}" + (f", {loc}" if loc else "")
        if rc == NEEDS_GPU_EXIT:  # the shim's exit status, its ledger event lost
            return "needs_gpu", f"needs GPU: {last_line(stderr_tail) or 'a GPU-only feature'}"
        if rc == -signal.SIGXFSZ:
            return "file_size", "killed for writing a file past the size limit (RLIMIT_FSIZE)"
        text = exc or ""
        if any(k in stderr_tail for k in _MEMORY) or rc == -signal.SIGKILL:
            detail = text or "killed by SIGKILL (the kernel's OOM killer?)"
            return "memory", f"out of memory: {detail}{at}"[:400]
        if NET_PHRASE in stderr_tail and ph.net:
            n = ph.net[0]
            site = f" at {n['site']}" if n.get("site") else ""
            return "network", f"crashed after a blocked network access to {n.get('host')}:{n.get('port')}{site}"
        if PROC_PHRASE in stderr_tail and any(not s.get("allowed") for s in ph.subprocesses):
            s = next(s for s in ph.subprocesses if not s.get("allowed"))
            site = f" at {s['site']}" if s.get("site") else ""
            return "subprocess", f"crashed after a blocked subprocess {' '.join(s.get('argv', []))[:80]}{site}"
        if rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            return "crash", f"killed by {name}{at}"
        if text:
            return "crash", f"{text}{at}"[:400]
        tail = last_line(stderr_tail)
        return "crash", f"exited with status {rc}" + (f": {tail}" if tail else "")
    if not has_score:
        return "no_score", "the script exited 0 without printing val_loss / val_bpb"
    return "ok", "exited 0 with a score"


def summarize_budget(
    ph: PhaseTracker, exit_t: float, limits: Any, enforced: bool, script_times: dict[str, float]
) -> dict[str, Any]:
    start = ph.first_train_read if ph.first_train_read is not None else 0.0
    line = ph.line
    end_train = line if line is not None else exit_t
    out: dict[str, Any] = {
        "enforced": enforced,
        "train_from": "first_train_read" if ph.first_train_read is not None else "start",
        "train_to": "artifact_write" if ph.artifact_write is not None else (
            "checkpoint_write" if line is not None else "exit"),
        "train_s": round(max(0.0, end_train - start), 3),
        "train_limit_s": limits.train_s,
        "eval_s": round(max(0.0, exit_t - line), 3) if line is not None else None,
        "eval_limit_s": limits.eval_s,
        "train_reads_after_artifact": (
            ph.last_train_read is not None and line is not None and ph.last_train_read > line
        ),
    }
    if "train_time_ms" in script_times:
        out["script_train_s"] = script_times["train_time_ms"] / 1000.0
    if "eval_time_ms" in script_times:
        out["script_eval_s"] = script_times["eval_time_ms"] / 1000.0
    return out
