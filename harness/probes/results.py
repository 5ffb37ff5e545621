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
from typing import Any

from harness.probes.outcome import ProbeOutcome
from harness.results import Evidence, Finding, RuleResult, Status, worst

DISAGREE = "trace and probes disagree"


def rule_results(outcomes: Sequence[ProbeOutcome], cfg: Any = None) -> list[RuleResult]:
    by_rule: dict[str, list[ProbeOutcome]] = {}
    for o in outcomes:
        by_rule.setdefault(o.rule_id, []).append(o)
    out = []
    for rid in sorted(by_rule):
        os_ = by_rule[rid]
        status = worst([o.status for o in os_], default=Status.NOT_RUN)
        rule = cfg.rules.get(rid) if cfg is not None else None
        findings = []
        for o in os_:
            # the power statement first: renderers show the first few evidence lines
            ev = ([Evidence(detail=f"power: {o.power}")] if o.power else []) + list(o.evidence)
            findings.append(Finding(rid, o.status, f"[{o.probe} probe{', tracer-free' if o.tracer_free else ''}] "
                                    f"{o.message}", ev))
        lead = next((o for o in os_ if o.status is status), os_[0])
        others = "; ".join(f"{o.probe} {o.status.value}" for o in os_)
        summary = f"{lead.probe} probe: {lead.message} [{others}]"
        out.append(RuleResult(rid, rule.title if rule else rid, status, summary, findings, checker="probe",
                              severity=rule.severity if rule else "error"))
    return out


def _disagree(trace: RuleResult, probe: RuleResult) -> bool:
    """The trace found this rule kept (or could not tell) while a probe caught a violation, or the trace
    caught one that a probe contradicts with a PASS."""
    t, p = trace.status, probe.status
    return (p is Status.FAIL and t in (Status.PASS, Status.WARN, Status.INCONCLUSIVE)) or \
        (t is Status.FAIL and p is Status.PASS)


def merge_rule_results(trace: Iterable[RuleResult], probes: Iterable[RuleResult]) -> tuple[list[RuleResult], list[str]]:
    """One row per rule from the trace's rows and the probes' rows, and report notes.

    Combined status: the worse of the two (NOT RUN counts as nothing), so a probe can only make a row
    stricter: trace PASS + probe FAIL -> FAIL with "trace and probes disagree"; trace FAIL + probe PASS ->
    FAIL (a probe samples; a traced violation is a fact) with the same note. Rows only one side has pass
    through. Order follows the trace's rows, then the probes' new ones."""
    trace = list(trace)
    probes = {r.rule_id: r for r in probes}
    notes: list[str] = []
    out: list[RuleResult] = []
    seen: set[str] = set()
    for t in trace:
        seen.add(t.rule_id)
        p = probes.get(t.rule_id)
        if p is None:
            out.append(t)
            continue
        if t.status is Status.NOT_RUN:
            merged = RuleResult(t.rule_id, t.title or p.title, p.status, p.summary,
                                list(p.findings), "probe", t.severity)
            out.append(merged)
            continue
        status = worst([t.status, p.status])
        findings = list(t.findings) + list(p.findings)
        summary = f"trace: {t.summary} | probes: {p.summary}"
        if _disagree(t, p):
            if p.status is Status.FAIL:
                what = (f"{DISAGREE} on {t.rule_id}: the trace says {t.status.value} ({t.summary}) but a probe "
                        f"caught a violation ({p.summary})")
            else:
                what = (f"{DISAGREE} on {t.rule_id}: the trace found a violation but the probes saw none "
                        "(a probe samples a few positions and streams; the traced violation stands)")
            findings.insert(0, Finding(t.rule_id, Status.FAIL, what))
            summary = f"{DISAGREE}: {summary}"
            notes.append(what)
        out.append(RuleResult(t.rule_id, t.title or p.title, status, summary, findings, "trace+probe", t.severity))
    for rid, p in probes.items():
        if rid not in seen:
            out.append(p)
    # A trace that kept every evaluation condition while a probe caught one: say it once, plainly.
    trace_conditions = [t for t in trace if t.rule_id in ("C1", "C2", "C3", "C4")]
    probe_fail = [p for p in probes.values() if p.status is Status.FAIL]
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
