"""CPU shim with two ranks (started as torchrun starts its workers: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_*
in the environment; without the launcher, to keep the test fast): nccl with device_id becomes gloo, DDP(device_ids=[...]) runs on the CPU,
each rank sees its own "GPU", collectives the scripts use work (all_reduce AVG/SUM/MAX, barrier)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

from conftest import ROOT as REPO


DDP_SCRIPT = '''
import json, os
import torch, torch.distributed as dist, torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

local_rank = int(os.environ["LOCAL_RANK"])
assert torch.cuda.is_available()
device = torch.device("cuda", local_rank)
torch.cuda.set_device(device)
dist.init_process_group(backend="nccl", device_id=device)
dist.barrier(device_ids=[local_rank])
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = torch.compile(nn.Linear(4, 1).to(device).bfloat16(), fullgraph=True)
for m in model.modules():
    m.float()
ddp = DDP(model, device_ids=[local_rank], broadcast_buffers=False)
opt = torch.optim.AdamW(ddp.parameters(), lr=0.1, fused=True)
x = torch.full((2, 4), float(rank + 1), device=device)
with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
    loss = ddp(x).sum()
loss.backward()
grads = [p.grad.clone() for p in ddp.parameters()]
opt.step()
avg = torch.tensor([float(rank)], device=device)
dist.all_reduce(avg, op=dist.ReduceOp.AVG)
cap = torch.tensor(int(rank == 1), device=device)
dist.all_reduce(cap, op=dist.ReduceOp.MAX)
gathered = torch.empty(world * 2, device=device)
dist.all_gather_into_tensor(gathered, torch.full((2,), float(rank), device=device))
print("RESULT=" + json.dumps({
    "rank": rank, "world": world, "backend": dist.get_backend(), "count": torch.cuda.device_count(),
    "current": torch.cuda.current_device(), "avg": avg.item(), "cap": cap.item(),
    "gathered": gathered.tolist(), "grad0": grads[0].tolist(),
}), flush=True)
dist.destroy_process_group()
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# torch 2.13's gloo sometimes aborts a rank at interpreter exit, after the script finished and printed
# ("terminate called without an active exception", SIGABRT) even with the barrier the shim now puts before
# destroy_process_group. Known and reported in the README; one retry keeps CI from flaking on it, and any
# other failure (or that abort twice in a row) still fails the test.
EXIT_ABORT = "terminate called without an active exception"


def _run_two_ranks(tmp_path: Path, script: Path) -> tuple[list[int], list[str], list[str]]:
    base = {k: v for k, v in os.environ.items() if k != "HARNESS_RUNTIME"}
    base.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
                WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "harness.runtime.shim", "--ledger", str(tmp_path / "ledger"), str(script)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
            env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
        )
        for r in range(2)
    ]
    rcs, outs, errs = [], [], []
    try:
        for p in procs:
            out, err = p.communicate(timeout=180)
            rcs.append(p.returncode)
            outs.append(out)
            errs.append(err)
    finally:
        for p in procs:
            p.kill()
    return rcs, outs, errs


@pytest.mark.slow
def test_two_ranks_ddp_on_gloo(tmp_path: Path) -> None:
    script = tmp_path / "train_gpt.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    rcs, outs, errs = _run_two_ranks(tmp_path, script)
    exit_abort_only = all(rc == 0 or (rc == -6 and EXIT_ABORT in err and "RESULT=" in out)
                          for rc, out, err in zip(rcs, outs, errs))
    if any(rcs) and exit_abort_only:
        import shutil

        shutil.rmtree(tmp_path / "ledger", ignore_errors=True)
        rcs, outs, errs = _run_two_ranks(tmp_path, script)
    for rc, err in zip(rcs, errs):
        assert rc == 0, err[-4000:]
    res = sorted((json.loads(ln.split("RESULT=", 1)[1]) for out in outs for ln in out.splitlines()
                  if "RESULT=" in ln), key=lambda r: r["rank"])
    assert [r["rank"] for r in res] == [0, 1]
    for r in res:
        assert r["world"] == 2 and r["backend"] == "gloo" and r["count"] == 2 and r["current"] == r["rank"]
        assert r["avg"] == 0.5 and r["cap"] == 1 and r["gathered"] == [0.0, 0.0, 1.0, 1.0]
    # DDP averaged the gradients: rank inputs 1 and 2 -> mean input 1.5 times 2 rows
    assert res[0]["grad0"] == res[1]["grad0"] == [[3.0, 3.0, 3.0, 3.0]]
    assert sorted(f.name for f in (tmp_path / "ledger").glob("*.jsonl")) == ["ledger.rank0.jsonl",
                                                                             "ledger.rank1.jsonl"]
