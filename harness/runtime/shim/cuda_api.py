"""`torch.cuda.*` answered on the CPU: one plausible H100 per local rank, wall-clock events, no-op streams
and synchronisation, memory statistics from the process's resident memory.

The device reported is the one the real run uses (an H100, capability 9.0), so a script that picks code
paths by capability takes the path that is being checked for compliance.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from types import ModuleType, SimpleNamespace
from typing import Any

from harness.runtime.shim import state

GPU_NAME = "NVIDIA H100 80GB HBM3"
TOTAL_MEMORY = 85_520_809_984  # 81559 MiB, as an H100 SXM reports
CAPABILITY = (9, 0)


def device_count() -> int:
    for var in ("LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        try:
            n = int(os.environ.get(var, ""))
        except ValueError:
            continue
        if n > 0:
            return n
    return 1


_current = [-1]


def current_device() -> int:
    if _current[0] < 0:
        try:
            _current[0] = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            _current[0] = 0
    return _current[0]


def _index(device: Any) -> int:
    if device is None:
        return current_device()
    if isinstance(device, int):
        return device
    if isinstance(device, str):
        _, _, idx = device.partition(":")
        return int(idx) if idx.isdigit() else current_device()
    idx = getattr(device, "index", None)
    return current_device() if idx is None else int(idx)


class _DeviceProperties(SimpleNamespace):
    def __repr__(self) -> str:
        return (
            f"_CudaDeviceProperties(name='{self.name}', major={self.major}, minor={self.minor}, "
            f"total_memory={self.total_memory // 2**20}MB, multi_processor_count={self.multi_processor_count})"
        )


def get_device_properties(device: Any = None) -> _DeviceProperties:
    i = _index(device)
    return _DeviceProperties(
        name=GPU_NAME, major=CAPABILITY[0], minor=CAPABILITY[1], total_memory=TOTAL_MEMORY,
        multi_processor_count=132, is_integrated=False, is_multi_gpu_board=False,
        L2_cache_size=52_428_800, warp_size=32, max_threads_per_multi_processor=2048,
        regs_per_multiprocessor=65536, shared_memory_per_block=49152,
        shared_memory_per_block_optin=232448, shared_memory_per_multiprocessor=233472,
        gcnArchName="NA", uuid=f"GPU-00000000-0000-0000-0000-00000000000{i % 10}", pci_bus_id=i,
        pci_device_id=0, pci_domain_id=0, clock_rate=1980000, memory_clock_rate=2619000,
        memory_bus_width=5120,
    )


# memory: resident set size of this process stands in for device memory -------------------------
_peak = [0]


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_allocated(device: Any = None) -> int:
    cur = _rss()
    _peak[0] = max(_peak[0], cur)
    return cur


def max_memory_allocated(device: Any = None) -> int:
    memory_allocated()
    if not _reset[0]:  # until a reset, the process's peak resident size is the peak
        _peak[0] = max(_peak[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return _peak[0]


_reset = [False]


def reset_peak_memory_stats(device: Any = None) -> None:
    _reset[0] = True
    _peak[0] = _rss()


def memory_stats(device: Any = None) -> dict[str, int]:
    cur, peak = memory_allocated(), max_memory_allocated()
    stats: dict[str, int] = {}
    for kind in ("allocated_bytes", "reserved_bytes", "active_bytes"):
        stats[f"{kind}.all.current"] = cur
        stats[f"{kind}.all.peak"] = peak
        stats[f"{kind}.all.allocated"] = peak
        stats[f"{kind}.all.freed"] = 0
    stats["num_alloc_retries"] = 0
    stats["num_ooms"] = 0
    return stats


def mem_get_info(device: Any = None) -> tuple[int, int]:
    return max(TOTAL_MEMORY - memory_allocated(), 0), TOTAL_MEMORY


def memory_summary(device: Any = None, abbreviated: bool = False) -> str:
    return (
        "harness CPU shim: no CUDA device; figures are the process's resident memory\n"
        f"allocated: {memory_allocated() // 2**20} MiB  peak: {max_memory_allocated() // 2**20} MiB\n"
    )


# events and streams ---------------------------------------------------------------------------
class Event:
    """CUDA event timed by the wall clock (work on the CPU is synchronous)."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False,
                 **_: Any) -> None:
        self.enable_timing = enable_timing
        self._t: float | None = None

    def record(self, stream: Any = None) -> None:
        self._t = time.perf_counter()

    def wait(self, stream: Any = None) -> None:
        pass

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end_event: "Event") -> float:
        if self._t is None or getattr(end_event, "_t", None) is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        return (end_event._t - self._t) * 1000.0

    def __repr__(self) -> str:
        return "<torch.cuda.Event (harness CPU shim)>"


class Stream:
    def __init__(self, device: Any = None, priority: int = 0, **_: Any) -> None:
        self.device = device
        self.priority = priority

    def wait_stream(self, stream: Any) -> None:
        pass

    def wait_event(self, event: Any) -> None:
        pass

    def record_event(self, event: Event | None = None) -> Event:
        event = event or Event()
        event.record()
        return event

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stream)

    def __hash__(self) -> int:
        return 0


