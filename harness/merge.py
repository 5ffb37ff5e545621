"""One merge of rule rows: what a later stage (a run, the probes) decided folded into an earlier one's rows.

    merge_rows(base, incoming, label="run", base_label=None, disagree=False) -> (rows, notes)

One row per rule. A base row that is NOT RUN is replaced by the incoming row. Otherwise the worse status
wins (NOT RUN counts as nothing, so a later stage can only make a row stricter), both summaries are kept
("<base> | <label>: <incoming>", the base prefixed with "<base_label>: " when given), findings are joined,
and the checkers are joined with "+". With disagree=True, a FAIL on one side against a PASS (or, for an
incoming FAIL, a WARN or INCONCLUSIVE) on the other is said in the row's summary, as a first finding and
as a report note ("<base_label> and <label> disagree"). Order: the base rows, then the incoming rows the
base has no row for. Neither input list nor its rows are changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from harness.results import Finding, RuleResult, Status, worst


def disagree_text(base_label: str, label: str) -> str:
    return f"{base_label} and {label} disagree"


def _disagree(base: RuleResult, new: RuleResult) -> bool:
    b, n = base.status, new.status
    return (n is Status.FAIL and b in (Status.PASS, Status.WARN, Status.INCONCLUSIVE)) or \
        (b is Status.FAIL and n is Status.PASS)


def _checkers(*names: str) -> str:
    parts: list[str] = []
    for n in names:
        for x in n.split("+"):
            if x and x not in parts:
                parts.append(x)
    return "+".join(parts)


def merge_rows(base: Iterable[RuleResult], incoming: Iterable[RuleResult], *, label: str = "run",
               base_label: str | None = None, disagree: bool = False) -> tuple[list[RuleResult], list[str]]:
    base = list(base)
    new_by_id = {r.rule_id: r for r in incoming}
    notes: list[str] = []
    out: list[RuleResult] = []
    seen: set[str] = set()
    for b in base:
        seen.add(b.rule_id)
        n = new_by_id.get(b.rule_id)
        if n is None:
            out.append(b)
            continue
        if b.status is Status.NOT_RUN:
            out.append(replace(n, title=n.title or b.title, findings=list(n.findings)))
            continue
        findings = list(b.findings) + list(n.findings)
        summary = (f"{base_label}: " if base_label else "") + f"{b.summary} | {label}: {n.summary}"
        if disagree and _disagree(b, n):
            said = disagree_text(base_label or "the earlier stage", label)
            side = base_label or "earlier stage"
            if n.status is Status.FAIL:
                what = (f"{said} on {b.rule_id}: the {side} says {b.status.value} ({b.summary}) but the {label} "
                        f"caught a violation ({n.summary})")
            else:
                what = (f"{said} on {b.rule_id}: the {side} found a violation but the {label} saw none "
                        f"(a passing side never overrules a failing one: the violation stands)")
            findings.insert(0, Finding(b.rule_id, Status.FAIL, what))
            summary = f"{said}: {summary}"
            notes.append(what)
        out.append(replace(b, title=b.title or n.title, status=worst([b.status, n.status]), summary=summary,
                           findings=findings, checker=_checkers(b.checker, n.checker)))
    out.extend(r for rid, r in new_by_id.items() if rid not in seen)
    return out, notes
