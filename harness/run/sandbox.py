"""The child's sandbox, parent side: scrubbed environment, resource limits, namespaces, bounded output capture,
and killing the whole process tree.

Namespaces (harness/run/nsinit.py, the launcher between the harness and the script): where the system allows
(root, or unprivileged user namespaces), the script runs as PID 2 of its own PID namespace (it cannot see or
signal the harness; everything it starts dies with the namespace's init), in its own mount namespace (the
system read-only, the user's home, the harness checkout and the harness's current folder covered by empty
read-only tmpfs, only its working copy and the folders the run hands it writable, a fresh /dev/shm) and its
own network namespace (loopback only; the kernel counts every refused route, which the parent reads: a network
attempt the in-process hooks did not see is still a `net` event). What the system refuses is reported as off
(`protections` in run.json's `sandbox`, one console line), never fatal. `[run] namespaces = false` turns the
launcher's namespaces off; `[run] read_only_system`, `[run] hide_paths` tune the mount view.
Without namespaces the old path remains: a network namespace from the preexec where allowed, else the socket
hooks; the process group and every process carrying this run's marker in its environment are killed at the end.
"""

from __future__ import annotations

import collections
import ctypes
import fcntl
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
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


def reap(proc: subprocess.Popen[bytes], wait_s: float) -> Any:
    """Wait up to ``wait_s`` for the child to exit and reap it with os.wait4: its resource usage (with the
    descendants it waited for) as the kernel counted it, or None while it runs. Sets ``proc.returncode``
    as Popen.wait would."""
    deadline = time.monotonic() + wait_s
    step = 0.005
    while proc.returncode is None:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: Popen knows its status, the usage is gone
            proc.poll()
            return None
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(step, left))
        step = min(step * 2, 0.05)  # prompt for a short run, cheap for a long one
    return None


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


# -- namespaces: the launcher (harness/run/nsinit.py) between the harness and the script -------------------

NSINIT = Path(__file__).resolve().parent / "nsinit.py"
_SYSTEM_ROOTS = frozenset({"/", "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/var", "/opt", "/proc", "/sys",
                           "/dev", "/tmp", "/run", "/srv", "/mnt", "/media"})
_NEVER_HIDE_UNDER = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/proc", "/sys", "/dev", "/run", "/var")
_SUPPORT: dict[str, str] | None = None
NET_COUNTERS = ("Ip:OutNoRoutes", "Ip6OutNoRoutes")  # sends and connects refused for want of a route


def namespace_support() -> dict[str, str]:
    """What this system lets the launcher do ({protection: "on" | "off: why"}), probed once per process by
    running the launcher with nothing to start (about one interpreter start)."""
    global _SUPPORT
    if _SUPPORT is None:
        _SUPPORT = _probe_support()
    return dict(_SUPPORT)


def _probe_support() -> dict[str, str]:
    import tempfile

    if not sys.platform.startswith("linux"):
        return dict.fromkeys(("pid_namespace", "mount_namespace", "net_namespace"), "off: not Linux")
    with tempfile.TemporaryDirectory(prefix="pgh-probe-") as d:
        spec = {"probe": True, "pid": True, "net": True, "mount": True, "user": True, "ro_system": True,
                "hide": [d], "fresh_tmpfs": []}
        r, w = os.pipe()
        try:
            spec["report_fd"] = w
            proc = subprocess.run([sys.executable, "-I", "-S", str(NSINIT), json.dumps(spec)], pass_fds=(w,),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False)
            os.close(w)
            w = -1
            msgs = _read_msgs(r)
        except (OSError, subprocess.SubprocessError) as e:
            return {k: f"off: launcher failed ({e})" for k in ("pid_namespace", "mount_namespace", "net_namespace")}
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
    setup = next((m["setup"] for m in msgs if "setup" in m), None)
    if setup is None:
        why = f"off: the launcher did not start (exit {proc.returncode})"
        return {k: why for k in ("pid_namespace", "mount_namespace", "net_namespace")}
    return {k: str(v) for k, v in setup.items() if isinstance(v, str)}


