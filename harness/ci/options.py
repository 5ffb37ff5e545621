"""What `harness ci` is asked for (built once by the command layer, harness.cli)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CiOptions:
    command: str  # changed-folders | comment
    # changed-folders
    base: str | None = None
    head: str | None = None
    diff_file: str | None = None  # `git diff --name-only` output; "-": stdin
    root: str = "."
    records: str = "records"
    github_output: str | None = None
    # comment
    report_dirs: tuple[str, ...] = ()
    expect: str | None = None  # the changed-folders matrix (JSON)
    out: str | None = None
    details_url: str | None = None
