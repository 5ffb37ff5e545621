"""`harness verdict OUT_DIR`: re-judge a saved run folder (run.json + ledger/) without re-running it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _one_line_exit_3(args: list[str], capsys) -> str:
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 3, err
    assert err.startswith("harness: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_missing_folder_is_one_line_exit_3(tmp_path: Path, capsys):
    assert "not found" in _one_line_exit_3(["verdict", str(tmp_path / "nope")], capsys)


def test_folder_without_a_run_record_is_one_line_exit_3(tmp_path: Path, capsys):
    assert "run.json" in _one_line_exit_3(["verdict", str(tmp_path)], capsys)
    (tmp_path / "run.json").write_text("{not json")
    assert "not a run record" in _one_line_exit_3(["verdict", str(tmp_path)], capsys)
    (tmp_path / "run.json").write_text("[1, 2]")
    assert "not a run record" in _one_line_exit_3(["verdict", str(tmp_path)], capsys)


@pytest.mark.slow
def test_verdict_of_a_saved_run_matches_the_run(tmp_path: Path, capsys):
    out = tmp_path / "out"
    rc_run = main(["run", str(ROOT / "submissions/check_compliant"), "--out", str(out),
                   "--json", str(tmp_path / "run.json")])
    ran = json.loads((tmp_path / "run.json").read_text())
    assert rc_run == ran["exit_code"] == 0
    # the folder may move: the verdict reads it where it is now
    moved = tmp_path / "moved"
    shutil.move(str(out), moved)
    capsys.readouterr()
    rc = main(["verdict", str(moved), "--json", str(tmp_path / "v.json"), "--markdown", str(tmp_path / "v.md")])
    again = json.loads((tmp_path / "v.json").read_text())
    assert rc == rc_run and again["command"] == "verdict"
    assert [(r["rule_id"], r["status"]) for r in again["rules"]] == [(r["rule_id"], r["status"]) for r in ran["rules"]]
    assert again["sections"]["run"]["out_dir"] == str(moved.resolve())
    assert (tmp_path / "v.md").read_text().startswith("### Parameter Golf compliance")
