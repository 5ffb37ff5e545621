"""Shared state of the io hooks: the context, the file classifier, re-entrancy guard, event helpers.

Every hook funnels into `on_data` (bytes of a data file entered the process) or the artifact /
network / subprocess helpers here, so the event shapes live in one place.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from harness.runtime.context import RuntimeContext
from harness.runtime.io_hooks.paths import Classifier, is_checkpoint

TRAIN_COALESCE_S = 0.5  # train reads of one file closer than this are folded into one event
MAX_NET_EVENTS = 200
MAX_BUFFERS = 2  # recent validation byte buffers kept for np.frombuffer / torch.frombuffer


class HookState:
    def __init__(self, ctx: RuntimeContext, real_open: Any) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.real_open = real_open
        self.cls = Classifier(
            s.train_glob,
            s.val_glob,
            workdir=s.submission_dir,
            data_dir=str(s.extra.get("data_dir", "") or ""),
            real_open=real_open,
            stream_tokens=int(s.extra.get("val_tokens") or 0) or None,
        )
        self.allow = set(s.extra.get("allow_subprocess", ["nvidia-smi"]) or [])
        self._tls = threading.local()
        self._lock = threading.Lock()
        self._train_seen = False
        self._train_last: dict[str, float] = {}
        # file -> [count, last time, site]
        self._train_pending: dict[str, list[Any]] = {}
        self.buffers: collections.OrderedDict[int, tuple[Any, str, int]] = collections.OrderedDict()
        self.maps: dict[int, tuple[str, str, int, int]] = {}  # id(mmap) -> kind, path, addr0, off0
        self.net_events = 0

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._train_pending.clear()

    # -- re-entrancy: hooks calling real functions that call hooked ones -------------------------

    def quiet(self) -> bool:
        return getattr(self._tls, "depth", 0) > 0

    @contextlib.contextmanager
    def quietly(self) -> Iterator[None]:
        self._tls.depth = getattr(self._tls, "depth", 0) + 1
        try:
            yield
        finally:
            # after a fork inside this block the child has a fresh thread-local (reset_after_fork)
            self._tls.depth = max(0, getattr(self._tls, "depth", 1) - 1)

    def emit(self, kind: str, **fields: Any) -> None:
        try:
            with self.quietly():
                self.ctx.emit(kind, **fields)
        except Exception:  # noqa: BLE001 - a ledger failure must not break the script
            pass

    # -- training data -------------------------------------------------------------------------

    def train_read(self, path: str, how: str) -> None:
        now = time.time()
        name = os.path.basename(path)
        with self._lock:
            last = self._train_last.get(name)
            if self._train_seen and last is not None and now - last < TRAIN_COALESCE_S:
                site = self.ctx.site(2)
                p = self._train_pending.setdefault(name, [0, now, site, how])
                p[0] += 1
                p[1] = now
                p[2] = site
                return
            first = not self._train_seen
            self._train_seen = True
            self._train_last[name] = now
            pending = self._train_pending.pop(name, None)
        if pending:
            self._emit_pending(name, pending)
        self.emit("train_read", file=name, first=first, how=how)

    def _emit_pending(self, name: str, p: list[Any]) -> None:
        # `t` is the time of the last folded read, not of this flush (LedgerWriter lets fields override it)
        t = round(p[1] - self.ctx.settings.t0, 6)
        self.emit("train_read", site=p[2], file=name, first=False, how=p[3], coalesced=p[0], t=t)

    def flush_train(self) -> None:
        """Emit folded train reads before any event whose order against them matters."""
        with self._lock:
            pending = list(self._train_pending.items())
            self._train_pending.clear()
        for name, p in pending:
            self._emit_pending(name, p)

    # -- validation data -----------------------------------------------------------------------

    def tag(self, arr: Any, first_pos: int, path: str) -> tuple[Any, bool]:
        """ctx.tag_validation, guarded: a tracer failure leaves the read untagged (and says so)."""
        try:
            with self.quietly():
                return self.ctx.tag_validation(arr, first_pos, path), True
        except Exception:  # noqa: BLE001
            return arr, False

    def val_read(
        self, path: str, byte_lo: int, nbytes: int, how: str, arr: Any = None, itemsize: int = 0, **extra: Any
    ) -> Any:
        """Validation bytes [byte_lo, byte_lo+nbytes) of `path` entered the process as `arr`.

        Emits `read` (stream positions lo, hi) and, when arr's elements are the tokens, tags it.
        Returns what the caller must hand to the script (the tagged array).
        """
        span = self.cls.val_span(path, byte_lo, byte_lo + nbytes)
        if span is None:
            return arr
        self.flush_train()
        tagged: bool | str = False
        out = arr
        if arr is not None and itemsize:
            first = self.cls.val_first_position(path, byte_lo, itemsize)
            if first is not None:
                out, tagged = self.tag(arr, first, path)
        lo, hi = span
        self.emit("read", file=os.path.basename(path), lo=lo, hi=hi, how=how, tagged=tagged, **extra)
        return out

    def remember_buffer(self, buf: Any, path: str, byte_lo: int) -> None:
        with self._lock:
            self.buffers[id(buf)] = (buf, path, byte_lo)
            while len(self.buffers) > MAX_BUFFERS:
                self.buffers.popitem(last=False)

    def buffer_origin(self, buf: Any) -> tuple[str, int] | None:
        obj = buf.obj if isinstance(buf, memoryview) else buf
        entry = self.buffers.get(id(obj))
        if entry is None or entry[0] is not obj:
            return None
        return entry[1], entry[2]

    def on_data(self, path: str, kind: str, byte_lo: int, nbytes: int, buf: Any, how: str) -> None:
        """Bytes of a shard read through a file object (read / readinto)."""
        if kind == "train":
            self.train_read(path, how)
            return
        if kind != "val" or nbytes <= 0:
            return
        itemsize = 0
        if how == "readinto":
            try:
                itemsize = memoryview(buf).itemsize
            except TypeError:
                itemsize = 0
            if itemsize == 1:
                # a bytearray filled in place: np.frombuffer may view it later
                self.remember_buffer(buf, path, byte_lo)
                itemsize = 0
        elif buf is not None:
            self.remember_buffer(buf, path, byte_lo)
        self.val_read(path, byte_lo, nbytes, how, arr=buf if itemsize else None, itemsize=itemsize)

    # -- artifacts, network, subprocesses ------------------------------------------------------

    def _head(self, path: str) -> bytes | None:
        try:
            with self.quietly(), self.real_open(path, "rb") as fh:
                return fh.read(4)
        except OSError:
            return None

    def artifact(self, kind: str, path: str, how: str) -> None:
        """artifact_write / artifact_read. A raw checkpoint write (not the compressed artifact) is a
        `phase checkpoint_write` instead: the first artifact_write is the end of training."""
        self.flush_train()
        try:
            size = os.path.getsize(path)
        except OSError:
            size = None
        checkpoint = is_checkpoint(path, self._head(path))
        if kind == "artifact_write" and checkpoint:
            self.emit("phase", name="checkpoint_write", path=self.cls.rel(path), bytes=size, how=how)
            return
        extra = {"checkpoint": True} if checkpoint else {}
        self.emit(kind, path=self.cls.rel(path), bytes=size, how=how, **extra)

    def net(self, host: Any, port: Any, how: str) -> None:
        self.flush_train()
        self.net_events += 1
        if self.net_events <= MAX_NET_EVENTS:
            self.emit("net", host=str(host), port=port, blocked=True, how=how)

    def subprocess(self, argv: list[str], allowed: bool, origin: str) -> None:
        self.flush_train()
        shown = [str(a)[:200] for a in argv[:20]]
        self.emit("subprocess", argv=shown, allowed=allowed, origin=origin)
