"""B1 byte accounting against the 16,000,000-byte cap: the code as it is, as the harness compresses it
(harness.check.code_size) and as the logs state it; per claimed run; the strict total of every code file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.check.submission import CodeFile


@dataclass
class ByteTotals:
    cap: int
    practised_code: int  # train_gpt.py as shipped (a compressed wrapper counts as its own bytes)
    strict_code: int  # every code file the submission needs
    model_bytes: int | None
    model_source: str  # "artifact <file>", "log <file>: <line>", or "unknown"
    code_files: list[dict] = field(default_factory=list)
    unwrapped_source_bytes: int | None = None  # bytes of the real source inside a wrapper
    # the three code figures B1 reports: the file as is (practised_code), the harness's own compressed
    # self-extracting form (harness.check.code_size), what the claimed runs' logs state
    harness_code: int | None = None
    harness_recipe: str = ""
    harness_notes: list[str] = field(default_factory=list)
    stated_code: list[int] = field(default_factory=list)
    decided_code: int | None = None  # the figure B1 decides on (the file as is, or the harness's form)
    counted_as: str = ""  # why that figure
    # per claimed run (and the artifact): {"seed", "what", "model_bytes", "total", ...}
    runs: list[dict] = field(default_factory=list)

    @property
    def decided_total(self) -> int | None:
        """The largest total B1 decides on: the decided code plus the largest model bytes."""
        if self.model_bytes is None:
            return None
        return (self.decided_code if self.decided_code is not None else self.practised_code) + self.model_bytes

    @property
    def practised_total(self) -> int | None:
        return None if self.model_bytes is None else self.practised_code + self.model_bytes

    @property
    def strict_total(self) -> int | None:
        return None if self.model_bytes is None else self.strict_code + self.model_bytes

    def to_dict(self) -> dict:
        return {
            "cap": self.cap,
            "practised": {"code": self.practised_code, "model": self.model_bytes, "total": self.practised_total},
            "strict": {"code": self.strict_code, "model": self.model_bytes, "total": self.strict_total},
            "model_source": self.model_source,
            "code_files": self.code_files,
            "unwrapped_source_bytes": self.unwrapped_source_bytes,
            "code": {"as_is": self.practised_code, "harness_compressed": self.harness_code,
                     "harness_recipe": self.harness_recipe, "harness_notes": self.harness_notes,
                     "log_stated": self.stated_code, "decided": self.decided_code, "counted_as": self.counted_as},
            "decided_total": self.decided_total,
            "runs": self.runs,
        }


def byte_totals(
    files: list[CodeFile],
    cap: int,
    model_bytes: int | None,
    model_source: str,
    unwrapped_source_bytes: int | None = None,
) -> ByteTotals:
    script = next((f for f in files if f.why == "script"), None)
    root = script.path.parent if script else Path(".")
    return ByteTotals(
        cap=cap,
        practised_code=script.bytes if script else 0,
        strict_code=sum(f.bytes for f in files),
        model_bytes=model_bytes,
        model_source=model_source,
        code_files=[
            {"file": str(f.path.relative_to(root)) if f.path.is_relative_to(root) else str(f.path),
             "bytes": f.bytes, "why": f.why}
            for f in files
        ],
        unwrapped_source_bytes=unwrapped_source_bytes,
    )