_DEFAULT_STREAM = Stream()


@contextlib.contextmanager
def stream(s: Any = None) -> Any:
    yield s


class _NoDevice(contextlib.nullcontext):
    """torch.cuda.device(i) / device_of(t): nothing to switch on the CPU."""

    def __init__(self, device: Any = None) -> None:
        super().__init__()
        self.idx = current_device()


def install(torch: ModuleType) -> None:
    cuda = torch.cuda
    set_ = {
        "is_available": lambda: True,
        "is_initialized": lambda: True,
        "init": lambda: None,
        "device_count": device_count,
        "current_device": current_device,
        "set_device": _set_device,
        "get_device_name": lambda device=None: GPU_NAME,
        "get_device_properties": get_device_properties,
        "get_device_capability": lambda device=None: CAPABILITY,
        "get_arch_list": lambda: ["sm_80", "sm_90"],
        "is_bf16_supported": lambda including_emulation=True: True,
        "is_tf32_supported": lambda: True,
        "synchronize": lambda device=None: None,
        "empty_cache": lambda: None,
        "ipc_collect": lambda: None,
        "set_per_process_memory_fraction": lambda fraction, device=None: None,
        "set_sync_debug_mode": lambda mode: None,
        "get_sync_debug_mode": lambda: 0,
        "memory_allocated": memory_allocated,
        "max_memory_allocated": max_memory_allocated,
        "memory_reserved": memory_allocated,
        "max_memory_reserved": max_memory_allocated,
        "memory_cached": memory_allocated,
        "max_memory_cached": max_memory_allocated,
        "reset_peak_memory_stats": reset_peak_memory_stats,
        "reset_max_memory_allocated": reset_peak_memory_stats,
        "reset_max_memory_cached": reset_peak_memory_stats,
        "reset_accumulated_memory_stats": lambda device=None: None,
        "memory_stats": memory_stats,
        "memory_summary": memory_summary,
        "memory_snapshot": lambda *a, **k: [],
        "mem_get_info": mem_get_info,
        "device_memory_used": lambda device=None: memory_allocated(),
        "utilization": lambda device=None: 0,
        "temperature": lambda device=None: 32,
        "power_draw": lambda device=None: 70_000,
        "clock_rate": lambda device=None: 1980,
        "manual_seed": lambda seed: None,  # torch.manual_seed already seeds the CPU generator
        "manual_seed_all": lambda seed: None,
        "seed": lambda: None,
        "seed_all": lambda: None,
        "initial_seed": torch.initial_seed,
        "get_rng_state": lambda device="cuda": torch.get_rng_state(),
        "set_rng_state": lambda new_state, device="cuda": torch.set_rng_state(new_state),
        "get_rng_state_all": lambda: [torch.get_rng_state() for _ in range(device_count())],
        "set_rng_state_all": lambda states: torch.set_rng_state(list(states)[0]),
        "Event": Event,
        "Stream": Stream,
        "stream": stream,
        "StreamContext": stream,
        "current_stream": lambda device=None: _DEFAULT_STREAM,
        "default_stream": lambda device=None: _DEFAULT_STREAM,
        "set_stream": lambda s: None,
        "device": _NoDevice,
        "device_of": _NoDevice,
        "is_current_stream_capturing": lambda: False,
        "can_device_access_peer": lambda device, peer: True,
    }
    for name, value in set_.items():
        setattr(cuda, name, value)
    mem = getattr(cuda, "memory", None)
    if isinstance(mem, ModuleType):
        for name in ("memory_allocated", "max_memory_allocated", "memory_reserved", "max_memory_reserved",
                     "reset_peak_memory_stats", "memory_stats", "memory_summary", "mem_get_info",
                     "empty_cache", "memory_snapshot", "set_per_process_memory_fraction"):
            if hasattr(mem, name):
                setattr(mem, name, set_[name])
        mem._record_memory_history = lambda *a, **k: None
        mem._dump_snapshot = lambda *a, **k: None
    nvtx = getattr(cuda, "nvtx", None)
    if nvtx is not None:
        nvtx.range_push = lambda msg: 0
        nvtx.range_pop = lambda: 0
        nvtx.mark = lambda msg: None
        nvtx.range = lambda msg, *a, **k: contextlib.nullcontext()
    torch.backends.cuda.is_built = lambda: True
    if getattr(torch.version, "cuda", None) is None:
        torch.version.cuda = "12.8"  # scripts log it; the real runs used CUDA 12.x
    acc = getattr(torch, "accelerator", None)
    if acc is not None:
        acc.is_available = lambda: True
        acc.device_count = device_count
        acc.synchronize = lambda device=None: None
        acc.current_device_index = current_device
        acc.set_device_index = _set_device
    state.note("torch.cuda API")


def _set_device(device: Any) -> None:
    _current[0] = _index(device)
