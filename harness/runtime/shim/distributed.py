"""torch.distributed on the CPU: NCCL becomes gloo, device_id / device_ids are dropped.

gloo on torch 2.13 implements what the challenge's scripts call (all_reduce incl. AVG, reduce_scatter_tensor,
all_gather_into_tensor, broadcast, barrier), so collectives themselves are left untouched.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from harness.runtime.shim import state


def _cpu_backend(backend: Any) -> Any:
    if backend is None:
        return "gloo"
    if isinstance(backend, str):
        b = backend.lower()
        if "nccl" in b or "cuda" in b:  # "nccl", "cpu:gloo,cuda:nccl"
            return "gloo"
    return backend


def install(torch: ModuleType) -> None:
    dist = torch.distributed
    c10d = getattr(dist, "distributed_c10d", None)
    orig_init = getattr(dist, "init_process_group", None)
    if orig_init is not None:

        @functools.wraps(orig_init)
        def init_process_group(*args: Any, **kwargs: Any) -> Any:
            if args:
                args = (_cpu_backend(args[0]),) + args[1:]
            else:
                kwargs["backend"] = _cpu_backend(kwargs.get("backend"))
            kwargs.pop("device_id", None)
            return orig_init(*args, **kwargs)

        dist.init_process_group = init_process_group
        if c10d is not None:
            c10d.init_process_group = init_process_group

    orig_new_group = getattr(dist, "new_group", None)
    if orig_new_group is not None:

        @functools.wraps(orig_new_group)
        def new_group(*args: Any, **kwargs: Any) -> Any:
            if "backend" in kwargs:
                kwargs["backend"] = _cpu_backend(kwargs["backend"])
            kwargs.pop("device_id", None)
            return orig_new_group(*args, **kwargs)

        dist.new_group = new_group
        if c10d is not None:
            c10d.new_group = new_group

    orig_barrier = getattr(dist, "barrier", None)
    if orig_barrier is not None:

        @functools.wraps(orig_barrier)
        def barrier(*args: Any, **kwargs: Any) -> Any:
            kwargs.pop("device_ids", None)  # a CUDA-only argument
            return orig_barrier(*args, **kwargs)

        dist.barrier = barrier
        if c10d is not None:
            c10d.barrier = barrier

    orig_destroy = getattr(dist, "destroy_process_group", None)
    if orig_destroy is not None and orig_barrier is not None:

        @functools.wraps(orig_destroy)
        def destroy_process_group(*args: Any, **kwargs: Any) -> Any:
            # gloo: a rank that tears its sockets down while a peer still finishes the last collective
            # aborts the peer ("terminate called without an active exception"); NCCL waits, so wait too
            try:
                if dist.is_initialized() and not args and not kwargs.get("group"):
                    orig_barrier()
            except Exception:  # noqa: BLE001 - a broken group is torn down anyway
                pass
            return orig_destroy(*args, **kwargs)

        dist.destroy_process_group = destroy_process_group
        if c10d is not None:
            c10d.destroy_process_group = destroy_process_group

    DDP = torch.nn.parallel.DistributedDataParallel
    orig_ddp_init = DDP.__init__

    @functools.wraps(orig_ddp_init)
    def ddp_init(self: Any, module: Any, *args: Any, **kwargs: Any) -> None:
        # DDP(module, device_ids, output_device, ...): both mean a CUDA device
        args = tuple(None if i < 2 else a for i, a in enumerate(args))
        kwargs.pop("device_ids", None)
        kwargs.pop("output_device", None)
        orig_ddp_init(self, module, *args, **kwargs)

    DDP.__init__ = ddp_init
    state.note("distributed nccl->gloo, DDP device_ids")
