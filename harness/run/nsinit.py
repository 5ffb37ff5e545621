"""The sandbox's launcher: run as `python -I -S nsinit.py SPEC_JSON CMD...` between the harness and the
submission (standard library only: nothing of the harness is imported, nothing of the checkout is needed once
it started).

    harness ── launcher (new PID / network / user namespaces; reports to the harness on a private pipe)
                  └── init, PID 1 of the new PID namespace (new mount namespace: read-only system, hidden
                        folders, writable working copy), reaps orphans, forwards signals
                        └── the submission's command (PID 2)

Why each piece: in its own PID namespace the script cannot see or signal the harness (its parent is the
init, which ignores what the script sends it), and when the init exits the kernel kills every process left
in the namespace (a `fork` + `setsid` daemon, made through ctypes or not). The network namespace has only
loopback: a connection anywhere else fails with "no route", which the kernel counts (Ip OutNoRoutes) whoever
asked — the launcher reads those counters at the end, so an attempt the in-process hooks never saw is still
witnessed. Each step that the system refuses is skipped and reported as off, never fatal: the script then
runs with the protections that remain (the report says which).

SPEC: {"pid", "net", "mount", "user": bool, "ro_system": bool, "hide": [path], "keep_ro": [path],
"keep_rw": [path], "fresh_tmpfs": [path], "private_tmp": [path], "cwd": path, "report_fd": int}
Report (one JSON line per message on report_fd): {"setup": {protection: "on" | "off: why"}} when the script
starts, then {"status": wait status, "net": {counter: n}} at the end.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 16384, 1 << 18, 1 << 21, 1 << 24
PR_SET_PDEATHSIG = 1
_FLAG_OPTS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
              "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
# left writable / as they are: kernel interfaces and devices (GPUs, /dev/null); /proc is remounted for the
# new PID namespace and /dev/shm replaced by a fresh tmpfs
_SKIP_RO = ("/proc", "/sys", "/dev")
_FORWARD = (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT)

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]


def _err() -> str:
    return os.strerror(ctypes.get_errno())


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}: {_err()}")


def _send(fd: int, msg: dict) -> None:
    try:
        os.write(fd, (json.dumps(msg) + "\n").encode())
    except OSError:
        pass


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _unshare(spec: dict, setup: dict) -> None:
    """New namespaces for this launcher's children (PID) and itself (user, network)."""
    want = [("pid", CLONE_NEWPID), ("net", CLONE_NEWNET)]
    flags = sum(f for k, f in want if spec.get(k))
    own = _own_addresses() if spec.get("net") else []
    user = bool(spec.get("user")) and os.geteuid() != 0
    uid, gid = os.geteuid(), os.getegid()
    if user and libc.unshare(CLONE_NEWUSER | flags) == 0:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
        setup["user_namespace"] = "on"
        done = flags
    else:
        done = 0
        if flags and libc.unshare(flags) == 0:
            done = flags
        else:  # one at a time: a system may allow one and not the other
            for _, f in want:
                if flags & f and libc.unshare(f) == 0:
                    done |= f
    why = _err()
    for k, f in want:
        if spec.get(k):
            setup[f"{k}_namespace"] = "on" if done & f else f"off: {why}"
    if done & CLONE_NEWNET:
        _add_to_loopback(own)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:  # loopback up: torchrun / gloo rendezvous stay local
            fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH", b"lo", 0x1 | 0x8 | 0x40))
        except OSError:
            pass
        finally:
            s.close()


def _own_addresses() -> list[tuple[int, bytes]]:
    """(family, address) of this machine's own non-loopback addresses, read before leaving its network."""
    out: list[tuple[int, bytes]] = []
    try:
        with open("/proc/net/fib_trie") as fh:
            lines = fh.read().splitlines()
        for a, b in zip(lines, lines[1:]):
            if a.strip().startswith("|--") and b.strip().startswith("/32 host LOCAL"):
                ip = a.strip()[3:].strip()
                packed = socket.inet_aton(ip)
                if not ip.startswith("127.") and (socket.AF_INET, packed) not in out:
                    out.append((socket.AF_INET, packed))
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6") as fh:
            for line in fh:
                hexaddr, _idx, _plen, scope = line.split()[:4]
                if scope == "00":  # global: what a host name may resolve to (link-local needs an interface)
                    out.append((socket.AF_INET6, bytes.fromhex(hexaddr)))
    except (OSError, ValueError):
        pass
    return out


