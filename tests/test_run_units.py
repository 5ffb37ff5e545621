"""harness.run and the io hooks, piece by piece, in this process (fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import load_config
from harness.errors import BadInput
from harness.results import RuleResult, Status
from harness.run.ending import classify, exception_line, script_frame
from harness.merge import merge_rows
from harness.run.judge import failed_run_rules
from harness.run.monitor import BudgetClock, BudgetLimits, LedgerTail, PhaseTracker
from harness.run.result import Reported, RunResult
from harness.run.sandbox import OutputPump, scrubbed_env
from harness.run.scale import env_overrides, parse_env_pairs
from harness.check.score_lines import choose_reported, parse_line, script_times
from harness.run.serve import cut_whole_documents, load_override, serve_data
from harness.run.workdir import prepare_workdir
from harness.runtime.bootstrap import is_torchrun_launcher
from harness.runtime.context import RuntimeSettings
from harness.runtime.io_hooks.net import local_host
from harness.runtime.io_hooks.paths import Classifier
from harness.runtime.io_hooks.procs import _program
from harness.data.shards import read_shard, write_shard

SITE = Path(__file__).resolve().parent.parent / "harness" / "runtime" / "site"

# -- score lines -----------------------------------------------------------------------------------


def test_parse_score_lines() -> None:
    s = parse_line("[rank0]: final_int6_sliding_window_exact val_loss:1.9 val_bpb:1.12 eval_time:812ms\n", 3.5)
    assert (s.tag, s.val_loss, s.val_bpb, s.eval_time_ms, s.t) == ("final_int6_sliding_window_exact", 1.9, 1.12, 812.0, 3.5)
    s = parse_line("ttt:done val_loss=1.768268 val_bpb=1.047270 elapsed=336.0s")
    assert (s.tag, s.val_bpb) == ("ttt:done", 1.04727)
    s = parse_line("4902/20000 val_loss: 2.3544 val_bpb: 1.0758")
    assert (s.tag, s.val_loss) == ("4902/20000", 2.3544)
    assert parse_line("step:1/4 train_loss:6.9 train_time:3ms") is None
    assert parse_line("val_bpb:enabled tokenizer_kind=sentencepiece") is None


def test_choose_reported_and_script_times() -> None:
    lines = [parse_line(x) for x in (
        "step:4/4 val_loss:2.0 val_bpb:1.2 train_time:900ms",
        "final_int8_zlib_roundtrip val_loss:2.1 val_bpb:1.3 eval_time:50ms",
        "final_int8_zlib_roundtrip_exact val_loss:2.10000001 val_bpb:1.30000001",
        "step:5/4 val_loss:9.0 val_bpb:9.0",
    )]
    assert choose_reported(lines).tag == "final_int8_zlib_roundtrip_exact"  # progress lines never win
    assert choose_reported(lines, "final_int8_zlib_roundtrip").val_bpb == 1.3
    assert choose_reported(lines, "absent") is None
    assert choose_reported(lines[:1]).tag == "step:4/4"
    text = "\n".join(x.line for x in lines)
    assert script_times(text, lines[2]) == {"train_time_ms": 900.0, "eval_time_ms": 50.0}
    assert script_times(text, lines[1]) == {"train_time_ms": 900.0, "eval_time_ms": 50.0}


def test_pick_reported_follows_the_log_parser_and_keeps_times() -> None:
    from harness.check.logs import pick_reported

    lines = [("step:4/4 val_loss:2.0 val_bpb:1.2 train_time:900ms", 1.0),
             ("\x1b[32mfinal_int8_zlib_roundtrip val_loss:2.1 val_bpb:1.3 eval_time:50ms\x1b[0m", 2.0),
             ("val_bpb:enabled tokenizer_kind=sentencepiece", 2.2)]
    rep = pick_reported(lines)
    assert (rep.val_loss, rep.val_bpb, rep.eval_time_ms, rep.t) == (2.1, 1.3, 50.0, 2.0)
    assert pick_reported(lines, "step").t == 1.0  # a named tag picks that line, progress or not
    bpb_only = pick_reported([("ttt:done val_bpb=1.047270 elapsed=336.0s", 4.0)])
    assert (bpb_only.val_loss, bpb_only.val_bpb, bpb_only.t) == (None, 1.04727, 4.0)
    assert pick_reported([("val_bpb:enabled", 1.0)]) is None and pick_reported([]) is None


# -- serving data ----------------------------------------------------------------------------------


def _stream(lengths: list[int]) -> np.ndarray:
    return np.concatenate([np.concatenate([[1], np.full(n, 7)]) for n in lengths]).astype(np.uint16)


@given(st.lists(st.integers(0, 60), min_size=1, max_size=30), st.integers(1, 400))
@settings(max_examples=150, deadline=None)
def test_cut_whole_documents(lengths: list[int], cap: int) -> None:
    s = _stream(lengths)
    out = cut_whole_documents(s, cap)
    assert out.size <= cap and (out == s[: out.size]).all()
    if s.size <= cap:
        assert out.size == s.size
        return
    # the stream stops where the last document starting within cap+1 tokens starts, if that is in
    # the second half of the cap; otherwise exactly at the cap
    starts = np.flatnonzero(s[1 : cap + 1] == 1) + 1
    late = starts[starts >= cap // 2]
    assert out.size == (int(late[-1]) if late.size else cap)


def _data(tmp: Path) -> Path:
    d = tmp / "src"
    d.mkdir()
    write_shard(d / "fineweb_train_000000.bin", _stream([30] * 20))
    write_shard(d / "fineweb_val_000000.bin", _stream([10, 20, 30]))
    write_shard(d / "fineweb_val_000001.bin", _stream([40, 50]))
    (d / "fineweb_val_bytes_000000.bin").write_bytes(b"sidecar, not tokens")
    return d


def test_serve_truncated_stream_spans_shards(tmp_path: Path) -> None:
    src = _data(tmp_path)
    (tmp_path / "t.model").write_bytes(b"sp")
    sv = serve_data(src, tmp_path / "served", tmp_path / "out", tokenizer=str(tmp_path / "t.model"), vocab_size=1024,
                    val_tokens=100)
    # the challenge repo's layout: DATA_DIR/datasets/fineweb10B_sp1024, DATA_DIR/tokenizers/fineweb_1024_bpe.model
    assert sv.data_dir == str(tmp_path / "served" / "datasets" / "fineweb10B_sp1024")
    assert Path(sv.tokenizer_link).read_bytes() == b"sp" and sv.tokenizer_link.endswith("tokenizers/fineweb_1024_bpe.model")
    full = np.concatenate([read_shard(src / "fineweb_val_000000.bin"), read_shard(src / "fineweb_val_000001.bin")])
    got = read_shard(Path(sv.data_dir) / "fineweb_val_000000.bin")
    # documents start at 0, 11, 32, 63 (second shard), 104: the cap of 100 stops at the one ending at 63
    assert got.size == sv.val_tokens == 63 and (got[:-9] == full[:54]).all() and full[63] == 1
    # the last 9 tokens repeat an earlier stretch of one document (the probes' C2 site has a seen context),
    # so the main run's stream is exactly the probes' base stream and the main run serves as their base run
    from harness.probes.streams import base_stream

    tail = got[-9:]
    assert 1 not in tail.tolist() and any((got[s:s + 9] == tail).all() for s in range(1, 63 - 18))
    assert (got == base_stream(full, 63)).all()
    assert (np.load(sv.val_tokens_path) == got).all() and sv.truncated
    assert sorted(p.name for p in Path(sv.data_dir).iterdir()) == ["fineweb_train_000000.bin", "fineweb_val_000000.bin"]
    assert os.path.islink(Path(sv.data_dir) / "fineweb_train_000000.bin")
    raw = (Path(sv.data_dir) / "fineweb_val_000000.bin").read_bytes()
    assert np.frombuffer(raw[:12], "<i4").tolist() == [20240520, 1, 63] and len(raw) == 1024 + 126


def test_serve_full_stream_links_shards(tmp_path: Path) -> None:
    sv = serve_data(_data(tmp_path), tmp_path / "served", tmp_path / "out", tokenizer=None, vocab_size=None,
                    val_tokens=None)
    assert [Path(f).name for f in sv.val_files] == ["fineweb_val_000000.bin", "fineweb_val_000001.bin"]
    assert sv.val_tokens == 63 + 92 and np.load(sv.val_tokens_path).size == sv.val_tokens and not sv.truncated


def test_serve_override(tmp_path: Path) -> None:
    src = _data(tmp_path)
    arr = np.arange(2, 50, dtype=np.int64)
    sv = serve_data(src, tmp_path / "s1", tmp_path / "o1", tokenizer=None, vocab_size=None, val_tokens=10,
                    val_override=arr)
    assert np.load(sv.val_tokens_path).tolist() == list(range(2, 12)) and sv.source == "override"
    np.save(tmp_path / "v.npy", arr.astype(np.uint16))
    assert load_override(tmp_path / "v.npy").tolist() == arr.tolist()
    assert load_override(src / "fineweb_val_000001.bin").size == 92
    for bad in (np.array([[1, 2]]), np.array([1.5, 2.5]), np.array([1, 70000]), tmp_path / "missing.npy"):
        with pytest.raises(BadInput):
            load_override(bad)


# -- environment, workdir --------------------------------------------------------------------------


def test_env_overrides_order_and_scale() -> None:
    run = {"tiny_env": {"ITERATIONS": 4, "SEED": "1"}, "seed": 7}
    tiny = env_overrides(run, "tiny", data_dir="/d", tokenizer="/t.model", vocab_size=1024, run_id="r",
                         device="cpu", nproc=2, user_env={"ITERATIONS": "9"})
    assert tiny["ITERATIONS"] == "9" and tiny["SEED"] == "7" and tiny["OMP_NUM_THREADS"] == "1"
    assert tiny["GLOO_SOCKET_IFNAME"] == "lo" and tiny["DATA_PATH"] == "/d" and tiny["VOCAB_SIZE"] == "1024"
    full = env_overrides(run, "full", data_dir="/d", tokenizer=None, vocab_size=None, run_id="r", device="cuda",
                         nproc=8)
    assert full == {"DATA_PATH": "/d", "RUN_ID": "r"}
    assert env_overrides(run, "full", data_dir="/d/datasets/x", data_root="/d", tokenizer=None, vocab_size=None,
                         run_id="r", device="cpu", nproc=1)["DATA_DIR"] == "/d"
    with pytest.raises(BadInput):
        env_overrides(run, "huge", data_dir="/d", tokenizer=None, vocab_size=None, run_id="r", device="cpu", nproc=1)
    assert parse_env_pairs(["A=1", "B_2=x=y", "C="]) == {"A": "1", "B_2": "x=y", "C": ""}
    for bad in ("A", "=1", "1A=2", "A-B=1"):
        with pytest.raises(BadInput):
            parse_env_pairs([bad])


def test_scrubbed_env_drops_secrets(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x", "HOME": "/root", "CUDA_VISIBLE_DEVICES": "0", "LANG": "C"}
    env = scrubbed_env(tmp_path, tmp_path / "tmp", device="cpu", pythonpath=["/a", "/b"], base=base)
    assert "AWS_SECRET_ACCESS_KEY" not in env and "CUDA_VISIBLE_DEVICES" not in env
    assert env["HOME"] == str(tmp_path) and env["TMPDIR"] == str(tmp_path / "tmp")
    assert env["PYTHONPATH"] == f"/a{os.pathsep}/b" and env["PYTHONUNBUFFERED"] == "1"
    gpu = scrubbed_env(tmp_path, tmp_path, device="cuda", pythonpath=[], base=base)
    assert gpu["CUDA_VISIBLE_DEVICES"] == "0"


def test_workdir_copy_and_path_rules(tmp_path: Path) -> None:
    sub = tmp_path / "records" / "my_sub"
    (sub / "logs").mkdir(parents=True)
    (sub / "train_gpt.py").write_text("print(1)\n")
    (sub / "helper.py").write_text("X = 1\n")
    (sub / "logs" / "a.txt").write_text("log")
    wd = prepare_workdir(sub, str(tmp_path / "runs"))
    try:
        assert wd.script == wd.work / "train_gpt.py" and (wd.work / "helper.py").is_file()
        assert "train_gpt.py" not in str(wd.root) and (wd.pylib / "harness" / "runtime" / "context.py").is_file()
        assert wd.tmp.is_dir() and wd.data.is_dir()
    finally:
        wd.remove()
    assert not wd.root.exists()
    lone = prepare_workdir(sub / "helper.py", str(tmp_path / "runs"))
    assert sorted(p.name for p in lone.work.iterdir()) == ["helper.py", "tmp"]
    lone.remove()
    with pytest.raises(BadInput):
        prepare_workdir(tmp_path / "records", str(tmp_path / "runs"))  # no train_gpt.py
    with pytest.raises(BadInput):
        prepare_workdir(sub, str(tmp_path / "train_gpt.py_runs"))
    with pytest.raises(BadInput):
        prepare_workdir(tmp_path / "missing", None)


# -- classification of files -----------------------------------------------------------------------


def test_classifier_kinds(tmp_path: Path) -> None:
    work, data = tmp_path / "work", tmp_path / "data"
    c = Classifier("fineweb_train_*.bin", "fineweb_val_*.bin", str(work), str(data))
    assert c.kind(str(data / "fineweb_val_000000.bin")) == "val"
    assert c.kind("/elsewhere/fineweb_train_000003.bin") == "train"
    assert c.kind(str(work / "final_model.int8.ptz")) == "artifact"
    assert c.kind(str(work / "out" / "model.bin")) == "artifact"
    # a model saved straight into TMPDIR (tempfile.gettempdir()) is the script's; a compiler's cache under it is not
    assert c.kind(str(work / "tmp" / "artifact_int4_zlib.bin")) == "artifact"
    for other in ("train_gpt.py", "logs/run.bin", "tmp/torchinductor_root/ab/x.so", ".cache/y.pt", "train.log",
                  "tok.model"):
        assert c.kind(str(work / other)) is None, other
    assert c.kind(str(data / "other.bin")) is None and c.kind("/etc/hosts") is None and c.kind(None) is None


@given(st.lists(st.integers(1, 50), min_size=1, max_size=4), st.data())
@settings(max_examples=60, deadline=None)
def test_val_span_positions(sizes: list[int], draw: st.DataObject) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for i, n in enumerate(sizes):
            write_shard(Path(d) / f"fineweb_val_{i:06d}.bin", np.arange(n) % 60000)
        c = Classifier("fineweb_train_*.bin", "fineweb_val_*.bin")
        k = draw.draw(st.integers(0, len(sizes) - 1))
        path = str(Path(d) / f"fineweb_val_{k:06d}.bin")
        size = 1024 + 2 * sizes[k]
        lo = draw.draw(st.integers(0, size - 1))
        hi = draw.draw(st.integers(lo + 1, size))
        offset = sum(sizes[:k])
        span = c.val_span(path, lo, hi)
        if hi <= 1024:
            assert span is None
        else:
            t_lo, t_hi = max(0, (lo - 1024) // 2), min(sizes[k], (hi - 1024 + 1) // 2)
            assert span == (offset + t_lo, offset + t_hi)
        first = c.val_first_position(path, lo, 2)
        assert first == (None if (lo - 1024) % 2 else offset + (lo - 1024) // 2)
        assert c.val_first_position(path, 1024, 4) is None


def test_unrecognised_val_file_is_widest(tmp_path: Path) -> None:
    p = tmp_path / "fineweb_val_bytes_000000.bin"
    p.write_bytes(b"\0" * 100)
    assert Classifier("a", "fineweb_val_*.bin").val_span(str(p), 0, 10) == (0, 2**31 - 1)
    assert Classifier("a", "fineweb_val_*.bin", stream_tokens=4097).val_span(str(p), 0, 10) == (0, 4097)


def test_local_host_and_program_names() -> None:
    own = {"myhost"}
    for h in ("localhost", "127.0.0.1", "127.5.5.5", "::1", "0.0.0.0", "myhost", "LOCALHOST.", b"localhost", None):
        assert local_host(h, own), h
    for h in ("example.com", "93.184.216.34", "10.0.0.1", "2001:db8::1"):
        assert not local_host(h, own), h
    assert _program(["/usr/bin/nvidia-smi", "-L"], False) == (["/usr/bin/nvidia-smi", "-L"], "nvidia-smi")
    assert _program("nvidia-smi --query-gpu=name", True)[1] == "nvidia-smi"
    assert _program("nvidia-smi; curl evil", True)[1] is None  # a pipeline is never allow-listed
    assert _program(["sh", "-c", "x"], True)[1] == "sh"


# -- watching and ending ---------------------------------------------------------------------------


def test_ledger_tail_reads_only_complete_lines(tmp_path: Path) -> None:
    f = tmp_path / "ledger.rank0.jsonl"
    (tmp_path / "ledger.parent.jsonl").write_text('{"kind":"stdout"}\n')
    f.write_text('{"kind":"run_start","t":0.1}\n{"seq":1,"kind":"score","pos":[3]}\n{"kind":"train_re')
    tail = LedgerTail(tmp_path)
    assert [e["kind"] for e in tail.poll()] == ["run_start"]
    with open(f, "a") as fh:
        fh.write('ad","t":0.5,"file":"a"}\nnot json\n')
    assert [e["kind"] for e in tail.poll()] == ["train_read"]
    assert tail.poll() == []


def _tracker(events: list[tuple[str, float]]) -> PhaseTracker:
    ph = PhaseTracker()
    ph.feed([{"kind": k, "t": t} for k, t in events])
    return ph


def test_budget_clock() -> None:
    clock = BudgetClock(BudgetLimits(train_s=10.0, eval_s=5.0))
    ph = _tracker([("run_start", 0.1), ("train_read", 2.0)])
    assert clock.exceeded(ph, 11.9) is None
    reason, msg = clock.exceeded(ph, 12.5)
    assert reason == "train_budget" and "first training read" in msg
    assert clock.exceeded(_tracker([]), 10.5)[0] == "train_budget"  # no training read: from the start
    ph.feed([{"kind": "artifact_write", "t": 11.0, "path": "m.ptz"}])
    assert clock.exceeded(ph, 15.9) is None
    assert clock.exceeded(ph, 16.5)[0] == "eval_budget"
    assert clock.spans(ph, 16.5) == (9.0, 5.5)
    cfg = load_config()
    lim = BudgetLimits.from_config(cfg)
    assert lim.train_s == 600.0 + cfg.rule_params("B2")["grace_seconds"] + cfg.rule_params("B2")[
        "compile_allowance_seconds"]


def test_phase_tracker_ignores_lazy_maps() -> None:
    ph = PhaseTracker()
    ph.feed([{"kind": "read", "t": 1.0, "lazy": True}, {"kind": "read", "t": 3.0},
             {"kind": "phase", "name": "runtime_ready", "rank": 1, "parts": {"tracer": "ok"}}])
    assert ph.first_val_read == 3.0 and ph.runtime == {"1": {"tracer": "ok"}}


TRACE = """Traceback (most recent call last):
  File "/tmp/pgh-run-x/work/train_gpt.py", line 120, in <module>
    main()
  File "/usr/lib/python3.11/site-packages/torch/nn/modules/module.py", line 9, in f
