"""`harness run PATH`: run the script, print the run summary, then the rule table; exit by verdict.

Exit codes: a run that failed (crash, timeout, needs GPU, no score...) prints one line
`harness: run failed: <reason>: <message>` and exits 4; otherwise the report's exit code (a budget
kill at full scale is a FAIL of B2/B3, exit 1).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys

from harness import __version__
from harness.config import Config
from harness.errors import Exit
from harness.fsutil import atomic_write_text
from harness.results import Report
from harness.run.console import print_run_summary
from harness.run.judge import judge_run, run_kwargs
from harness.run.result import BUDGET_REASONS, RunResult
from harness.run.runner import run_submission


def _new_report(path: str, command: str) -> Report:
    try:
        from harness.check.decide import new_report

        return new_report(path, command)
    except ImportError:
        return Report(
            submission=str(path), command=command, harness_version=__version__,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )


def build_report(path: str, result: RunResult, cfg: Config) -> Report:
    report = _new_report(path, "harness run")
    judged = judge_run(result, cfg)
    report.rules = judged.rules
    report.notes.extend(judged.notes)
    report.sections["run"] = result.to_dict()
    if judged.timeline_text:
        report.sections["timeline_text"] = judged.timeline_text
    if judged.timeline_svg:
        report.sections["timeline_svg"] = judged.timeline_svg
    return report


def _write(report: Report, json_out: str | None, md_out: str | None) -> None:
    if json_out:
        try:
            from harness.report.json_report import write_json

            write_json(report, json_out)
        except ImportError:
            import json

            atomic_write_text(json_out, json.dumps(report.to_dict(), indent=2, default=str))
    if md_out:
        from harness.report.markdown import write_markdown

        write_markdown(report, md_out)


def _render(report: Report) -> None:
    try:
        from harness.report.console import render_report
    except ImportError:
        for r in report.rules:
            print(f"{r.rule_id:4} {r.status.value:13} {r.summary}")
        print(f"verdict: {report.status.value} (exit {int(report.exit_code)})")
        return
    render_report(report)


def main_run(args: argparse.Namespace, cfg: Config) -> int:
    result = run_submission(args.path, cfg, **run_kwargs(args, cfg))
    print_run_summary(result)
    report = build_report(args.path, result, cfg)
    _write(report, getattr(args, "json_out", None), getattr(args, "md_out", None))
    if result.failed:
        sys.stderr.write(f"harness: run failed: {result.reason}: {result.message}\n")
        return int(Exit.RUN_FAILED)
    _render(report)
    if result.reason in BUDGET_REASONS:
        sys.stderr.write(f"harness: run stopped: {result.reason}: {result.message}\n")
    return int(report.exit_code)
