"""The child's sandbox, parent side: scrubbed environment, resource limits, network namespace,
bounded output capture, and killing the whole process tree.

Network: the child is moved into a fresh network namespace (only loopback, brought up) where the
kernel allows it (root, or unprivileged user namespaces not needed: CLONE_NEWNET alone); elsewhere the
runtime's socket hooks are the barrier. Either way the hooks record attempts as `net` events.
Process tree: the child leads a new session; at the end its process group is killed, and so is every
process still carrying this run's marker in its environment (a grandchild that left the group).
"""

from __future__ import annotations

import collections
import ctypes
import fcntl
import os
import resource
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

MARKER_ENV = "HARNESS_RUN_MARKER"
# Kept from the parent's environment; everything else is dropped.
KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "LD_LIBRARY_PATH")
KEEP_ENV_CUDA = (
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "CUDA_HOME",
    "CUDA_PATH", "TRITON_PTXAS_PATH", "NCCL_DEBUG",
)

_CLONE_NEWNET = 0x40000000
_SIOCSIFFLAGS = 0x8914
_IFF_UP_LOOPBACK_RUNNING = 0x1 | 0x8 | 0x40


def scrubbed_env(
    workdir: Path, tmpdir: Path, *, device: str, pythonpath: list[str], base: dict[str, str] | None = None
) -> dict[str, str]:
    src = os.environ if base is None else base
    keep = KEEP_ENV + (KEEP_ENV_CUDA if device == "cuda" else ())
    env = {k: src[k] for k in keep if k in src}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        HOME=str(workdir),
        TMPDIR=str(tmpdir),
        PYTHONPATH=os.pathsep.join(pythonpath),
        PYTHONUNBUFFERED="1",  # score lines arrive when printed: their harness-clock time is right
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONNOUSERSITE="1",
    )
    return env


@dataclass
class Limits:
    memory_mb: int | None = 8192  # RLIMIT_AS per process (not for CUDA: its context maps huge ranges)
    nofile: int = 4096
    file_size_mb: int | None = 8192
    core: int = 0


_libc: Any = None


def _load_libc() -> Any:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc = False
    return _libc


def _set(res: int, value: int) -> None:
    _, hard = resource.getrlimit(res)
    if hard != resource.RLIM_INFINITY and value > hard:
        value = hard
    resource.setrlimit(res, (value, value))


def make_preexec(limits: Limits, isolate_net: bool) -> Callable[[], None]:
    libc = _load_libc() if isolate_net else None

    def preexec() -> None:  # runs in the child between fork and exec: no allocation-heavy work
        if limits.memory_mb:
            _set(resource.RLIMIT_AS, limits.memory_mb * 1024 * 1024)
        _set(resource.RLIMIT_NOFILE, limits.nofile)
        if limits.file_size_mb:
            _set(resource.RLIMIT_FSIZE, limits.file_size_mb * 1024 * 1024)
        _set(resource.RLIMIT_CORE, limits.core)
        if libc and libc.unshare(_CLONE_NEWNET) == 0:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH", b"lo", _IFF_UP_LOOPBACK_RUNNING))
            except OSError:
                pass
            finally:
                s.close()

    return preexec


_NET_ISOLATION: bool | None = None


def net_isolation_available() -> bool:
    """Whether this process may give a child its own network namespace (probed once)."""
    global _NET_ISOLATION
    if _NET_ISOLATION is None:
        libc = _load_libc()
        if not libc or not hasattr(libc, "unshare"):
            _NET_ISOLATION = False
        else:
            try:
                r = subprocess.run(
                    ["/bin/sh", "-c", "exit 0"], preexec_fn=_probe_unshare, timeout=10, check=False,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                _NET_ISOLATION = r.returncode == 0
            except (OSError, subprocess.SubprocessError):
                _NET_ISOLATION = False
    return _NET_ISOLATION


def _probe_unshare() -> None:
    if _load_libc().unshare(_CLONE_NEWNET) != 0:
        os._exit(3)


# -- output capture ------------------------------------------------------------------------------


@dataclass
class StreamStats:
    seen: int = 0  # bytes the child wrote
    kept: int = 0  # bytes written to the file
    truncated: bool = False


class OutputPump(threading.Thread):
    """Copies one child stream to a file up to `soft_cap` bytes; counts the rest; keeps a tail;
    calls on_line(line, t) for each complete line; sets `flooded` past `hard_cap`."""

    def __init__(
        self,
        src: IO[bytes],
        dest: Path,
        soft_cap: int,
        hard_cap: int,
        on_line: Callable[[str, float], None] | None = None,
        tail_bytes: int = 16384,
    ) -> None:
        super().__init__(daemon=True)
        self.src = src
        self.dest = dest
        self.soft_cap = soft_cap
        self.hard_cap = hard_cap
        self.on_line = on_line
        self.stats = StreamStats()
        self.flooded = threading.Event()
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_len = 0
        self._tail_bytes = tail_bytes
        self._partial = b""

    def run(self) -> None:
        with open(self.dest, "wb") as out:
            fd = self.src.fileno()
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self._take(chunk, out)
            if self._partial and self.on_line:
                self._line(self._partial)
        try:
            self.src.close()
        except OSError:
            pass

    def _take(self, chunk: bytes, out: IO[bytes]) -> None:
        st = self.stats
        st.seen += len(chunk)
        room = self.soft_cap - st.kept
        if room > 0:
            part = chunk[:room]
            out.write(part)
            out.flush()
            st.kept += len(part)
        if st.seen > self.soft_cap and not st.truncated:
            st.truncated = True
            out.write(f"\n[harness: output cut at {self.soft_cap} bytes]\n".encode())
            out.flush()
        if st.seen > self.hard_cap:
            self.flooded.set()
        self._tail.append(chunk)
        self._tail_len += len(chunk)
        while self._tail_len - len(self._tail[0]) >= self._tail_bytes:
            self._tail_len -= len(self._tail.popleft())
        if self.on_line is not None:
            data = self._partial + chunk
            lines = data.split(b"\n")
            self._partial = lines.pop()
            if len(self._partial) > 65536:  # a line without end: judge what we have
                lines.append(self._partial)
                self._partial = b""
            for raw in lines:
                self._line(raw)

    def _line(self, raw: bytes) -> None:
        try:
            self.on_line(raw.decode("utf-8", "replace"), time.time())  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - a parse bug must not stop the capture
            pass

    def tail(self, max_chars: int = 8000) -> str:
        text = b"".join(self._tail).decode("utf-8", "replace")
        return text[-max_chars:]


# -- killing the tree ----------------------------------------------------------------------------


def _pids_with_marker(marker: str) -> list[int]:
    needle = f"{MARKER_ENV}={marker}".encode()
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(pid)
    return found


def kill_tree(pgid: int | None, marker: str, sig: int = signal.SIGKILL) -> int:
    """Kill the child's process group and every process carrying the run marker. Returns how many
    marker-carrying processes were signalled."""
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    n = 0
    if os.path.isdir("/proc"):
        for pid in _pids_with_marker(marker):
            try:
                os.kill(pid, sig)
                n += 1
            except (ProcessLookupError, PermissionError):
                pass
    return n


def terminate(proc: subprocess.Popen[bytes], marker: str, grace_s: float = 2.0) -> None:
    """SIGTERM the tree (torchrun forwards it to its workers), then SIGKILL what is left."""
    kill_tree(proc.pid, marker, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    kill_tree(proc.pid, marker, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@dataclass
class SandboxInfo:
    net_isolation: str  # "namespace" | "hooks"
    limits: dict[str, Any] = field(default_factory=dict)
