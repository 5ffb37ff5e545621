"""A record run in two steps (training, then an evaluation-only rerun of its artifact) is run as it was run:
when the end-to-end run crashes after writing its artifact and the folder names the script's evaluation-only
switch, the script runs again with the switch on and the artifact placed; the training run still decides
what only it can see (validation used before the artifact: D1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main

from conftest import SUBMISSIONS as SUBS

TRAIN = """\
    train_model(args, model, rank, world_size, device, log0)
    if rank == 0:
        write_artifact(quantize_state_dict_int8(model.state_dict()), "final_model.int8.ptz", code, log0)
"""
TWO_STEP = """\
    eval_only = os.environ.get("EVAL_ONLY", "0") == "1"
    if not eval_only:
        train_model(args, model, rank, world_size, device, log0)
{extra}        if rank == 0:
            write_artifact(quantize_state_dict_int8(model.state_dict()), "final_model.int8.ptz", code, log0)
"""
# pre-quantization TTT on validation, before the artifact (D1: validation shaped the artifact)
VAL_TRAINED = """\
        _val = load_validation_tokens(args.val_files, args.train_seq_len)
        _opt = torch.optim.SGD(model.parameters(), lr=0.05)
        ttt_train_span(model, _opt, _val, 1, _val.numel() - 1, args.train_seq_len, 8, 1, device)
