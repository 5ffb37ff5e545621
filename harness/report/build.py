"""The one report factory and the one writer: every command builds its Report here and writes it here.

    new_report(path, command, cfg) -> Report
    fold_stage(report, stage, merge=None) a stage's rows (merged by `merge` into the report's), notes, sections
    finalize(report, cfg)                 NOT RUN rows for enabled rules nobody decided; report order
    write_outputs(report, json_path, md_path)
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import __version__
from harness.config import Config
from harness.errors import BadInput
from harness.report.json_report import write_json
from harness.report.markdown import write_markdown
from harness.results import Report, RuleResult, Stage, Status, rule_row
from harness.rules import not_run_text, rule_order, ruleset_version


def new_report(path: str | Path, command: str, cfg: Config | None = None) -> Report:
    """An empty report stamped with the harness and ruleset versions (the rules `cfg` points at)."""
    return Report(
        submission=str(path),
        command=command,
        harness_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        ruleset_version=ruleset_version(cfg.get("harness", "rules_dir") if cfg is not None else None),
    )


Merge = Callable[[Sequence[RuleResult], Sequence[RuleResult]], tuple[list[RuleResult], list[str]]]


def fold_stage(report: Report, stage: Stage, merge: Merge | None = None) -> None:
    """Add what a stage decided to the report: its rows (appended, or merged into the report's rows by
    `merge`, e.g. harness.merge.merge_rows, whose notes come first), notes, sections, hints, input errors."""
    if merge is None:
        report.rules.extend(stage.rules)
    else:
        report.rules, notes = merge(report.rules, stage.rules)
        report.notes.extend(notes)
    report.notes.extend(stage.notes)
    report.sections.update(stage.sections)
    report.hints.extend(stage.hints)
    report.input_errors.extend(stage.input_errors)


def finalize(report: Report, cfg: Config) -> None:
    """Add NOT RUN rows for enabled rules nobody checked; order rows; apply not_run_is_inconclusive."""
    have = {r.rule_id for r in report.rules}
    for rid in sorted(cfg.enabled, key=rule_order):
        if rid not in have and rid in cfg.rules:
            report.rules.append(rule_row(cfg, rid, Status.NOT_RUN, not_run_text(rid)))
    report.rules = [r for r in report.rules if r.rule_id in cfg.enabled]
    report.rules.sort(key=lambda r: rule_order(r.rule_id))
    if cfg.get("harness", "not_run_is_inconclusive", False):
        for r in report.rules:
            if r.status is Status.NOT_RUN:
                r.status = Status.INCONCLUSIVE


def write_outputs(report: Report, json_path: str | Path | None, md_path: str | Path | None) -> None:
    """Write the report files; a path that cannot take a file (a folder, a missing or read-only folder) is
    bad input, one line (the options check the common cases before anything runs)."""
    for path, write in ((json_path, write_json), (md_path, write_markdown)):
        if not path:
            continue
        try:
            write(report, path)
        except (IsADirectoryError, NotADirectoryError, FileNotFoundError, PermissionError) as e:
            raise BadInput(f"cannot write the report to {path}: {e.strerror or e}") from None
