"""Behavioural probes: checks that do not trust the in-process trace.

They re-run the unmodified script on validation streams the harness builds and compare what it
prints (and, where the ledger adds up to what it printed, the per-position scores):

    c2      target substitution at the last position: sum_v p_t(v) must be 1        -> C2
    canary  documents of uniformly random tokens: no legal score dips below log k    -> C2
    c1      tokens after t perturbed: no reported score at a position <= t may move   -> C1
    echo    canary runs whose next tokens repeat them: peeking ahead dips below log k -> C1

Public API:
    probe_rule_results(path, cfg, run_opts, which=("c2", "c1", "canary")) -> (list[RuleResult], dict)
    merge_rule_results(trace_rows, probe_rows) -> (list[RuleResult], notes)
    run_session(executor, val_tokens, vocab, block, params, which, tables, seed) -> (outcomes, section)
"""

from harness.probes.results import DISAGREE, merge_rule_results, rule_results
from harness.probes.session import DEFAULTS, PROBES, probe_params, run_session


def probe_rule_results(*args, **kwargs):  # noqa: ANN002, ANN003 - lazy: the CLI imports stay light
    from harness.probes.stage import probe_rule_results as f

    return f(*args, **kwargs)


__all__ = ["DEFAULTS", "DISAGREE", "PROBES", "merge_rule_results", "probe_params", "probe_rule_results",
           "rule_results", "run_session"]
