"""Watching the child's ledger while it runs: phases by the harness clock, and the B2/B3 budgets.

The parent polls the ledger files (every ~0.2 s), folds new events into a PhaseTracker, and asks a
BudgetClock whether training (first training read, or the start, until the first write of the
compressed artifact; a raw checkpoint's write when there is none) or evaluation (from there until
exit) has run past its budget.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import Config

PARENT_LEDGER = "ledger.parent.jsonl"
# The tracer's per-token events are most of a ledger and tell the watcher nothing: not even parsed.
_SKIP = tuple(f'"kind":"{k}"'.encode() for k in ("score", "update", "release", "consume", "combine", "stats"))


class LedgerTail:
    """Reads new complete lines from every child ledger file in a folder (not the parent's)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pos: dict[Path, int] = {}

    def poll(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        try:
            files = sorted(self.folder.glob("ledger*.jsonl"))
        except OSError:
            return out
        for f in files:
            if f.name == PARENT_LEDGER:
                continue
            pos = self._pos.get(f, 0)
            try:
                with open(f, "rb") as fh:
                    fh.seek(pos)
                    data = fh.read()
            except OSError:
                continue
            end = data.rfind(b"\n")
            if end < 0:
                continue
            self._pos[f] = pos + end + 1
            for line in data[: end + 1].splitlines():
                if any(k in line for k in _SKIP):
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if isinstance(ev, dict):
                    out.append(ev)
        return out


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _max(a: float | None, b: float) -> float:
    return b if a is None else max(a, b)


@dataclass
class PhaseTracker:
    run_start: float | None = None
    first_train_read: float | None = None
    last_train_read: float | None = None
    artifact_write: float | None = None
    last_artifact_write: float | None = None
    artifact_read: float | None = None
    checkpoint_write: float | None = None  # a raw model save (not the compressed artifact)
    first_val_read: float | None = None
    child_exit: float | None = None
    runtime: dict[str, Any] = field(default_factory=dict)  # "rank:pid" -> parts
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    net: list[dict[str, Any]] = field(default_factory=list)
    subprocesses: list[dict[str, Any]] = field(default_factory=list)
    needs_gpu: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0

    def feed(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            self.events += 1
            k = ev.get("kind")
            t = float(ev.get("t", 0.0))
            if k == "run_start":
                self.run_start = _min(self.run_start, t)
            elif k == "train_read":
                self.first_train_read = _min(self.first_train_read, t)
                self.last_train_read = _max(self.last_train_read, t)
            elif k == "artifact_write":
                self.artifact_write = _min(self.artifact_write, t)
                self.last_artifact_write = _max(self.last_artifact_write, t)
                path = str(ev.get("path", ""))
                self.artifacts[path] = {"path": path, "bytes": ev.get("bytes"), "t": t, "site": ev.get("site"),
                                        "role": "artifact"}
            elif k == "artifact_read":
                self.artifact_read = _min(self.artifact_read, t)
            elif k == "read":
                if not ev.get("lazy"):
                    self.first_val_read = _min(self.first_val_read, t)
            elif k == "net":
                self.net.append(_pick(ev, "t", "host", "port", "how", "site", "rank"))
            elif k == "subprocess":
                self.subprocesses.append(_pick(ev, "t", "argv", "allowed", "origin", "site", "rank"))
            elif k == "needs_gpu":
                self.needs_gpu.append(_pick(ev, "t", "what", "where", "site", "rank"))
            elif k == "phase":
                if ev.get("name") == "runtime_ready":
                    # merged: a later event may amend one part (the tracer "incomplete" after a kernel)
                    self.runtime.setdefault(f"{ev.get('rank', 0)}", {}).update(ev.get("parts") or {})
                elif ev.get("name") == "child_exit":
                    self.child_exit = _max(self.child_exit, t)
                elif ev.get("name") == "checkpoint_write":
                    self.checkpoint_write = _min(self.checkpoint_write, t)
                    path = str(ev.get("path", ""))
                    self.artifacts.setdefault(path, {"path": path, "bytes": ev.get("bytes"), "t": t,
                                                     "site": ev.get("site"), "role": "checkpoint"})

    @property
    def line(self) -> float | None:
        """Where training ends and evaluation starts: the first write of the compressed artifact; a
        raw checkpoint's write when no artifact was written (yet)."""
        return self.artifact_write if self.artifact_write is not None else self.checkpoint_write


def _pick(ev: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: ev[k] for k in keys if k in ev}


@dataclass
class BudgetLimits:
    train_s: float  # B2: max_seconds + compile allowance + grace
    eval_s: float  # B3: max_seconds + grace

    @classmethod
    def from_config(cls, cfg: Config) -> "BudgetLimits":
        b2 = cfg.rule_params("B2")
        b3 = cfg.rule_params("B3")
        train = float(b2["max_seconds"]) + float(b2["compile_allowance_seconds"])
        train += float(b2["grace_seconds"])
        ev = float(b3["max_seconds"]) + float(b3["grace_seconds"])
        return cls(train, ev)


class BudgetClock:
    """Training: from the first training read (or the start) to the first artifact write.
    Evaluation: from the first artifact write to exit."""

    def __init__(self, limits: BudgetLimits) -> None:
        self.limits = limits

    def spans(self, ph: PhaseTracker, now: float) -> tuple[float, float | None]:
        start = ph.first_train_read if ph.first_train_read is not None else 0.0
        line = ph.line
        if line is None:
            return max(0.0, now - start), None
        return max(0.0, line - start), max(0.0, now - line)

    def exceeded(self, ph: PhaseTracker, now: float) -> tuple[str, str] | None:
        train, ev = self.spans(ph, now)
        if ph.line is None and train > self.limits.train_s:
            since = "the first training read" if ph.first_train_read is not None else "the start"
            return "train_budget", (
                f"training ran {train:.1f} s from {since} without writing the artifact, past the "
                f"{self.limits.train_s:.1f} s budget (B2); killed"
            )
        if ev is not None and ev > self.limits.eval_s:
            return "eval_budget", (
                f"evaluation ran {ev:.1f} s after the artifact write at t={ph.line:.1f} s, past the "
                f"{self.limits.eval_s:.1f} s budget (B3); killed"
            )
        return None


def ledger_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("ledger*.jsonl")) if p.name != PARENT_LEDGER]


def clear_ledger(folder: Path) -> None:
    """A re-used out folder: drop the previous run's ledger files so runs never mix."""
    for p in folder.glob("ledger*.jsonl"):
        try:
            os.unlink(p)
        except OSError:
            pass
