"""One summary row per folder, read from its `harness check --json` report (docs/report-schema.md), and the
audit's exit code: the most severe of its folders' codes.

Severity, most severe first: 1 (a violation: evidence a rule is broken, what a maintainer acts on),
5 (a harness error: the folder was not judged at all), 4 (the run failed), 3 (bad input), 2 (inconclusive),
0 (compliant). The CI comment (harness.ci.comment) reads the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from harness.errors import Exit

SEVERITY: tuple[int, ...] = (Exit.VIOLATION, Exit.INTERNAL, Exit.RUN_FAILED, Exit.BAD_INPUT, Exit.INCONCLUSIVE,
                             Exit.COMPLIANT)
VERDICT_WORD = {0: "COMPLIANT", 1: "VIOLATION", 2: "INCONCLUSIVE", 3: "BAD INPUT", 4: "RUN FAILED",
                5: "HARNESS ERROR"}
PARTS = ("legality", "budgets", "paperwork")
COLUMNS = ("folder", "exit_code", "verdict", "legality", "budgets", "paperwork", "first_finding", "seconds",
           "cached")
_FINDING_CHARS = 160


def worst_exit(codes: Iterable[int]) -> int:
    """The most severe code in SEVERITY order; 0 when there is none. An unknown code counts as 5."""
    rank = {int(c): i for i, c in enumerate(SEVERITY)}
    best = int(Exit.COMPLIANT)
    for c in codes:
        c = int(c) if int(c) in rank else int(Exit.INTERNAL)
        if rank[c] < rank[best]:
            best = c
    return best


@dataclass
class AuditRow:
    folder: str
    exit_code: int
    verdict: str  # COMPLIANT, VIOLATION, ..., TIMEOUT
    legality: str  # the part's status (PASS, FAIL, WARN, INCONCLUSIVE, NOT RUN); "" without a report
    budgets: str
    paperwork: str
    first_finding: str  # the first FAIL (else INCONCLUSIVE) row, legality and budgets before paperwork
    seconds: float
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AuditRow":
        return cls(**{k: d[k] for k in COLUMNS})


def _clip(text: str, n: int = _FINDING_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def first_finding(report: Mapping[str, Any]) -> str:
    """`RULE STATUS: summary` of the row that decides the most: a bad input first; then legality and budgets
    (a FAIL, else an INCONCLUSIVE); then paperwork, which never moves the exit code."""
    errors = report.get("input_errors") or []
    if errors:
        return _clip(f"bad input: {errors[0]}")
    if report.get("run_failed"):  # exit 4: the run's own end decides before any row
        return _clip(f"run failed: {report['run_failed']}")
    rules = report.get("rules") or []
    verdict = report.get("verdict") or {}
    paperwork = set((verdict.get("paperwork") or {}).get("rules") or ())
    for in_paperwork in (False, True):
        for status in ("FAIL", "INCONCLUSIVE"):
            for r in rules:
                if r.get("status") != status or (r.get("rule_id") in paperwork) != in_paperwork:
                    continue
                # the row's summary is its one line of evidence; a finding's message is the fallback
                msg = r.get("summary") or next((f.get("message") for f in r.get("findings") or ()
                                                if f.get("message")), "")
                return _clip(f"{r.get('rule_id')} {status}: {msg}")
    return ""


def row_from_report(folder: str, report: Mapping[str, Any], exit_code: int, seconds: float,
                    cached: bool = False) -> AuditRow:
    verdict = report.get("verdict") or {}
    parts = [str((verdict.get(p) or {}).get("status", "")) for p in PARTS]
    return AuditRow(folder, int(exit_code), VERDICT_WORD.get(int(exit_code), f"EXIT {exit_code}"), *parts,
                    first_finding=first_finding(report), seconds=round(float(seconds), 2), cached=cached)


def row_without_report(folder: str, exit_code: int, verdict: str, why: str, seconds: float,
                       cached: bool = False) -> AuditRow:
    """A folder whose check wrote no report (bad input, a crash, a timeout): its one-line reason."""
    return AuditRow(folder, int(exit_code), verdict, "", "", "", _clip(why), round(float(seconds), 2), cached)
