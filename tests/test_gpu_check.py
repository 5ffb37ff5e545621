"""bench/gpu_check.py, the prepared GPU script (issue 15): its plan on a GPU, and its dry run on this CPU."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
sys.modules["gpu_check"] = gpu_check
spec.loader.exec_module(gpu_check)


def _args(**kw) -> argparse.Namespace:
    base = dict(dry_run=False, submission=str(ROOT / "submissions" / "check_compliant"), data_path="/d",
                tokenizer="/d/t.model", b2_seconds=60.0, iterations=300, triton_record="/r")
    base.update(kw)
    return argparse.Namespace(**base)


def test_the_gpu_plan_runs_cuda_full_scale_with_the_lowered_budget(tmp_path: Path) -> None:
    steps = {s.name: s for s in gpu_check.plan(_args(), tmp_path)}
    assert list(steps) == ["env", "budget_kill", "fit_traced", "fit_untraced", "triton", "triton_record", "compile"]
    kill = steps["budget_kill"].argv
    assert kill[kill.index("--device") + 1] == "cuda" and kill[kill.index("--scale") + 1] == "full"
    assert "max_seconds = 60.0" in Path(kill[kill.index("--config") + 1]).read_text()
    fit = steps["fit_traced"].argv
    assert "ITERATIONS=300" in fit and "--no-trace" in steps["fit_untraced"].argv and "--no-trace" not in fit
    assert steps["compile"].argv[-1] == "inductor" and steps["env"].skip is None


def test_checks_name_what_went_wrong() -> None:
    o = gpu_check.Outcome("budget_kill", [], rc=0, report={"sections": {"run": {"reason": "ok", "phases": {}}}})
    problems = gpu_check.check_kill(o)
    assert any("exit 0" in p for p in problems) and any("train_budget" in p for p in problems)
    fit = gpu_check.Outcome("fit", [], rc=0, report={"sections": {"run": {"reason": "ok", "phases": {
        "artifact_write": 3.0}, "budgets": {"train_s": 2.0, "eval_s": 1.0}}}})
    assert gpu_check.check_fit(fit) == []


@pytest.mark.slow
def test_dry_run_kills_training_by_the_harness_clock_and_compiles(tmp_path: Path) -> None:
    rc = gpu_check.main(["--dry-run", "--out", str(tmp_path), "--only", "budget_kill", "--only", "compile"])
    s = json.loads((tmp_path / "gpu_check.json").read_text())
    assert rc == 0, s
    steps = {st["name"]: st for st in s["steps"]}
    assert steps["budget_kill"]["reason"] == "train_budget" and steps["budget_kill"]["rc"] in (1, 4)
    assert steps["compile"]["problems"] == []
    assert "| budget_kill |" in (tmp_path / "gpu_check.md").read_text()
