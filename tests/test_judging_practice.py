"""Judging as maintainers do (issue 9), one small fixture per case: the compressed code count, logs set
aside, the per-seed cap, nested claims, unstated times, a folder without logs, unusual score lines, an
evaluation-only rerun, and the three-part verdict's exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import ROOT
from harness.check.folder import check_folder
from harness.check.logs import parse_log_text
from harness.check.options import CheckOptions
from harness.cli import main
from harness.config import load_config
from harness.results import Finding, Report, RuleResult, Status

SCRIPT = (ROOT / "submissions" / "check_compliant" / "train_gpt.py").read_text()
CAP = 16_000_000


def log(seed: int, bpb: float, *, code: int, model: int, eval_ms: int | None = 45123, train_ms: int = 599812,
        world: int = 8, wallclock: float = 600.0, step_avg: float = 43.5, compressed_code: int | None = None) -> str:
    lines = [f"world_size:{world} grad_accum_steps:1", f"max_wallclock_seconds:{wallclock}", f"seed:{seed}",
             f"step:13780/20000 val_loss:2.0531 val_bpb:1.2160 train_time:{train_ms}ms step_avg:{step_avg}ms",
             f"stopping_early: wallclock_cap train_time:{train_ms}ms step:13780/20000",
             f"Serialized model int8+zlib: {model} bytes", f"Code size: {code} bytes"]
    if compressed_code is not None:
        lines.append(f"Code size (compressed): {compressed_code} bytes")
    counted = compressed_code if compressed_code is not None else code
    lines.append(f"Total submission size int8+zlib: {model + counted} bytes")
    et = f" eval_time:{eval_ms}ms" if eval_ms is not None else ""
    lines.append(f"final_int8_zlib_roundtrip_exact val_loss:{2 * bpb:.8f} val_bpb:{bpb:.8f}{et}")
    return "\n".join(lines) + "\n"


def make(tmp: Path, logs: dict[str, str], claims: dict | None, script: str = SCRIPT, readme: str = "# r\n") -> Path:
    d = tmp / "sub"
    (d / "logs").mkdir(parents=True)
    (d / "train_gpt.py").write_text(script)
    (d / "README.md").write_text(readme)
    if claims is not None:
        (d / "submission.json").write_text(json.dumps(claims))
    for name, text in logs.items():
        (d / "logs" / name).write_text(text)
    return d


def rows(d: Path, **kw) -> dict[str, RuleResult]:
    return {r.rule_id: r for r in check_folder(d, load_config(), CheckOptions(hints=False, **kw)).rules}


def cli(d: Path, tmp: Path) -> tuple[int, dict]:
    out = tmp / "r.json"
    rc = main(["check", str(d), "--json", str(out)])
    return rc, json.loads(out.read_text())


CODE = len(SCRIPT.encode())


# ---------------------------------------------------------------- B1: the compressed code count

def test_b1_counts_the_code_compressed_as_the_record_does(tmp_path: Path):
    from harness.check.code_size import compressed_code

    harness = compressed_code(SCRIPT)
    assert harness.bytes < CODE // 2 and harness.minified
    model = CAP - CODE + 1000  # over with the readable script, under with the compressed form
    logs = {f"train_seed{s}.log": log(s, 1.2, code=CODE, model=model, compressed_code=harness.bytes)
            for s in (1, 2)}
    d = make(tmp_path, logs, {"val_bpb": 1.2, "seeds": [1, 2]})
    st = check_folder(d, load_config(), CheckOptions(hints=False))
    b1 = st.result("B1")
    assert b1.status is Status.PASS, b1.summary
    code = st.sections["accounting"]["code"]
    assert code["as_is"] == CODE and code["harness_compressed"] == harness.bytes
    assert code["log_stated"] == [harness.bytes] and code["decided"] == harness.bytes
    # the same folder whose logs count the readable file: B1 counts it as it is, and fails
    logs = {f"train_seed{s}.log": log(s, 1.2, code=CODE, model=model) for s in (1, 2)}
    shutil.rmtree(d)
    d = make(tmp_path, logs, {"val_bpb": 1.2, "seeds": [1, 2]})
    assert rows(d)["B1"].status is Status.FAIL


def test_b1_warns_when_a_log_states_less_code_than_the_harness_can_reproduce(tmp_path: Path):
    logs = {"train_seed1.log": log(1, 1.2, code=CODE, model=1_000_000, compressed_code=1000)}
    d = make(tmp_path, logs, {"val_bpb": 1.2, "seeds": [1]})
    b1 = rows(d)["B1"]
    assert b1.status is Status.WARN
    assert any("smaller than the smallest form the harness reproduces" in f.message and "1,000 B" in f.message
               for f in b1.findings), [f.message for f in b1.findings]


def test_a_minifier_failure_falls_back_to_the_plain_bytes_and_says_so():
    from harness.check.code_size import compressed_code

    c = compressed_code("def f(:\n    pass\n" * 50)  # not Python: nothing to minify
    assert not c.minified and "no minify" in c.recipe and c.notes


# ---------------------------------------------------------------- the claimed runs

def test_a_log_of_an_unclaimed_seed_is_set_aside_and_decides_nothing(tmp_path: Path):
    logs = {"train_seed1.log": log(1, 1.2, code=CODE, model=1_000_000),
            "train_seed2.log": log(2, 1.2, code=CODE, model=1_000_000),
            # an exploratory run: another seed, 2400 s on two GPUs, over the cap
            "train_seed9.log": log(9, 1.1, code=CODE, model=CAP, train_ms=2_400_000, world=2)}
    d = make(tmp_path, logs, {"val_bpb": 1.2, "seeds": [1, 2]})
    rep = check_folder(d, load_config(), CheckOptions(hints=False))
    by = {r.rule_id: r for r in rep.rules}
    assert by["B2"].status is Status.PASS and by["B1"].status is Status.PASS and by["S2"].status is Status.PASS
    aside = rep.sections["claimed_runs"]["set_aside"]
    assert [a["log"] for a in aside] == ["logs/train_seed9.log"] and "not a claimed seed" in aside[0]["why"]


def test_a_run_on_other_hardware_is_set_aside_when_the_claim_names_no_seeds(tmp_path: Path):
    logs = {"train_seed1.log": log(1, 1.2, code=CODE, model=1_000_000),
            "train_seed2.log": log(2, 1.2, code=CODE, model=1_000_000),
            "train_seed3.log": log(3, 1.2, code=CODE, model=1_000_000, train_ms=2_400_000, world=2,
                                   wallclock=2400.0, step_avg=169.0)}
    d = make(tmp_path, logs, {"val_bpb": 1.2})
    rep = check_folder(d, load_config(), CheckOptions(hints=False))
    assert rep.result("B2").status is Status.PASS, rep.result("B2").summary
    aside = rep.sections["claimed_runs"]["set_aside"]
    assert [a["log"] for a in aside] == ["logs/train_seed3.log"] and "world_size 2" in aside[0]["why"]


def test_readme_results_table_names_the_claimed_seeds(tmp_path: Path):
    logs = {"train_seed1.log": log(1, 1.2, code=CODE, model=1_000_000),
            "train_seed5.log": log(5, 1.0, code=CODE, model=1_000_000)}
    readme = "# r\n\n| Seed | BPB |\n|---|---|\n| 1 | 1.2 |\n| **Mean** | 1.2 |\n"
    d = make(tmp_path, logs, {"val_bpb": 1.2}, readme=readme)
    rep = check_folder(d, load_config(), CheckOptions(hints=False))
    assert rep.sections["claimed_runs"]["seed_source"] == "README results table"
    assert rep.result("S2").status is Status.PASS  # seed 5's better score is not averaged in


def test_b1_decides_on_each_claimed_seed_and_names_the_worst(tmp_path: Path):
    logs = {"train_seed1.log": log(1, 1.2, code=CODE, model=CAP - CODE - 100),
            "train_seed2.log": log(2, 1.2, code=CODE, model=CAP - CODE + 500),
            "train_seed3.log": log(3, 1.2, code=CODE, model=CAP - CODE + 200)}
    d = make(tmp_path, logs, {"val_bpb": 1.2, "seeds": [1, 2, 3],
                              "seed_results": {"2": {"val_bpb": 1.2, "artifact_bytes": CAP - 1}}})
    by = rows(d)
    b1 = by["B1"]
    assert b1.status is Status.FAIL
    assert "2 claimed run(s) over the cap; the worst is seed 2" in b1.findings[0].message
    # the claim says seed 2 is under the cap while its run is over: a claim better than the logs support
    assert by["S2"].status is Status.FAIL
    assert any("Seed 2: claimed" in f.message and f.status is Status.FAIL for f in by["S2"].findings)


# ---------------------------------------------------------------- S2: claims read and judged by consequence

def test_nested_claims_are_read_and_a_better_claim_fails(tmp_path: Path):
    logs = {"train_seed1.log": log(1, 1.2, code=CODE, model=1_000_000)}
    d = make(tmp_path, logs, {"name": "x", "results": {"mean_val_bpb": 1.1, "seeds": [1]}})
    s2 = rows(d)["S2"]
    assert s2.status is Status.FAIL and "results.mean_val_bpb" in s2.findings[0].message
    shutil.rmtree(d)
    d = make(tmp_path, logs, {"name": "x", "results": {"mean_val_bpb": 1.3}})  # worse than the logs: WARN
    assert rows(d)["S2"].status is Status.WARN


def test_no_claim_found_is_a_warn_that_says_so(tmp_path: Path):
    logs = {"train_seed1.log": log(1, 1.2, code=CODE, model=1_000_000)}
    d = make(tmp_path, logs, {"name": "x", "author": "y"})
    s2 = rows(d)["S2"]
    assert s2.status is Status.WARN and "no claim found" in s2.summary


# ---------------------------------------------------------------- times, logs, score lines

def test_unstated_times_are_not_stated_warns_and_exit_0(tmp_path: Path):
    logs = {"train_seed1.log": log(1, 1.2, code=CODE, model=1_000_000, eval_ms=None)}
    d = make(tmp_path, logs, {"val_bpb": 1.2, "seeds": [1]})
    rc, rep = cli(d, tmp_path)
    by = {r["rule_id"]: r for r in rep["rules"]}
    assert by["B3"]["status"] == "WARN" and "not stated" in by["B3"]["summary"]
    assert rc == 0 and rep["verdict"]["budgets"]["status"] == "WARN"


def test_a_folder_without_a_log_is_s1_fail_in_the_paperwork_not_bad_input(tmp_path: Path):
    d = tmp_path / "sub"
    shutil.copytree(ROOT / "submissions" / "check_compliant", d)
    shutil.rmtree(d / "logs")
    rc, rep = cli(d, tmp_path)
    assert rep["input_errors"] == [] and rc == 0  # the artifact in the folder decides B1
    by = {r["rule_id"]: r["status"] for r in rep["rules"]}
    assert by["S1"] == "FAIL" and by["B1"] == "PASS"
    assert rep["verdict"]["paperwork"]["status"] == "WARN"


def test_unusual_score_and_size_lines_are_read():
    s = parse_log_text("seed:42\nTraining complete in 590s (1856 steps)\nArtifact: 15,188,240 bytes (14.48 MB)\n"
                       "EMA BPB (no XSA): 1.018499\nQuantized BPB (no XSA): 1.027163\n"
                       "mean BPB across seeds: 1.0\n")
    assert s.final is not None and s.final.val_bpb == 1.027163 and s.final.tag == "Quantized BPB (no XSA)"
    assert s.model_bytes == 15_188_240
    t = parse_log_text("1776143356.801 Serialized model quantized+brotli: 15968098 bytes\n"
                       "1776143356.9 quantized_ttt_phased val_loss:2.7695 val_bpb:1.0721 eval_time:500104ms\n")
    assert t.model_bytes == 15_968_098 and t.final.val_bpb == 1.0721 and t.eval_time_ms == 500104


def test_run_output_uses_the_same_score_lines():
    from harness.check.score_lines import carries_score, parse_line

    assert carries_score("Quantized BPB: 1.027163")
    p = parse_line("Quantized BPB: 1.027163", t=3.0)
    assert p is not None and p.val_bpb == 1.027163 and p.t == 3.0


def test_an_eval_only_rerun_replaces_the_seeds_evaluation(tmp_path: Path):
    logs = {"train_seed42.log": log(42, 1.0644, code=CODE, model=1_000_000, eval_ms=511_300)}
    d = make(tmp_path, logs, {"val_bpb": 1.0640, "seeds": [42]})
    (d / "ttt").mkdir()
    (d / "ttt" / "seed_42.log").write_text(
        "seed:42\nquantized_ttt_phased val_loss:2.32843 val_bpb:1.06400 eval_time:525700ms\n")
    rep = check_folder(d, load_config(), CheckOptions(hints=False))
    b3 = rep.result("B3")
    assert b3.status is Status.PASS and "525.7 s" in b3.summary, b3.summary  # not 1037 s
    run = rep.sections["claimed_runs"]["runs"][0]
    assert run["score_log"] == "ttt/seed_42.log" and run["eval_time_ms"] == 525_700
    assert rep.result("S2").status is Status.PASS  # the claim is the rerun's score


# ---------------------------------------------------------------- the verdict in three parts

def _report(*rows: tuple[str, Status], errors: list[str] | None = None) -> Report:
    return Report("x", "check", "0", "now", rules=[RuleResult(r, r, s, "") for r, s in rows],
                  input_errors=errors or [])


@pytest.mark.parametrize("rows, code", [
    ([("C3", Status.FAIL), ("S1", Status.PASS)], 1),
    ([("B1", Status.FAIL), ("C3", Status.PASS)], 1),
    ([("C1", Status.INCONCLUSIVE), ("B1", Status.PASS)], 2),
    ([("S1", Status.FAIL), ("S2", Status.FAIL), ("S3", Status.INCONCLUSIVE), ("B1", Status.PASS)], 0),
    ([("B3", Status.WARN), ("B1", Status.PASS), ("C3", Status.PASS)], 0),
    ([("S1", Status.FAIL), ("C4", Status.FAIL)], 1),
])
def test_three_part_verdict_exit_codes(rows, code):
    rep = _report(*rows)
    assert int(rep.exit_code) == code
    d = rep.to_dict()
    assert set(d["verdict"]) == {"legality", "budgets", "paperwork"}
    if any(r == "S1" and s is Status.FAIL for r, s in rows):
        assert d["verdict"]["paperwork"]["status"] == "WARN" and "S1 FAIL" in d["verdict"]["paperwork"]["flagged"]
    assert int(_report(*rows, errors=["x: not a folder"]).exit_code) == 3


def test_every_report_format_prints_the_three_parts(tmp_path: Path, capsys):
    from harness.report.markdown import report_markdown

    rep = _report(("C3", Status.PASS), ("B1", Status.WARN), ("S1", Status.FAIL))
    rep.rules[2].findings.append(Finding("S1", Status.FAIL, "missing README.md"))
    md = report_markdown(rep)
    for part in ("legality (C1-C4, D1-D3, B4): PASS", "budgets (B1, B2, B3): WARN", "paperwork (S1-S3, B5): WARN"):
        assert part in md, md
    from harness.report.console import render_report

    render_report(rep)
    out = capsys.readouterr().out
    assert "legality" in out and "budgets" in out and "paperwork" in out and "(exit 0)" in out
