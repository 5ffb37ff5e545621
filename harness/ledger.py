"""The run ledger: JSON lines of events, one file per process (rank).

Written by the runtime inside the submission's process (collection), read by the verdict and the
report (analysis). Nothing here imports torch: the writer must be cheap and safe to import first.

Every event is one JSON object with these common keys:
    seq   int    order of the event within its file (0, 1, 2, ...)
    t     float  harness clock: seconds since the run started (the parent's start time is passed in)
    rank  int    process rank (0 for a single process)
    kind  str    one of KINDS
    site  str    the submission's own "file:line" that caused it, when known

Kind-specific keys:
    run_start      argv, pid, python, device, scale, traced
    read           file, lo, hi            validation positions [lo, hi) entering the process
    train_read     file, first (bool)      a training shard read
    artifact_write path, bytes
    artifact_read  path, bytes
    net            host, port, blocked     a network attempt (always blocked in the sandbox)
    subprocess     argv, allowed
    score          sid, pos, nll, dep, grad, op
                   parallel lists: score id, target position, NLL in nats, largest position the value
                   depends on other than selecting the target (-1 = none), whether grad was enabled
    update         lo, hi, target, op, n   a state change whose inputs depend on positions [lo, hi]
                                           (target: param | buffer | optimizer_state | table | array)
    combine        pos, sids, op           a value combining two scores of one position (min, max, ...)
    consume        sids, value, op         scores reaching a number that left torch/numpy (item, tolist,
                                           float, print) or a collective (all_reduce); sids = score ids
    stdout         line                    a printed line that carries val_loss / val_bpb
    reported       tag, val_loss, val_bpb, line     the final score line the script printed
    phase          name                    harness-observed phase marks (train_start, eval_start, ...)
    needs_gpu      what, where
    kernel_launch  name, where, grid, tensors, interpreter, provenance
                                           a GPU kernel (Triton) run on the CPU by Triton's interpreter,
                                           first launch per kernel and line; provenance "followed": the
                                           tracer follows it (tracer/kernels.py), "untracked": its
                                           outputs do not carry the inputs' provenance
    kernel_time    kernels {name: [launches, s]}, seconds, launches   time in Triton's interpreter so far
    stats          unruled_ops {name: count}, escapes int, traced_ops int
    run_end        rc, wall_s, reason
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = frozenset(
    {
        "run_start", "read", "train_read", "artifact_write", "artifact_read", "net", "subprocess",
        "score", "update", "combine", "consume", "stdout", "reported", "phase", "needs_gpu", "stats",
        "run_end", "kernel_launch", "kernel_time",
    }
)


class LedgerWriter:
    """Append-only JSONL writer, flushed per event so a crash loses nothing already recorded."""

    def __init__(self, path: str | os.PathLike[str], rank: int = 0, t0: float | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self.t0 = time.time() if t0 is None else t0
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the run
        self._seq = 0
        self._lock = threading.Lock()

    def emit(self, kind: str, site: str | None = None, **fields: Any) -> int:
        if kind not in KINDS:
            raise ValueError(f"unknown ledger event kind {kind!r}")
        with self._lock:
            seq = self._seq
            self._seq += 1
            ev = {"seq": seq, "t": round(time.time() - self.t0, 6), "rank": self.rank, "kind": kind}
            if site:
                ev["site"] = site
            ev.update(fields)
            self._fh.write(json.dumps(ev, separators=(",", ":"), default=_jsonable) + "\n")
            self._fh.flush()
            return seq

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()


def _jsonable(x: Any) -> Any:
    # numpy scalars and arrays, without importing numpy here
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    return str(x)


@dataclass
class Ledger:
    """All events of one run, every rank, in file order per rank."""

    events: list[dict[str, Any]] = field(default_factory=list)
    skipped_lines: int = 0

    def of(self, *kinds: str) -> Iterator[dict[str, Any]]:
        return (e for e in self.events if e["kind"] in kinds)

    def first(self, kind: str) -> dict[str, Any] | None:
        return next(self.of(kind), None)

    def ranks(self) -> list[int]:
        return sorted({e.get("rank", 0) for e in self.events})


def read_ledger(folder_or_file: str | os.PathLike[str]) -> Ledger:
    """Read ledger*.jsonl (a folder) or one file. A torn last line (killed process) is skipped."""
    p = Path(folder_or_file)
    files = sorted(p.glob("ledger*.jsonl")) if p.is_dir() else [p]
    led = Ledger()
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    ev = json.loads(line)
                except json.JSONDecodeError:
                    led.skipped_lines += 1
                    continue
                if isinstance(ev, dict) and ev.get("kind") in KINDS:
                    led.events.append(ev)
                else:
                    led.skipped_lines += 1
    # stable order: by harness clock, then rank, then seq
    led.events.sort(key=lambda e: (e.get("t", 0.0), e.get("rank", 0), e.get("seq", 0)))
    return led
