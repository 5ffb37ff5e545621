"""B2 / B3: training and evaluation wall clock (rules/budgets.toml).

At tiny scale (CPU, shrunk model) the times say nothing about 8xH100: the result is informational.
At full scale the budgets decide: the runner's budget kill, or phases longer than the allowance.
Phase marks come from the ledger's `phase` events (train_start, train_end, eval_start, eval_end),
or from the run result's `phases`; missing marks fall back to the run's own landmarks: run_start,
the first artifact_write (the end of training), the reported line or run_end (the end of evaluation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.ledger import Ledger
from harness.results import Evidence, Finding, RuleResult, Status

_DURATION_KEYS = {"train": ("train_s", "train", "train_seconds"), "eval": ("eval_s", "eval", "eval_seconds")}


@dataclass
class Timing:
    train_s: float | None
    eval_s: float | None
    last_train_read_s: float | None  # seconds after the training start
    source: str


def _marks_from(phases: Any) -> tuple[dict[str, float], dict[str, float]]:
    """(marks name -> t, durations kind -> seconds) from a run result's phases, whatever its shape."""
    marks: dict[str, float] = {}
    durations: dict[str, float] = {}
    if isinstance(phases, Mapping):
        for k, v in phases.items():
            if not isinstance(v, (int, float)):
                continue
            key = str(k)
            for kind, names in _DURATION_KEYS.items():
                if key in names:
                    durations[kind] = float(v)
            if key.endswith(("_start", "_end")):
                marks[key] = float(v)
    elif isinstance(phases, (list, tuple)):
        for item in phases:
            if isinstance(item, Mapping) and isinstance(item.get("t"), (int, float)):
                marks[str(item.get("name"))] = float(item["t"])
            elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], (int, float)):
                marks[str(item[0])] = float(item[1])
    return marks, durations


def timing(ledger: Ledger, phases: Any = None) -> Timing:
    marks, durations = _marks_from(phases)
    for ev in ledger.of("phase"):
        if isinstance(ev.get("t"), (int, float)) and ev.get("name"):
            marks.setdefault(str(ev["name"]), float(ev["t"]))

    def t_of(kind: str, last: bool = False) -> float | None:
        evs = [e for e in ledger.of(kind) if isinstance(e.get("t"), (int, float))]
        if not evs:
            return None
        return float((evs[-1] if last else evs[0])["t"])

    start = marks.get("train_start", t_of("run_start") or 0.0)
    train_end = marks.get("train_end", t_of("artifact_write"))
    eval_start = marks.get("eval_start", train_end)
    eval_end = marks.get("eval_end", t_of("reported", last=True) or t_of("run_end"))
    train_s = durations.get("train", (train_end - start) if train_end is not None else None)
    eval_s = durations.get("eval", (eval_end - eval_start) if eval_end is not None and eval_start is not None
                           else None)
    reads = [float(e["t"]) for e in ledger.of("train_read") if isinstance(e.get("t"), (int, float))]
    last_read = (max(reads) - start) if reads else None
    src = "phase marks" if marks or durations else "run landmarks"
    return Timing(train_s, eval_s, last_read, src)


def _killed_for(reason: str | None, kind: str) -> bool:
    r = (reason or "").lower()
    if "budget" not in r:
        return False
    other = "eval" if kind == "train" else "train"
    return kind in r or other not in r


def check_budget(
    rule_id: str, kind: str, tm: Timing, params: Mapping[str, Any], scale: str | None, reason: str | None
) -> RuleResult:
    seconds = tm.train_s if kind == "train" else tm.eval_s
    limit = float(params["max_seconds"])
    allow = float(params["grace_seconds"])
    if kind == "train":
        allow += float(params["compile_allowance_seconds"])
    fig = f"{kind} {seconds:.1f} s" if seconds is not None else f"{kind} time unknown"
    if scale != "full":
        if seconds is None:
            return RuleResult(rule_id, "", Status.WARN, f"{fig} (no phase marks recorded); tiny-scale run, "
                              f"the {limit:.0f} s budget applies to full-scale 8xH100 runs", checker="run",
                              severity="info")
        return RuleResult(rule_id, "", Status.PASS, f"{fig} at tiny scale ({tm.source}): informational, the "
                          f"{limit:.0f} s budget applies to full-scale 8xH100 runs", checker="run", severity="info")
    findings: list[Finding] = []
    if _killed_for(reason, kind):
        findings.append(Finding(rule_id, Status.FAIL, f"the runner stopped the run for its {kind} budget "
                                f"({reason}).", [Evidence(detail=str(reason))]))
    if seconds is not None and seconds > limit + allow:
        findings.append(Finding(rule_id, Status.FAIL, f"{kind} took {seconds:.1f} s, over the {limit:.0f} s budget "
                                f"(+{allow:.0f} s allowance).", [Evidence(time_s=seconds, detail=tm.source)]))
    if kind == "train" and tm.last_train_read_s is not None and tm.last_train_read_s > limit + allow:
        findings.append(Finding(rule_id, Status.FAIL, f"training data was still read {tm.last_train_read_s:.1f} s "
                                f"after training started: reads of training data must finish inside the budget.",
                                [Evidence(time_s=tm.last_train_read_s)]))
    if findings:
        return RuleResult(rule_id, "", Status.FAIL, findings[0].message, findings, checker="run")
    if seconds is None:
        return RuleResult(rule_id, "", Status.INCONCLUSIVE, f"{fig}: no phase marks to measure it", checker="run")
    return RuleResult(rule_id, "", Status.PASS, f"{fig} within {limit:.0f} s (+{allow:.0f} s) ({tm.source})",
                      checker="run")