def _read_msgs(fd: int) -> list[dict[str, Any]]:
    """The launcher's JSON lines (the write ends closed: reads to EOF; bounded)."""
    data = b""
    while len(data) < 1 << 20:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if isinstance(m, dict):
            out.append(m)
    return out


def _hide_candidates(extra: list[str]) -> list[str]:
    """Folders the script has no business seeing: the user's home, the harness checkout (harness.toml,
    tests, the rest of the harness) or the installed package, the harness's current folder, and `extra`."""
    pkg = Path(__file__).resolve().parent.parent
    checkout = pkg.parent if (pkg.parent / "pyproject.toml").is_file() else pkg
    cands = [os.path.expanduser("~"), str(checkout), os.getcwd(), *extra]
    out: list[str] = []
    for c in cands:
        try:
            p = os.path.realpath(c)
        except (OSError, ValueError):
            continue
        system = any(p == r or p.startswith(r + "/") for r in _NEVER_HIDE_UNDER)  # tools and libraries live there
        if p not in _SYSTEM_ROOTS and not system and os.path.isdir(p) and p not in out:
            out.append(p)
    return out


def _link_targets(folder: Path) -> list[str]:
    """Folders that the links under `folder` (served shards, the tokenizer) point into."""
    found: set[str] = set()
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                found.add(os.path.dirname(os.path.realpath(p)))
    return sorted(found)


def _probe_plan_paths(env: dict[str, str]) -> tuple[list[str], list[str]]:
    """(read-only, writable) paths of a probe plan handed to the fork server (HARNESS_PROBE)."""
    raw = env.get("HARNESS_PROBE")
    if not raw:
        return [], []
    try:
        plan = json.loads(raw) if raw.lstrip().startswith("{") else json.loads(Path(raw).read_text())
    except (OSError, ValueError):
        return ([raw] if os.path.exists(raw) else []), []
    ro = [str(plan["variants"])] if isinstance(plan, dict) and plan.get("variants") else []
    rw = [str(plan["out"])] if isinstance(plan, dict) and plan.get("out") else []
    if not raw.lstrip().startswith("{"):
        ro.append(raw)
    return ro, rw


