"""What one probe concluded: a status, one line, the numbers behind it, and the evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.results import Evidence, Status


@dataclass
class ProbeOutcome:
    probe: str  # c2 | c1 | canary | echo
    rule_id: str  # the rule this probe speaks to
    status: Status
    message: str  # one sentence
    power: str = ""  # what the probe could have detected (sample sizes, bounds, level)
    evidence: list[Evidence] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)  # for the report's probes section
    tracer_free: bool = True  # decided from printed totals alone

    def to_dict(self) -> dict[str, Any]:
        return {"probe": self.probe, "rule_id": self.rule_id, "status": self.status.value, "message": self.message,
                "power": self.power, "tracer_free": self.tracer_free, "numbers": self.numbers,
                "evidence": [e.one_line() for e in self.evidence]}
