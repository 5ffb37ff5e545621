"""`harness check --run`: run the script and fold the run's rule results into the check's report."""

from __future__ import annotations

import argparse
import sys

from harness.config import Config
from harness.results import Report
from harness.run.console import print_run_summary
from harness.run.judge import judge_run, merge_rules, run_kwargs
from harness.run.result import RunResult
from harness.run.runner import run_submission


def fold_run(report: Report, args: argparse.Namespace, cfg: Config, probes: bool = False) -> RunResult:
    result = run_submission(args.path, cfg, **run_kwargs(args, cfg))
    print_run_summary(result)
    judged = judge_run(result, cfg)
    report.rules = merge_rules(report.rules, judged.rules)
    report.notes.extend(judged.notes)
    report.sections["run"] = result.to_dict()
    if judged.timeline_text:
        report.sections["timeline_text"] = judged.timeline_text
    if judged.timeline_svg:
        report.sections["timeline_svg"] = judged.timeline_svg
    if result.failed:
        sys.stderr.write(f"harness: run failed: {result.reason}: {result.message}\n")
    if probes:
        try:
            from harness.probes.command import fold_probes  # type: ignore[import-not-found]
        except ImportError:
            report.notes.append("probes not run: harness.probes is not available")
        else:
            fold_probes(report, args, cfg, result)
    return result