def _add_to_loopback(addrs: list[tuple[int, bytes]]) -> None:
    """The machine's own addresses on the namespace's loopback (netlink RTM_NEWADDR): torchrun / gloo peers that
    resolve the host name to them stay local instead of counting as refused routes."""
    if not addrs:
        return
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
    try:
        for seq, (fam, raw) in enumerate(addrs, start=1):
            attr = lambda t: struct.pack("HH", 4 + len(raw), t) + raw  # noqa: E731 - IFA_ADDRESS 1, IFA_LOCAL 2
            body = struct.pack("BBBBI", fam, len(raw) * 8, 0, 254, 1) + attr(2) + attr(1)  # scope host, lo = 1
            msg = struct.pack("IHHII", 16 + len(body), 20, 0x1 | 0x4 | 0x400, seq, 0) + body  # RTM_NEWADDR, ACK
            s.sendto(msg, (0, 0))
            s.recv(4096)  # the ack (an error is a missing convenience, not a failure)
    except OSError:
        pass
    finally:
        s.close()


def _mountinfo() -> list[tuple[str, int]]:
    """(mount point, its per-mount flags) of every mount, parents first."""
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            parts = line.split()
            mp = parts[4].encode().decode("unicode_escape")  # "\040" is a space
            flags = 0
            for opt in parts[5].split(","):
                flags |= _FLAG_OPTS.get(opt, 0)
            out.append((mp, flags))
    return out


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _tmpfs_over(paths: list[str], opts: str, setup: dict, err_key: str) -> list[str]:
    """An empty tmpfs on each path; the ones mounted (failures listed under setup[err_key])."""
    done = []
    for p in paths:
        try:
            _mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, opts)
            done.append(p)
        except OSError as e:
            setup.setdefault(err_key, []).append(f"{p}: {e.strerror}")
    return done


