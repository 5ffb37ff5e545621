"""CPU shim end to end: a small script shaped like the challenge's records (CUDA required, FA3 import with a
sliding window, compiled model, fused optimizer, bf16 autocast, inference_mode scoring whose rotary cache
is then reused by score-first TTT, quantize + save + reload, nvidia-smi log, final score line) runs
unmodified on the CPU.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

from conftest import ROOT as REPO


SCRIPT = r'''
import io, math, os, subprocess, time, zlib
import torch, torch.nn as nn, torch.nn.functional as F
from flash_attn_interface import flash_attn_func as flash_attn_3_func

class Rotary(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim)), persistent=False)
        self._cache = None
    def forward(self, t, device):
        if self._cache is None or self._cache[0].size(1) != t or self._cache[0].device != device:
            f = torch.outer(torch.arange(t, device=device, dtype=torch.float32), self.inv_freq.to(device))
            self._cache = (f.cos()[None, :, None, :], f.sin()[None, :, None, :])
        return self._cache

def rope(x, cos, sin):
    h = x.size(-1) // 2
    return torch.cat((x[..., :h] * cos + x[..., h:] * sin, x[..., :h] * (-sin) + x[..., h:] * cos), -1)

class GPT(nn.Module):
    def __init__(self, vocab=64, dim=32, heads=4, kv=2, window=8):
        super().__init__()
        self.h, self.kv, self.hd, self.window = heads, kv, dim // heads, window
        self.emb = nn.Embedding(vocab, dim)
        nn.init.normal_(self.emb.weight, std=0.02)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kvp = nn.Linear(dim, 2 * kv * self.hd, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)
        self.rot = Rotary(self.hd)
    def logits(self, x):
        b, t = x.shape
        e = self.emb(x)
        q = self.q(e).view(b, t, self.h, self.hd)
        k, v = self.kvp(e).view(b, t, 2, self.kv, self.hd).unbind(2)
        cos, sin = self.rot(t, x.device)
        y = flash_attn_3_func(rope(q, cos, sin), rope(k, cos, sin), v, causal=True, window_size=(self.window, 0))
        return F.linear(e + self.o(y.reshape(b, t, -1)), self.emb.weight)
    def forward(self, x, y):
        return F.cross_entropy(self.logits(x).flatten(0, 1).float(), y.flatten())

assert torch.cuda.is_available(), "CUDA is required"
device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
torch.cuda.set_device(device)
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cuda.enable_math_sdp(False)
print(subprocess.run(["nvidia-smi"], stdout=subprocess.PIPE, text=True).stdout.splitlines()[2])
torch.manual_seed(0)
tokens = torch.randint(0, 64, (4097,), generator=torch.Generator().manual_seed(1))
base = GPT().to(device).bfloat16()
model = torch.compile(base, dynamic=False, fullgraph=True)
opt = torch.optim.AdamW(base.parameters(), lr=3e-3, fused=True)

def score(m, seq=32):
    m.eval()
    nll_sum, n = torch.zeros((), device=device, dtype=torch.float64), 0
    with torch.inference_mode():
        x = tokens[:-1][: (4096 // seq) * seq].view(-1, seq).to(device, non_blocking=True)
        y = tokens[1:][: (4096 // seq) * seq].view(-1, seq).to(device, non_blocking=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            nll_sum += F.cross_entropy(m.logits(x).flatten(0, 1).float(), y.flatten(), reduction="sum").double()
        n += y.numel()
    m.train()
    return (nll_sum / n).item()

pre = score(base)  # builds the rotary cache under inference_mode
torch.cuda.synchronize(); t0 = torch.cuda.Event(enable_timing=True); t1 = torch.cuda.Event(enable_timing=True)
t0.record()
for step in range(3):
    x = tokens[step * 256: step * 256 + 256].view(8, 32).to(device)
    y = tokens[step * 256 + 1: step * 256 + 257].view(8, 32).to(device)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        loss = model(x, y)  # reuses the cache built while scoring
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
t1.record(); torch.cuda.synchronize()
print(f"train_time:{t0.elapsed_time(t1):.0f}ms peak:{torch.cuda.max_memory_allocated() // 2**20}MiB")
blob = zlib.compress(_b := (lambda b: (torch.save(base.state_dict(), b), b.getvalue())[1])(io.BytesIO()))
with open("final_model.ptz", "wb") as f:
    f.write(blob)
with open("final_model.ptz", "rb") as f:
    base.load_state_dict(torch.load(io.BytesIO(zlib.decompress(f.read())), map_location="cuda"))
loss = score(base)
print(f"final_roundtrip_exact val_loss:{loss:.8f} val_bpb:{loss / math.log(2):.8f} pre:{pre:.4f}")
'''


@pytest.mark.slow
def test_record_shaped_script_runs_on_cpu(tmp_path: Path) -> None:
    script = tmp_path / "train_gpt.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_RUNTIME"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.runtime.shim", "--ledger", str(tmp_path / "ledger"), str(script)],
        capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert "Driver Version" in out
    m = re.search(r"final_roundtrip_exact val_loss:([0-9.]+) val_bpb:([0-9.]+) pre:([0-9.]+)", out)
    assert m, out[-2000:]
    val_loss, pre = float(m.group(1)), float(m.group(3))
    assert 0 < val_loss < 10 and val_loss != pre  # trained after scoring; numbers are real
    assert re.search(r"train_time:\d+ms peak:\d+MiB", out)
    events = [json.loads(ln) for ln in (tmp_path / "ledger" / "ledger.rank0.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["subprocess"] and events[0]["site"].startswith("train_gpt.py:")
