"""File helpers: atomic writes so a report, once started, is never half-written; bounded, link-safe reads
and copies of a submission folder (untrusted input)."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target. A target that exists and
    is not a regular file (/dev/null, /dev/stdout, a FIFO) is written in place: renaming over it would
    replace the device itself."""
    target = Path(path)
    if target.exists() and not target.is_file() and not target.is_dir():
        with open(target, "wb") as fh:
            fh.write(data)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# -- reading and copying an untrusted folder ---------------------------------------------------------
# A submission folder is input from someone else: a link may point out of it (`cycle -> ..`, a log linked to
# /dev/zero or /etc/passwd), a "file" may be a FIFO that blocks forever or a device that never ends. Nothing
# here follows a link out of the folder, opens anything but a regular file, or reads past a byte cap.


class CopyLimitExceeded(Exception):
    """The folder holds more bytes or files than the copy allows (the caller turns it into BadInput)."""


@dataclass
class CopyReport:
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # "rel/path (why)": links out, devices, FIFOs, too big


def inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether `path`, every link resolved, lies in `root` (resolved)."""
    try:
        real = os.path.realpath(path)
        base = os.path.realpath(root)
    except (OSError, ValueError):
        return False
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def regular_file_inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str | None:
    """None when `path` is a regular file whose real location is inside `root`; else why not (one phrase)."""
    if not inside(path, root):
        return "a link out of the folder"
    try:
        st = os.stat(path)
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return _kind(st.st_mode)
    return None


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> int:
    """A read-only fd of a regular file. Opens without blocking (a FIFO swapped in after a check does not
    hang) and refuses anything fstat does not call a regular file (OSError)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{_kind(st.st_mode)}, not a regular file")
    return fd


def read_capped(path: str | os.PathLike[str], cap: int) -> bytes:
    """A regular file's bytes, at most `cap` + 1 (so the caller sees an overflow)."""
    fd = open_regular(path)
    try:
        chunks, n = [], 0
        while n <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - n))
            if not chunk:
                break
            chunks.append(chunk)
            n += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def safe_copy_tree(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, max_bytes: int, max_files: int,
    max_file_bytes: int, ignore: frozenset[str] = frozenset(), max_depth: int = 32, only: str | None = None,
) -> CopyReport:
    """Copy the folder `src` to `dst` (created) without following a link out of it: regular files are copied
    (at most `max_file_bytes` each, else skipped), a link to a file or folder inside `src` becomes a relative
    link in the copy, anything else (links out, devices, FIFOs, sockets) is skipped and recorded. Past
    `max_files` files or `max_bytes` bytes in all: CopyLimitExceeded. OSError for an unreadable file.
    `only`: copy just this top-level name (a lone script)."""
    root = os.path.realpath(src)
    out = Path(dst)
    rep = CopyReport()

    def walk(rel: str, depth: int) -> None:
        here = os.path.join(root, rel) if rel else root
        (out / rel).mkdir(parents=True, exist_ok=True)
        with os.scandir(here) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            r = os.path.join(rel, e.name) if rel else e.name
            if e.name in ignore or e.name.endswith(".pyc") or (only is not None and not rel and e.name != only):
                continue
            st = e.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                _copy_link(e.path, r)
            elif stat.S_ISDIR(st.st_mode):
                if depth >= max_depth:
                    rep.skipped.append(f"{r} (folder deeper than {max_depth})")
                else:
                    walk(r, depth + 1)
            elif stat.S_ISREG(st.st_mode):
                _copy_file(e.path, r, st)
            else:
                rep.skipped.append(f"{r} ({_kind(st.st_mode)})")

    def count_file(r: str) -> None:
        rep.files += 1
        if rep.files > max_files:
            raise CopyLimitExceeded(f"more than {max_files} files (at {r})")

    def _copy_link(path: str, r: str) -> None:
        if not inside(path, root):
            rep.skipped.append(f"{r} (a link out of the folder: {os.readlink(path)[:200]})")
            return
        real = os.path.realpath(path)
        if not os.path.exists(real):
            rep.skipped.append(f"{r} (a broken link)")
            return
        count_file(r)
        link_dir = os.path.dirname(os.path.join(root, r))
        os.symlink(os.path.relpath(real, link_dir), out / r)  # resolved inside the copy, never outside

    def _copy_file(path: str, r: str, st: os.stat_result) -> None:
        if st.st_size > max_file_bytes:
            rep.skipped.append(f"{r} ({st.st_size:,} bytes, over {max_file_bytes:,} per file)")
            return
        count_file(r)
        dest = out / r
        fd = open_regular(path)
        try:
            with open(dest, "wb") as fh:
                while chunk := os.read(fd, 1 << 20):
                    rep.bytes += len(chunk)
                    if rep.bytes > max_bytes:
                        raise CopyLimitExceeded(f"more than {max_bytes:,} bytes (at {r})")
                    fh.write(chunk)
        finally:
            os.close(fd)
        os.chmod(dest, stat.S_IMODE(st.st_mode) | stat.S_IRUSR | stat.S_IWUSR)
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))

    walk("", 0)
    return rep
