"""From a finished run to rule results: the verdict (harness.verdict) when it is there, else the
budget figures this package measured itself. Shared by `harness run` and `harness check --run`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import Config
from harness.results import Evidence, Finding, RuleResult, Status
from harness.rules import rule_order
from harness.run.result import RunResult
from harness.run.scale import parse_env_pairs

# Rules a run (and its trace) decides; a failed run leaves them INCONCLUSIVE, never silently unchecked.
RUN_RULES = ("B2", "B3", "B4", "C1", "C2", "C3", "C4", "D1", "D2", "D3")


def run_kwargs(args: argparse.Namespace, cfg: Config) -> dict[str, Any]:
    """run_submission keyword arguments from the CLI's run options and harness.toml's [run]."""
    rc = cfg.section("run")
    return {
        "device": args.device or rc.get("device", "cpu"),
        "nproc": int(args.nproc or rc.get("nproc", 1)),
        "scale": args.scale or rc.get("scale", "tiny"),
        "data_path": args.data_path,
        "tokenizer": args.tokenizer,
        "vocab_size": args.vocab_size,
        "python": args.python or rc.get("python"),
        "env": parse_env_pairs(args.env),
        "timeout": args.timeout,
        "out_dir": args.out,
        "trace": not args.no_trace,
        "keep_workdir": bool(args.keep_workdir),
        "score_tag": getattr(args, "score_tag", None) or None,
    }


@dataclass
class Judged:
    rules: list[RuleResult]
    notes: list[str] = field(default_factory=list)
    timeline_text: str | None = None
    timeline_svg: str | None = None
    source: str = "verdict"  # "verdict" | "runner" (the verdict is not available)


def _rule(cfg: Config, rid: str, status: Status, summary: str, findings: list[Finding] | None = None) -> RuleResult:
    rule = cfg.rules.get(rid)
    return RuleResult(
        rid, rule.title if rule else rid, status, summary, findings or [], checker="run",
        severity=rule.severity if rule else "error",
    )


def failed_run_rules(result: RunResult, cfg: Config) -> list[RuleResult]:
    why = f"the run failed ({result.reason}): {result.message}"
    ev = [Evidence(time_s=result.phases.get("exit"), detail=result.reason)]
    return [
        _rule(cfg, rid, Status.INCONCLUSIVE, why, [Finding(rid, Status.INCONCLUSIVE, why, ev)])
        for rid in RUN_RULES
        if rid in cfg.enabled and rid in cfg.rules
    ]


def budget_rules(result: RunResult, cfg: Config) -> list[RuleResult]:
    """B2/B3 from this runner's own clock (used when harness.verdict is missing)."""
    b = result.budgets
    out = []
    for rid, kind in (("B2", "train"), ("B3", "eval")):
        if rid not in cfg.enabled:
            continue
        secs, limit = b.get(f"{kind}_s"), b.get(f"{kind}_limit_s")
        fig = f"{kind} {secs:.1f} s" if secs is not None else f"{kind} time unknown"
        if not b.get("enforced"):
            out.append(_rule(cfg, rid, Status.NOT_RUN, f"{fig} at tiny scale (informational; the budget binds "
                             "full-scale runs)"))
            continue
        killed = result.reason == f"{kind}_budget"
        if killed or (secs is not None and limit is not None and secs > limit):
            msg = result.message if killed else f"{fig} past the {limit:.1f} s budget"
            f = Finding(rid, Status.FAIL, msg, [Evidence(time_s=secs, detail=result.reason)])
            out.append(_rule(cfg, rid, Status.FAIL, msg, [f]))
        elif secs is None:
            out.append(_rule(cfg, rid, Status.INCONCLUSIVE, f"{fig}: no artifact write observed"))
        else:
            out.append(_rule(cfg, rid, Status.PASS, f"{fig} within {limit:.1f} s"))
    return out


def judge_run(result: RunResult, cfg: Config) -> Judged:
    if result.failed:
        return Judged(failed_run_rules(result, cfg), [f"run failed: {result.reason}: {result.message}"],
                      source="runner")
    try:
        from harness.verdict import verdict_for_run
    except ImportError:
        return Judged(budget_rules(result, cfg), ["the verdict (harness.verdict) is not available: only "
                      "the runner's budget figures are reported"], source="runner")
    v = verdict_for_run(result.ledger_dir, result, cfg)
    j = Judged(sorted(v.results, key=lambda r: rule_order(r.rule_id)), list(getattr(v, "notes", [])))
    analysis = getattr(v, "analysis", None)
    if analysis is not None:
        try:
            from harness.report.timeline import timeline_text, write_timeline_svg

            j.timeline_text = timeline_text(analysis)
            j.timeline_svg = str(write_timeline_svg(analysis, Path(result.out_dir) / "timeline.svg"))
        except Exception as e:  # noqa: BLE001 - the picture is a courtesy, not evidence
            j.notes.append(f"timeline not drawn: {type(e).__name__}: {e}")
    return j


def merge_rules(existing: list[RuleResult], new: list[RuleResult]) -> list[RuleResult]:
    """Fold a run's results into a report's: one row per rule, the worse status, both summaries."""
    by_id = {r.rule_id: r for r in existing}
    out = list(existing)
    for r in new:
        old = by_id.get(r.rule_id)
        if old is None:
            out.append(r)
            by_id[r.rule_id] = r
            continue
        if old.status is Status.NOT_RUN:
            out[out.index(old)] = r
            by_id[r.rule_id] = r
            continue
        worse = r.status if r.status.rank > old.status.rank else old.status
        old.status = worse
        old.summary = f"{old.summary} | run: {r.summary}"
        old.findings.extend(r.findings)
        old.checker = ",".join(x for x in (old.checker, r.checker) if x)
    return out
