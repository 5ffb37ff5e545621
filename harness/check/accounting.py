"""B1 byte accounting: strict and as-practised totals against the 16,000,000-byte cap."""

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
