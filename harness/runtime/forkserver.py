"""Fork server for the behavioural probes: one process, many validation streams.

Installed (by bootstrap, after the tracer) when the probe plan is given, in `settings.extra["probe"]`
or the HARNESS_PROBE environment variable: a JSON object (or the path of a JSON file) with
    variants   path of a .npy array [n, N] of uint16 streams; row 0 is the stream the run serves
    names      n labels (folder names of the variants' outputs)
    out        folder for the variants' outputs
    jobs       variants run at once (default 1)
    timeout_s  wall-clock cap per variant (default 600)

It wraps ctx.tag_validation. At the first validation read the process forks one child per variant
1..n-1 and waits for them; each child swaps in its variant's tokens at every validation read (before
the tracer tags them) and runs the script to its end with its own ledger and stdout under
out/<name>/. The parent then goes on as variant 0, the run the harness launched. Everything the
script did before its first validation read (imports, model construction, and training when the
script reads validation after training) is done once and shared copy-on-write.

Forking is safe because the probes run the child with OMP_NUM_THREADS=1 and fork before any other
thread matters; a process with torch.distributed initialized is not forked (the plan says so).
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

ENV = "HARNESS_PROBE"
SERVER_FILE = "forkserver.json"  # written by the parent: proof the server ran, and each child's end
CHILD_FILE = "child.json"  # written by each child at exit: what it substituted


def load_plan(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    if isinstance(raw, dict):
        return raw
    text = str(raw)
    if not text.lstrip().startswith("{"):
        text = Path(text).read_text(encoding="utf-8")
    plan = json.loads(text)
    return plan if isinstance(plan, dict) else None


def install(ctx: Any) -> None:
    plan = load_plan(ctx.settings.extra.get("probe") or os.environ.get(ENV))
    if plan is None:
        return
    server = ForkServer(ctx, plan)
    inner = ctx.tag_validation

    def tag_validation(arr: Any, lo: int, file: str) -> Any:
        server.on_read()
        return inner(server.substitute(arr, lo), lo, file)

    ctx.tag_validation = tag_validation
    ctx.forkserver = server


class ForkServer:
    def __init__(self, ctx: Any, plan: dict[str, Any]) -> None:
        import numpy as np

        self.ctx = ctx
        self.out = Path(plan["out"])
        self.streams = np.load(plan["variants"], mmap_mode="r")
        n = int(self.streams.shape[0])
        self.names = [str(x) for x in plan.get("names", [f"v{i}" for i in range(n)])]
        self.jobs = max(1, int(plan.get("jobs", 1)))
        self.timeout_s = float(plan.get("timeout_s", 600))
        self.index = 0  # which variant this process runs (0 = the served stream, no swap)
        self.forked = False
        self.substituted_reads = 0
        self.substituted_positions = 0
        self.unsupported: list[str] = []

    # -- the swap -----------------------------------------------------------------------------

    def substitute(self, arr: Any, lo: int) -> Any:
        if self.index == 0:
            return arr
        try:
            out = _swap(arr, int(lo), self.streams[self.index])
        except Exception as e:  # noqa: BLE001 - recorded; the variant is then discarded by the probe
            self.unsupported.append(f"{type(arr).__name__}: {type(e).__name__}: {e}")
            return arr
        if out is None:
            self.unsupported.append(f"{type(arr).__name__} of shape {getattr(arr, 'shape', '?')}")
            return arr
        self.substituted_reads += 1
        self.substituted_positions += len(out)
        return out

    # -- forking ------------------------------------------------------------------------------

    def on_read(self) -> None:
        if self.forked:
            return
        self.forked = True
        self.out.mkdir(parents=True, exist_ok=True)
        info: dict[str, Any] = {"pid": os.getpid(), "variants": len(self.names), "site": self.ctx.site(3),
                                "threads": threading.active_count(), "t_fork": time.time(), "children": {}}
        refused = _unsafe_to_fork(str(getattr(self.ctx.settings, "device", "cpu")))
        if refused:
            info["refused"] = refused
            _write_json(self.out / SERVER_FILE, info)
            return
        _write_json(self.out / SERVER_FILE, info)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        # frozen objects are neither copied on write by the parent's collector nor torn down one by one
        # when a child exits (interpreter shutdown of a torch process costs ~0.5 s otherwise)
        gc.freeze()
        running: dict[int, tuple[int, float]] = {}  # pid -> (variant, start)
        todo = list(range(1, len(self.names)))
        while todo or running:
            while todo and len(running) < self.jobs:
                i = todo.pop(0)
                pid = os.fork()
                if pid == 0:
                    self._become_child(i)
                    return  # the child returns into the script with its variant
                running[pid] = (i, time.time())
            self._reap(running, info)
        gc.unfreeze()
        info["t_done"] = time.time()
        _write_json(self.out / SERVER_FILE, info)

    def _reap(self, running: dict[int, tuple[int, float]], info: dict[str, Any]) -> None:
        while running:
            for pid, (i, t0) in list(running.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                killed = False
                if done == 0 and time.time() - t0 > self.timeout_s:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    done, status = os.waitpid(pid, 0)
                    killed = True
                if done == 0:
                    continue
                rc = os.waitstatus_to_exitcode(status)
                rec = {"name": self.names[i], "rc": rc, "wall_s": round(time.time() - t0, 3), "timed_out": killed}
                info["children"][str(i)] = rec
                _write_json(self.out / self.names[i] / "status.json", rec)
                del running[pid]
                return
            time.sleep(0.02)

    def _become_child(self, i: int) -> None:
        from harness.ledger import LedgerWriter

        self.index = i
        d = self.out / self.names[i]
        d.mkdir(parents=True, exist_ok=True)
        # stdout / stderr of this variant go to its own file (the parent's are the run's)
        fd = os.open(d / "stdout.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        # bootstrap's at-fork hook gave this process a per-pid ledger in the run's folder; the
        # variant's events belong in its own folder, where the run's verdict does not read them
        ctx = self.ctx
        old = ctx.ledger
        ctx.set_writer(LedgerWriter(d / f"ledger.rank{ctx.rank}.jsonl", rank=ctx.rank, t0=ctx.settings.t0))
        try:
            old.close()
            if old.path is not None and old.path != ctx.ledger.path and old.path.exists() and old.path.stat().st_size == 0:
                old.path.unlink()
        except Exception:  # noqa: BLE001
            pass
        ctx.emit("run_start", site=None, argv=list(sys.argv), pid=os.getpid(), ppid=os.getppid(),
                 python=sys.version.split()[0], device=ctx.settings.device,
                 scale=ctx.settings.extra.get("scale", ""), traced=bool(ctx.settings.trace), descendant=True,
                 probe_variant=self.names[i])
        atexit.register(self._child_exit, d)

    def _child_exit(self, d: Path) -> None:
        _write_json(d / CHILD_FILE, {"name": self.names[self.index], "substituted_reads": self.substituted_reads,
                                     "substituted_positions": self.substituted_positions,
                                     "unsupported": self.unsupported[:5]})
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass


def _swap(arr: Any, lo: int, stream: Any) -> Any:
    """A copy of `arr` (elements = stream positions lo, lo+1, ...) holding the variant's tokens.
    Elements outside the stream (a header read as tokens) keep their values. None: not a 1-D array."""
    import numpy as np

    n_stream = int(stream.shape[0])
    if type(arr).__module__.startswith("torch"):
        import torch

        if arr.dim() != 1:
            return None
        out = arr.clone()
        a, b = max(lo, 0), min(lo + int(out.numel()), n_stream)
        if a < b:
            out[a - lo:b - lo] = torch.from_numpy(np.asarray(stream[a:b]).astype(np.int64)).to(out.dtype)
        return out
    src = np.asarray(arr)
    if src.ndim != 1:
        return None
    out = np.array(src, copy=True)
    a, b = max(lo, 0), min(lo + out.size, n_stream)
    if a < b:
        out[a - lo:b - lo] = np.asarray(stream[a:b]).astype(out.dtype)
    return out


def _unsafe_to_fork(device: str) -> str | None:
    """Why this process must not fork (the probes then run one process per variant). On device "cpu"
    the CUDA shim answers torch.cuda questions, so only a real device is asked."""
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            return "torch.distributed is initialized: forking a process group is unsafe"
    except Exception:  # noqa: BLE001
        pass
    cuda = sys.modules.get("torch.cuda")
    try:
        if device != "cpu" and cuda is not None and cuda.is_initialized():
            return "CUDA is initialized: a forked child cannot use it"
    except Exception:  # noqa: BLE001
        pass
    return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
    os.replace(tmp, path)
