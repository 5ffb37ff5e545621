"""`open` / `io.open` (and so pathlib's open, read_bytes, write_bytes) for the files that matter.

Shards opened for reading get file objects of our own subclasses of io.FileIO / io.BufferedReader:
real file objects (isinstance checks, fileno, np.fromfile on them still work) that report which
bytes were read, at the logical position (a buffered reader's read-ahead is not counted as read).
Artifacts: a read emits `artifact_read` when opened; a write emits `artifact_write` when closed (the
size is known then). Every other file gets the real object untouched.
"""

from __future__ import annotations

import builtins
import io
import os
from typing import Any

from harness.runtime.io_hooks.state import HookState

_STATE: HookState | None = None
_REAL_OPEN = io.open


class TracedFileIO(io.FileIO):
    """A FileIO that reports shard reads (when unbuffered) and artifact writes (on close)."""

    _h_kind: str | None = None
    _h_path: str = ""
    _h_report = False  # report reads at this level (no buffered reader above it)
    _h_write = False

    def _h_at(self) -> int:
        try:
            return self.tell()
        except OSError:
            return 0

    def read(self, size: int = -1) -> Any:
        if not self._h_report or _STATE is None or _STATE.quiet():
            return super().read(size)
        pos = self._h_at()
        data = super().read(size)
        if data:
            _STATE.on_data(self._h_path, self._h_kind or "", pos, len(data), data, "read")
        return data

    def readall(self) -> Any:
        if not self._h_report or _STATE is None or _STATE.quiet():
            return super().readall()
        pos = self._h_at()
        data = super().readall()
        if data:
            _STATE.on_data(self._h_path, self._h_kind or "", pos, len(data), data, "read")
        return data

    def readinto(self, b: Any) -> Any:
        if not self._h_report or _STATE is None or _STATE.quiet():
            return super().readinto(b)
        pos = self._h_at()
        n = super().readinto(b)
        if n:
            _STATE.on_data(self._h_path, self._h_kind or "", pos, n, b, "readinto")
        return n

    def close(self) -> None:
        was_open = not self.closed
        super().close()
        if was_open and self._h_write and _STATE is not None:
            try:
                _STATE.artifact("artifact_write", self._h_path, "open")
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass


class TracedBufferedReader(io.BufferedReader):
    """Reports shard bytes as the script sees them (logical position, not read-ahead)."""

    _h_kind: str = ""
    _h_path: str = ""

    def _h_call(self, how: str, fn: Any, *args: Any) -> Any:
        if _STATE is None or _STATE.quiet():
            return fn(*args)
        try:
            pos = self.tell()
        except OSError:
            pos = 0
        out = fn(*args)
        n = out if isinstance(out, int) else len(out or b"")
        if n:
            buf = args[0] if how == "readinto" else out
            _STATE.on_data(self._h_path, self._h_kind, pos, n, buf, how)
        return out

    def read(self, size: int | None = -1) -> Any:
        return self._h_call("read", super().read, size)

    def read1(self, size: int = -1) -> Any:
        return self._h_call("read", super().read1, size)

    def readinto(self, b: Any) -> Any:
        return self._h_call("readinto", super().readinto, b)

    def readinto1(self, b: Any) -> Any:
        return self._h_call("readinto", super().readinto1, b)

    def readline(self, size: int | None = -1) -> Any:
        return self._h_call("read", super().readline, size)


def _parse_mode(mode: str) -> dict[str, bool] | None:
    if not isinstance(mode, str) or set(mode) - set("rwxab+t") or len(set(mode)) != len(mode):
        return None
    m = {c: c in mode for c in "rwxab+t"}
    if sum((m["r"], m["w"], m["x"], m["a"])) != 1 or (m["b"] and m["t"]):
        return None
    return m


def _build(
    path: str, m: dict[str, bool], buffering: int, encoding: Any, errors: Any, newline: Any,
    closefd: bool, opener: Any, kind: str, read_data: bool, write_artifact: bool,
) -> Any:
    """io.open's assembly (raw -> buffered -> text) with our raw / reader classes."""
    rawmode = "".join(c for c in "xrwa+" if m[c])
    raw = TracedFileIO(path, rawmode, closefd, opener=opener)
    raw._h_kind, raw._h_path, raw._h_write = kind, path, write_artifact
    binary = m["b"]
    line_buffering = False
    if buffering == 1 or (buffering < 0 and raw.isatty()):
        buffering, line_buffering = -1, True
    if buffering < 0:
        buffering = io.DEFAULT_BUFFER_SIZE
        try:
            bs = os.fstat(raw.fileno()).st_blksize
            if bs > 1:
                buffering = bs
        except (OSError, AttributeError):
            pass
    if buffering == 0:
        if not binary:
            raw.close()
            raise ValueError("can't have unbuffered text I/O")
        raw._h_report = read_data
        return raw
    if m["+"]:
        buf: Any = io.BufferedRandom(raw, buffering)
    elif m["w"] or m["x"] or m["a"]:
        buf = io.BufferedWriter(raw, buffering)
    elif read_data:
        buf = TracedBufferedReader(raw, buffering)
        buf._h_kind, buf._h_path = kind, path
    else:
        buf = io.BufferedReader(raw, buffering)
    if binary:
        return buf
    text = io.TextIOWrapper(buf, encoding, errors, newline, line_buffering)
    text.mode = "".join(c for c in "rwxa+" if m[c])
    return text


def traced_open(
    file: Any, mode: str = "r", buffering: int = -1, encoding: Any = None, errors: Any = None,
    newline: Any = None, closefd: bool = True, opener: Any = None,
) -> Any:
    st = _STATE
    if st is None or st.quiet() or isinstance(file, int):
        return _REAL_OPEN(file, mode, buffering, encoding, errors, newline, closefd, opener)
    try:
        path = os.fsdecode(os.fspath(file))
    except TypeError:
        return _REAL_OPEN(file, mode, buffering, encoding, errors, newline, closefd, opener)
    kind = st.cls.kind(path)
    m = _parse_mode(mode) if kind else None
    if m is None:  # not ours, or a mode the real open must judge
        return _REAL_OPEN(file, mode, buffering, encoding, errors, newline, closefd, opener)
    writing = m["w"] or m["x"] or m["a"] or m["+"]
    if kind in ("train", "val"):
        if writing:
            return _REAL_OPEN(file, mode, buffering, encoding, errors, newline, closefd, opener)
        if not m["b"]:
            # text reads of a shard: count the whole file as read (conservative)
            f = _REAL_OPEN(file, mode, buffering, encoding, errors, newline, closefd, opener)
            st.on_data(path, kind, 0, os.path.getsize(path), None, "open_text")
            return f
        with st.quietly():
            return _build(path, m, buffering, encoding, errors, newline, closefd, opener, kind, True, False)
    # artifact
    if writing:
        with st.quietly():
            return _build(path, m, buffering, encoding, errors, newline, closefd, opener, kind, False, True)
    f = _REAL_OPEN(file, mode, buffering, encoding, errors, newline, closefd, opener)
    st.artifact("artifact_read", path, "open")
    return f


def install(state: HookState) -> None:
    global _STATE
    _STATE = state
    builtins.open = traced_open
    io.open = traced_open
