"""The probes end to end: the real runner, the tracer and the fork server on reference submissions.

Small streams (4 sequences) and few C2 candidates keep each case to one traced run plus a few forked
variants. The adversarial reference is the point: the trace is clean, the probes are not.
"""

from __future__ import annotations

import json
import tomllib

import pytest

from harness.cli import main as cli_main
from harness.config import load_config
from harness.probes import DISAGREE, merge_rule_results, probe_rule_results
from harness.results import Status
from harness.run.judge import judge_run
from harness.run.result import RunResult

from conftest import ROOT
from conftest import SUBMISSIONS as SUBS

pytestmark = pytest.mark.slow


def _cfg(**probes):
    cfg = load_config()
    c2 = {"c2_candidates": probes.pop("c2_candidates", 8)}  # a C2 rule parameter: [rules.C2], not [probes]
    cfg.raw.setdefault("probes", {}).update({"blocks": 4, "fork": True, "c2_batched": False, **probes})
    cfg.raw.setdefault("rules", {}).setdefault("C2", {}).update(c2)
    return cfg


def _rows(rows):
    return {r.rule_id: r for r in rows}


def _trace_rows(section, cfg):
    """The trace's verdict on the probe session's base run (a traced run of the base stream)."""
    return judge_run(RunResult.load(section["base_run"]), cfg).rules


def test_adversarial_trace_clean_probes_catch_it_and_disagree(tmp_path):
    name = "adversarial_tracer_evasion"
    exp = tomllib.loads((SUBS / name / "expected.toml").read_text(encoding="utf-8"))
    cfg = _cfg()
    rows, section = probe_rule_results(SUBS / name, cfg, {"trace": True, "out_dir": str(tmp_path)},
                                       which=("canary",))
    by = _rows(rows)
    for rid in exp["probes"]["rules"]:
        assert by[rid].status is Status.FAIL, by[rid].summary
    canary = next(o for o in section["outcomes"] if o["probe"] == "canary")
    assert canary["status"] == "FAIL" and canary["tracer_free"] and canary["numbers"]["p_value"] < 1e-6
    trace = _trace_rows(section, cfg)
    tr = _rows(trace)
    for rid in exp["run"]["not_fail"]:
        assert tr[rid].status is not Status.FAIL, (rid, tr[rid].summary)
    merged, notes = merge_rule_results(trace, rows)
    assert _rows(merged)["C2"].status is Status.FAIL
    assert any(DISAGREE in n for n in notes)


def test_legal_reference_probes_agree_with_the_trace(tmp_path):
    cfg = _cfg()
    rows, section = probe_rule_results(SUBS / "legal_sliding_window", cfg, {"trace": True, "out_dir": str(tmp_path)})
    by = _rows(rows)
    assert by["C1"].status is Status.PASS, by["C1"].summary
    # a sample of 8 candidates cannot show Z = 1; nothing fails
    assert by["C2"].status is Status.INCONCLUSIVE, by["C2"].summary
    c1 = next(o for o in section["outcomes"] if o["probe"] == "c1")
    assert c1["numbers"]["replay"]["identical"] and all(c["compared"] > 0 for c in c1["numbers"]["comparisons"])
    assert section["cost"]["forks"] >= 10 and section["cost"]["runs"] == 2
    merged, notes = merge_rule_results(_trace_rows(section, cfg), rows)
    assert not any(r.status is Status.FAIL for r in merged) and not notes


def test_phased_ttt_reference_c1_probe_judges_the_future_in_score_order(tmp_path):
    # phased TTT scores documents out of stream order: the perturbed tokens after t include documents
    # scored (and trained on) before some earlier-in-stream ones; in stream order that was a false C1 FAIL
    cfg = _cfg()
    rows, section = probe_rule_results(SUBS / "legal_phased_ttt", cfg, {"trace": True, "out_dir": str(tmp_path)},
                                       which=("c1",))
    c1row = _rows(rows)["C1"]
    assert c1row.status is Status.PASS, c1row.summary
    c1 = next(o for o in section["outcomes"] if o["probe"] == "c1")
    comps = c1["numbers"]["comparisons"]
    assert comps and all(c["compared"] > 0 and c["scored_after_a_changed_token"] > 0 for c in comps)


def test_illegal_target_hash_fails_c2_from_a_few_candidates(tmp_path):
    cfg = _cfg(c2_candidates=16)
    rows, section = probe_rule_results(SUBS / "illegal_target_hash", cfg, {"trace": True, "out_dir": str(tmp_path)},
                                       which=("c2",))
    c2 = _rows(rows)["C2"]
    assert c2.status is Status.FAIL, c2.summary
    o = next(o for o in section["outcomes"] if o["probe"] == "c2")
    # far above 1 whichever way it is decided (a certain partial sum, or the sampled estimate's interval)
    assert o["numbers"]["partial_sum"] > 1.0 or o["numbers"]["interval"][0] > 2.0


def test_cli_probe_writes_json_and_exits_by_verdict(tmp_path, capsys):
    out = tmp_path / "r.json"
    cfgfile = tmp_path / "harness.toml"
    base = (ROOT / "harness.toml").read_text(encoding="utf-8").split("\n[probes]")[0]  # our own [probes]
    # the fork server keeps this CLI test short (the default serves every variant as a run of its own)
    cfgfile.write_text(base + '\n[probes]\nblocks = 4\nfork = true\nc2_batched = false\n'
                       '[rules.C2]\nc2_candidates = 4\n',
                       encoding="utf-8")
    rc = cli_main(["--config", str(cfgfile), "probe", str(SUBS / "illegal_ttt_all_before_score"), "--probe", "c1",
                   "--json", str(out), "--out", str(tmp_path / "o")])
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["command"] == "probe" and data["sections"]["probes"]["which"] == ["c1"]
    c1 = next(r for r in data["rules"] if r["rule_id"] == "C1")
    assert c1["checker"] == "probe" and c1["status"] == "FAIL", c1["summary"]
    assert rc == 1
    assert "C1" in capsys.readouterr().out


def test_check_run_takes_the_main_run_as_the_probes_base_run(tmp_path, monkeypatch):
    """check --run's cheap probes: the main run served exactly the base stream (its seen tail included), so
    it is the base variant's run; the sampled C2's candidates join the first pool, planned from it."""
    monkeypatch.chdir(tmp_path)
    # two sampled candidates (./harness.toml overlays the shipped one): the plan, not the sample, is under test
    (tmp_path / "harness.toml").write_text("[rules.C2]\nc2_default_candidates = 2\n")
    rc = cli_main(["check", str(SUBS / "legal_score_first_ttt"), "--run", "-q", "--json", str(tmp_path / "r.json"),
                   "--out", str(tmp_path / "out")])
    assert (tmp_path / "r.json").is_file(), rc
    rep = json.loads((tmp_path / "r.json").read_text())
    p = rep["sections"]["probes"]
    # legal; INCONCLUSIVE overall (exit 2) only for want of an artifact in the folder (B1)
    assert rc in (0, 2) and not [r for r in rep["rules"] if r["status"] == "FAIL" and not r["rule_id"].startswith("S")]
    assert p["base"]["how"] == "main run" and p["base"]["per_position_scores"], p["base"]
    assert any("the base variant is the main run" in n for n in p["cost"]["notes"])
    assert p["cost"]["runs"] == p["variants"] - 1  # every variant but the base ran
    assert "candidates" in p["c2_candidates"] and "not run" not in p["c2_candidates"], p["c2_candidates"]
    assert not any(o["status"] == "FAIL" for o in p["outcomes"])
