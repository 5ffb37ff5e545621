"""The operating system as a witness: every open of the served validation files, seen by inotify.

The tracer's `read` events come from hooks inside the child; a script can read around them (os.open +
os.read, mmap, ctypes fopen, a symlink or hard link under another name). inotify watches the file's
inode, so an open by any path is reported to the parent, outside the child's reach. The verdict
(harness.verdict.integrity) matches each open with a `read` event the child recorded for that file
near the same time; an open with none makes C1/C3/D1 INCONCLUSIVE, never PASS.

ctypes on libc (inotify_init1 / inotify_add_watch), no dependency. Where inotify is unavailable the
witness is off and the `witness` event says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading
import time
from pathlib import Path
from typing import Any

IN_ACCESS = 0x001
IN_OPEN = 0x020
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)
MAX_OPENS = 10_000  # kept with times; past this only counted


def _libc() -> Any:
    name = ctypes.util.find_library("c") or "libc.so.6"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.inotify_init1.argtypes = [ctypes.c_int]
    lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return lib


class Witness(threading.Thread):
    """Watches `files` (their real inodes) from now until stop(); opens are timed by the harness clock
    (seconds since t0), like the child's ledger events."""

    def __init__(self, files: list[str], t0: float) -> None:
        super().__init__(name="val-witness", daemon=True)
        self.t0 = t0
        self.files: dict[int, str] = {}  # watch descriptor -> the served name (basename)
        self.opens: list[dict[str, Any]] = []
        self.n_opens = 0
        self.accesses = 0
        self.note = ""
        self._fd = -1
        self._halt = threading.Event()
        self._quiet = 0.0  # harness clock when the event queue was last seen empty
        try:
            lib = _libc()
            fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1 failed")
            self._fd = fd
            for f in files:
                real = os.path.realpath(f)  # a link's target: inotify watches the inode either way
                wd = lib.inotify_add_watch(fd, os.fsencode(real), IN_OPEN | IN_ACCESS)
                if wd < 0:
                    raise OSError(ctypes.get_errno(), f"inotify_add_watch({real}) failed")
                self.files[wd] = Path(f).name
        except (OSError, AttributeError) as e:
            self.note = f"inotify unavailable ({e}): the OS witness was off"
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = -1

    @property
    def active(self) -> bool:
        return self._fd >= 0 and bool(self.files)

    def start(self) -> None:
        if self.active:
            super().start()

    def _clock(self) -> float:
        return round(time.time() - self.t0, 6)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                ready, _, _ = select.select([self._fd], [], [], 0.05)
            except (OSError, ValueError):
                return
            if ready:
                self._drain()
            else:
                self._quiet = self._clock()

    def _drain(self) -> None:
        while True:
            try:
                buf = os.read(self._fd, 65536)
            except BlockingIOError:
                self._quiet = self._clock()
                return
            except OSError:
                return
            if not buf:
                return
            # inotify events carry no time: each open happened after the queue was last seen empty and
            # before this read; under load the thread wakes late, so both ends are kept
            now, since = self._clock(), self._quiet
            i = 0
            while i + _EVENT.size <= len(buf):
                wd, mask, _cookie, n = _EVENT.unpack_from(buf, i)
                i += _EVENT.size + n
                if mask & IN_OPEN:
                    self.n_opens += 1
                    if len(self.opens) < MAX_OPENS:
                        self.opens.append({"t": now, "t_lo": since, "file": self.files.get(wd, "?")})
                if mask & IN_ACCESS:
                    self.accesses += 1

    def stop(self) -> dict[str, Any]:
        """Stop watching; the parent's `witness` event (fields as in harness.ledger)."""
        self._halt.set()
        if self.is_alive():
            self.join(2.0)
        if self._fd >= 0:
            self._drain()
            os.close(self._fd)
            self._fd = -1
        return {"active": bool(self.files) and not self.note, "files": sorted(set(self.files.values())),
                "opens": self.opens, "n_opens": self.n_opens, "accesses": self.accesses, "note": self.note}
