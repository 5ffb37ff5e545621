"""What a run is asked for (built once by the command layer, harness.cli, from the flags and [run])."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"  # cpu: CUDA shim, tiny scale
    nproc: int = 1  # processes (torchrun when > 1)
    scale: str = "tiny"
    data_path: str | None = None  # folder with fineweb_{train,val}_*.bin shards (None: the built-in data)
    tokenizer: str | None = None
    vocab_size: int | None = None
    python: str | None = None  # interpreter for the child
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment overrides
    timeout: float | None = None  # wall-clock cap for the whole run, seconds
    out_dir: str | None = None  # folder for the run's ledger, logs and picture
    trace: bool = True
    keep_workdir: bool = False
    score_tag: str | None = None
    infer_env: bool = True  # apply the configuration inferred from the folder (harness.check.configuration)

    def kwargs(self) -> dict[str, Any]:
        """run_submission keyword arguments."""
        return {"device": self.device, "nproc": self.nproc, "scale": self.scale, "data_path": self.data_path,
                "tokenizer": self.tokenizer, "vocab_size": self.vocab_size, "python": self.python,
                "env": dict(self.env), "timeout": self.timeout, "out_dir": self.out_dir, "trace": self.trace,
                "keep_workdir": self.keep_workdir, "score_tag": self.score_tag,
                "infer_env": self.infer_env}