@dataclass
class Box:
    """One run's launcher: the command wrapped, the report pipe, and what came on."""

    spec: dict[str, Any]
    enabled: bool
    support: dict[str, str]
    net_hook_only: bool  # no network namespace: the preexec tries CLONE_NEWNET itself (the old path)
    setup: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] = field(default_factory=dict)
    net_seen: dict[str, int] = field(default_factory=dict)
    net_events: list[dict[str, Any]] = field(default_factory=list)  # the namespace's witness, as `net` events
    _r: int = -1
    _w: int = -1
    _pid: int | None = None

    @classmethod
    def prepare(
        cls, run_cfg: dict[str, Any], work: Path, data: Path, rw: list[Path], python_exe: str,
        env: dict[str, str], *, net: bool, ro: tuple[Path, ...] = (),
    ) -> Box:
        """The launcher's plan for a run whose copy is `work`, data `data`, extra writable folders `rw`,
        extra read-only ones `ro` (the run's pylib: under a private /tmp only what is bound back is seen)."""
        on = bool(run_cfg.get("namespaces", True)) and sys.platform.startswith("linux")
        support = namespace_support() if on else {}
        pkg = Path(__file__).resolve().parent.parent
        probe_ro, probe_rw = _probe_plan_paths(env)
        exe = shutil.which(python_exe) or python_exe
        exe_prefix = str(Path(os.path.realpath(exe)).parent.parent)
        # the runtime and the shared core modules it may import (ledger, errors ...): not the stages, rules,
        # settings, tests or the rest of the checkout
        core = [str(p) for p in pkg.glob("*.py")]
        keep_ro = [*core, str(pkg / "runtime"), sys.prefix,
                   sys.base_prefix, exe_prefix, str(data), *_link_targets(data), *probe_ro, *map(str, ro)]
        keep_ro += [p for p in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if p]
        spec = {
            "pid": True, "mount": True, "net": net, "user": True,
            "ro_system": bool(run_cfg.get("read_only_system", True)),
            "hide": _hide_candidates(list(run_cfg.get("hide_paths", []))),
            "keep_ro": sorted({os.path.realpath(p) for p in keep_ro if p and os.path.exists(p)}),
            "keep_rw": sorted({os.path.realpath(p) for p in [str(work), *map(str, rw), *probe_rw]
                               if os.path.exists(p)}),
            "fresh_tmpfs": ["/dev/shm"] if os.path.isdir("/dev/shm") else [],
            "private_tmp": [p for p in ("/tmp", "/var/tmp") if os.path.isdir(p) and not os.path.islink(p)],
            "cwd": str(work),
        }
        net_ns = support.get("net_namespace") == "on"
        return cls(spec, on, support, net_hook_only=net and not (on and net_ns))

    def argv(self, cmd: list[str]) -> list[str]:
        """The command as launched; the report pipe is created here (pass `pass_fds` to Popen)."""
        self._r, self._w = os.pipe()
        os.set_inheritable(self._w, True)
        spec = dict(self.spec, report_fd=self._w)
        if not self.enabled:
            spec.update(pid=False, mount=False, net=False, user=False)
        return [sys.executable, "-I", "-S", str(NSINIT), json.dumps(spec), *cmd]

    @property
    def preexec_net(self) -> bool:
        """The old path: no launcher namespaces, so the child's preexec tries CLONE_NEWNET itself."""
        return self.net_hook_only and bool(self.spec.get("net")) and net_isolation_available()

    @property
    def net_isolation(self) -> str:
        if self.setup.get("net_namespace") == "on" or (self.preexec_net and not self.enabled):
            return "namespace"
        return "hooks"

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self._w,) if self._w >= 0 else ()

    def started(self, pid: int) -> None:
        self._pid = pid
        if self._w >= 0:
            os.close(self._w)
            self._w = -1

    def poll(self) -> None:
        """Sample the network namespace's refusal counters while the launcher lives (it holds the namespace)."""
        if self._pid is None or self.spec.get("net") is False:
            return
        for name in ("snmp", "snmp6"):
            try:
                with open(f"/proc/{self._pid}/net/{name}", "rb") as fh:
                    text = fh.read(1 << 16).decode("ascii", "replace")
            except OSError:
                continue
            self._merge(_counters(text))

    def _merge(self, counts: dict[str, int]) -> None:
        for k, v in counts.items():
            if k in NET_COUNTERS and isinstance(v, int):
                self.net_seen[k] = max(self.net_seen.get(k, 0), v)

    def finish(self, emit: Callable[..., Any] | None = None) -> None:
        """After the launcher ended: what it set up, and its last counters; `emit` (the parent ledger's) gets a
        `net` event when the namespace refused traffic the hooks never saw (D3 then FAILs)."""
        if self._r < 0:
            return
        try:
            os.set_blocking(self._r, False)  # everything is written by now; never wait on a stuck writer
            msgs = _read_msgs(self._r)
        finally:
            os.close(self._r)
            self._r = -1
        for m in msgs:
            if isinstance(m.get("setup"), dict):
                self.setup = m["setup"]
            if "status" in m:
                self.end = m
                if isinstance(m.get("net"), dict):
                    self._merge(m["net"])
        if self.refused:
            ev = dict(host="(not seen by the hooks)", port=None, blocked=True, how="namespace",
                      refused=self.refused, counters=dict(self.net_seen),
                      detail="the run's network namespace refused traffic to a non-local address (no route): a "
                             "connection or send the in-process hooks did not record (ctypes, C code, a subprocess)")
            self.net_events.append(ev)
            if emit is not None:
                emit("net", **ev)

    @property
    def refused(self) -> int:
        """Network sends / connects the namespace refused (any means, the hooks' blocks excluded)."""
        return sum(self.net_seen.values())

    def protections(self, limits: Limits, runtime: dict[str, Any]) -> dict[str, Any]:
        """Which protections were on for this run, and why each other one was off."""
        st = self.setup
        on: list[str] = []
        off: dict[str, str] = {}

        def put(name: str, state: Any) -> None:
            if state == "on":
                on.append(name)
            else:
                off[name] = str(state or "off: not reported by the launcher").removeprefix("off: ")

        if not self.enabled:
            for n in ("pid_namespace", "mount_namespace"):
                off[n] = "turned off ([run] namespaces = false)" if sys.platform.startswith("linux") else "not Linux"
            if self.preexec_net:  # the old path: the child's own network namespace, made before its exec
                on.append("network_namespace")
            else:
                off["network_namespace"] = "not available without the launcher's namespaces"
        else:
            put("pid_namespace", st.get("pid_namespace"))
            put("mount_namespace", st.get("mount_namespace"))
            if self.spec.get("net"):
                put("network_namespace", st.get("net_namespace"))
            else:
                off["network_namespace"] = "turned off ([run] net_namespace = false)"
            if st.get("mount_namespace") == "on":
                put("read_only_system", st.get("read_only_system", "off: [run] read_only_system = false"))
                hidden = st.get("hidden") or []
                put("hidden_folders", "on" if hidden else "off: nothing hidden")
                if self.spec.get("private_tmp"):
                    put("private_tmp", "on" if st.get("private_tmp") else
                        "off: " + "; ".join(st.get("private_tmp_errors") or ["not mounted"]))
                if st.get("proc_remount"):
                    off["proc_remount"] = str(st["proc_remount"]).removeprefix("off: ")
        if runtime:
            hooks = all(str(p.get("io_hooks", "ok")).startswith("ok") for p in runtime.values())
            put("io_hooks", "on" if hooks else "off: the runtime's I/O hooks did not start in every process")
        else:
            off["io_hooks"] = "the runtime did not report (no run_start)"
        on.append("resource_limits")
        on.append("process_group_kill")
        return {
            "on": on, "off": off,
            "hidden": list(st.get("hidden") or []),
            "writable": (list(self.spec.get("keep_rw", [])) if "mount_namespace" in on
                         else ["(everything the user can write)"]),
            "net_refused_by_namespace": self.refused,
            "limits": {k: v for k, v in vars(limits).items() if v is not None},
            "errors": [*st.get("keep_errors", []), *st.get("hidden_errors", []), *st.get("private_tmp_errors", [])],
        }


