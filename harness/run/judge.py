"""The run stage's rows: from a finished run (or a saved run folder) to rule results, through the verdict
(harness.verdict). Shared by `harness run`, `harness check --run` and `harness verdict`.

    judge_run(result, cfg) -> Judged            rows, notes, the run and timeline report sections
    load_saved_run(out_dir) -> RunResult        a folder written by `harness run --out DIR`, re-based there
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.config import Config
from harness.errors import BadInput
from harness.report.timeline import timeline_text, write_timeline_svg
from harness.results import Evidence, Finding, RuleResult, Stage, Status, rule_row
from harness.rules import decided_by, rule_order
from harness.run.result import RunResult
from harness.verdict import verdict_for_run


# Rules a run (and its trace) decides; a failed run leaves them INCONCLUSIVE, never silently unchecked.
RUN_RULES = decided_by("run")


@dataclass
class Judged(Stage):
    timeline_text: str | None = None
    timeline_svg: str | None = None
    source: str = "verdict"  # "verdict" | "runner" (the run failed: nothing to judge)
    analysis: Any = field(default=None, repr=False, compare=False)  # the verdict's Analysis (not reported)


def failed_run_rules(result: RunResult, cfg: Config) -> list[RuleResult]:
    why = f"the run failed ({result.reason}): {result.message}"
    ev = [Evidence(time_s=result.phases.get("exit"), detail=result.reason)]
    return [
        rule_row(cfg, rid, Status.INCONCLUSIVE, why, [Finding(rid, Status.INCONCLUSIVE, why, ev)], checker="run")
        for rid in RUN_RULES
        if rid in cfg.enabled and rid in cfg.rules
    ]


def judge_run(result: RunResult, cfg: Config, claimed: Any = None, replay: Any = None) -> Judged:
    """claimed: what the folder's logs state about training (harness.verdict.budgets.claimed_training);
    replay: what a score-order replay decided (harness.verdict.relabel.Replay)."""
    if result.failed:
        return Judged(failed_run_rules(result, cfg), [f"run failed: {result.reason}: {result.message}"],
                      {"run": result.to_dict()}, source="runner")
    v = verdict_for_run(result.ledger_dir, result, cfg, claimed=claimed, replay=replay)
    j = Judged(sorted(v.results, key=lambda r: rule_order(r.rule_id)), list(v.notes) + list(result.notes),
               {"run": result.to_dict()})  # result.notes: "source rewritten for Python 3.11: ..."
    j.analysis = v.analysis
    try:
        j.timeline_text = timeline_text(v.analysis)
        j.timeline_svg = str(write_timeline_svg(v.analysis, Path(result.out_dir) / "timeline.svg"))
    except Exception as e:  # noqa: BLE001 - the picture is a courtesy, not evidence
        j.notes.append(f"timeline not drawn: {type(e).__name__}: {e}")
    if j.timeline_text:
        j.sections["timeline_text"] = j.timeline_text
    if j.timeline_svg:
        j.sections["timeline_svg"] = j.timeline_svg
    return j


def load_saved_run(out_dir: str | Path) -> RunResult:
    """The RunResult of a folder `harness run --out DIR` wrote (run.json + ledger/), its paths re-based on
    the folder as it is now (it may have been moved or copied). BadInput when it is not such a folder."""
    d = Path(out_dir).expanduser()
    if not d.is_dir():
        raise BadInput(f"run folder not found: {d}")
    f = d / "run.json"
    if not f.is_file():
        raise BadInput(f"{d}: no run.json (not a folder written by harness run --out)")
    try:
        result = RunResult.load(f)
    except (ValueError, TypeError, UnicodeDecodeError, AttributeError, RecursionError) as e:  # JSONDecodeError: ValueError
        raise BadInput(f"{f}: not a run record ({type(e).__name__}: {e})") from None
    ledger = d / Path(result.ledger_dir or "ledger").name
    if not ledger.is_dir():
        ledger = d / "ledger"
    if not ledger.is_dir():
        raise BadInput(f"{d}: no ledger folder beside run.json")
    return replace(result, out_dir=str(d.resolve()), ledger_dir=str(ledger.resolve()))


__all__ = ["Judged", "RUN_RULES", "failed_run_rules", "judge_run", "load_saved_run"]
