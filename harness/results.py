"""The data every check writes into: statuses, evidence, findings, rule results, the report.

Collection (check, run, trace, probes) produces these; reporting (harness.report) only reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from harness.errors import Exit

SCHEMA_VERSION = "1.2"


class Status(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"
    INCONCLUSIVE = "INCONCLUSIVE"
    NOT_RUN = "NOT RUN"

    @property
    def rank(self) -> int:
        """Severity order used to combine statuses (higher wins)."""
        return {"NOT RUN": 0, "PASS": 1, "WARN": 2, "INCONCLUSIVE": 3, "FAIL": 4}[self.value]


def worst(statuses: list[Status], default: Status = Status.NOT_RUN) -> Status:
    return max(statuses, key=lambda s: s.rank) if statuses else default


@dataclass
class Evidence:
    """What a maintainer needs to check a finding in a minute."""

    where: str | None = None  # "train_gpt.py:123" (the submission's own file:line)
    positions: list[int] = field(default_factory=list)  # first offending validation positions
    events: list[int] = field(default_factory=list)  # ledger sequence numbers
    time_s: float | None = None  # harness clock, seconds since run start
    detail: str = ""

    def one_line(self) -> str:
        parts = []
        if self.where:
            parts.append(self.where)
        if self.positions:
            shown = ", ".join(str(p) for p in self.positions[:5])
            more = "" if len(self.positions) <= 5 else f" (+{len(self.positions) - 5})"
            parts.append(f"positions {shown}{more}")
        if self.events:
            parts.append("events " + ", ".join(f"#{e}" for e in self.events[:4]))
        if self.time_s is not None:
            parts.append(f"t={self.time_s:.2f}s")
        if self.detail:
            parts.append(self.detail)
        return "; ".join(parts)


@dataclass
class Finding:
    rule_id: str
    status: Status
    message: str  # one sentence
    evidence: list[Evidence] = field(default_factory=list)


@dataclass
class RuleResult:
    rule_id: str
    title: str
    status: Status
    summary: str  # one line of evidence for the table
    findings: list[Finding] = field(default_factory=list)
    checker: str = ""  # which part of the harness decided: check, run, trace, probe
    severity: str = "error"


def rule_row(rules: Any, rule_id: str, status: Status, summary: str, findings: list[Finding] | None = None,
             checker: str = "") -> RuleResult:
    """The one way to make a rule row: title and severity from the rules (a Config, a mapping of rule id to
    Rule, or None), so every stage's rows read alike."""
    table = getattr(rules, "rules", rules)
    rule = table.get(rule_id) if isinstance(table, Mapping) else None
    return RuleResult(rule_id, rule.title if rule else rule_id, status, summary, list(findings or []),
                      checker=checker, severity=rule.severity if rule else "error")


@dataclass
class Stage:
    """What one stage (check, run, probes) decided: rows, and what the report shows beside them."""

    rules: list[RuleResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)
    hints: list[Hint] = field(default_factory=list)
    input_errors: list[str] = field(default_factory=list)

    def result(self, rule_id: str) -> RuleResult | None:
        return next((r for r in self.rules if r.rule_id == rule_id), None)


@dataclass
class Hint:
    """A static 'look here': never a verdict."""

    rule_id: str
    pattern: str
    where: str  # file:line
    message: str
    snippet: str = ""


# The verdict's three parts. Legality and budgets decide the exit code; paperwork never moves it past 0
# (a paperwork FAIL shows as WARN in the overall verdict). Rules not listed count as legality.
PART_RULES: dict[str, tuple[str, ...]] = {
    "legality": ("C1", "C2", "C3", "C4", "D1", "D2", "D3", "B4"),
    "budgets": ("B1", "B2", "B3"),
    "paperwork": ("S1", "S2", "S3", "B5"),
}
PART_TITLES = {"legality": "legality (C1-C4, D1-D3, B4)", "budgets": "budgets (B1, B2, B3)",
               "paperwork": "paperwork (S1-S3, B5)"}


def part_of(rule_id: str) -> str:
    return next((p for p, ids in PART_RULES.items() if rule_id in ids), "legality")


