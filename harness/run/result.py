"""What one run of a submission produced: RunResult (JSON-serialisable), read by verdict and report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

# Why a run ended. "ok": exited 0 with a score line. The others are failures except where noted.
REASONS = (
    "ok",
    "crash",  # non-zero exit
    "timeout",  # the wall-clock cap of the whole run
    "train_budget",  # killed: training ran past B2 (full scale) - a budget violation, not a crash
    "eval_budget",  # killed: evaluation ran past B3 (full scale) - a budget violation
    "needs_gpu",  # the shim met Triton / custom CUDA kernels it cannot run on a CPU
    "missing_package",  # imports a package the run's interpreter lacks (named with where the folder asks for it)
    "needs_python",  # Python 3.12 syntax with no provable rewrite for this (older) host: not launched
    "memory",  # out of memory (RLIMIT_AS, MemoryError, the kernel's OOM killer)
    "stdout_flood",  # output past the hard cap
    "no_score",  # exited 0 without printing val_loss / val_bpb
    "network",  # crashed after a blocked network attempt
    "subprocess",  # crashed after a blocked subprocess
    "file_size",  # killed by RLIMIT_FSIZE
    "interrupted",  # the harness was interrupted
)
BUDGET_REASONS = frozenset({"train_budget", "eval_budget"})

# The phase names every RunResult carries (harness clock seconds, None when not observed). The
# train_/eval_ marks are the budget clock's spans: training from the first training read (or the
# start) to the first write of the compressed artifact (artifact_write; a raw checkpoint's write,
# checkpoint_write, when there is none); evaluation from there to exit.
PHASES = (
    "start", "run_start", "first_train_read", "last_train_read", "artifact_write", "last_artifact_write",
    "artifact_read", "checkpoint_write", "first_val_read", "reported", "exit", "train_start", "train_end", "eval_start",
    "eval_end",
)


@dataclass
class Reported:
    tag: str
    val_loss: float | None  # None when the line printed val_bpb alone
    val_bpb: float
    line: str
    t: float | None = None  # harness clock when the line was printed
    eval_time_ms: float | None = None


@dataclass
class RunResult:
    out_dir: str
    ledger_dir: str
    rc: int | None
    reason: str
    message: str
    wall_s: float
    stdout_path: str
    stderr_path: str
    stdout_tail: str
    reported: Reported | None
    phases: dict[str, float | None]
    script_times: dict[str, float]
    env_overrides: dict[str, str]
    command: list[str]
    # beyond the brief's minimum: what a maintainer needs to judge the run
    stderr_tail: str = ""
    device: str = "cpu"
    nproc: int = 1
    scale: str = "tiny"
    python: str = ""
    traced: bool = False  # the tracer was requested and started in every rank
    runtime: dict[str, Any] = field(default_factory=dict)  # per rank: which runtime parts started
    budgets: dict[str, Any] = field(default_factory=dict)  # train_s, eval_s, limits, enforced
    served: dict[str, Any] = field(default_factory=dict)  # data served: folder, val stream, tokenizer
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # written by the script
    net_attempts: list[dict[str, Any]] = field(default_factory=list)
    subprocesses: list[dict[str, Any]] = field(default_factory=list)
    needs_gpu: list[dict[str, Any]] = field(default_factory=list)
    output: dict[str, Any] = field(default_factory=dict)  # bytes seen / kept per stream, truncated
    sandbox: dict[str, Any] = field(default_factory=dict)  # net isolation, limits
    tokenizer: str | None = None  # the SentencePiece model of the served data (val_bpb recomputation)
    vocab_size: int | None = None
    workdir: str | None = None  # kept working copy (--keep-workdir)
    score_lines: list[dict[str, Any]] = field(default_factory=list)  # every val_bpb line, with t
    # what the harness did to the working copy before the run, in words ("source rewritten for
    # Python 3.11: N f-strings at lines ..."), and the details (harness.run.py312)
    notes: list[str] = field(default_factory=list)
    source_rewrite: dict[str, Any] = field(default_factory=dict)
    # the configuration inferred from the folder and the environment applied, each value with its source
    # (harness.check.configuration, harness.run.scale)
    configuration: dict[str, Any] = field(default_factory=dict)
    # CPU seconds (user + system) of the script's process and the descendants it waited for, as the kernel
    # counted them when the harness reaped it (os.wait4): unlike wall_s, not inflated by other work on the
    # machine. None when the harness did not reap it itself (a kill, an early failure)
    cpu_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.reason == "ok"

    @property
    def failed(self) -> bool:
        """The run gave nothing to judge (crash, timeout...): budget kills are verdicts, not failures."""
        return self.reason != "ok" and self.reason not in BUDGET_REASONS

    @property
    def env(self) -> dict[str, str]:
        """The environment overrides (the name the verdict reads)."""
        return self.env_overrides

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["env"] = dict(self.env_overrides)  # for readers of run.json as a mapping
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunResult":
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in d.items() if k in known}
        rep = data.get("reported")
        if isinstance(rep, dict):
            data["reported"] = Reported(**{k: v for k, v in rep.items() if k in Reported.__dataclass_fields__})
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> "RunResult":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
