"""The verdict of one traced block: rule rows from harness.verdict, and assertions whose failure
message is the report's evidence (rule, status, first positions, file:line)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.ledger import Ledger
from harness.results import Report, RuleResult, Stage, Status

# what a traced evaluation block decides; budgets (B2, B3) are whole-run matters
RULES: tuple[str, ...] = ("C1", "C2", "C3", "C4", "D1", "D2", "D3", "B4")
# assert_legal(): each of these must PASS (or WARN); C2 belongs to the probes and D1 to training (NOT RUN here)
MUST_PASS: tuple[str, ...] = ("C1", "C3", "C4", "D2", "D3")
_D1_SUMMARY = ("training happens before the traced block (the block is evaluation): whether validation shaped "
               "the model is decided by `harness run`")


class RuleAssertion(AssertionError):
    """assert_legal / assert_violates failed; `outcome` holds the verdict (the pytest plugin writes it)."""

    def __init__(self, message: str, outcome: "Outcome") -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass
class Outcome:
    ledger: Ledger
    results: dict[str, RuleResult]
    code_dir: str = ""
    notes: list[str] = field(default_factory=list)
    verdict: Any = None  # harness.verdict.Verdict (analysis included)

    @classmethod
    def judge(cls, ledger: Ledger, *, printed: Sequence[Any] | None, val_tokens: np.ndarray | None,
              pos_bytes: np.ndarray | None, seq_lens: Sequence[int] = (), code_dir: str = "") -> "Outcome":
        """Judge a ledger (a traced block's, or one written by hand) with harness.verdict.judge.
        printed: (tag, val_loss, val_bpb[, line]), or a harness.verdict.Printed (the line's precision counts)."""
        from harness.verdict import Printed, judge

        pr = None
        if printed is not None and all(math.isfinite(float(x)) for x in printed[1:3]):
            tag, loss, bpb = str(printed[0]), float(printed[1]), float(printed[2])
            line = str(printed[3]) if len(printed) > 3 else f"{tag} val_loss:{loss:.8f} val_bpb:{bpb:.8f}"
            pr = Printed(tag, loss, bpb, line)
        v = judge(ledger, printed=pr, val_tokens=val_tokens, pos_bytes=pos_bytes, seq_lens=seq_lens,
                  enabled=RULES, scale="tiny")
        results = {r.rule_id: r for r in v.results}
        if "D1" in results:
            d1 = results["D1"]
            results["D1"] = RuleResult("D1", d1.title, Status.NOT_RUN, _D1_SUMMARY, checker="run",
                                       severity=d1.severity)
        # the ledger channel and OS witness protect a sandboxed child's ledger; a block traced in this process
        # has neither, by design
        notes = [n for n in v.notes if not n.startswith("protections:")]
        if printed is None:
            notes.append("nothing was reported: call t.report(val_loss) inside the block")
        return cls(ledger, results, code_dir, notes, v)

    # ---- reading
    def status(self, rule_id: str) -> Status:
        return self.results[rule_id].status

    def failed(self) -> list[str]:
        return [r for r, x in self.results.items() if x.status is Status.FAIL]

    def evidence(self, rule_id: str) -> str:
        """The rule's row as the report shows it: status, summary, findings with file:line and positions."""
        r = self.results[rule_id]
        lines = [f"{r.rule_id} {r.status.value}: {r.summary}"]
        for f in r.findings:
            lines.append(f"  - [{f.status.value}] {f.message}")
            for e in f.evidence[:3]:
                if e.one_line():
                    lines.append(f"      at {e.one_line()}")
        return "\n".join(lines)

    def first_positions(self, rule_id: str) -> list[int]:
        """Offending positions of the rule's first finding with evidence (the report's "first positions")."""
        for f in self.results[rule_id].findings:
            pos = [p for e in f.evidence for p in e.positions]
            if pos:
                return pos
        return []

    def table(self) -> str:
        return "\n".join(f"{r.rule_id:3} {r.status.value:12} {r.summary}" for r in self.results.values())

    # ---- asserting
    def assert_legal(self, rules: Iterable[str] = MUST_PASS) -> None:
        """Every rule in `rules` PASSes (or WARNs), and no decided rule FAILs. INCONCLUSIVE is not legal:
        what the tracer could not see is never called clean."""
        bad = [r for r in list(rules) if self.status(r) not in (Status.PASS, Status.WARN)]
        bad += [r for r in self.failed() if r not in bad]
        if bad:
            failed = [r for r in bad if self.status(r) is Status.FAIL]
            unproven = [f"{r} {self.status(r).value}" for r in bad if r not in failed]
            head = "; ".join(x for x in (f"not legal: {', '.join(failed)} FAIL" if failed else "",
                                         f"not proven legal: {', '.join(unproven)}" if unproven else "") if x)
            raise RuleAssertion(self._message(head, bad), self)

    def assert_violates(self, rule_id: str) -> None:
        """The rule FAILs (with evidence)."""
        if self.status(rule_id) is not Status.FAIL:
            raise RuleAssertion(self._message(f"expected {rule_id} to FAIL, it is {self.status(rule_id).value}",
                                              [rule_id]), self)

    def _message(self, head: str, rules: Sequence[str]) -> str:
        parts = [f"harness.testing: {head}"] + [self.evidence(r) for r in rules]
        if self.notes:
            parts.append("notes: " + "; ".join(self.notes))
        return "\n".join(parts)

    # ---- the report
    def to_report(self, name: str = "harness.testing") -> Report:
        from harness.report.build import fold_stage, new_report

        rep = new_report(name, "testing")
        fold_stage(rep, Stage(rules=list(self.results.values()), notes=list(self.notes)))
        return rep

    def write_report(self, path: str | os.PathLike[str], name: str = "harness.testing") -> Path:
        """The JSON report (docs/report-schema.md) of this verdict."""
        from harness.report.build import write_outputs

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_outputs(self.to_report(name), p, None)
        return p


def judge_ledger(ledger: Ledger, *, printed: Sequence[Any] | None, val_tokens: np.ndarray | None = None,
                 pos_bytes: np.ndarray | None = None, seq_lens: Sequence[int] = ()) -> Outcome:
    """An Outcome for a ledger that was not traced here (a hand-written one, harness.verdict.handwritten)."""
    return Outcome.judge(ledger, printed=printed, val_tokens=val_tokens, pos_bytes=pos_bytes, seq_lens=seq_lens)