@dataclass
class VerdictPart:
    """One part of the verdict: its status (worst of its rules that ran; NOT RUN when none ran) and the
    rules that gave it."""

    name: str
    status: Status
    rules: dict[str, str]  # rule id -> status value, every rule of the part in the report
    flagged: list[str]  # "B1 FAIL", "S1 FAIL" ...: the rules that are not PASS / NOT RUN

    def line(self) -> str:
        ran = [r for r, st in self.rules.items() if st != Status.NOT_RUN.value]
        if not self.rules:
            what = "no rule"
        elif not ran:
            what = "not checked (" + ", ".join(self.rules) + " NOT RUN)"
        elif self.flagged:
            what = ", ".join(self.flagged)
        else:
            what = f"{len(ran)} rule(s) pass"
        extra = ""
        if self.name == "paperwork" and self.status is Status.WARN and any("FAIL" in f for f in self.flagged):
            extra = " (paperwork never fails the verdict)"
        return f"{PART_TITLES[self.name]}: {self.status.value} — {what}{extra}"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "rules": dict(self.rules), "flagged": list(self.flagged),
                "line": self.line()}


def verdict_parts(rules: list[RuleResult]) -> dict[str, VerdictPart]:
    out = {}
    for name in PART_RULES:
        mine = [r for r in rules if part_of(r.rule_id) == name]
        ran = [r.status for r in mine if r.status is not Status.NOT_RUN]
        st = worst(ran) if ran else Status.NOT_RUN
        if name == "paperwork" and st in (Status.FAIL, Status.INCONCLUSIVE):
            st = Status.WARN
        flagged = [f"{r.rule_id} {r.status.value}" for r in mine
                   if r.status not in (Status.PASS, Status.NOT_RUN)]
        out[name] = VerdictPart(name, st, {r.rule_id: r.status.value for r in mine}, flagged)
    return out


@dataclass
class Report:
    submission: str
    command: str
    harness_version: str
    created: str
    rules: list[RuleResult] = field(default_factory=list)
    hints: list[Hint] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)  # accounting, logs, artifact, run, trace, probes
    notes: list[str] = field(default_factory=list)
    # bad input found while collecting (malformed JSON, truncated artifact ...): exit code 3
    input_errors: list[str] = field(default_factory=list)
    # the submission's run failed (crash, timeout, needs a GPU ...): "reason: message"; exit code 4 unless a
    # rule FAILs with evidence (exit 1)
    run_failed: str | None = None
    schema_version: str = SCHEMA_VERSION
    # the rules' version ([ruleset] version in rules/*.toml: harness.rules.ruleset_version()); set by the factory
    ruleset_version: str = ""

    def result(self, rule_id: str) -> RuleResult | None:
        return next((r for r in self.rules if r.rule_id == rule_id), None)

    @property
    def parts(self) -> dict[str, VerdictPart]:
        """The verdict in three parts: legality, budgets, paperwork (see PART_RULES)."""
        return verdict_parts(self.rules)

    @property
    def status(self) -> Status:
        """FAIL when legality or a budget FAILs; INCONCLUSIVE when one of them could not be decided (and
        nothing FAILed); else PASS. Paperwork (S1-S3, B5) never moves it: it shows as WARN in its part."""
        ran = [r.status for r in self.rules if r.status is not Status.NOT_RUN]
        if not ran:
            return Status.INCONCLUSIVE
        parts = self.parts
        s = worst([parts["legality"].status, parts["budgets"].status])
        return Status.PASS if s in (Status.WARN, Status.NOT_RUN) else s

    @property
    def exit_code(self) -> Exit:
        if self.input_errors:
            return Exit.BAD_INPUT
        # a rule that FAILs with evidence (a byte table, a size, a budget from the logs) is a violation whether
        # or not the run got through: the failed run is still stated (run_failed) and only decides otherwise
        if self.run_failed and self.status is not Status.FAIL:
            return Exit.RUN_FAILED
        return {
            Status.PASS: Exit.COMPLIANT,
            Status.FAIL: Exit.VIOLATION,
            Status.INCONCLUSIVE: Exit.INCONCLUSIVE,
        }[self.status]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d.get("run_failed") is None:
            d.pop("run_failed", None)  # only a failed run carries it
        d["status"] = self.status.value
        d["exit_code"] = int(self.exit_code)
        d["verdict"] = {name: part.to_dict() for name, part in self.parts.items()}
        return d
