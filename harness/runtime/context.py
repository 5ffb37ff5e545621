"""The runtime's shared state inside the child process: settings, the ledger writer, site lookup.

The parent (harness.run) passes settings as JSON in the HARNESS_RUNTIME environment variable.
Hooks (io_hooks, shim, tracer) read settings from here and emit ledger events through emit().
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.ledger import LedgerWriter

ENV_VAR = "HARNESS_RUNTIME"


@dataclass
class RuntimeSettings:
    ledger_dir: str
    t0: float  # harness clock origin (parent's time.time() at launch)
    device: str = "cpu"  # "cpu": install the CUDA shim; "cuda": real GPU
    bf16_as_fp32: bool = True
    trace: bool = False
    submission_dir: str = ""  # the run's working copy of the submission folder
    vocab_size: int | None = None
    val_glob: str = "fineweb_val_*.bin"
    train_glob: str = "fineweb_train_*.bin"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "RuntimeSettings | None":
        raw = os.environ.get(ENV_VAR)
        if not raw:
            return None
        data = json.loads(raw)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def to_env(self) -> str:
        return json.dumps(self.__dict__)


class RuntimeContext:
    """One per process. Hooks register here; tracer replaces tag_validation."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self.rank = int(os.environ.get("RANK", "0"))
        self.ledger = LedgerWriter(
            Path(settings.ledger_dir) / f"ledger.rank{self.rank}.jsonl", rank=self.rank, t0=settings.t0
        )
        sub = settings.submission_dir
        self._sub_prefix = str(Path(sub).resolve()) + os.sep if sub else None
        self._is_sub: dict[str, bool] = {}
        # Called by io_hooks when validation tokens enter the process; the tracer replaces it so the
        # returned array carries provenance (positions lo, lo+1, ...). Default: no tracing.
        self.tag_validation: Callable[[Any, int, str], Any] = lambda arr, lo, file: arr

    def emit(self, kind: str, site: str | None = None, **fields: Any) -> int:
        return self.ledger.emit(kind, site=site if site is not None else self.site(), **fields)

    def is_submission_file(self, filename: str) -> bool:
        # memoized: site() runs on hot paths (every traced op that emits)
        hit = self._is_sub.get(filename)
        if hit is None:
            try:
                # "<frozen importlib._bootstrap>" would otherwise resolve under the working directory
                hit = (
                    self._sub_prefix is not None
                    and not filename.startswith("<frozen ")
                    and str(Path(filename).resolve()).startswith(self._sub_prefix)
                )
            except OSError:
                hit = False
            self._is_sub[filename] = hit
        return hit

    def site(self, skip: int = 1) -> str | None:
        """Innermost frame that belongs to the submission's own files, as 'file:line'."""
        f = sys._getframe(skip)
        while f is not None:
            fn = f.f_code.co_filename
            if self.is_submission_file(fn):
                return f"{Path(fn).name}:{f.f_lineno}"
            f = f.f_back
        return None


_CTX: RuntimeContext | None = None


def get() -> RuntimeContext | None:
    return _CTX


def init(settings: RuntimeSettings) -> RuntimeContext:
    global _CTX
    _CTX = RuntimeContext(settings)
    return _CTX
