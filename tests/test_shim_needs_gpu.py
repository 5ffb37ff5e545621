"""CPU shim: what no shim can give ends with one clear result (exit 86, one stderr line, a needs_gpu event
with the script's file:line); a script with its own fallback for Triton takes the fallback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.runtime.shim import NEEDS_GPU_EXIT

pytest.importorskip("torch")  # the child processes of most cases import it

REPO = Path(__file__).resolve().parents[1]


def run(tmp_path: Path, body: str, extra_path: Path | None = None) -> tuple[subprocess.CompletedProcess, list[dict]]:
    script = tmp_path / "train_gpt.py"
    script.write_text(textwrap.dedent(body))
    ledger = tmp_path / "ledger"
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_RUNTIME"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(REPO)] + ([str(extra_path)] if extra_path else [])))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.runtime.shim", "--ledger", str(ledger), str(script)],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    events = [json.loads(ln) for f in sorted(ledger.glob("*.jsonl")) for ln in f.read_text().splitlines()]
    return proc, events


def line_of(tmp_path: Path, marker: str) -> int:
    lines = (tmp_path / "train_gpt.py").read_text().splitlines()
    return next(i for i, ln in enumerate(lines, 1) if marker in ln)


def assert_needs_gpu(proc: subprocess.CompletedProcess, events: list[dict], what: str, where: str) -> None:
    assert proc.returncode == NEEDS_GPU_EXIT, (proc.returncode, proc.stdout[-1500:], proc.stderr[-3000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("harness: needs GPU:")]
    assert lines == [f"harness: needs GPU: {what} at {where}"], proc.stderr[-3000:]
    ev = [e for e in events if e["kind"] == "needs_gpu"]
    assert len(ev) == 1 and ev[0]["what"] == what and ev[0]["where"] == where and ev[0]["site"] == where
    assert "NOT REACHED" not in proc.stdout


TRITON_KERNEL = '''
import triton
import triton.language as tl

@triton.autotune(configs=[triton.Config({"BLOCK": 64}, num_warps=4)], key=["n"])
@triton.jit
def relu_sq_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(y_ptr + offs, tl.maximum(x, 0) * x, mask=offs < n)

print("defined", triton.cdiv(100, 64), flush=True)
try:
    relu_sq_kernel[(triton.cdiv(100, 64),)](None, None, 100)  # LAUNCH
except:  # a bare except must not swallow the needs-GPU exit
    print("swallowed")
print("NOT REACHED")
'''


def test_triton_launch_without_triton_installed(tmp_path: Path) -> None:
    proc, events = run(tmp_path, TRITON_KERNEL)
    assert "defined 2" in proc.stdout  # decorators and helpers work at definition time
    assert_needs_gpu(proc, events, "Triton kernel relu_sq_kernel launch", f"train_gpt.py:{line_of(tmp_path, 'LAUNCH')}")
    assert "swallowed" not in proc.stdout


def test_triton_launch_with_a_triton_on_the_path(tmp_path: Path) -> None:
    """A triton that imports but cannot launch without a GPU (a stand-in written here): the launch is
    stopped by the shim with the clear result, not by triton's own 'libcuda.so cannot found'."""
    fake = tmp_path / "site"
    (fake / "triton").mkdir(parents=True)
    (fake / "triton" / "__init__.py").write_text(textwrap.dedent('''
        class JITFunction:
            def __init__(self, fn):
                self.fn = fn
            def __getitem__(self, grid):
                def launch(*a, **k):
                    raise RuntimeError("0 active drivers ([]). There should only be one. libcuda.so cannot found")
                return launch
        def jit(fn=None, **kw):
            return JITFunction(fn) if fn is not None else (lambda f: JITFunction(f))
    '''))
    (fake / "triton" / "language.py").write_text("constexpr = int\n")
    proc, events = run(tmp_path, '''
        import triton
        import triton.language as tl
        @triton.jit(do_not_specialize=["n"])
        def add_kernel(x, n: tl.constexpr):
            pass
        add_kernel[(1,)](None, 4)  # LAUNCH
        print("NOT REACHED")
    ''', extra_path=fake)
    assert_needs_gpu(proc, events, "Triton kernel add_kernel launch", f"train_gpt.py:{line_of(tmp_path, 'LAUNCH')}")
    assert "libcuda" not in proc.stderr


