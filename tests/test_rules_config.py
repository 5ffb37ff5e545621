from pathlib import Path

import pytest

from harness.report.build import finalize, new_report
from harness.config import Config, load_config
from harness.errors import BadInput
from harness.results import RuleResult, Status
from harness.rules import load_rules

REQUIRED = {"S1", "S2", "S3", "B1", "B2", "B3", "B4", "B5", "C1", "C2", "C3", "C4", "D1", "D2", "D3"}


def test_every_rule_is_data_with_sources():
    rules = load_rules()
    assert REQUIRED <= set(rules)
    for r in rules.values():
        assert r.title and r.text and r.sources, r.id
        assert r.severity in {"error", "warning"}
    assert rules["B1"].parameters["max_bytes"] == 16_000_000
    assert rules["B2"].parameters["max_seconds"] == 600
    assert rules["B3"].parameters["max_seconds"] == 600
    assert rules["B5"].parameters["min_improvement_nats"] == 0.005
    assert rules["B5"].parameters["p_value"] == 0.01


def test_harness_toml_overrides_rule_parameters(tmp_path: Path):
    p = tmp_path / "harness.toml"
    p.write_text('[rules.B1]\nmax_bytes = 123\n[harness]\nenabled = ["B1", "C3"]\n')
    cfg = load_config(p)
    assert cfg.rule_params("B1")["max_bytes"] == 123
    assert cfg.rule_params("B1")["decide_on"] == "practised"  # untouched parameters remain
    assert cfg.enabled == {"B1", "C3"}


def test_bad_config_and_bad_rules_are_one_line_errors(tmp_path: Path):
    p = tmp_path / "harness.toml"
    p.write_text("[harness\n")
    with pytest.raises(BadInput, match="not valid TOML"):
        load_config(p)
    with pytest.raises(BadInput, match="not found"):
        load_config(tmp_path / "nope.toml")
    rd = tmp_path / "rules"
    rd.mkdir()
    (rd / "x.toml").write_text('[[rule]]\nid = "X"\n')
    with pytest.raises(BadInput, match="lacks title"):
        load_rules(str(rd))


def test_rule_without_checker_is_not_run_never_pass():
    cfg = load_config()
    rep = new_report("x", "check")
    rep.rules = [RuleResult("B1", "Artifact bytes", Status.PASS, "ok")]
    finalize(rep, cfg)
    by = {r.rule_id: r.status for r in rep.rules}
    assert by["B1"] is Status.PASS
    for rid in REQUIRED - {"B1"}:
        assert by[rid] is Status.NOT_RUN
    # NOT RUN rows never make the overall verdict PASS by themselves
    only_not_run = new_report("x", "check")
    finalize(only_not_run, cfg)
    assert only_not_run.status is Status.INCONCLUSIVE


def test_not_run_is_inconclusive_setting():
    cfg = Config({"harness": {"not_run_is_inconclusive": True}})
    rep = new_report("x", "check")
    rep.rules = [RuleResult("B1", "Artifact bytes", Status.PASS, "ok")]
    finalize(rep, cfg)
    assert rep.status is Status.INCONCLUSIVE
    assert int(rep.exit_code) == 2


def test_user_settings_layer_over_the_shipped_defaults(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default = load_config()  # no ./harness.toml: the shipped defaults alone
    assert default.section("run").get("tiny_env") and default.section("probes").get("blocks")
    (tmp_path / "harness.toml").write_text('[run]\nseed = 7\n[run.tiny_env]\nITERATIONS = "2"\n')
    cfg = load_config()
    assert cfg.path == tmp_path / "harness.toml"
    assert cfg.get("run", "seed") == 7 and cfg.get("run", "scale") == default.get("run", "scale")
    tiny = cfg.section("run")["tiny_env"]
    assert tiny["ITERATIONS"] == "2" and tiny["TRAIN_SEQ_LEN"] == default.section("run")["tiny_env"]["TRAIN_SEQ_LEN"]
    assert cfg.section("probes") == default.section("probes")


def test_default_settings_restate_no_rule_parameter():
    from harness.config import default_settings_path
    from harness.probes.session import probe_params

    cfg = load_config(default_settings_path())
    assert not cfg.raw.get("rules"), "rule parameters live in rules/*.toml only"
    rule_keys = {k for r in load_rules().values() for k in r.parameters}
    assert not rule_keys & set(cfg.section("probes"))
    assert probe_params(cfg)["c2_candidates"] == load_rules()["C2"].parameters["c2_candidates"]
