"""harness.check.logs: score lines, sizes, times, seeds and hardware from logs shaped like the real ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness.check.logs as logs
from harness.errors import BadInput
from harness.check.logs import SIZE_PATTERNS, find_logs, parse_log, parse_log_text

FIX = Path(__file__).parent / "fixtures" / "logs"


# ------------------------------------------------------------------ whole logs

def test_baseline_log_reports_the_exact_roundtrip_line_not_the_step0_val():
    s = parse_log(FIX / "baseline_seed1337.log")
    assert s.final is not None
    assert s.final.tag == "final_int8_zlib_roundtrip_exact"
    assert s.final.val_loss == pytest.approx(2.07241371)
    assert s.final.val_bpb == pytest.approx(1.22738952)
    assert s.final.line_no == 34
    # the step-0 and step-N validation lines are scores, but not the reported one
    assert [x.step for x in s.scores if x.tag == "step"] == [0, 200, 13790]
    assert s.scores[0].val_bpb == pytest.approx(4.0978)
    assert s.seed == 1337
    assert (s.stop_step, s.total_steps) == (13790, 20000)
    assert s.train_time_ms == 599840
    assert s.code_bytes == 47642
    assert s.model_bytes == 15815816  # the compressed line, not "Serialized model: 67224983 bytes"
    assert s.raw_model_bytes == 67224983
    assert s.total_bytes == 15863458  # "Total submission size int8+zlib", not the raw total
    # the _exact line has no eval_time: taken from its companion line
    assert s.eval_time_ms == 1402
    assert "final_int8_zlib_roundtrip'" in (s.eval_time_source or "")
    assert s.world_size == 8
    assert s.hardware is None  # world_size alone does not name the GPU
    assert s.warnings == []


def test_phased_ttt_log_with_spaced_keys_and_total_eval_time():
    s = parse_log(FIX / "ttt_phased_seed42.log")
    assert s.final is not None and s.final.tag == "quantized_ttt_phased"
    assert s.final.val_bpb == pytest.approx(1.05803761)
    assert s.final.eval_time_ms == 591446
    assert s.eval_time_ms == pytest.approx(591400)  # total_eval_time:591.4s wins: every pass counts
    assert s.eval_time_source.startswith("total_eval_time")
    assert s.seed == 42  # "  seed: 42" in the hyperparameter dump
    assert s.train_time_ms == 596137  # "train_time: 596137ms" on the stopping_early line
    assert (s.stop_step, s.total_steps) == (4703, 20000)
    # "4703/20000 val_loss: 2.3304 val_bpb: 1.0648" is a step line without the "step:" prefix
    assert [x.step for x in s.scores if x.tag == "step"] == [0, 4000, 4703]
    assert s.model_bytes == 15951365 and s.total_bytes == 15989499 and s.code_bytes == 38134
    tags = [x.tag for x in s.scores]
    assert "diagnostic pre-quantization post-ema" in tags and "diagnostic quantized" in tags


def test_crlf_and_ansi_colours_are_cleaned():
    raw = (FIX / "crlf_ansi_seed7.log").read_bytes()
    assert b"\r\n" in raw and b"\x1b[" in raw  # the fixture really has them
    s = parse_log(FIX / "crlf_ansi_seed7.log")
    assert s.final is not None
    assert s.final.text == "final_int6_roundtrip_exact val_loss:2.41000000 val_bpb:1.42735000"
    assert s.final.val_bpb == pytest.approx(1.42735)
    assert s.scores[0].step == 0 and s.seed == 7 and s.world_size == 1
    assert s.model_bytes == 9996844 and s.total_bytes == 10064451


def test_logged_source_code_is_skipped_and_nvidia_smi_names_the_gpus():
    s = parse_log(FIX / "sub_a" / "logs" / "run_a.txt")
    # the f-string template in the logged code is not a score; "1xA100" in the code is not hardware
    assert all("{" not in x.text for x in s.scores)
    assert s.hardware == "2xH100"  # two nvidia-smi rows, no world_size line
    assert s.gpu_name == "NVIDIA H100 80GB HBM3"
    assert s.seed == 2024  # from "... wall:600s seed:2024", not the code's SEED default
    assert s.final is not None and s.final.tag == "final_int6_ttt_exact"
    assert s.eval_time_ms == 336499  # from the companion "final_int6_ttt" line
    ttt = [x for x in s.scores if x.tag == "ttt:done"]
    assert ttt and ttt[0].val_bpb == pytest.approx(1.04727) and ttt[0].val_loss == pytest.approx(1.768268)
    assert any("source" in w for w in s.warnings)


def test_source_without_separator_is_parsed_anyway():
    text = ("import os\nprint('x')\nstep:1/1 val_loss:2.0 val_bpb:1.5 train_time:10ms\n"
            "final_x_exact val_loss:1.9 val_bpb:1.4\n")
    s = parse_log_text(text)
    assert s.final is not None and s.final.val_bpb == pytest.approx(1.4)
    assert any("no '=====' separator" in w for w in s.warnings)


# ------------------------------------------------------------------ score lines

@pytest.mark.parametrize("line, tag, loss, bpb, eval_ms", [
    ("final_int8_zlib_roundtrip_exact val_loss:2.06035852 val_bpb:1.21687994",
     "final_int8_zlib_roundtrip_exact", 2.06035852, 1.21687994, None),
    ("legal_ttt val_loss:1.9262 val_bpb:1.1408 eval_time:412345ms", "legal_ttt", 1.9262, 1.1408, 412345),
    ("final_ngram_exact val_loss=0.33725929 val_bpb=0.19974395", "final_ngram_exact", 0.33725929, 0.19974395, None),
    ("final_slot_exact val_bpb: 1.23", "final_slot_exact", None, 1.23, None),
    ("DIAGNOSTIC post_ema val_loss:1.9433 val_bpb:1.1509", "DIAGNOSTIC post_ema", 1.9433, 1.1509, None),
    ("[rank0]: final_ttt_lora val_loss:1.9550 val_bpb:1.1579 eval_time:118066ms lora_rank:16",
     "final_ttt_lora", 1.955, 1.1579, 118066),
    ("[default0]:final_int6_sliding_window_s64_exact val_loss:1.89330345 val_bpb:1.12132391",
     "final_int6_sliding_window_s64_exact", 1.89330345, 1.12132391, None),
    ("ngram_cache val_loss:2.1 val_bpb:1.2 (order=5) eval_time:70.5s", "ngram_cache", 2.1, 1.2, 70500),
    ("quantized_ttt_phased val_loss:2.3 val_bpb:1.05 eval_time_ms:1234", "quantized_ttt_phased", 2.3, 1.05, 1234),
])
def test_score_line_shapes(line, tag, loss, bpb, eval_ms):
    s = parse_log_text("seed:1\n" + line + "\n")
    assert s.final is not None
    assert s.final.tag == tag
    assert s.final.val_bpb == pytest.approx(bpb)
    assert (s.final.val_loss is None) if loss is None else s.final.val_loss == pytest.approx(loss)
    assert s.final.eval_time_ms == (pytest.approx(eval_ms) if eval_ms is not None else None)


@pytest.mark.parametrize("line", [
    "val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path=./fineweb_1024_bpe.model",
    "quantized_sampled_sliding_no_ttt_summary_exact seeds:1,2,3 mean_val_loss:1.75 mean_val_bpb:1.05",
    "  ttt_chunk [1/474] bpb=1.205733 time=0.8s",
    "quant_gap: 0.013972 BPB (pre:1.161063 post:1.175035)",
    'log0(f"final val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f}")',
])
def test_lines_that_are_not_scores(line):
    s = parse_log_text(line + "\n")
    assert s.scores == [] and s.final is None
    assert "no line carrying a numeric val_bpb" in s.warnings


def test_score_tag_selects_the_named_line_and_a_missing_tag_gives_no_final():
    path = FIX / "sub_a" / "logs" / "run_a.txt"
    s = parse_log(path, score_tag="final_int6_sliding_window_exact")
    assert s.final is not None and s.final.val_bpb == pytest.approx(1.12505277)
    assert s.eval_time_ms == 93488  # companion of the named line
    miss = parse_log(path, score_tag="legal_ttt_exact")
    assert miss.final is None
    assert any("no score line with tag 'legal_ttt_exact'" in w and "final_int6_ttt_exact" in w
               for w in miss.warnings)


def test_only_training_validation_lines_warns():
    s = parse_log_text("step:0/10 val_loss:6.9 val_bpb:4.1 train_time:0ms\n"
                       "step:10/10 val_loss:3.0 val_bpb:1.8 train_time:900ms\n")
    assert s.final is not None and s.final.step == 10
    assert any("training-time validation" in w for w in s.warnings)


def test_non_finite_final_is_reported_with_a_warning():
    s = parse_log_text("final_int8_zlib_roundtrip_exact val_loss:nan val_bpb:nan\n")
    assert s.final is not None
    assert s.final.val_bpb != s.final.val_bpb  # nan
    assert any("not finite" in w for w in s.warnings)


# ------------------------------------------------------------------ robustness

def test_empty_file(tmp_path):
    p = tmp_path / "train.log"
    p.write_bytes(b"")
    s = parse_log(p)
    assert s.final is None and s.scores == []
    assert "empty file" in s.warnings


def test_binary_garbage_nul_bytes_and_invalid_utf8(tmp_path):
    p = tmp_path / "train_seed5.log"
    p.write_bytes(
        b"seed:5\n"
        + bytes(b for b in range(32) if b not in (10, 13)) * 8 + b"\n"  # control characters
        + b"\xff\xfe\xfa\xfb" * 50 + b"\n"  # invalid UTF-8
        + b"\x00" * 300 + b"\n"  # NUL padding left by a crash
        + b"caf\xe9 ok line\n"  # one bad byte in a real line is kept
        + b"final_int8_zlib_roundtrip_exact val_loss:2.5 val_bpb:1.5\x00\x00\n"
    )
    s = parse_log(p)
    assert s.final is not None and s.final.val_bpb == pytest.approx(1.5) and s.seed == 5
    assert any("binary garbage" in w for w in s.warnings)
    assert s.final.line_no == 6


def test_huge_file_stops_at_the_line_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "MAX_LINES", 100)
    lines = [f"step:{i}/1000 val_loss:3.0 val_bpb:{1 + i / 1000:.4f} train_time:{i}ms" for i in range(300)]
    p = tmp_path / "train.log"
    p.write_text("\n".join(lines) + "\n")
    s = parse_log(p)
    assert len(s.scores) == 100 and s.final.step == 99
    assert any("stopped reading after 100 lines" in w for w in s.warnings)


def test_character_cap_stops_a_blob_without_newlines(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "MAX_CHARS", 5000)
    monkeypatch.setattr(logs, "MAX_LINE_CHARS", 1000)
    p = tmp_path / "train.log"
    p.write_text("final_a val_loss:2.0 val_bpb:1.25\n" + "z" * 20_000 + "\nfinal_b val_loss:2.0 val_bpb:1.5\n")
    s = parse_log(p)
    assert s.final is not None and s.final.tag == "final_a"  # the line after the blob was never reached
    assert any("stopped reading" in w for w in s.warnings)


def test_very_long_lines_are_cut_without_losing_the_next_line(monkeypatch):
    monkeypatch.setattr(logs, "MAX_LINE_CHARS", 64)
    text = "x" * 1000 + "\nfinal_a val_loss:2.0 val_bpb:1.25\n"
    s = parse_log_text(text)
    assert s.final is not None and s.final.val_bpb == pytest.approx(1.25) and s.final.line_no == 2
    assert any("cut 1 line(s)" in w for w in s.warnings)


def test_missing_or_non_file_paths_are_bad_input(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        parse_log(tmp_path / "nope.log")
    with pytest.raises(BadInput, match="not a regular file"):
        parse_log(tmp_path)


@settings(max_examples=150, deadline=None)
@given(noise=st.text(max_size=400), bpb=st.floats(min_value=0.1, max_value=9.0, allow_nan=False))
def test_any_noise_then_a_final_line_is_parsed(noise, bpb):
    # whatever comes before (garbage, partial escapes, fake code), the last score line is the reported one
    text = noise + "\nfinal_zz_exact val_loss:2.5 val_bpb:" + f"{bpb:.8f}" + "\n"
    s = parse_log_text(text)
    assert s.final is not None
    assert s.final.tag == "final_zz_exact"
    assert s.final.val_bpb == pytest.approx(float(f"{bpb:.8f}"))


# ------------------------------------------------------------------ sizes

# each line is modeled on a real log; every pattern in SIZE_PATTERNS must be exercised here
SIZE_LINES = [
    ("Serialized model int8+zlib: 15811522 bytes (payload:17178912 raw_torch:17224025 payload_ratio:3.91x)",
     "model_bytes", 15811522),
    ("Serialized model int6+zstd: 15794806 bytes", "model_bytes", 15794806),
    ("Serialized model zstd-22: 15482644 bytes (payload:27578744 raw_torch:27638331 payload_ratio:3.83x)",
     "model_bytes", 15482644),
    ("Serialized model quantized+pergroup: 15951365 bytes", "model_bytes", 15951365),
    ("serialized_model_int8_zlib:11239210 bytes (payload:17178912 raw_pickle:17188361 payload_ratio:3.91x)",
     "model_bytes", 11239210),
    ("Compressed model size: 15,794,806 bytes", "model_bytes", 15794806),
    ("artifact:final_model.int6.ptz artifact_bytes:15555121", "model_bytes", 15555121),
    ("Serialized model: 67224983 bytes", "raw_model_bytes", 67224983),
    ("saved_model:logs/run_mlx_model.npz bytes:67212188", "raw_model_bytes", 67212188),
    ("Total submission size int8+zlib: 15863068 bytes", "total_bytes", 15863068),
    ("Total submission size quantized+brotli: 15954871 bytes", "total_bytes", 15954871),
    ("Total submission size int6+lzma: 15,985,833 bytes", "total_bytes", 15985833),
    ("Total submission size (NCA rule + code): 1203311 bytes", "total_bytes", 1203311),
    ("budget: bytes_total:15989499 cap:16000000", "total_bytes", 15989499),
    ("Size check PASSED: 15552158 / 16,000,000 (97.2%)", "total_bytes", 15552158),
    ("Code size: 48140 bytes", "code_bytes", 48140),
    ("Code size (lzma wrapper): 33710 bytes", "code_bytes", 33710),
    ("export_only:code size: 66084 bytes", "code_bytes", 66084),
    ("code_bytes:48881 model_bytes:12569851", "code_bytes", 48881),
    ("Artifact: 15,188,240 bytes (14.48 MB)", "model_bytes", 15188240),
    ("budget:15993853/16000000 (15.99/16.00MB) FITS", "total_bytes", 15993853),
    ("artifact:15.92MB ternary:64880640(14239486B) fp:2513744(2537376B) code:70853", "code_bytes", 70853),
    ("1776143444.368 Serialized model quantized+brotli: 15968098 bytes", "model_bytes", 15968098),
]


@pytest.mark.parametrize("line, field, value", SIZE_LINES)
def test_size_line_phrasings(line, field, value):
    s = parse_log_text(line + "\n")
    assert getattr(s, field) == value
    others = {"model_bytes", "raw_model_bytes", "total_bytes", "code_bytes"} - {field}
    assert all(getattr(s, o) is None for o in others), line


RAW_TOTAL_LINE = "Total submission size: 67275034 bytes"  # baseline: torch.save size + code


def test_every_size_pattern_has_a_test_line_and_its_example_matches():
    lines = [line for line, _, _ in SIZE_LINES] + [RAW_TOTAL_LINE]
    for p in SIZE_PATTERNS:
        assert p.regex.search(p.example), p.example
        assert any(p.regex.search(line) for line in lines), p.regex.pattern


def test_unqualified_total_is_used_only_as_a_fallback_with_a_warning():
    s = parse_log_text(RAW_TOTAL_LINE + "\n")
    assert s.total_bytes == 67275034
    assert any("unqualified" in w for w in s.warnings)
    s2 = parse_log_text("Total submission size: 67275034 bytes\nTotal submission size int8+zlib: 15787627 bytes\n")
    assert s2.total_bytes == 15787627 and not any("unqualified" in w for w in s2.warnings)


# ------------------------------------------------------------------ seeds, times, hardware

@pytest.mark.parametrize("name, seed", [
    ("train_seed42.log", 42), ("log_seed1337.txt", 1337), ("mpk_seed_1338.txt", 1338),
    ("train_s7.log", 7), ("train.log", None),
])
def test_seed_from_file_name(name, seed):
    assert parse_log_text("final val_loss:2 val_bpb:1\n", path=name).seed == seed


def test_seed_in_log_wins_over_file_name_with_a_warning():
    s = parse_log_text("seed:7\nfinal val_loss:2 val_bpb:1\n", path="train_seed42.log")
    assert s.seed == 7
    assert any("file name says seed 42" in w for w in s.warnings)
    assert parse_log_text("ttt_seed:9 data_seed=3\n", path="x.log").seed is None
    assert parse_log_text("Run config: QUANT_BITS=6 SEED=1337\n", path="x.log").seed == 1337


@pytest.mark.parametrize("text, hw", [
    ("Hardware: 8xH100 SXM (RunPod template), PyTorch 2.9.1\n", "8xH100"),
    ("[modal] Launching torchrun on 8xH100...\n", "8xH100"),
    ("hardware 8×H200 NVL\n", "8xH200"),
    ("world_size:8 grad_accum_steps:1\ndevice_name: NVIDIA H100 80GB HBM3\n", "8xH100"),
    ("world_size:1\nGPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-x)\n", "1xRTX 4090"),
    ("device_name: NVIDIA A100-SXM4-80GB\n", "A100"),
    ("world_size:8\n", None),
])
def test_hardware(text, hw):
    assert parse_log_text(text).hardware == hw


def test_train_time_units_and_unitless_eval_time():
    s = parse_log_text("step:3/10 train_loss:2 train_time: 0.8m\n")
    assert s.train_time_ms == pytest.approx(48000)
    s2 = parse_log_text("final_x val_loss:2 val_bpb:1 eval_time:95\n")
    assert s2.final.eval_time_ms is None and s2.eval_time_ms is None  # seconds or ms? never guessed
    assert any("without a unit" in w for w in s2.warnings)


def test_train_time_prefers_the_training_phase():
    s = parse_log_text("step:100/100 val_loss:2 val_bpb:1.2 train_time:590000ms\n"
                       "ttt_summary train_time:12000ms\n")
    assert s.train_time_ms == 590000


# ------------------------------------------------------------------ find_logs

def test_find_logs_picks_train_logs_not_readme_or_requirements():
    root = FIX / "sub_a"
    got = [p.relative_to(root).as_posix() for p in find_logs(root)]
    assert got == ["logs/run_a.txt", "train.log", "train_seed2024.txt"]


def test_find_logs_sniffs_txt_content(tmp_path):
    (tmp_path / "train_notes.txt").write_text("hyperparameters I tried\n")  # named like a log, is not
    (tmp_path / "run_seed3.txt").write_text("step:1/2 val_loss:1 val_bpb:2\n")
    (tmp_path / "empty.log").write_text("")  # every *.log is a log, even empty: reported as such
    got = sorted(p.name for p in find_logs(tmp_path))
    assert got == ["empty.log", "run_seed3.txt"]


def test_find_logs_bad_folder(tmp_path):
    with pytest.raises(BadInput, match="folder not found"):
        find_logs(tmp_path / "missing")
    f = tmp_path / "file.log"
    f.write_text("x")
    with pytest.raises(BadInput, match="not a folder"):
        find_logs(f)


# ------------------------------------------------------------------ train logs and separate evaluation logs

_TRAIN42 = """seed:42
step:0/20000 val_loss:8.4325 val_bpb:3.5856 train_time:0ms step_avg:0.01ms
step:6388/20000 val_loss:2.6014 val_bpb:1.1062 train_time:600099ms step_avg:93.94ms
stopping_early: wallclock_cap train_time:600099ms step:6388/20000
Code size: 135695 bytes
Serialized model int6+brotli: 15654427 bytes
Total submission size int6+brotli: 15790122 bytes
final_int6_sliding_window val_loss:2.58581 val_bpb:1.09951891 eval_time:91000ms
"""
_EVAL42 = """sp4608 v2 (N_INT6=66, QK_GAIN=5.0) - 8-GPU n-gram eval
val_bpb = 1.09700744
Tilted: 25.6% | Hits: 53.5%
Loop: 50.1s | Wall: 87.6s
"""


def test_log_kind_tells_training_logs_from_evaluation_only_logs():
    assert parse_log_text(_TRAIN42, path="train_seed42.log").kind == "train"
    ev = parse_log_text(_EVAL42, path="ngram_eval_seed42.log")
    assert ev.kind == "eval" and ev.seed == 42 and ev.final.val_bpb == pytest.approx(1.09700744)
    assert parse_log_text("hello\n", path="notes.log").kind == "other"
    # a TTT log with only 'N/M val_loss:' step lines is a training log too
    assert parse_log_text("0/20000 val_loss: 9.0 val_bpb: 3.4\nttt:done val_loss=2.7 val_bpb=1.07\n").kind == "train"


def test_evaluation_log_joins_its_seed_and_reports_the_later_score():
    runs = logs.seed_runs([parse_log_text(_TRAIN42, path="train_seed42.log"),
                           parse_log_text(_EVAL42, path="ngram_eval_seed42.log"),
                           parse_log_text(_TRAIN42.replace("seed:42", "seed:7"), path="train_seed7.log")])
    assert [(r.seed, Path(r.final_log).name) for r in runs] == [(42, "ngram_eval_seed42.log"),
                                                                 (7, "train_seed7.log")]
    r42 = runs[0]
    assert r42.final.val_bpb == pytest.approx(1.09700744)
    # sizes and training time come from the training log; the eval log states no time: unknown, not 0
    assert r42.model_bytes == 15654427 and r42.total_bytes == 15790122 and r42.train_time_ms == 600099
    assert r42.eval_time_ms is None
    assert "ngram_eval_seed42.log" in r42.warnings[0]
    assert runs[1].eval_time_ms == 91000 and runs[1].warnings == []


def test_duplicate_training_seeds_stay_separate_runs_with_a_warning():
    a = parse_log_text(_TRAIN42, path="old_train_seed42.log")
    b = parse_log_text(_TRAIN42, path="train_seed42.log")
    ev = parse_log_text(_EVAL42, path="ngram_eval_seed42.log")
    runs = logs.seed_runs([a, b, ev, parse_log_text("no score here\n", path="x.log")])
    assert len(runs) == 3  # two training runs, the eval log alone (ambiguous seed), the scoreless log dropped
    assert all("2 training logs state seed 42" in r.warnings[0] for r in runs[:2])
    assert runs[2].final_log == "ngram_eval_seed42.log" and "share seed 42" in runs[2].warnings[0]
    assert runs[0].eval_time_ms == 91000