[rank0]: RuntimeError: CUDA is required
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
"""


def test_classify_endings() -> None:
    ph = PhaseTracker()
    assert exception_line(TRACE) == "RuntimeError: CUDA is required"
    assert script_frame(TRACE, {"train_gpt.py"}) == "train_gpt.py:120"
    assert classify(1, None, ph, TRACE, {"train_gpt.py"}, False) == (
        "crash", "RuntimeError: CUDA is required (at train_gpt.py:120)")
    assert classify(0, None, ph, "", set(), False)[0] == "no_score"
    assert classify(0, None, ph, "", set(), True)[0] == "ok"
    assert classify(-9, ("timeout", "m"), ph, "", set(), False) == ("timeout", "m")
    assert classify(1, None, ph, "MemoryError\n", set(), False)[0] == "memory"
    assert classify(-25, None, ph, "", set(), False)[0] == "file_size"
    ph.feed([{"kind": "needs_gpu", "t": 1.0, "what": "triton kernel", "where": "train_gpt.py:50"}])
    assert classify(86, None, ph, TRACE, {"train_gpt.py"}, False) == (
        "needs_gpu", "needs GPU: triton kernel, train_gpt.py:50")


def test_output_pump_caps_and_lines(tmp_path: Path) -> None:
    r, w = os.pipe()
    seen: list[str] = []
    pump = OutputPump(os.fdopen(r, "rb"), tmp_path / "out.txt", 100, 1000, lambda line, t: seen.append(line))
    pump.start()
    os.write(w, b"a" * 60 + b"\nval_loss:1 val_bpb:2\n")
    os.write(w, b"b" * 500 + b"\nlast")
    os.close(w)
    pump.join(5)
    assert seen == ["a" * 60, "val_loss:1 val_bpb:2", "b" * 500, "last"]
    assert pump.stats.seen == 82 + 505 and pump.stats.kept == 100 and pump.stats.truncated
    assert not pump.flooded.is_set() and pump.tail().endswith("last")
    assert (tmp_path / "out.txt").read_bytes().startswith(b"a" * 60) and b"output cut" in (tmp_path / "out.txt").read_bytes()


# -- results and rule folding ----------------------------------------------------------------------


def _result(**kw: object) -> RunResult:
    base = dict(
        out_dir="/o", ledger_dir="/o/ledger", rc=0, reason="ok", message="m", wall_s=1.0, stdout_path="s",
        stderr_path="e", stdout_tail="", reported=Reported("t", 1.0, 0.5, "line", 0.2), phases={"exit": 1.0},
        script_times={}, env_overrides={"A": "1"}, command=["python", "train_gpt.py"],
    )
    base.update(kw)
    return RunResult(**base)  # type: ignore[arg-type]


def test_run_result_round_trip() -> None:
    r = _result(budgets={"enforced": True, "train_s": 1.0})
    d = json.loads(r.to_json())
    assert d["env"] == {"A": "1"} and r.env == {"A": "1"}
    back = RunResult.from_dict(d)
    assert back == r and isinstance(back.reported, Reported)
    assert not r.failed and _result(reason="crash").failed and not _result(reason="train_budget").failed


def test_rules_from_a_run() -> None:
    cfg = load_config()
    failed = failed_run_rules(_result(reason="needs_gpu", message="needs GPU: x"), cfg)
    assert failed and {r.status for r in failed} == {Status.INCONCLUSIVE}
    assert {r.rule_id for r in failed} >= {"C1", "C3", "D1", "B2"}
    merged, notes = merge_rows(
        [RuleResult("B2", "t", Status.PASS, "logs ok"), RuleResult("S1", "s", Status.PASS, "ok"),
         RuleResult("C1", "c", Status.NOT_RUN, "needs a run")],
        [RuleResult("B2", "t", Status.FAIL, "run over"), RuleResult("C1", "c", Status.PASS, "traced")],
        label="run",
    )
    assert [(r.rule_id, r.status) for r in merged] == [("B2", Status.FAIL), ("S1", Status.PASS), ("C1", Status.PASS)]
    assert merged[0].summary == "logs ok | run: run over"


# -- the child bootstrap ---------------------------------------------------------------------------


def test_launcher_detection() -> None:
    s = RuntimeSettings(ledger_dir="/x", t0=0.0, extra={"nproc": 2})
    assert is_torchrun_launcher(s, {})
    assert not is_torchrun_launcher(s, {"LOCAL_RANK": "0", "TORCHELASTIC_RUN_ID": "x"})
    assert not is_torchrun_launcher(RuntimeSettings(ledger_dir="/x", t0=0.0), {})


def test_sitecustomize_is_inert_without_settings_and_reports_bad_settings(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{SITE}{os.pathsep}{SITE.parent.parent.parent}"}
    r = subprocess.run([sys.executable, "-c", "import builtins, io; print(builtins.open is io.open)"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "True" and r.stderr == ""
    r = subprocess.run([sys.executable, "-c", "print('still runs')"], env=dict(env, HARNESS_RUNTIME="{not json"),
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "still runs"
    assert r.stderr.strip().startswith("harness runtime: bootstrap failed: JSONDecodeError")


def test_hooks_leave_other_files_alone(tmp_path: Path) -> None:
    """In a child: open() of ordinary files returns the real classes; artifact writes are seen."""
    code = (
        "import atexit; from harness.runtime import context;"  # a part's exit handler (the tracer's stats)
        "atexit.register(lambda: context.get().emit('stats', escapes=0));"
        "import io, json; f = open('notes.txt', 'w'); f.write('x'); f.close();"
        "g = open('model.pt', 'wb'); g.write(b'PK\\x03\\x04raw'); g.close();"
        "h = open('model.int8.ptz', 'wb'); h.write(b'1234'); h.close();"
        "print(type(open('notes.txt')).__name__, type(open('model.int8.ptz', 'rb')).__name__)"
    )
    ledger = tmp_path / "ledger"
    settings = RuntimeSettings(ledger_dir=str(ledger), t0=0.0, device="cuda", submission_dir=str(tmp_path))
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{SITE}{os.pathsep}{SITE.parent.parent.parent}",
           "HARNESS_RUNTIME": settings.to_env()}
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["TextIOWrapper", "BufferedReader"], r.stderr
    events = [json.loads(x) for x in (ledger / "ledger.rank0.jsonl").read_text().splitlines()]
    kinds = [(e["kind"], e.get("name"), e.get("path")) for e in events if "path" in e]
    assert kinds == [("phase", "checkpoint_write", "model.pt"), ("artifact_write", None, "model.int8.ptz"),
                     ("artifact_read", None, "model.int8.ptz")]
    assert next(e for e in events if e["kind"] == "artifact_write")["bytes"] == 4
    assert [e.get("name", e["kind"]) for e in events[-2:]] == ["stats", "child_exit"]


def test_checkpoint_or_artifact() -> None:
    from harness.runtime.io_hooks.paths import is_checkpoint

    for name, head in (("final_model.pt", None), ("model.bin", b"PK\x03\x04"), ("m.pth", b"x"), ("w.ckpt", None)):
        assert is_checkpoint(name, head), name
    for name, head in (("final_model.int8.ptz", b"x\x9c"), ("final_model.int6.pt", b"PK\x03\x04"),
                       ("model.bin", b"\x01\x02"), ("m.pt.xz", None), ("w.npz", b"PK\x03\x04")):
        assert not is_checkpoint(name, head), name


def test_a_difference_line_is_not_the_reported_score() -> None:
    from harness.check.score_lines import choose_reported, names_a_comparison

    from harness.check.score_lines import parse_score_line

    lines = [parse_score_line(i, x)[0] for i, x in enumerate((
        "[no-TTT] val_loss: 6.928338  val_bpb: 3.822828  eval: 6401ms",
        "[TTT]     val_loss: 6.928205  val_bpb: 3.822755  eval: 115355ms",
        "delta(no-TTT - TTT) val_bpb: +0.000073"))]
    assert all(lines) and lines[2].tag == "delta(no-TTT - TTT)"
    assert choose_reported(lines).val_bpb == 3.822755
    assert names_a_comparison("mean over 3 seeds") and not names_a_comparison("final_int8_zlib_roundtrip_exact")


def test_served_data_also_under_the_names_the_script_writes_out(tmp_path: Path) -> None:
    from harness.check.configuration import _DATA_NAME

    src = _data(tmp_path)
    (tmp_path / "t.model").write_bytes(b"sp")
    script = ("ds = os.path.join(d, 'datasets', 'fineweb10B_sp10240_casefold')\n"
              "tp = os.path.join(td, \"fineweb_10240_casefold_bpe.model\")\n"
              "other = 'fineweb10B_sp1024'; fmt = f'fineweb10B_sp{V}'\n")
    names = sorted(set(_DATA_NAME.findall(script)))
    assert names == ["fineweb10B_sp1024", "fineweb10B_sp10240_casefold", "fineweb_10240_casefold_bpe.model"]
    sv = serve_data(src, tmp_path / "served", tmp_path / "out", tokenizer=str(tmp_path / "t.model"), vocab_size=10240,
                    val_tokens=100, names=names)
    root = tmp_path / "served"
    alias = root / "datasets" / "fineweb10B_sp10240_casefold"
    assert alias.is_symlink() and (alias / "fineweb_val_000000.bin").read_bytes() == \
        (Path(sv.data_dir) / "fineweb_val_000000.bin").read_bytes()
    assert (root / "tokenizers" / "fineweb_10240_casefold_bpe.model").read_bytes() == b"sp"
    # a name for another vocabulary is not this data: not served under it
    assert not (root / "datasets" / "fineweb10B_sp1024").exists()


def test_a_shard_whose_header_is_known_is_not_opened_again(tmp_path: Path) -> None:
    # the OS witness sees every open of the served validation file: the hook placing a later file of the
    # folder (a byte sidecar) must not open an earlier shard it already read, beside no recorded read
    write_shard(tmp_path / "fineweb_val_000000.bin", np.arange(30) % 60000)
    write_shard(tmp_path / "fineweb_val_bytes_000000.bin", np.arange(30) % 7)
    opened: list[str] = []

    def spy(path, *a, **k):
        opened.append(os.path.basename(path))
        return open(path, *a, **k)

    c = Classifier("fineweb_train_*.bin", "fineweb_val_*.bin", real_open=spy)
    assert c.val_span(str(tmp_path / "fineweb_val_000000.bin"), 1024, 1084) == (0, 30)
    assert c.val_span(str(tmp_path / "fineweb_val_bytes_000000.bin"), 1024, 1084) == (30, 60)
    assert opened == ["fineweb_val_000000.bin", "fineweb_val_bytes_000000.bin"], opened


def test_reap_returns_the_childs_cpu_time_as_the_kernel_counted_it():
    """sandbox.reap: the usage of the reaped child (with what it waited for), not its wall time; None while it
    runs; returncode set as Popen.wait sets it."""
    import subprocess
    import sys

    from harness.run.sandbox import reap

    busy = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\nimport sys; sys.exit(3)"
    proc = subprocess.Popen([sys.executable, "-c", busy])
    usage = None
    for _ in range(600):
        usage = reap(proc, 0.05)
        if usage is not None:
            break
    assert usage is not None and proc.returncode == 3
    assert usage.ru_utime + usage.ru_stime >= 0.25
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6)"])
    assert reap(idle, 0.05) is None and idle.returncode is None  # still running
    while (usage := reap(idle, 0.1)) is None:
        pass
    assert idle.returncode == 0 and usage.ru_utime + usage.ru_stime < 0.5  # slept: little CPU for 0.6 s of wall
