import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from harness.report.build import new_report
from harness.fsutil import atomic_write_text
from harness.report.console import render_report
from harness.report.json_report import report_json, write_json
from harness.report.markdown import report_markdown
from harness.results import SCHEMA_VERSION, Evidence, Finding, Hint, RuleResult, Status


def _report():
    rep = new_report("submissions/x", "check")
    rep.rules = [
        RuleResult("B1", "Artifact bytes", Status.PASS, "practised 15,000 B"),
        RuleResult("C3", "Score before update", Status.FAIL, "update before score at 17 positions", [
            Finding("C3", Status.FAIL, "Position 17 was trained on before it was scored.",
                    [Evidence(where="train_gpt.py:210", positions=[17, 18, 19], events=[4, 9], time_s=3.25)])
        ]),
        RuleResult("C2", "Full normalized distribution", Status.NOT_RUN, "needs probes"),
    ]
    rep.hints = [Hint("C3", "ttt_before_score", "train_gpt.py:200", "TTT loop over validation before scoring")]
    return rep


def test_overall_status_and_exit_codes():
    rep = _report()
    assert rep.status is Status.FAIL and int(rep.exit_code) == 1
    rep.rules[1].status = Status.INCONCLUSIVE
    assert int(rep.exit_code) == 2
    rep.rules[1].status = Status.WARN
    assert rep.status is Status.PASS and int(rep.exit_code) == 0


def test_a_failed_run_is_exit_4_unless_a_rule_fails_with_evidence():
    rep = _report()
    rep.run_failed = "needs_package: 'fla'"
    # a violation the folder proves (here C3) stays a violation; the failed run is still in the JSON
    assert int(rep.exit_code) == 1 and rep.to_dict()["run_failed"].startswith("needs_package")
    rep.rules[1].status = Status.INCONCLUSIVE
    assert int(rep.exit_code) == 4
    rep.rules[1].status = Status.PASS
    assert int(rep.exit_code) == 4
    rep.input_errors.append("truncated artifact")
    assert int(rep.exit_code) == 3


def test_console_shows_rule_status_and_evidence():
    buf = io.StringIO()
    render_report(_report(), Console(file=buf, width=160, highlight=False))
    out = buf.getvalue()
    assert "C3" in out and "FAIL" in out and "NOT RUN" in out
    assert "train_gpt.py:210" in out and "positions 17, 18, 19" in out
    assert "exit 1" in out


def test_json_report_is_versioned_and_complete(tmp_path: Path):
    rep = _report()
    write_json(rep, tmp_path / "r.json")
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["schema_version"] == SCHEMA_VERSION
    assert d["status"] == "FAIL" and d["exit_code"] == 1
    c3 = next(r for r in d["rules"] if r["rule_id"] == "C3")
    assert c3["findings"][0]["evidence"][0]["positions"] == [17, 18, 19]
    assert d["hints"][0]["where"] == "train_gpt.py:200"


def test_markdown_is_a_pr_comment():
    md = report_markdown(_report())
    assert md.startswith("### Parameter Golf compliance: FAIL")
    assert "| C3 | Score before update | ❌ FAIL |" in md
    assert "`train_gpt.py:210" in md


def test_atomic_write_never_leaves_half_a_file(tmp_path: Path, monkeypatch):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old")

    class Boom(Exception):
        pass

    import os

    real_replace = os.replace

    def failing_replace(a, b):
        raise Boom()

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(Boom):
        atomic_write_text(target, report_json(_report()))
    monkeypatch.setattr(os, "replace", real_replace)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left behind