def _counters(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    lines = text.splitlines()
    for a, b in zip(lines, lines[1:]):
        ka, kb = a.split(), b.split()
        header = len(ka) > 1 and len(ka) == len(kb) and ka[0] == kb[0] and ka[0].endswith(":")
        if header and not ka[1].lstrip("-").isdigit():  # "Ip: Forwarding ..." then "Ip: 1 ..."
            for name, val in zip(ka[1:], kb[1:]):
                if val.lstrip("-").isdigit():
                    out[ka[0] + name] = int(val)
    for ln in lines:
        kv = ln.split()
        if len(kv) == 2 and kv[1].isdigit():
            out[kv[0]] = int(kv[1])
    return out


_LABELS = {"pid_namespace": "pid ns", "mount_namespace": "mount ns", "network_namespace": "net ns",
           "read_only_system": "read-only system", "hidden_folders": "hidden home/harness", "private_tmp": "private /tmp",
           "io_hooks": "io hooks",
           "resource_limits": "limits", "process_group_kill": "group kill"}


def protections_line(prot: dict[str, Any]) -> str:
    """One console line: which protections were on, which off and why."""
    label = lambda k: _LABELS.get(k, k.replace("_", " "))  # noqa: E731
    on = ", ".join(label(p) for p in prot.get("on", [])) or "none"
    off = "; ".join(f"{label(k)} ({v})" for k, v in (prot.get("off") or {}).items())
    return f"protections: on: {on}" + (f"; off: {off}" if off else "")
