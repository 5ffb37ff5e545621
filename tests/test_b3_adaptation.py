"""B3 counts evaluation-time adaptation a log states before its artifact ("pre-quant TTT": fine-tuning on
validation tokens after training, then quantizing and serializing) on top of the reported pass's eval_time.
Score-first TTT after the artifact is inside the reported pass's eval_time already and is never added."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.check.logs import parse_log_text
from harness.cli import main

from conftest import ROOT

_TRAIN = """seed:42
step:0/20000 val_loss:6.9370 val_bpb:4.0978 train_time:0ms step_avg:0.01ms
step:13780/20000 val_loss:2.0531 val_bpb:1.2160 train_time:599812ms step_avg:43.53ms
stopping_early: wallclock_cap train_time:599812ms step:13780/20000
"""
_ARTIFACT = """Serialized model int8+zlib: 8492 bytes
Code size: 19502 bytes
Total submission size int8+zlib: 27994 bytes
"""
_REPORTED = "final_int8_zlib_roundtrip_exact val_loss:2.06087000 val_bpb:1.22058000 eval_time:45123ms\n"
# 2 epochs of 290 s and their total: 570 s + the reported pass's 45.1 s = 615.1 s, over 600 s (+5 s grace)
_PREQUANT = """prequant_ttt:start epochs=2 lr=0.0005
prequant_ttt:epoch 1/2 time=290.0s lr=0.000497
prequant_ttt:epoch 2/2 time=280.0s lr=0.000050
prequant_ttt:done total_time=570.0s
post-prequant-ttt val_loss:2.0 val_bpb:1.19 eval_time:9686ms
"""


def _line_of(text: str, prefix: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(prefix))


# ------------------------------------------------------------------ the log parser

def test_adaptation_before_the_artifact_is_parsed_from_its_total_line():
    text = _TRAIN + _PREQUANT + _ARTIFACT + _REPORTED
    s = parse_log_text(text, path="train_seed42.log")
    assert [(a.tag, a.ms, a.lines, a.how) for a in s.adaptation] == [
        ("prequant_ttt", 570_000.0, (_line_of(text, "prequant_ttt:done"),), "total")]
    assert s.adaptation[0].artifact_line == _line_of(text, "Serialized model")
    assert s.adaptation_ms == 570_000.0  # the epochs are inside the total, never added to it
    assert s.eval_time_ms == 45123  # the reported pass's own time is unchanged


def test_per_epoch_times_are_summed_without_a_total_line_and_cumulative_ones_are_not():
    each = "ttt_adamw:epoch 1/3 time:200.0s\nttt_adamw:epoch 2/3 time:190.0s\nttt_adamw:epoch 3/3 time:210.0s\n"
    s = parse_log_text(_TRAIN + each + _ARTIFACT + _REPORTED)
    assert [(a.ms, a.how) for a in s.adaptation] == [(600_000.0, "per-epoch times summed")]
    assert len(s.adaptation[0].lines) == 3
    # "time" that grows by the same step each epoch is the time so far: the last one is the total
    so_far = "ttt_adamw:epoch 1/3 time:15.2s\nttt_adamw:epoch 2/3 time:30.2s\nttt_adamw:epoch 3/3 time:45.2s\n"
    s = parse_log_text(_TRAIN + so_far + _ARTIFACT + _REPORTED)
    assert [a.ms for a in s.adaptation] == [45_200.0]


def test_a_wrapper_timer_restating_the_inner_loop_is_counted_once():
    nested = "ttt_adamw:epoch 1/8 loss:2.90 time:15.2s\nttt_adamw:done elapsed=120.2s\nttt:elapsed=120.2s\n"
    s = parse_log_text(_TRAIN + nested + _ARTIFACT + _REPORTED)
    assert s.adaptation_ms == pytest.approx(120_200.0)
    assert len(s.adaptation) == 1
    # two distinct phases before the artifact add up
    two = "prequant_ttt:done total_time=300.0s\nslot_adapt:done elapsed=100.0s\n"
    assert parse_log_text(_TRAIN + two + _ARTIFACT + _REPORTED).adaptation_ms == 400_000.0


def test_score_first_ttt_after_the_artifact_is_not_adaptation():
    after = "ttt_sliding:start chunks=1238\nttt_chunk [1/1238] bpb=1.11 time=31.5s\n" \
            "ttt_sliding:done val_loss=2.79 val_bpb=1.08 elapsed=343.2s\n" \
            "legal_ttt_exact val_loss:2.79650282 val_bpb:1.08261339 eval_time:343415ms\n"
    s = parse_log_text(_TRAIN + _ARTIFACT + after)
    assert s.adaptation == [] and s.eval_time_ms == 343415
    # the same pre-quant lines after the artifact: not added either
    assert parse_log_text(_TRAIN + _ARTIFACT + _PREQUANT + _REPORTED).adaptation == []


def test_a_reported_pass_before_the_artifact_gets_nothing_added():
    # TTT scored before the sizes are printed: the TTT lines may be the reported pass itself (double count)
    ttt = "ttt:done val_loss=2.79 val_bpb=1.08 elapsed=343.2s\n"
    reported = "legal_ttt_exact val_loss:2.79650282 val_bpb:1.08261339 eval_time:343415ms\n"
    assert parse_log_text(_TRAIN + ttt + reported + _ARTIFACT).adaptation == []


def test_no_artifact_line_after_training_or_no_training_means_nothing_is_added():
    # without a size line after it, nothing says the adaptation came before the artifact
    assert parse_log_text(_TRAIN + _PREQUANT + _REPORTED).adaptation == []
    assert parse_log_text(_PREQUANT + _ARTIFACT + _REPORTED).adaptation == []
    # training resumed after an adaptation: that one belongs to an earlier run
    assert parse_log_text(_TRAIN + _PREQUANT + _TRAIN + _ARTIFACT + _REPORTED).adaptation == []


def test_a_duration_without_a_unit_is_never_used():
    unitless = "prequant_ttt:done total_time=570.0\n"
    s = parse_log_text(_TRAIN + unitless + _ARTIFACT + _REPORTED)
    assert s.adaptation == []
    assert any("adaptation time(s) before the artifact without a unit" in w for w in s.warnings)
    # a budget or an evaluation's time named next to TTT is no adaptation time
    other = "ttt:start max_time=900s\nprequant_ttt budget_time:900s\npost_ttt val_loss:2 val_bpb:1 eval_time:900s\n"
    assert parse_log_text(_TRAIN + other + _ARTIFACT + _REPORTED).adaptation == []


# ------------------------------------------------------------------ B3 through `harness check`

def _folder(tmp_path: Path, insert: str, before: str) -> Path:
    """The compliant reference submission with `insert` put before the line starting with `before` in
    the seed-42 log."""
    d = tmp_path / "sub"
    shutil.copytree(ROOT / "submissions" / "check_compliant", d)
    log = d / "logs" / "train_seed42.log"
    lines = log.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith(before))
    log.write_text("".join(lines[:at]) + insert + "".join(lines[at:]))
    return d


def _b3(d: Path, tmp_path: Path) -> dict:
    out = tmp_path / "r.json"
    assert main(["check", str(d), "--json", str(out)]) in (0, 1)  # judged, not bad input
    return next(r for r in json.loads(out.read_text())["rules"] if r["rule_id"] == "B3")


def test_b3_fails_when_adaptation_before_the_artifact_plus_the_reported_pass_exceed_the_budget(tmp_path: Path):
    d = _folder(tmp_path, _PREQUANT, "Serialized model int8+zlib")
    text = (d / "logs" / "train_seed42.log").read_text()
    done, final = _line_of(text, "prequant_ttt:done"), _line_of(text, "final_int8_zlib_roundtrip_exact")
    b3 = _b3(d, tmp_path)
    assert b3["status"] == "FAIL", b3
    assert "615.1 s" in b3["summary"]
    [f] = b3["findings"]  # the other two seeds state no adaptation: within budget
    assert f["message"].startswith("train_seed42.log (seed 42)")
    assert f"570.0 s (prequant_ttt, line {done})" in f["message"]
    assert "45.1 s" in f["message"] and "= 615.1 s" in f["message"]
    assert [e["where"] for e in f["evidence"]] == [f"train_seed42.log:{done}", f"train_seed42.log:{final}"]
    assert [e["time_s"] for e in f["evidence"]] == [pytest.approx(570.0), pytest.approx(45.123)]


def test_b3_does_not_add_score_first_ttt_after_the_artifact(tmp_path: Path):
    d = _folder(tmp_path, _PREQUANT, "final_int8_zlib_roundtrip_exact")
    b3 = _b3(d, tmp_path)
    assert b3["status"] == "PASS", b3
    assert "at most 45.1 s of evaluation" in b3["summary"]
    assert "adaptation" not in b3["summary"]


def test_b3_does_not_use_an_adaptation_time_without_a_unit(tmp_path: Path):
    d = _folder(tmp_path, "prequant_ttt:done total_time=570.0\n", "Serialized model int8+zlib")
    b3 = _b3(d, tmp_path)
    assert b3["status"] == "PASS", b3
    assert "at most 45.1 s of evaluation" in b3["summary"]


def test_b3_passes_adaptation_within_budget_and_says_it_was_counted(tmp_path: Path):
    d = _folder(tmp_path, "prequant_ttt:done total_time=100.0s\n", "Serialized model int8+zlib")
    b3 = _b3(d, tmp_path)
    assert b3["status"] == "PASS", b3
    assert "at most 145.1 s of evaluation" in b3["summary"]
    assert "100.0 s of adaptation stated before the artifact" in b3["summary"]


def test_b3_takes_the_larger_when_the_log_states_a_total_eval_time(tmp_path: Path):
    # a stated total_eval_time may already hold the adaptation: never added to it
    d = _folder(tmp_path, "prequant_ttt:done total_time=100.0s\n", "Serialized model int8+zlib")
    log = d / "logs" / "train_seed42.log"
    log.write_text(log.read_text() + "total_eval_time:550.0s\n")
    b3 = _b3(d, tmp_path)
    assert b3["status"] == "PASS", b3
    assert "at most 550.0 s of evaluation" in b3["summary"]
    log.write_text(log.read_text().replace("total_time=100.0s", "total_time=610.0s"))
    b3 = _b3(d, tmp_path)
    assert b3["status"] == "FAIL" and "= 610.0 s" in b3["findings"][0]["message"], b3