def _mounts(spec: dict, setup: dict) -> None:
    """The child's view of the files: read-only system, hidden folders, only its own folders writable."""
    if libc.unshare(CLONE_NEWNS) != 0:
        setup["mount_namespace"] = f"off: {_err()}"
        return
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here leaks back to the host
    setup["mount_namespace"] = "on"
    keeps = [(p, False) for p in spec.get("keep_ro", [])] + [(p, True) for p in spec.get("keep_rw", [])]
    fds = {}
    for p, _ in keeps:  # opened before any folder is covered: bound back from the fd afterwards
        try:
            fds[p] = os.open(p, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            pass
    if spec.get("ro_system"):
        failed = []
        for mp, flags in _mountinfo():
            if _under(mp, _SKIP_RO):
                continue
            try:
                _mount(None, mp, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
            except OSError as e:
                failed.append(f"{mp} ({e.strerror})")
        setup["read_only_system"] = "on" if not failed else f"partly: not {', '.join(failed[:3])}"
    hidden = _tmpfs_over(spec.get("hide", []), "size=1m,mode=755", setup, "hidden_errors")
    # a private, writable /tmp: scripts write fixed names there (/tmp/ttt_counter_*); mounted before the
    # keeps are bound back, so a working copy that lives under the host's /tmp reappears inside it
    setup["private_tmp"] = _tmpfs_over(spec.get("private_tmp", []), "mode=1777", setup, "private_tmp_errors")
    for p, rw in sorted(keeps, key=lambda k: len(k[0])):  # parents before children
        fd = fds.get(p)
        if fd is None:
            continue
        try:
            if not os.path.lexists(p):  # covered by a hidden folder: a mount point in its tmpfs
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.makedirs(p, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(p), exist_ok=True)
                    open(p, "a").close()
            _mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
            _mount(None, p, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (0 if rw else MS_RDONLY))
        except OSError as e:
            setup.setdefault("keep_errors", []).append(f"{p}: {e.strerror}")
    for p in hidden:
        try:
            _mount(None, p, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        except OSError:
            pass
    setup["hidden"] = hidden
    for p in spec.get("fresh_tmpfs", []):
        try:
            _mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        except OSError:
            pass
    if spec.get("net") and setup.get("net_namespace") == "on":
        _dns_on_loopback(setup)
    if spec.get("pid"):
        try:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        except OSError as e:
            setup["proc_remount"] = f"off: {e.strerror}"


def _dns_on_loopback(setup: dict) -> None:
    """Name lookups go to 127.0.0.1 (nothing answers): a resolver's query for the machine's own name (torchrun's
    getfqdn) is then no refused route, so every refused route the counters show is a connection the script
    itself aimed outside. /etc/hosts still answers local names."""
    src = "/dev/shm/.harness-resolv.conf" if os.path.isdir("/dev/shm") else None
    if src is None or not os.path.exists("/etc/resolv.conf"):
        return
    try:
        with open(src, "w") as fh:
            fh.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        _mount(src, "/etc/resolv.conf", None, MS_BIND)
        _mount(None, "/etc/resolv.conf", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        setup["dns"] = "loopback"
    except OSError as e:
        setup["dns"] = f"unchanged: {e.strerror}"


def _net_counters(fds: list[int]) -> dict[str, int]:
    """Packets and connections the namespace refused for want of a route (any means: ctypes, C, DNS)."""
    want = {"Ip:OutNoRoutes", "Ip6OutNoRoutes", "Tcp:ActiveOpens"}
    out: dict[str, int] = {}
    for fd in fds:
        try:
            os.lseek(fd, 0, 0)
            text = os.read(fd, 1 << 16).decode()
        except OSError:
            continue
        lines = text.splitlines()
        for a, b in zip(lines, lines[1:]):  # snmp: "Ip: names" then "Ip: values"
            ka, kb = a.split(), b.split()
            if len(ka) > 1 and len(kb) == len(ka) and ka[0] == kb[0] and ka[0].endswith(":") and not ka[1].isdigit():
                for name, val in zip(ka[1:], kb[1:]):
                    key = ka[0] + name
                    if key in want and val.lstrip("-").isdigit():
                        out[key] = int(val)
        for ln in lines:  # snmp6: "Ip6OutNoRoutes  0"
            kv = ln.split()
            if len(kv) == 2 and kv[0] in want:
                out[kv[0]] = int(kv[1])
    return out


def _init(spec: dict, argv: list[str], setup: dict, report_fd: int) -> int:
    """PID 1 of the new namespace (or a plain middle process): start the command, reap, forward signals."""
    try:
        _mounts(spec, setup) if spec.get("mount") else None
    except OSError as e:
        setup["mount_namespace"] = f"off: {e}"
    cwd = spec.get("cwd")
    if cwd:
        os.chdir(cwd)  # again: the old cwd is the mount underneath (read-only now)
    _send(report_fd, {"setup": setup})
    os.close(report_fd)  # the script never holds the harness's pipe
    child = os.fork()
    if child == 0:
        for s in _FORWARD + (signal.SIGTERM,):
            signal.signal(s, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            sys.stderr.write(f"harness sandbox: cannot start {argv[0]}: {e.strerror}\n")
            os._exit(127)
    for s in _FORWARD:
        signal.signal(s, lambda sig, _f: _kill(child, sig))
    # SIGTERM reaches the script from the harness through the process group; PID 1 only passes it on
    signal.signal(signal.SIGTERM, lambda sig, _f: _kill(child, sig))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid == child:
            return status


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _exit_like(status: int) -> None:
    """Leave as the command left: its exit code, or killed by its signal (the harness reads both)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL / SIGSTOP: not settable, already default
            pass
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def main() -> None:
    spec = json.loads(sys.argv[1])
    argv = sys.argv[2:]
    report_fd = int(spec.get("report_fd", -1))
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the harness gone: nothing of the run stays
    setup: dict = {}
    _unshare(spec, setup)
    net_fds = []
    if setup.get("net_namespace") == "on":
        for p in ("/proc/self/net/snmp", "/proc/self/net/snmp6"):
            try:
                net_fds.append(os.open(p, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                pass
    for s in _FORWARD + (signal.SIGTERM,):
        signal.signal(s, signal.SIG_IGN)  # the harness signals the group; the init and the script decide
    r, w = os.pipe()
    init = os.fork()
    if init == 0:
        os.close(r)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        for fd in net_fds:
            os.close(fd)
        if spec.get("probe"):  # what this system allows, without running anything
            try:
                _mounts(spec, setup) if spec.get("mount") else None
            except OSError as e:
                setup["mount_namespace"] = f"off: {e}"
            _send(report_fd, {"setup": setup})
            os._exit(0)
        try:
            status = _init(spec, argv, setup, report_fd)
        except BaseException as e:  # noqa: BLE001 - one line, and the run fails as a launch failure
            sys.stderr.write(f"harness sandbox: {type(e).__name__}: {e}\n")
            status = 127 << 8
        os.write(w, str(status).encode())
        os._exit(0)
    os.close(w)
    while True:
        try:
            os.waitpid(init, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            break
    raw = os.read(r, 64)
    status = int(raw) if raw.strip().lstrip(b"-").isdigit() else (9 if not raw else 1 << 8)
    if not spec.get("probe"):
        _send(report_fd, {"status": status, "net": _net_counters(net_fds)})
    _exit_like(status)


if __name__ == "__main__":
    main()
