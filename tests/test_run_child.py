"""harness run end to end: real child processes running the tiny scripts in tests/scripts/.

Each run takes well under a second (numpy only); budget and timeout tests use tiny limits.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main as cli_main
from harness.config import Config, load_config
from harness.ledger import read_ledger
from harness.run import run_submission
from harness.data.shards import write_shard

SCRIPTS = Path(__file__).parent / "scripts"


def _docs(rng: np.random.Generator, n: int) -> np.ndarray:
    out, have = [], 0
    while have < n:
        d = np.concatenate([[1], rng.integers(3, 1024, int(rng.integers(20, 200)))])
        out.append(d)
        have += d.size
    return np.concatenate(out)[:n].astype(np.uint16)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    write_shard(d / "fineweb_train_000000.bin", _docs(rng, 6000))
    write_shard(d / "fineweb_train_000001.bin", _docs(rng, 6000))
    write_shard(d / "fineweb_val_000000.bin", _docs(rng, 9000))
    (d / "fineweb_1024_bpe.model").write_bytes(b"not read by these scripts")
    return d


def submission(tmp_path: Path, script: str) -> Path:
    """A submission folder: the script as train_gpt.py, plus the shared shard reader."""
    sub = tmp_path / "sub"
    sub.mkdir(exist_ok=True)
    shutil.copy(SCRIPTS / script, sub / "train_gpt.py")
    shutil.copy(SCRIPTS / "_shards.py", sub / "_shards.py")
    return sub


def cfg_with(**run: object) -> Config:
    base = load_config()
    raw = json.loads(json.dumps(base.raw))
    rules = raw.setdefault("rules", {})
    for rid in ("B2", "B3"):
        if f"{rid}_max" in run:
            rules[rid] = {"max_seconds": run.pop(f"{rid}_max"), "grace_seconds": 0.0}
    raw.setdefault("run", {}).update(run)
    return Config(raw, base.path)


def go(path: Path, data: Path, tmp_path: Path, cfg: Config | None = None, **kw: object):
    kw.setdefault("trace", False)
    return run_submission(path, cfg or load_config(), data_path=str(data), out_dir=tmp_path / "out", **kw)


def kinds(ledger_dir: str) -> list[str]:
    return [e["kind"] for e in read_ledger(ledger_dir).events if e.get("rank", 0) >= 0]


# -- the well-behaved run --------------------------------------------------------------------------


def test_normal_run_phases_events_and_served_stream(data: Path, tmp_path: Path) -> None:
    r = go(SCRIPTS / "normal.py", data, tmp_path)
    assert (r.reason, r.rc) == ("ok", 0), r.message
    assert r.reported is not None and r.reported.tag == "final_int8_zlib_roundtrip_exact"
    assert r.script_times == {"train_time_ms": 12.0, "eval_time_ms": 5.0}
    ph = r.phases
    # the order the script did things in, by the harness clock
    order = ["run_start", "first_train_read", "artifact_write", "artifact_read", "first_val_read", "reported", "exit"]
    times = [ph[k] for k in order]
    assert all(t is not None for t in times) and times == sorted(times)
    assert ph["train_start"] == ph["first_train_read"] and ph["eval_end"] == ph["exit"]
    led = read_ledger(r.ledger_dir)
    reads = list(led.of("read"))
    assert [(e["lo"], e["hi"], e["tagged"]) for e in reads] == [(0, r.served["val_tokens"], True)]
    assert reads[0]["site"].startswith("normal.py:")
    # served stream: cut at a document end, then to whole sequences plus one (every probe variant gets that
    # length too), kept by the parent (hash in run.json), in the shard format
    served = np.load(r.served["val_tokens_path"])
    assert served.size == r.served["val_tokens"] <= 4097 and r.served["truncated"]
    assert served[0] == 1 and (served.size - 1) % 64 == 0
    from harness.run.serve import tokens_sha256

    assert tokens_sha256(served) == r.served["val_sha256"]
    full = np.fromfile(data / "fineweb_val_000000.bin", dtype="<u2", offset=1024)
    # the real prefix, its last 9 tokens copied from earlier in it: the probes' base stream (its C2 site's
    # context seen before), so the main run is the probes' base run
    from harness.probes.streams import base_stream

    assert (full[: served.size - 9] == served[:-9]).all() and (served == base_stream(full, served.size)).all()
    # parent ledger: rank -1 with stdout / reported / phase / run_end, on the same clock
    parent = [e for e in led.events if e["rank"] == -1]
    assert {"stdout", "reported", "phase", "run_end"} <= {e["kind"] for e in parent}
    assert next(e for e in parent if e["kind"] == "run_end")["reason"] == "ok"
    # the artifact was copied out before the working copy was removed
    art = r.artifacts[0]
    assert art["path"] == "final_model.int8.ptz" and Path(art["copied_to"]).stat().st_size == art["bytes"]
    assert r.workdir is None and not Path(r.served["data_root"]).parent.exists()  # the run's temp root is gone
    assert json.loads((tmp_path / "out" / "run.json").read_text())["reason"] == "ok"
    assert r.env_overrides["OMP_NUM_THREADS"] == "1" and r.env_overrides["ITERATIONS"] == "4"


def test_keep_workdir(data: Path, tmp_path: Path) -> None:
    r = go(submission(tmp_path, "no_score.py"), data, tmp_path, keep_workdir=True)
    try:
        root = Path(r.workdir)
        assert (root / "work" / "train_gpt.py").is_file() and (root / "work" / "_shards.py").is_file()
        assert "train_gpt.py" not in str(root)
        assert (root / "data" / "datasets" / "fineweb10B_sp1024" / "fineweb_val_000000.bin").is_file()
        assert os.readlink(root / "data" / "tokenizers" / "fineweb_1024_bpe.model") == str(
            data / "fineweb_1024_bpe.model")
    finally:
        shutil.rmtree(r.workdir, ignore_errors=True)


def test_traced_run_keeps_the_tracers_exit_events(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("harness.runtime.tracer")
    r = go(SCRIPTS / "normal.py", data, tmp_path, trace=True, timeout=120)
    assert r.reason == "ok" and r.traced and r.runtime["0"]["tracer"] == "ok", r.message + r.stderr_tail
    tail = [e.get("name", e["kind"]) for e in read_ledger(r.ledger_dir).events if e["rank"] == 0][-2:]
    assert tail == ["stats", "child_exit"]  # the tracer's atexit handler ran before ours, ledger open


def test_full_scale_has_no_tiny_overrides_and_serves_whole_stream(data: Path, tmp_path: Path) -> None:
    r = go(SCRIPTS / "normal.py", data, tmp_path, scale="full", env={"EXTRA": "1"})
    assert r.reason == "ok", r.message
    assert "ITERATIONS" not in r.env_overrides and r.env_overrides["EXTRA"] == "1"
    assert r.served["val_tokens"] == 9000 and not r.served["truncated"]
    assert r.budgets["enforced"] is True


# -- budgets and kills -----------------------------------------------------------------------------


def test_train_budget_kill_at_full_scale(data: Path, tmp_path: Path) -> None:
    cfg = cfg_with(B2_max=1.0)
    t = time.time()
    r = go(submission(tmp_path, "slow_train.py"), data, tmp_path, cfg, scale="full")
    assert r.reason == "train_budget", r.message
    assert time.time() - t < 15
    assert r.phases["first_train_read"] is not None and r.phases["artifact_write"] is None
    assert r.budgets["train_s"] > 1.0 and "B2" in r.message
    assert r.script_times == {"train_time_ms": 5.0}  # what the script said, beside ours
    assert not r.failed  # a budget kill is a verdict, not a failed run


def test_eval_budget_kill_at_full_scale(data: Path, tmp_path: Path) -> None:
    r = go(submission(tmp_path, "slow_eval.py"), data, tmp_path, cfg_with(B3_max=1.0), scale="full")
    assert r.reason == "eval_budget", r.message
    assert r.phases["artifact_write"] is not None and r.budgets["eval_s"] > 1.0


def test_tiny_scale_reports_budgets_but_does_not_kill(data: Path, tmp_path: Path) -> None:
    r = go(submission(tmp_path, "slow_train.py"), data, tmp_path, cfg_with(B2_max=0.1), timeout=1.5)
    assert r.reason == "timeout", r.message  # the wall-clock cap, not the budget
    assert r.budgets["enforced"] is False and r.budgets["train_s"] > 0.1


def test_grandchild_outside_the_group_is_killed(data: Path, tmp_path: Path) -> None:
    cfg = cfg_with(allow_subprocess=["fork"])
    r = go(submission(tmp_path, "forker.py"), data, tmp_path, cfg, timeout=20)
    assert r.reason == "no_score", r.message
    pid = int(r.stdout_tail.split("grandchild:")[1].split()[0])
    assert [s["argv"] for s in r.subprocesses] == [["fork"]] and r.subprocesses[0]["allowed"]
    if "pid_namespace" in r.sandbox["protections"]["on"]:
        return  # the pid printed is the namespace's; tests/test_sandbox.py follows a daemon by its namespace
    deadline = time.time() + 5
    while time.time() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_fork_is_blocked_by_default(data: Path, tmp_path: Path) -> None:
    r = go(submission(tmp_path, "forker.py"), data, tmp_path)
    assert r.reason == "subprocess", r.message
    assert r.subprocesses == [dict(r.subprocesses[0], argv=["fork"], allowed=False, origin="script")]
    assert r.message.endswith("at train_gpt.py:6")  # the os.fork() line


def test_stdout_flood_is_cut_and_killed(data: Path, tmp_path: Path) -> None:
    cfg = cfg_with(stdout_limit_bytes=20_000, stdout_kill_bytes=2_000_000)
    r = go(submission(tmp_path, "flood.py"), data, tmp_path, cfg, timeout=30)
    assert r.reason == "stdout_flood", r.message
    out = r.output["stdout"]
    assert out["truncated"] and out["seen"] > 2_000_000 and out["kept"] == 20_000
    assert Path(r.stdout_path).stat().st_size < 20_200
    assert r.stdout_tail.rstrip().endswith("x" * 100)


def test_timeout_kills_the_run(data: Path, tmp_path: Path) -> None:
    t = time.time()
    r = go(submission(tmp_path, "slow_train.py"), data, tmp_path, timeout=1.0)
    assert r.reason == "timeout" and r.rc is not None and r.rc < 0
    assert time.time() - t < 10


# -- failures --------------------------------------------------------------------------------------


def test_crash_gives_one_line_and_the_site(data: Path, tmp_path: Path) -> None:
    r = go(submission(tmp_path, "crash.py"), data, tmp_path)
    assert r.reason == "crash" and r.rc == 1
    assert r.message == "ValueError: boom at step 3 (at train_gpt.py:7)"
    assert "Traceback" in r.stderr_tail and r.failed


def test_missing_package_names_what_the_folder_asks_for(data: Path, tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "train_gpt.py").write_text("import os\nfrom fla.layers import GatedDeltaNet\n")
    (sub / "requirements.txt").write_text("numpy\n# kernels\nflash-linear-attention==0.4.2  # GDN\n")
    r = go(sub, data, tmp_path)
    assert r.reason == "missing_package" and r.failed
    assert r.message.startswith("needs package 'fla', not installed for the run's interpreter")
    assert "flash-linear-attention==0.4.2 (requirements.txt:3)" in r.message


def test_user_pythonpath_is_seen_inside_the_sandbox(data: Path, tmp_path: Path) -> None:
    """--env PYTHONPATH=DIR (extra packages): DIR is bound back read-only, not hidden by the private /tmp."""
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "extra_pkg_probe.py").write_text("VALUE = 41 + 1\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "train_gpt.py").write_text("import extra_pkg_probe\nprint('extra', extra_pkg_probe.VALUE)\n")
    r = go(sub, data, tmp_path, env={"PYTHONPATH": str(extra)})
    assert "extra 42" in r.stdout_tail, r.message + r.stderr_tail
    assert not (r.reason == "missing_package")


def test_no_score(data: Path, tmp_path: Path) -> None:
    r = go(submission(tmp_path, "no_score.py"), data, tmp_path)
    assert (r.reason, r.rc, r.reported) == ("no_score", 0, None)


def test_memory_limit(data: Path, tmp_path: Path) -> None:
    r = go(submission(tmp_path, "memory_hog.py"), data, tmp_path, cfg_with(memory_limit_mb=700))
    assert r.reason == "memory", r.message
    assert "MemoryError" in r.message


def test_needs_gpu_from_the_shim(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    r = go(SCRIPTS / "needs_gpu.py", data, tmp_path, timeout=120)
    assert r.reason == "needs_gpu", r.message + r.stderr_tail
    assert r.message.startswith("needs GPU: CUDA extension build") and "needs_gpu.py:4" in r.message
    assert r.needs_gpu and r.needs_gpu[0]["site"] == "needs_gpu.py:4"


def test_network_blocked_and_recorded(data: Path, tmp_path: Path) -> None:
    r = go(submission(tmp_path, "net.py"), data, tmp_path)
    assert r.reason == "network", r.message
    assert r.net_attempts[0]["host"] == "93.184.216.34" and r.net_attempts[0]["port"] == 80
    assert r.net_attempts[0]["site"] == "train_gpt.py:9"


def test_network_failure_tolerated_still_recorded(data: Path, tmp_path: Path) -> None:
    r = go(submission(tmp_path, "net.py"), data, tmp_path, env={"NET_CATCH": "1"})
    assert r.reason == "ok", r.message
    assert [(n["host"], n["how"]) for n in r.net_attempts] == [
        ("93.184.216.34", "create_connection"), ("example.com", "getaddrinfo"),
    ]
    assert "blocked by the harness sandbox" in r.stdout_tail


def test_subprocess_allow_list(data: Path, tmp_path: Path) -> None:
    r = go(submission(tmp_path, "subproc.py"), data, tmp_path, device="cuda")  # no shim: the real nvidia-smi path
    assert r.reason == "subprocess", r.message
    progs = [(s["argv"][0], s["allowed"]) for s in r.subprocesses]
    assert progs == [("nvidia-smi", True), ("echo", False)]
    r2 = go(submission(tmp_path, "subproc.py"), data, tmp_path / "b", cfg_with(allow_subprocess=["echo"]),
            device="cuda")
    assert r2.reason == "ok" and "hello" in r2.stdout_tail


def test_training_read_after_artifact_is_visible(data: Path, tmp_path: Path) -> None:
    r = go(submission(tmp_path, "late_train.py"), data, tmp_path)
    assert r.reason == "ok", r.message
    assert r.phases["last_train_read"] > r.phases["artifact_write"]
    assert r.budgets["train_reads_after_artifact"] is True
    led = read_ledger(r.ledger_dir)
    late = [e for e in led.of("train_read") if e["t"] > r.phases["artifact_write"]]
    assert late and late[0]["site"] == "_shards.py:13"  # innermost submission frame: the np.fromfile


def test_raw_checkpoint_is_not_the_artifact(data: Path, tmp_path: Path) -> None:
    r = go(submission(tmp_path, "gptq_like.py"), data, tmp_path)
    assert r.reason == "ok", r.message
    ph = r.phases
    assert ph["checkpoint_write"] < ph["last_train_read"] < ph["artifact_write"] < ph["first_val_read"]
    assert ph["train_end"] == ph["artifact_write"] and not r.budgets["train_reads_after_artifact"]
    led = read_ledger(r.ledger_dir)
    assert [e["path"] for e in led.of("artifact_write")] == ["final_model.int8.ptz"]
    assert {a["path"]: a["role"] for a in r.artifacts} == {"final_model.pt": "checkpoint",
                                                          "final_model.int8.ptz": "artifact"}


# -- how validation tokens enter the process -------------------------------------------------------


def test_every_reader_reports_exact_positions(data: Path, tmp_path: Path) -> None:
    r = go(SCRIPTS / "readers.py", data, tmp_path)
    assert r.reason == "ok", r.message
    seen = json.loads(r.stdout_tail.split("READS ", 1)[1].splitlines()[0])
    assert all(v[-1] is True for k, v in seen.items() if len(v) == 3)  # the hooks changed no data
    reads = [e for e in read_ledger(r.ledger_dir).of("read")]
    by = {}
    for e in reads:
        by.setdefault(e["how"], []).append((e["lo"], e["hi"], e["tagged"]))
    n = r.served["val_tokens"]
    assert by["fromfile"] == [(0, n, True)]
    assert by["read"] == [(20, 60, False), (0, n, False)]  # raw bytes: positions, not yet an array
    assert by["frombuffer"] == [(20, 60, True), (0, n, True)]
    assert by["memmap"] == [(0, n, True)]
    assert by["memmap_slice"] == [(100, 164, True)]
    assert by["readinto"] == [(200, 210, True)]
    assert all(e["t"] > r.phases["artifact_write"] for e in reads)


@pytest.mark.parametrize("py", ["python3.12", "python3.13"])
def test_runtime_imports_under_newer_python(data: Path, tmp_path: Path, py: str) -> None:
    from harness.run.interpreter import resolve_python

    try:
        resolve_python(py)
    except Exception:
        pytest.skip(f"{py} not installed")
    r = go(SCRIPTS / "py312.py", data, tmp_path, python=py)
    assert r.reason == "ok", r.message + r.stderr_tail
    assert r.python == py.removeprefix("python")
    assert r.runtime["0"]["io_hooks"] == "ok"
    reads = list(read_ledger(r.ledger_dir).of("read"))
    assert [(e["lo"], e["hi"], e["how"]) for e in reads] == [(0, r.served["val_tokens"], "read")]
    assert r.artifacts[0]["path"] == "final_model.int8.ptz"


def test_torchrun_two_ranks(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    r = go(submission(tmp_path, "ddp_gloo.py"), data, tmp_path, nproc=2, timeout=120)
    assert r.reason == "ok", r.message + r.stderr_tail[-2000:]
    assert "world:2" in r.stdout_tail and r.command[1:3] == ["-m", "torch.distributed.run"]
    led = read_ledger(r.ledger_dir)
    assert led.ranks() == [-1, 0, 1]  # the launcher is not instrumented; each worker has its ledger
    assert {e["rank"] for e in led.of("read")} == {0, 1}
    assert sorted(p.name for p in Path(r.ledger_dir).glob("ledger*.jsonl")) == [
        "ledger.parent.jsonl", "ledger.rank0.jsonl", "ledger.rank1.jsonl",
    ]


# -- the command line ------------------------------------------------------------------------------


def test_cli_run_failed_is_one_line_and_exit_4(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sub = submission(tmp_path, "crash.py")
    rc = cli_main(["run", str(sub), "--data-path", str(data), "--out", str(tmp_path / "o"), "--no-trace"])
    err = capsys.readouterr().err
    assert rc == 4
    assert err.strip().splitlines() == ["harness: run failed: crash: ValueError: boom at step 3 (at train_gpt.py:7)"]


def test_cli_run_ok_exit_by_verdict(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "r.json"
    rc = cli_main(["run", str(SCRIPTS / "normal.py"), "--data-path", str(data), "--out", str(tmp_path / "o"),
                   "--json", str(js), "--no-trace"])
    out, err = capsys.readouterr()
    report = json.loads(js.read_text())
    assert rc == report["exit_code"] and rc in (0, 1, 2)
    assert "run failed" not in err and "first validation read" in out
    assert report["sections"]["run"]["reason"] == "ok"
    assert {r["rule_id"] for r in report["rules"]} >= {"B2", "B3", "D1", "D2", "D3"}


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["run", str(tmp_path / "nope"), "--data-path", str(tmp_path)])
    assert rc == 3
    assert capsys.readouterr().err.strip().count("\n") == 0
    rc = cli_main(["run", str(SCRIPTS / "normal.py"), "--env", "NOEQUALS"])
    assert rc == 3


def test_a_hub_data_setup_finds_the_served_data_and_fetches_nothing(data: Path, tmp_path: Path) -> None:
    """`from huggingface_hub import ...` without the package: an offline stand-in; the dataset folder the script
    names is served under that name, so nothing is fetched. A fetch is refused and recorded as a network attempt."""
    try:
        import huggingface_hub  # noqa: F401
        pytest.skip("huggingface_hub is installed: the real package is imported, not the stand-in")
    except ImportError:
        pass
    r = go(submission(tmp_path, "hub_setup.py"), data, tmp_path)
    assert r.reason == "ok", r.message + r.stderr_tail
    assert r.net_attempts == [] and "final_x val_loss:" in r.stdout_tail
    r2 = go(submission(tmp_path, "hub_setup.py"), data, tmp_path / "b", env={"HUB_FORCE": "1"})
    assert r2.reason != "ok" and "no network under the harness" in r2.stderr_tail
    assert [(n["host"], n["how"]) for n in r2.net_attempts] == [
        ("huggingface.co", "huggingface_hub.snapshot_download('someone/sp1024_custom')")]