"""
DIAG = '         f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")\n'
BROKEN = DIAG + '    if not eval_only:\n        raise RuntimeError("the end-to-end path was never run past here")\n'
README = "\nScores come from `EVAL_ONLY=1` reruns on the artifact each training run saved.\n"


def _make(root: Path, name: str, extra: str = "", documented: bool = True) -> Path:
    d = root / name
    shutil.copytree(SUBS / "check_compliant", d)
    (d / "final_model.int8.ptz").unlink()  # the rerun must get the training run's own artifact
    src = (d / "train_gpt.py").read_text(encoding="utf-8")
    assert TRAIN in src and DIAG in src
    src = src.replace(TRAIN, TWO_STEP.format(extra=extra)).replace(DIAG, BROKEN)
    (d / "train_gpt.py").write_text(src, encoding="utf-8")
    if documented:
        with open(d / "README.md", "a", encoding="utf-8") as f:
            f.write(README)
    return d


def _check(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict]:
    monkeypatch.chdir(tmp_path)
    rc = main(["check", str(folder), "--run", "--json", str(tmp_path / "r.json")])
    return rc, json.loads((tmp_path / "r.json").read_text())


@pytest.mark.slow
def test_a_crashed_training_run_is_evaluated_as_the_record_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = _make(tmp_path, "two_step")
    rc, rep = _check(folder, tmp_path, monkeypatch)
    rules = {r["rule_id"]: r for r in rep["rules"]}
    assert rc == 0, {k: (v["status"], v["summary"]) for k, v in rules.items()}
    assert any("evaluation-only rerun" in n and "EVAL_ONLY=1" in n and "README.md" in n for n in rep["notes"])
    assert rules["C3"]["status"] == "PASS" and rules["C1"]["status"] in ("PASS", "WARN")
    # what only the training run saw: its validation reads and its training reads, placed against its artifact
    assert rules["D1"]["summary"].startswith("training run:") and rules["D1"]["status"] in ("PASS", "WARN")
    # C2's trace proof stands on the training run's D1 (the rerun writes no artifact of its own)
    assert rules["C2"]["status"] == "PASS" and "D1 from the training run" in rules["C2"]["summary"], rules["C2"]
    assert rules["D2"]["status"] == "PASS" and "none in the evaluation-only run" in rules["D2"]["summary"]
    assert rules["B4"]["status"] == "PASS"
    assert "evaluation-only run: eval" in rules["B3"]["summary"]  # the whole rerun is evaluation


@pytest.mark.slow
def test_validation_used_by_the_training_run_fails_d1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = _make(tmp_path, "two_step_val_trained", extra=VAL_TRAINED)
    rc, rep = _check(folder, tmp_path, monkeypatch)
    rules = {r["rule_id"]: r for r in rep["rules"]}
    assert any("evaluation-only rerun" in n for n in rep["notes"])
    # the evaluation-only run never touches validation before scoring it; the artifact it loads was shaped by it
    assert rc == 1 and rules["D1"]["status"] == "FAIL", {k: (v["status"], v["summary"]) for k, v in rules.items()}
    assert rules["D1"]["summary"].startswith("training run:")
    assert rules["C2"]["status"] != "PASS"  # its trace proof needs D1: an artifact shaped by validation breaks it


@pytest.mark.slow
def test_an_undocumented_switch_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = _make(tmp_path, "two_step_silent", documented=False)
    rc, rep = _check(folder, tmp_path, monkeypatch)
    assert rc == 4 and not any("evaluation-only rerun" in n for n in rep["notes"])


@pytest.mark.slow
def test_harness_verdict_on_the_saved_folder_judges_both_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = _make(tmp_path, "two_step")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    rc = main(["run", str(folder), "--out", str(out), "--json", str(tmp_path / "run.json")])
    assert rc == 0 and (out / "eval_only" / "run.json").is_file()
    rc2 = main(["verdict", str(out), "--json", str(tmp_path / "verdict.json")])
    a = {r["rule_id"]: r["status"] for r in json.loads((tmp_path / "run.json").read_text())["rules"]}
    b = {r["rule_id"]: r["status"] for r in json.loads((tmp_path / "verdict.json").read_text())["rules"]}
    assert rc2 == rc and a == b


@pytest.mark.slow
def test_an_untraced_run_is_rerun_the_same_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # `run --no-trace` times a record: its score comes from the rerun too, not from the training run's crash
    folder = _make(tmp_path, "two_step")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    rc = main(["run", str(folder), "--no-trace", "--out", str(out), "--json", str(tmp_path / "r.json")])
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rc != 4 and "run_failed" not in rep
    assert any("evaluation-only rerun" in n for n in rep["notes"])
    assert rep["sections"]["run"]["reported"]["tag"] == "final_int8_sliding_window_exact"


def _crashed(tmp_path: Path, **kw) -> "object":
    from harness.run.result import RunResult

    art = tmp_path / "saved.ptz"
    art.write_bytes(b"x")
    base = dict(out_dir=str(tmp_path / "o"), ledger_dir=str(tmp_path / "o" / "ledger"), rc=1, reason="crash",
                message="NameError: x (at train_gpt.py:9)", wall_s=9.0, stdout_path="s", stderr_path="e",
                stdout_tail="", reported=None, phases={"exit": 9.0}, script_times={}, env_overrides={},
                command=["python", "train_gpt.py"],
                artifacts=[{"path": "final_model.ptz", "t": 5.0, "role": "artifact", "copied_to": str(art)}],
                configuration={"script_reads": {"TTT_EVAL_ONLY": {"default": "0"}, "TTT_ENABLED": {"default": "1"}}})
    base.update(kw)
    return RunResult(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("change, planned", [
    ({}, True),
    ({"reason": "timeout"}, False),  # only the script's own crash: a kill is not a finished training run
    ({"artifacts": []}, False),  # nothing written to evaluate
    ({"artifacts": [{"path": "final_model.pt", "t": 5.0, "role": "checkpoint", "copied_to": "c"}]}, False),
    ({"configuration": {"script_reads": {"TTT_EVAL_ONLY": {"default": "1"}}}}, False),  # already on
    ({"env_overrides": {"TTT_EVAL_ONLY": "1"}}, False),  # the first run already was one
    ({"configuration": {"script_reads": {"EVAL_MODE": {"default": "0"}}}}, False),  # not a switch of that kind
])
def test_when_an_evaluation_only_rerun_is_planned(tmp_path: Path, change: dict, planned: bool):
    from harness.run.eval_only import plan_eval_only, rerun_kwargs

    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "README.md").write_text("Evaluated with TTT_EVAL_ONLY=1 on the saved artifact.\n")
    r = _crashed(tmp_path, **change)
    plan = plan_eval_only(folder, r)
    assert (plan is not None) == planned
    if plan is not None:
        assert plan.switch == "TTT_EVAL_ONLY" and plan.where == "README.md:1"
        kw = rerun_kwargs(plan, {"env": {"A": "2"}, "out_dir": "x"}, r)
        assert kw["env"] == {"A": "2", "TTT_EVAL_ONLY": "1"} and kw["place_files"] == {"final_model.ptz": str(tmp_path / "saved.ptz")}
        assert kw["out_dir"].endswith("/o/eval_only")


def test_the_switch_is_looked_for_in_regular_files_only(tmp_path: Path):
    import os

    from harness.run.eval_only import plan_eval_only

    folder = tmp_path / "sub"
    folder.mkdir()
    os.mkfifo(folder / "notes.md")  # reading it would block forever
    (folder / "outside.md").symlink_to(tmp_path / "elsewhere.md")
    (tmp_path / "elsewhere.md").write_text("TTT_EVAL_ONLY=1\n")
    assert plan_eval_only(folder, _crashed(tmp_path)) is None
    (folder / "README.md").write_text("run with TTT_EVAL_ONLY=1\n")
    assert plan_eval_only(folder, _crashed(tmp_path)).where == "README.md:1"
