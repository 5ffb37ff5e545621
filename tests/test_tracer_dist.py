"""Collectives across two gloo ranks: each rank ends up with the union of both ranks' provenance."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      OMP_NUM_THREADS="1")
    sys.path.insert(0, str(HERE))
    import numpy as np
    import torch
    import torch.distributed as dist

    from harness.runtime import tracer
    from harness.runtime.context import RuntimeContext, RuntimeSettings

    ctx = RuntimeContext(RuntimeSettings(ledger_dir=out, t0=time.time(), trace=True, submission_dir=str(HERE),
                                         vocab_size=32))
    tr = tracer.install(ctx)
    tr.strict = True
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        lo = 100 * rank
        toks = torch.from_numpy(ctx.tag_validation(np.arange(4, dtype=np.uint16), lo, "val").astype(np.int64))
        x = toks.float() * 1.0
        dist.all_reduce(x)
        g = torch.empty(8)
        dist.all_gather_into_tensor(g, toks.float())
        res = {
            "all_reduce": [tr.tprov(x).lo.tolist(), tr.tprov(x).hi.tolist()],
            "all_gather": tr.tprov(g).hi.tolist(),
        }
        Path(out, f"result{rank}.json").write_text(json.dumps(res))
    finally:
        dist.destroy_process_group()
        tracer.uninstall()


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_all_reduce_and_all_gather_replay_provenance(tmp_path: Path) -> None:
    port = _free_port()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_rank_main, args=(r, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    for r in range(2):
        res = json.loads((tmp_path / f"result{r}.json").read_text())
        lo, hi = res["all_reduce"]
        assert lo == [0, 1, 2, 3] and hi == [100, 101, 102, 103]  # element i: position i of each rank
        assert res["all_gather"] == [0, 1, 2, 3, 100, 101, 102, 103]
