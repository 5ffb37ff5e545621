"""Probe outcomes as rule rows (checker="probe"), and merging them with the trace's rows.

Which probe speaks to which rule:
    c2 (target substitution)      -> C2
    canary (iid random documents) -> C2 (a dip below the entropy: scores that saw their targets, or that
                                     are not a normalized distribution fixed before the target)
    c1 (future perturbation)      -> C1
    echo canary                   -> C1
A rule's probe status is the worst of its probes' (a PASS never hides an INCONCLUSIVE).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from harness.merge import disagree_text, merge_rows
from harness.probes.outcome import ProbeOutcome
from harness.results import Evidence, Finding, RuleResult, Status, rule_row, worst

DISAGREE = disagree_text("trace", "probes")


def rule_results(outcomes: Sequence[ProbeOutcome], cfg: Any = None) -> list[RuleResult]:
    by_rule: dict[str, list[ProbeOutcome]] = {}
    for o in outcomes:
        by_rule.setdefault(o.rule_id, []).append(o)
    out = []
    for rid in sorted(by_rule):
        os_ = by_rule[rid]
        status = worst([o.status for o in os_], default=Status.NOT_RUN)
        findings = []
        for o in os_:
            # the power statement first: renderers show the first few evidence lines
            ev = ([Evidence(detail=f"power: {o.power}")] if o.power else []) + list(o.evidence)
            findings.append(Finding(rid, o.status, f"[{o.probe} probe{', tracer-free' if o.tracer_free else ''}] "
                                    f"{o.message}", ev))
        lead = next((o for o in os_ if o.status is status), os_[0])
        others = "; ".join(f"{o.probe} {o.status.value}" for o in os_)
        summary = f"{lead.probe} probe: {lead.message} [{others}]"
        out.append(rule_row(cfg, rid, status, summary, findings, checker="probe"))
    return out


def merge_rule_results(trace: Iterable[RuleResult], probes: Iterable[RuleResult]) -> tuple[list[RuleResult], list[str]]:
    """The trace's rows with the probes' rows folded in (harness.merge.merge_rows: the worse status, both
    summaries, "trace and probes disagree" where they contradict), and report notes. A probe can only make a
    row stricter: trace PASS + probe FAIL -> FAIL; trace FAIL + probe PASS -> FAIL (a probe samples; a traced
    violation is a fact)."""
    trace, probes = list(trace), list(probes)
    out, notes = merge_rows(trace, probes, label="probes", base_label="trace", disagree=True)
    # C2 proven by the trace (every score a normalized row's entry for the token itself) is not undone by a
    # probe that could not decide (a sample never PASSes C2): only a probe FAIL overrules it
    proven = {t.rule_id for t in trace if t.rule_id == "C2" and t.status is Status.PASS}
    undecided = {p.rule_id for p in probes if p.status is Status.INCONCLUSIVE}
    out = [replace(r, status=Status.PASS) if r.rule_id in proven & undecided and r.status is Status.INCONCLUSIVE
           else r for r in out]
    # A trace that kept every evaluation condition while a probe caught one: say it once, plainly.
    trace_conditions = [t for t in trace if t.rule_id in ("C1", "C2", "C3", "C4")]
    probe_fail = [p for p in probes if p.status is Status.FAIL]
    if probe_fail and trace_conditions and not any(t.status is Status.FAIL for t in trace_conditions):
        ids = ", ".join(p.rule_id for p in probe_fail)
        note = (f"{DISAGREE}: the trace found no violation of C1-C4, but the probes (which do not trust the trace) "
                f"caught {ids}; the in-process trace was evaded or imprecise here.")
        if note not in notes:
            notes.insert(0, note)
    return out, notes


def probes_section_lines(section: dict[str, Any]) -> list[str]:
    """Short human lines for a console or PR comment."""
    lines = []
    cost = section.get("cost") or {}
    lines.append(f"probes: {section.get('variants', 0)} variant streams of {section.get('stream', {}).get('length')} "
                 f"tokens via {section.get('executor')}, {section.get('wall_s', 0):.1f} s"
                 + (f" (fork at t={cost['fork_at_s']:.1f}s reused by each variant)" if cost.get("fork_at_s") else ""))
    for o in section.get("outcomes", []):
        lines.append(f"  {o['rule_id']} {o['probe']}: {o['status']} - {o['message']}")
    return lines
