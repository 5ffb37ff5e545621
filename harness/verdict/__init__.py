"""The verdict over a run's ledger: which rules (B2-B4, C1-C4, D1-D3) the run kept, with evidence.

    evaluate(ledger_dir, run_result, cfg) -> list[RuleResult]     a finished run (reads its out folder)
    verdict_for_run(ledger_dir, run_result, cfg) -> Verdict       the same, plus the Analysis (timeline)
    judge(ledger, printed=..., val_tokens=..., pos_bytes=...) -> Verdict   pure: a hand-written ledger

Rooms: trace (ledger events as arrays), passes (find the reported pass), analysis (shared facts),
conditions (C1-C4), access (D1-D3, B4), budgets (B2, B3), core (putting it together).
"""

from harness.verdict.analysis import Analysis, analyze, earliest_cover
from harness.verdict.core import RULE_IDS, Verdict, evaluate, judge, printed_from, verdict_for_run
from harness.verdict.passes import PassMatch, Printed, recompute

__all__ = [
    "Analysis", "PassMatch", "Printed", "RULE_IDS", "Verdict", "analyze", "earliest_cover", "evaluate", "judge",
    "printed_from", "recompute", "verdict_for_run",
]
