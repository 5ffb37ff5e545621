"""CPU shim: torch.cuda.*, SDP switches, torch.compile, inference_mode, fused optimizers, nvidia-smi, and
the lazy installation (a process that never imports torch is left alone).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

from conftest import ROOT as REPO


PRELUDE = '''
import json, sys
R = {}
def check(name, fn):
    try:
        R[name] = bool(fn())
    except BaseException as e:
        R[name] = f"{type(e).__name__}: {e}"
'''


def run_under_shim(tmp_path: Path, body: str, *opts: str, timeout: float = 120) -> tuple[dict, list[dict]]:
    script = tmp_path / "cuda_script.py"
    script.write_text(PRELUDE + textwrap.dedent(body) + "\nprint('RESULTS=' + json.dumps(R))\n")
    ledger = tmp_path / "ledger"
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_RUNTIME"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.runtime.shim", "--ledger", str(ledger), *opts, str(script)],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp_path,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS=")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    events = [json.loads(ln) for f in sorted(ledger.glob("*.jsonl")) for ln in f.read_text().splitlines()]
    return json.loads(lines[-1][len("RESULTS="):]), events


CUDA_API = '''
import os, subprocess, time
from harness.runtime import shim
# the shim is installed (python -m harness.runtime.shim) but lazy: torch is not imported until the script does
check("lazy_install", lambda: shim.installed() and "torch" not in sys.modules and str(shim.FALLBACK_DIR) in sys.path)
import torch, torch.nn as nn, torch.nn.functional as F
def idempotent():
    shim.install(None)
    return shim.patched().count("torch.device") == 1 and "torch.compile=identity" in shim.patched()
check("install_idempotent", idempotent)
check("is_available", lambda: torch.cuda.is_available() and torch.cuda.is_initialized() and torch.backends.cuda.is_built())
check("device_count_and_current", lambda: torch.cuda.device_count() == 1 and torch.cuda.current_device() == 0
      and [torch.cuda.set_device(torch.device("cuda", 0)), torch.cuda.current_device()][1] == 0)
check("device_name_properties", lambda: "H100" in torch.cuda.get_device_name(0)
      and torch.cuda.get_device_properties(0).total_memory > 80e9
      and torch.cuda.get_device_properties(torch.device("cuda", 0)).multi_processor_count == 132
      and torch.cuda.get_device_capability() == (9, 0) and torch.cuda.is_bf16_supported())
def events():
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record(); time.sleep(0.05); b.record(); b.synchronize(); torch.cuda.synchronize()
    ms = a.elapsed_time(b)
    try:
        torch.cuda.Event(enable_timing=True).elapsed_time(b)
        unrecorded_raises = False
    except RuntimeError:
        unrecorded_raises = True
    return 40 <= ms <= 1000 and a.query() and unrecorded_raises
check("event_wall_clock", events)
def streams():
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        y = torch.ones(2, device="cuda") * 2
    s.wait_stream(torch.cuda.current_stream()); torch.cuda.current_stream().wait_stream(s)
    s.synchronize(); torch.cuda.default_stream().synchronize()
    with torch.cuda.device(0):
        pass
    return y.sum().item() == 4
check("streams", streams)
def memory():
    big = torch.ones(20_000_000)  # 80 MB
    peak = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats(); torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    st = torch.cuda.memory_stats()
    return (peak > 80e6 and torch.cuda.memory_allocated() > 0 and torch.cuda.max_memory_reserved() > 0
            and 0 < free < total and st["allocated_bytes.all.peak"] > 0 and isinstance(torch.cuda.memory_summary(), str)
            and big.numel() > 0)
check("memory_stats", memory)
check("seeding", lambda: [torch.cuda.manual_seed(1), torch.cuda.manual_seed_all(1), torch.manual_seed(3)] is not None
      and torch.cuda.get_rng_state().numel() > 0)
check("nvtx", lambda: torch.cuda.nvtx.range_push("x") is not None and torch.cuda.nvtx.range_pop() is not None)
def sdp_switches():
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    from torch.backends.cuda import enable_cudnn_sdp, enable_flash_sdp, enable_math_sdp, enable_mem_efficient_sdp
    enable_cudnn_sdp(False); enable_flash_sdp(True); enable_mem_efficient_sdp(False); enable_math_sdp(False)
    q = torch.randn(1, 4, 8, 16, device="cuda"); k = torch.randn(1, 2, 8, 16, device="cuda")
    mask = torch.ones(8, 8, dtype=torch.bool).tril()
    a = F.scaled_dot_product_attention(q, k, k, is_causal=True, enable_gqa=True)
    b = F.scaled_dot_product_attention(q, k, k, attn_mask=mask, enable_gqa=True)
    with torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False):
        c = F.scaled_dot_product_attention(q, k, k, is_causal=True, enable_gqa=True)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        d = F.scaled_dot_product_attention(q, k, k, is_causal=True, enable_gqa=True)
    return torch.allclose(a, b, atol=1e-5) and torch.equal(a, c) and torch.equal(a, d)
check("sdp_switches_noop", sdp_switches)
def compile_identity():
    m = nn.Linear(3, 3)
    cm = torch.compile(m, dynamic=False, fullgraph=True)
    @torch.compile
    def f(t): return t * 2
    @torch.compile(fullgraph=True, mode="max-autotune")
    def g(t): return t * 3
    h = torch.compile(lambda t: t + 1, backend="inductor")
    x = torch.ones(1, 3)
    return (cm._orig_mod is m and list(cm.state_dict()) == ["_orig_mod.weight", "_orig_mod.bias"]
            and torch.equal(cm(x), m(x)) and cm.in_features == 3 and f(x).sum() == 6 and g(x).sum() == 9
            and h(x).sum() == 6 and torch.compiler.disable(f) is f)
check("compile_identity", compile_identity)
def jit_identity():
    @torch.jit.script
    def scan(x: torch.Tensor) -> torch.Tensor:  # uses a factory the shim wraps: TorchScript could not compile it
        s = torch.zeros(x.size(1), device=x.device, dtype=x.dtype)
        for t in range(x.size(0)):
            s = s * 0.5 + x[t]
        return s
    m = nn.Linear(2, 2)
    return (scan(torch.ones(3, 2, device="cuda")).tolist() == [1.75, 1.75] and torch.jit.script(m) is m
            and torch.jit.trace(m, (torch.ones(1, 2),)) is m)
check("jit_script_trace_identity", jit_identity)
def dynamo_config():
    torch._dynamo.config.optimize_ddp = False
    torch._dynamo.config.cache_size_limit = 64
    torch._dynamo.config.a_knob_this_torch_lacks = 1
    torch._inductor.config.coordinate_descent_tuning = True
    torch._inductor.config.another_missing_knob = "x"
    torch._dynamo.reset()
    return torch._dynamo.config.a_knob_this_torch_lacks == 1
check("dynamo_config_writes", dynamo_config)
def inference_mode():
    lin = nn.Linear(2, 2)
    with torch.inference_mode():
        cache = torch.arange(2.0).cos()  # built while scoring, reused in training (score-first TTT)
        y = lin(torch.ones(1, 2))
    @torch.inference_mode()
    def f(): return lin(torch.ones(1, 2))
    @torch.inference_mode
    def g(): return lin(torch.ones(1, 2))
    with torch.inference_mode(False):
        w = lin(torch.ones(1, 2))
    loss = (lin(torch.ones(1, 2)) * cache).sum(); loss.backward()
    return (not y.requires_grad and not cache.is_inference() and not f().requires_grad and not g().requires_grad
            and w.requires_grad and lin.weight.grad is not None and torch.is_grad_enabled())
check("inference_mode_is_no_grad", inference_mode)
def fused():
    p = [nn.Parameter(torch.ones(2, device="cuda"))]
    opts = [torch.optim.Adam(p, fused=True), torch.optim.AdamW(p, lr=0.1, fused=True, capturable=True),
            torch.optim.SGD(p, lr=0.1, momentum=0.9, fused=True)]
    class MyAdam(torch.optim.AdamW):
        pass
    opts.append(MyAdam(p, fused=True))
    p[0].grad = torch.ones(2)
    for o in opts:
        o.step()
    return all(not o.defaults.get("fused") and not o.defaults.get("capturable") for o in opts)
check("fused_optimizers", fused)
def graphed():
    f = lambda t: t * 2
    return torch.cuda.make_graphed_callables(f, (torch.ones(1),)) is f
check("make_graphed_callables_identity", graphed)
def smi():
    a = subprocess.run(["nvidia-smi"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    b = subprocess.check_output(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"]).decode()
    c = subprocess.run("nvidia-smi -L", shell=True, capture_output=True)
    with subprocess.Popen(["/usr/bin/nvidia-smi", "--query-gpu=index,memory.used", "--format=csv"],
                          stdout=subprocess.PIPE, text=True) as p:
        d, _ = p.communicate()
    e = os.popen("nvidia-smi topo -m").read()
    rc = os.system("nvidia-smi -L")
    return (a.returncode == 0 and "H100" in a.stdout and "Driver Version" in a.stdout
            and b.strip() == "NVIDIA H100 80GB HBM3, 81559"
            and c.stdout.decode().startswith("GPU 0: NVIDIA H100") and p.returncode == 0
            and d.splitlines() == ["index, memory.used [MiB]", "0, 1 MiB"] and "GPU0" in e and rc == 0)
check("nvidia_smi_faked", smi)
def other_programs_still_run():
    return subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True).stdout.strip() == "42"
check("other_subprocesses_untouched", other_programs_still_run)
'''


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[dict]]:
    return run_under_shim(tmp_path_factory.mktemp("api"), CUDA_API)


@pytest.mark.parametrize(
    "name",
    [
        "is_available", "device_count_and_current", "device_name_properties", "event_wall_clock", "streams",
        "memory_stats", "seeding", "nvtx", "sdp_switches_noop", "compile_identity", "jit_script_trace_identity",
        "dynamo_config_writes",
        "inference_mode_is_no_grad", "fused_optimizers", "make_graphed_callables_identity", "nvidia_smi_faked",
        "other_subprocesses_untouched", "lazy_install", "install_idempotent",
    ],
)
def test_cuda_api(api: tuple[dict, list[dict]], name: str) -> None:
    results, _ = api
    assert results[name] is True, results[name]


def test_nvidia_smi_calls_are_recorded_with_their_site(api: tuple[dict, list[dict]]) -> None:
    _, events = api
    smi = [e for e in events if e["kind"] == "subprocess"]
    assert len(smi) == 6  # run, check_output, shell=True, Popen, os.popen, os.system
    assert smi[0]["argv"] == ["nvidia-smi"] and smi[0]["allowed"] is True and smi[0]["faked"] is True
    assert all(e["site"].startswith("cuda_script.py:") for e in smi)
