"""The JSON report (versioned schema; documented in docs/report-schema.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.fsutil import atomic_write_text
from harness.results import Report


def report_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, default=_default, sort_keys=False) + "\n"


def _default(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "value"):
        return x.value
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def write_json(report: Report, path: str | Path) -> None:
    atomic_write_text(path, report_json(report))
