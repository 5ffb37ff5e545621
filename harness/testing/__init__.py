"""Property-test your own evaluation code: the harness's tracer and verdict around one block, in this process.

Public, stable names:
    traced(tokens, ...)            context manager: trace a block over a validation stream, judge it on exit
    Trace                          what the block gets (stream, tokens, shard, report) and, after it, the verdict
    Outcome, RuleAssertion         the verdict (rule rows, assert_legal, assert_violates, evidence, write_report)
    judge_ledger(ledger, ...)      an Outcome for a hand-written ledger (harness.verdict.handwritten)
    load_submission_module(path)   import a record's train_gpt.py without running its main, under the CPU shim
    strategies                     hypothesis strategies (harness.testing.strategies)
The pytest plugin (harness.testing.plugin, entry point `pgolf_harness`) adds the `harness_trace` fixture,
the `harness` marker and `--harness-report DIR`.
"""

from harness.testing.outcome import MUST_PASS, RULES, Outcome, RuleAssertion, judge_ledger
from harness.testing.session import VAL_FILE, Trace, traced
from harness.testing.submission import LoadInfo, load_submission_module

__all__ = [
    "LoadInfo", "MUST_PASS", "RULES", "Outcome", "RuleAssertion", "Trace", "VAL_FILE", "judge_ledger",
    "load_submission_module", "traced",
]
