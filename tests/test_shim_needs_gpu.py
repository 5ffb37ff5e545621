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

from conftest import ROOT as REPO


# runs the shim with triton invisible to the import system, as on a host without the `triton` extra
HIDE_TRITON = """
import importlib.machinery as m, runpy, sys
_find = m.PathFinder.find_spec.__func__
def _hidden(cls, name, path=None, target=None):
    return None if name == "triton" or name.startswith("triton.") else _find(cls, name, path, target)
m.PathFinder.find_spec = classmethod(_hidden)
sys.argv = ["shim", *sys.argv[1:]]
runpy.run_module("harness.runtime.shim", run_name="__main__", alter_sys=True)
"""


def run(tmp_path: Path, body: str, extra_path: Path | None = None, *, hide_triton: bool = False,
        env_extra: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, list[dict]]:
    script = tmp_path / "train_gpt.py"
    script.write_text(textwrap.dedent(body))
    ledger = tmp_path / "ledger"
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_RUNTIME", "TRITON_INTERPRET")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(REPO)] + ([str(extra_path)] if extra_path else [])), **(env_extra or {}))
    launcher = ["-c", HIDE_TRITON] if hide_triton else ["-m", "harness.runtime.shim"]
    proc = subprocess.run(
        [sys.executable, *launcher, "--ledger", str(ledger), str(script)],
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
    proc, events = run(tmp_path, TRITON_KERNEL, hide_triton=True, env_extra={"TRITON_INTERPRET": "1"})
    assert "defined 2" in proc.stdout  # decorators and helpers work at definition time
    # the one line names the extra that would run the kernel on the CPU
    assert_needs_gpu(proc, events, "Triton kernel relu_sq_kernel launch (triton is not installed: "
                     "pip install \".[triton]\" runs it on the CPU through Triton's interpreter)",
                     f"train_gpt.py:{line_of(tmp_path, 'LAUNCH')}")
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
    proc, events = run(tmp_path, GUARDED, hide_triton=True)
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


def test_fp8_scaled_mm_is_emulated_in_fp32_with_the_same_scaling(tmp_path: Path) -> None:
    proc, events = run(tmp_path, '''
        import torch
        torch.manual_seed(0)
        a = torch.randn(16, 32, device="cuda").to(torch.float8_e4m3fn)
        b = torch.randn(24, 32, device="cuda").to(torch.float8_e4m3fn).t()
        one = torch.ones((), device="cuda")
        out = torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)  # FP8
        ref = a.float() @ b.float()
        print("tensorwise", out.shape == (16, 24), (out.float() - ref).abs().max().item() < 1e-4)
        sa = torch.rand(16, 1) + 0.5
        sb = torch.rand(1, 24) + 0.5
        bias = torch.randn(24)
        out = torch._scaled_mm(a, b, sa, sb, bias=bias, out_dtype=torch.float32)
        ref = (a.float() * sa) @ (b.float() * sb) + bias
        print("rowwise", (out - ref).abs().max().item() < 1e-4)
        big = torch._scaled_mm(a, b, one * 1e4, one * 1e4, out_dtype=torch.float8_e4m3fn)
        print("saturates", big.dtype == torch.float8_e4m3fn, not big.float().isnan().any().item())
        blocks = torch.ones(16, 4)
        torch._scaled_mm(a, b, blocks, torch.ones(4, 3), out_dtype=torch.float32)  # BLOCKS
        print("NOT REACHED")
    ''')
    assert "tensorwise True True" in proc.stdout and "rowwise True" in proc.stdout, proc.stderr[-2000:]
    assert "saturates True True" in proc.stdout
    assert_needs_gpu(proc, events, "FP8 matrix product torch._scaled_mm with block-wise scales (16, 4) x (4, 3)",
                     f"train_gpt.py:{line_of(tmp_path, '# BLOCKS')}")


def test_cuda_graph_capture_runs_eagerly_and_replays(tmp_path: Path) -> None:
    proc, events = run(tmp_path, '''
        import torch
        torch.manual_seed(0)
        lin = torch.nn.Linear(8, 8).cuda()
        static_in = torch.randn(4, 8, device="cuda")
        acc = torch.zeros(8, device="cuda")
        g = torch.cuda.CUDAGraph()  # GRAPH
        with torch.no_grad():
            with torch.cuda.graph(g):
                print("capturing", torch.cuda.is_current_stream_capturing())
                static_out = lin(static_in).relu() * 2
                acc.add_(static_out.sum(0))  # an in-place update is replayed too
        print("after", torch.cuda.is_current_stream_capturing())
        ok, want = [], acc.clone()
        for _ in range(3):
            x = torch.randn(4, 8)
            static_in.copy_(x)
            g.replay()
            ref = lin(x).relu() * 2
            want += ref.sum(0)
            ok.append(torch.allclose(static_out, ref) and torch.allclose(acc, want, atol=1e-5))
        print("replays", ok)
        g2 = torch.cuda.graphs.CUDAGraph()
        print("graphs module", type(g2) is type(g), torch.cuda.make_graphed_callables(lin, (static_in,)) is lin)
    ''')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "capturing True" in proc.stdout and "after False" in proc.stdout
    assert "replays [True, True, True]" in proc.stdout
    assert "graphs module True True" in proc.stdout
    assert not [e for e in events if e["kind"] == "needs_gpu"]


def test_importing_a_compiled_cuda_module_names_it(tmp_path: Path) -> None:
    proc, events = run(tmp_path, '''
        def load():
            raise ImportError("libcudart.so.12: cannot open shared object file: No such file or directory",  # IMPORT
                              name="fused_adam_cuda", path="/x/fused_adam_cuda.so")
        load()
    ''')
    what = ("compiled CUDA module fused_adam_cuda (ImportError: libcudart.so.12: cannot open shared object "
            "file: No such file or directory)")
    assert_needs_gpu(proc, events, what, f"train_gpt.py:{line_of(tmp_path, '# IMPORT')}")


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
