"""Triton on a CPU run: with the `triton` extra, kernels run in Triton's interpreter (TRITON_INTERPRET=1,
set by the runner) and every launch is recorded; without the extra the
one-line needs-GPU names it (tests/test_shim_needs_gpu.py). In a traced run the tracer follows provenance
through the kernel (tests/test_tracer_kernels.py); only a failure to do so marks the trace incomplete."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.run.monitor import PhaseTracker
from harness.runtime.shim import triton_guard

from conftest import ROOT as REPO

SCRIPTS = Path(__file__).parent / "scripts"
needs_triton = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("triton") is None, reason='needs the triton extra (pip install ".[triton]")'
)


class _Ctx:
    def __init__(self, trace: bool) -> None:
        self.settings = type("S", (), {"trace": trace})()
        self.events: list[tuple[str, dict]] = []

    def emit(self, kind: str, site: str | None = None, **fields: object) -> int:
        self.events.append((kind, {"site": site, **fields}))
        return len(self.events)


@pytest.fixture
def fresh(monkeypatch):
    from harness.runtime.shim import state

    monkeypatch.setattr(triton_guard, "launches", {})
    monkeypatch.setattr(triton_guard, "_marked_incomplete", False)
    def use(ctx):
        monkeypatch.setattr(state, "ctx", ctx)
        return ctx
    return use


def test_launch_hook_records_once_per_kernel_and_line_and_marks_a_traced_run(fresh) -> None:
    ctx = fresh(_Ctx(trace=True))
    x = np.zeros((4, 8))
    for _ in range(3):
        triton_guard.on_kernel_launch("fused_mlp", (x, 3), (2,), "train_gpt.py:40")
    triton_guard.on_kernel_launch("fused_ce", (x,), (1,), "train_gpt.py:90")
    launches = [f for k, f in ctx.events if k == "kernel_launch"]
    assert [(f["name"], f["where"], f["site"], f["tensors"]) for f in launches] == [
        ("fused_mlp", "train_gpt.py:40", "train_gpt.py:40", [[4, 8]]),
        ("fused_ce", "train_gpt.py:90", "train_gpt.py:90", [[4, 8]]),
    ]
    assert all(f["provenance"] == "untracked" and f["interpreter"] for f in launches)
    marks = [f for k, f in ctx.events if k == "phase"]
    assert len(marks) == 1 and marks[0]["name"] == "runtime_ready"
    assert marks[0]["parts"]["tracer"].startswith("incomplete: Triton kernel fused_mlp (at train_gpt.py:40)")
    assert triton_guard.launches[("fused_mlp", "train_gpt.py:40")] == 3


def test_untraced_run_records_launches_without_marking(fresh) -> None:
    ctx = fresh(_Ctx(trace=False))
    triton_guard.on_kernel_launch("k", (), (1,), None)
    assert [k for k, _ in ctx.events] == ["kernel_launch"]


def test_runner_keeps_the_other_parts_when_the_tracer_is_marked_incomplete() -> None:
    tr = PhaseTracker()
    tr.feed([
        {"kind": "phase", "name": "runtime_ready", "rank": 0, "t": 0.1,
         "parts": {"io_hooks": "ok", "shim": "ok", "tracer": "ok"}},
        {"kind": "phase", "name": "runtime_ready", "rank": 0, "t": 2.0,
         "parts": {"tracer": "incomplete: Triton kernel k ..."}},
    ])
    assert tr.runtime["0"] == {"io_hooks": "ok", "shim": "ok", "tracer": "incomplete: Triton kernel k ..."}


@needs_triton
@pytest.mark.slow
def test_kernel_runs_in_the_interpreter_under_the_shim(tmp_path: Path) -> None:
    script = tmp_path / "train_gpt.py"
    script.write_text(textwrap.dedent('''
        import torch, triton
        import triton.language as tl

        @triton.autotune(configs=[triton.Config({"BLOCK": 32}), triton.Config({"BLOCK": 64})], key=["n"])
        @triton.jit
        def add_one(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) + 1, mask=offs < n)

        x = torch.arange(100, device="cuda", dtype=torch.float32)
        y = torch.empty_like(x)
        add_one[lambda m: (triton.cdiv(100, m["BLOCK"]),)](x, y, 100)  # LAUNCH
        print("ok", torch.equal(y, x + 1))
    '''))
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_RUNTIME"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), TRITON_INTERPRET="1")
    ledger = tmp_path / "ledger"
    proc = subprocess.run([sys.executable, "-m", "harness.runtime.shim", "--ledger", str(ledger), str(script)],
                          capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok True" in proc.stdout
    import json
    events = [json.loads(ln) for f in ledger.glob("*.jsonl") for ln in f.read_text().splitlines()]
    line = next(i for i, ln in enumerate(script.read_text().splitlines(), 1) if "# LAUNCH" in ln)
    launches = [e for e in events if e["kind"] == "kernel_launch"]
    assert launches and {e["where"] for e in launches} == {f"train_gpt.py:{line}"}
    assert {e["name"] for e in launches} == {"add_one"}


@needs_triton
@pytest.mark.slow
def test_run_on_cpu_uses_the_interpreter_and_follows_the_kernel(tmp_path: Path) -> None:
    from harness.config import load_config
    from harness.data.shards import write_shard
    from harness.run import run_submission

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for name in ("fineweb_train_000000.bin", "fineweb_val_000000.bin"):
        write_shard(data / name, rng.integers(1, 1024, size=3000).astype(np.uint16))
    r = run_submission(SCRIPTS / "triton_kernel.py", load_config(), data_path=str(data), out_dir=tmp_path / "out",
                       trace=True, timeout=240)
    assert r.reason == "ok", r.message + r.stderr_tail
    assert "kernel maxerr:0" in r.stdout_tail
    # the tracer follows the kernel (harness/runtime/tracer/kernels.py): the trace stays complete
    assert r.runtime["0"]["tracer"] == "ok" and r.runtime["0"]["io_hooks"] == "ok" and r.traced
    from harness.ledger import read_ledger

    launches = list(read_ledger(r.ledger_dir).of("kernel_launch"))
    line = next(i for i, ln in enumerate((SCRIPTS / "triton_kernel.py").read_text().splitlines(), 1) if "# LAUNCH" in ln)
    assert [(e["name"], e["where"]) for e in launches] == [("leaky_relu_sq_kernel", f"triton_kernel.py:{line}")]


def _traced_verdict(tmp_path: Path, kernel: str):
    from harness.config import load_config
    from harness.data.shards import write_shard
    from harness.run import run_submission
    from harness.run.judge import judge_run

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for name in ("fineweb_train_000000.bin", "fineweb_val_000000.bin"):
        write_shard(data / name, rng.integers(1, 1024, size=3000).astype(np.uint16))
    cfg = load_config()
    r = run_submission(SCRIPTS / "triton_eval.py", cfg, data_path=str(data), out_dir=tmp_path / "out",
                       trace=True, timeout=240, env={"KERNEL": kernel})
    assert r.reason == "ok", r.message + r.stderr_tail
    assert r.runtime["0"]["tracer"] == "ok", r.runtime  # the tracer follows the kernel: nothing incomplete
    return {x.rule_id: x for x in judge_run(r, cfg).rules}


@needs_triton
@pytest.mark.slow
def test_traced_row_wise_kernel_is_not_a_c1_failure(tmp_path: Path) -> None:
    from harness.results import Status

    by = _traced_verdict(tmp_path, "rowwise")
    assert by["C1"].status is Status.PASS, by["C1"].summary


@needs_triton
@pytest.mark.slow
def test_traced_kernel_mixing_the_next_row_in_is_caught(tmp_path: Path) -> None:
    from harness.results import Status

    by = _traced_verdict(tmp_path, "leak")
    assert by["C1"].status is Status.FAIL, by["C1"].summary  # "127 scores depend on their target or later"



_INTERPRETER_FAILS = '''
    import os, torch, triton
    import triton.language as tl

    @triton.jit
    def scale(y_ptr, x_ptr):
        # inline PTX compiles for a GPU; Triton's interpreter cannot execute it
        x = tl.load(x_ptr)
        y = tl.inline_asm_elementwise("mul.f32 $0, $1, 0f40000000;", "=r,r", [x], dtype=tl.float32,
                                      is_pure=True, pack=1)
        tl.store(y_ptr, y)

    y = torch.zeros(1, device="cuda")
    try:
        scale[(1,)](y, torch.full((1,), 3.0, device="cuda"))  # LAUNCH
    except Exception:
        if os.environ.get("FALLBACK") != "1":
            raise
        y.fill_(6.0)  # the script's own eager path
    print("done", float(y[0]))
'''


@needs_triton
@pytest.mark.parametrize("fallback", [False, True])
def test_kernel_the_interpreter_cannot_run_ends_in_one_needs_gpu_line(tmp_path: Path, fallback: bool) -> None:
    """Uncaught, Triton's InterpreterError is a needs-GPU ending naming the kernel and the launch line;
    caught by the script (its own fallback), the run goes on."""
    script = tmp_path / "train_gpt.py"
    script.write_text(textwrap.dedent(_INTERPRETER_FAILS))
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_RUNTIME"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), TRITON_INTERPRET="1", FALLBACK="1" if fallback else "0")
    ledger = tmp_path / "ledger"
    proc = subprocess.run([sys.executable, "-m", "harness.runtime.shim", "--ledger", str(ledger), str(script)],
                          capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path)
    if fallback:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "done 6.0" in proc.stdout
        return
    assert proc.returncode == triton_guard.state.NEEDS_GPU_EXIT, proc.stderr[-3000:]
    import json
    events = [json.loads(ln) for f in ledger.glob("*.jsonl") for ln in f.read_text().splitlines()]
    line = next(i for i, ln in enumerate(script.read_text().splitlines(), 1) if "# LAUNCH" in ln)
    gpu = [e for e in events if e["kind"] == "needs_gpu"]
    assert len(gpu) == 1 and gpu[0]["where"] == f"train_gpt.py:{line}"
    assert "Triton kernel scale" in gpu[0]["what"] and "interpreter cannot run" in gpu[0]["what"]