GUARDED = '''
import importlib.util
try:
    import triton
    import triton.language as tl
    HAS_TRITON = True
except ImportError:
    HAS_TRITON = False

def relu_sq(x):
    if HAS_TRITON:
        raise SystemExit("took the triton path")
    return [max(v, 0) * v for v in x]

print("fallback", relu_sq([-1, 2]), importlib.util.find_spec("triton") is None)
'''


def test_guarded_triton_import_takes_the_scripts_fallback(tmp_path: Path) -> None:
    proc, events = run(tmp_path, GUARDED)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fallback [0, 4] True" in proc.stdout
    assert not [e for e in events if e["kind"] == "needs_gpu"]


def test_guarded_triton_import_is_hidden_even_when_triton_is_installed(tmp_path: Path) -> None:
    fake = tmp_path / "site"
    (fake / "triton").mkdir(parents=True)
    (fake / "triton" / "__init__.py").write_text("def jit(fn): return fn\n")
    (fake / "triton" / "language.py").write_text("")
    proc, _ = run(tmp_path, GUARDED, extra_path=fake)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # hidden from the guarded import; a find_spec probe still sees what is installed
    assert "fallback [0, 4] False" in proc.stdout


def test_fp8_scaled_mm(tmp_path: Path) -> None:
    proc, events = run(tmp_path, '''
        import torch
        a = torch.randn(16, 16, device="cuda").to(torch.float8_e4m3fn)
        b = torch.randn(16, 16, device="cuda").to(torch.float8_e4m3fn).t()
        one = torch.ones((), device="cuda")
        out = torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)  # FP8
        print("NOT REACHED")
    ''')
    assert_needs_gpu(proc, events, "FP8 matrix product torch._scaled_mm", f"train_gpt.py:{line_of(tmp_path, '# FP8')}")


def test_cuda_graph_capture(tmp_path: Path) -> None:
    proc, events = run(tmp_path, '''
        import torch
        g = torch.cuda.CUDAGraph()  # GRAPH
        print("NOT REACHED")
    ''')
    assert_needs_gpu(proc, events, "CUDA graph capture torch.cuda.CUDAGraph",
                     f"train_gpt.py:{line_of(tmp_path, '# GRAPH')}")


def test_cuda_extension_build(tmp_path: Path) -> None:
    proc, events = run(tmp_path, '''
        import torch
        from torch.utils.cpp_extension import load_inline
        ext = load_inline(name="fused_ops", cpp_sources="", cuda_sources="__global__ void k() {}")  # EXT
        print("NOT REACHED")
    ''')
    assert_needs_gpu(proc, events, "CUDA extension build torch.utils.cpp_extension.load_inline('fused_ops')",
                     f"train_gpt.py:{line_of(tmp_path, '# EXT')}")


def test_uncovered_cuda_call_becomes_the_same_clear_result(tmp_path: Path) -> None:
    proc, events = run(tmp_path, '''
        def helper():
            raise AssertionError("Torch not compiled with CUDA enabled")  # RAISE
        helper()
    ''')
    what = "a CUDA call the CPU shim does not cover (AssertionError: Torch not compiled with CUDA enabled)"
    assert_needs_gpu(proc, events, what, f"train_gpt.py:{line_of(tmp_path, '# RAISE')}")


def test_ordinary_errors_keep_their_traceback(tmp_path: Path) -> None:
    proc, events = run(tmp_path, 'raise ValueError("my own bug")\n')
    assert proc.returncode == 1 and "ValueError: my own bug" in proc.stderr and "Traceback" in proc.stderr
    assert "needs GPU" not in proc.stderr and not [e for e in events if e["kind"] == "needs_gpu"]
