"""CPU shim: CUDA devices, pinned memory, threads and bf16 on the CPU.

One CUDA-shaped script runs under the shim in a subprocess (the pytest process is never patched) and reports
each check by name; every test asserts one of them.
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
import json, sys, traceback
R = {}
def check(name, fn):
    try:
        R[name] = bool(fn())
    except BaseException as e:  # report, keep going
        R[name] = f"{type(e).__name__}: {e}"
'''


def run_under_shim(tmp_path: Path, body: str, *opts: str, timeout: float = 120) -> dict:
    script = tmp_path / "cuda_script.py"
    script.write_text(PRELUDE + textwrap.dedent(body) + "\nprint('RESULTS=' + json.dumps(R))\n")
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_RUNTIME"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.runtime.shim", "--ledger", str(tmp_path / "ledger"), *opts, str(script)],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp_path,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS=")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULTS="):])


DEVICES = '''
import copy, io, pickle, threading
import torch, torch.nn as nn
x = torch.ones(3)
d = torch.device("cuda", 0)
check("device_cuda_is_cpu", lambda: str(d) == "cpu" and str(torch.device("cuda:1")) == "cpu"
      and str(torch.device(type="cuda", index=2)) == "cpu" and str(torch.device(0)) == "cpu")
check("device_other_kept", lambda: str(torch.device("meta")) == "meta" and str(torch.device("cpu", 0)) == "cpu:0")
check("device_isinstance", lambda: isinstance(d, torch.device) and isinstance(x.device, torch.device)
      and not isinstance("cuda", torch.device) and x.device == d)
check("device_pickle_copy", lambda: pickle.loads(pickle.dumps(d)) == d and copy.deepcopy(d) == d)
check("device_context", lambda: [None for _ in [torch.device("cuda").__enter__()]] and torch.zeros(1).device.type == "cpu")
torch.set_default_device(None)
check("factories", lambda: all(t.device.type == "cpu" for t in [
    torch.zeros(2, device="cuda"), torch.ones(2, device=0), torch.empty(2, device=d),
    torch.arange(3, device="cuda:0"), torch.tensor([1], device="cuda"), torch.randn(2, device="cuda"),
    torch.full((2,), 1.0, device="cuda"), torch.zeros_like(x, device="cuda"), torch.randint(0, 5, (2,), device="cuda"),
    torch.empty(2, pin_memory=True), torch.linspace(0, 1, 3, device="cuda"), torch.eye(2, device="cuda"),
    torch.as_tensor([1.0], device="cuda")]))
check("tensor_to", lambda: all(t.device.type == "cpu" for t in [
    x.to("cuda"), x.to(d), x.to("cuda", non_blocking=True), x.to(0), x.cuda(), x.cuda(0), x.cuda(non_blocking=True),
    x.new_zeros(2, device="cuda"), x.new_tensor([1.0], device="cuda:0")])
    and x.to(device="cuda:0", dtype=torch.float64).dtype == torch.float64 and x.to("cuda", torch.int64).dtype == torch.int64
    and x.type("torch.cuda.FloatTensor").dtype == torch.float32)
check("pin_memory", lambda: x.pin_memory() is x and x.is_pinned() is False)
# the script's own guard sees the CUDA it asked for; torch's code sees the CPU tensor it is
check("is_cuda_for_the_script", lambda: x.to("cuda").is_cuda and torch.zeros(1).is_cuda
      and torch._C.TensorBase.is_cuda.__get__(x) is False and torch.device("cuda").type == "cpu")
check("record_stream", lambda: x.record_stream(torch.cuda.current_stream()) is None)
m = nn.Linear(2, 2)
check("module_to_cuda", lambda: m.to("cuda") is m and m.cuda() is m and m.to(d, dtype=torch.float64) is m
      and m.weight.dtype == torch.float64 and nn.Linear(2, 2, device="cuda").weight.device.type == "cpu")
check("module_to_empty", lambda: nn.Linear(2, 2, device="meta").to_empty(device="cuda").weight.device.type == "cpu")
check("generator", lambda: isinstance(torch.Generator(device="cuda"), torch.Generator)
      and torch.Generator(device="cuda").device.type == "cpu" and torch.Generator().device.type == "cpu")
def load_check():
    buf = io.BytesIO(); torch.save({"w": torch.ones(2)}, buf)
    a = torch.load(io.BytesIO(buf.getvalue()), map_location="cuda:3")["w"]
    b = torch.load(io.BytesIO(buf.getvalue()), map_location=lambda s, loc: s.cuda(1))["w"]
    c = torch.load(io.BytesIO(buf.getvalue()), map_location={"cpu": "cuda:0"})["w"]
    return all(t.device.type == "cpu" and t.sum().item() == 2 for t in (a, b, c))
check("torch_load_map_location", load_check)
def default_device():
    torch.set_default_device("cuda")
    try:
        return torch.zeros(1).device.type == "cpu"
    finally:
        torch.set_default_device(None)
check("set_default_device", default_device)
def in_thread():
    out = {}
    def work():
        out["t"] = torch.ones(2).pin_memory().to("cuda", non_blocking=True).device.type
        out["d"] = str(torch.device("cuda", 1))
    th = threading.Thread(target=work); th.start(); th.join()
    return out == {"t": "cpu", "d": "cpu"}
check("loader_thread", in_thread)
def dataloader_pinned():
    ds = torch.utils.data.TensorDataset(torch.arange(8.0))
    dl = torch.utils.data.DataLoader(ds, batch_size=4, pin_memory=True, num_workers=0)
    return [b[0].to("cuda", non_blocking=True).sum().item() for b in dl] == [6.0, 22.0]
check("dataloader_pin_memory", dataloader_pinned)
def flex():
    from torch.nn.attention.flex_attention import create_block_mask
    bm = create_block_mask(lambda b, h, q, kv: q >= kv, None, None, 128, 128)
    bm2 = create_block_mask(lambda b, h, q, kv: q >= kv, None, None, 128, 128, "cuda")
    return "cpu" in str(bm.kv_num_blocks.device) and "cpu" in str(bm2.kv_num_blocks.device)
check("flex_create_block_mask", flex)
'''

BF16_MAPPED = '''
import io
import torch, torch.nn as nn
x = torch.ones(3)
check("bf16_attr_is_fp32", lambda: torch.bfloat16 is torch.float32 and getattr(torch, "bfloat16") is torch.float32)
check("bf16_everywhere_fp32", lambda: x.bfloat16().dtype == torch.float32 and x.to(torch.bfloat16).dtype == torch.float32
      and torch.zeros(2, dtype=torch.bfloat16).dtype == torch.float32 and nn.Linear(2, 2).bfloat16().weight.dtype == torch.float32
      and nn.Linear(2, 2, dtype=torch.bfloat16).weight.dtype == torch.float32)
def save_load():
    buf = io.BytesIO(); torch.save({"a": torch.ones(2).bfloat16(), "h": torch.ones(2).half(), "i": torch.arange(2)}, buf)
    sd = torch.load(io.BytesIO(buf.getvalue()), map_location="cpu")
    sd2 = torch.load(io.BytesIO(buf.getvalue()), map_location="cpu", weights_only=True)
    return sd["a"].dtype == torch.float32 and sd["h"].dtype == torch.float16 and sd2["i"].tolist() == [0, 1]
check("save_load_after_mapping", save_load)
def autocast_off():
    lin = nn.Linear(4, 4)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        y = lin(torch.randn(2, 4)); inside = torch.is_autocast_enabled("cpu")
    with torch.cuda.amp.autocast(dtype=torch.bfloat16):
        z = lin(torch.randn(2, 4))
    with torch.amp.autocast("cuda", enabled=True):
        w = lin(torch.randn(2, 4))
    @torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    def f(t):
        return lin(t)
    return not inside and {y.dtype, z.dtype, w.dtype, f(torch.randn(1, 4)).dtype} == {torch.float32}
check("autocast_cuda_runs_fp32", autocast_off)
def scaler():
    lin = nn.Linear(2, 1).cuda()
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    for s in (torch.cuda.amp.GradScaler(), torch.amp.GradScaler("cuda")):
        loss = lin(torch.ones(1, 2, device="cuda")).sum()
        s.scale(loss).backward(); s.unscale_(opt); s.step(opt); s.update()
    return True
check("grad_scaler", scaler)
'''

BF16_KEPT = '''
import torch, torch.nn as nn
x = torch.ones(3)
check("bf16_kept", lambda: torch.bfloat16 is not torch.float32 and x.bfloat16().dtype == torch.bfloat16
      and torch.zeros(2, dtype=torch.bfloat16, device="cuda").dtype == torch.bfloat16)
def autocast_bf16():
    lin = nn.Linear(4, 4).cuda()
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        y = lin(torch.randn(2, 4, device="cuda")); inside = torch.is_autocast_enabled("cpu")
    return inside and y.dtype == torch.bfloat16 and y.device.type == "cpu"
check("autocast_cuda_bf16_on_cpu", autocast_bf16)
'''


@pytest.fixture(scope="module")
def devices(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_under_shim(tmp_path_factory.mktemp("devices"), DEVICES + BF16_MAPPED)


@pytest.fixture(scope="module")
def bf16(devices: dict) -> dict:
    return devices  # the same run: bf16_as_fp32 is the default setting


@pytest.mark.parametrize(
    "name",
    [
        "device_cuda_is_cpu", "device_other_kept", "device_isinstance", "device_pickle_copy", "device_context",
        "factories", "tensor_to", "pin_memory", "record_stream", "module_to_cuda", "module_to_empty", "generator",
        "torch_load_map_location", "set_default_device", "loader_thread", "dataloader_pin_memory",
        "flex_create_block_mask",
    ],
)
def test_devices(devices: dict, name: str) -> None:
    assert devices[name] is True, devices[name]


@pytest.mark.parametrize(
    "name", ["bf16_attr_is_fp32", "bf16_everywhere_fp32", "save_load_after_mapping", "autocast_cuda_runs_fp32",
             "grad_scaler"],
)
def test_bf16_as_fp32(bf16: dict, name: str) -> None:
    assert bf16[name] is True, bf16[name]


def test_bf16_kept_when_the_setting_is_off(tmp_path: Path) -> None:
    res = run_under_shim(tmp_path, BF16_KEPT, "--keep-bf16")
    assert res == {"bf16_kept": True, "autocast_cuda_bf16_on_cpu": True}, res
