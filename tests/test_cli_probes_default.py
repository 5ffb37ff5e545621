"""check --run's cheap default probes: on by default, off with --no-probes, skipped (and said) when one
variant would cost more than half of [probes] default_budget_s."""

from __future__ import annotations

from types import SimpleNamespace

from harness.cli.commands import _why_no_probes
from harness.cli.options import CHEAP_PROBES, ProbeOptions
from harness.config import load_config


def _result(wall_s: float, failed: bool = False, cpu_s: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(wall_s=wall_s, failed=failed, cpu_s=cpu_s)


def test_cheap_probes_run_on_a_fast_run_and_are_skipped_past_the_budget():
    cfg = load_config()
    budget = float(cfg.section("probes")["default_budget_s"])
    assert _why_no_probes(CHEAP_PROBES, _result(budget / 2 - 1), cfg) is None
    why = _why_no_probes(CHEAP_PROBES, _result(budget / 2 + 1), cfg)
    assert why is not None and "default_budget_s" in why and "--probes" in why


def test_the_cost_of_a_variant_is_the_main_runs_cpu_time_when_the_kernel_counted_it():
    """A main run slowed by other work on the machine (wall far above its CPU) still gets its probes, and the
    decision follows the CPU seconds, not the load: the same run, the same decision."""
    cfg = load_config()
    budget = float(cfg.section("probes")["default_budget_s"])
    assert _why_no_probes(CHEAP_PROBES, _result(budget * 3, cpu_s=budget / 2 - 1), cfg) is None
    why = _why_no_probes(CHEAP_PROBES, _result(budget / 4, cpu_s=budget / 2 + 1), cfg)
    assert why is not None and "of CPU" in why
    assert _why_no_probes(CHEAP_PROBES, _result(budget / 2 + 1, cpu_s=None), cfg) is not None  # wall, as before


def test_requested_probes_always_run_and_a_failed_run_never_probes():
    cfg = load_config()
    assert _why_no_probes(ProbeOptions(), _result(10_000.0), cfg) is None  # --probes: the user asked
    assert _why_no_probes(None, _result(1.0), cfg) is None  # --no-probes: nothing to skip
    assert _why_no_probes(CHEAP_PROBES, _result(1.0, failed=True), cfg) == "the run failed"


def test_the_budget_is_a_setting(tmp_path):
    (tmp_path / "harness.toml").write_text("[probes]\ndefault_budget_s = 10.0\n")
    cfg = load_config(tmp_path / "harness.toml")
    assert _why_no_probes(CHEAP_PROBES, _result(4.0), cfg) is None
    assert _why_no_probes(CHEAP_PROBES, _result(6.0), cfg) is not None


def test_cheap_probes_decide_only_by_a_violation():
    """A cheap probe's FAIL stands; its INCONCLUSIVE (or a sampled 'no violation') must neither PASS a rule
    nor turn the trace's decided row INCONCLUSIVE: it joins as NOT RUN with what it found."""
    from harness.merge import merge_rows
    from harness.probes.stage import _cheap_row
    from harness.results import RuleResult, Status

    fail = RuleResult("C2", "t", Status.FAIL, "canary dipped below the entropy")
    assert _cheap_row(fail) is fail
    inc = _cheap_row(RuleResult("C2", "t", Status.INCONCLUSIVE, "sampled 8 of 1024 candidates"))
    assert inc.status is Status.NOT_RUN and "sampled 8 of 1024" in inc.summary and "--probes" in inc.summary
    trace = [RuleResult("C1", "t", Status.PASS, "trace"), RuleResult("C2", "t", Status.NOT_RUN, "trace")]
    rows, _ = merge_rows(trace, [_cheap_row(RuleResult("C1", "t", Status.INCONCLUSIVE, "echo canary")), inc])
    by = {r.rule_id: r.status for r in rows}
    assert by == {"C1": Status.PASS, "C2": Status.NOT_RUN}
