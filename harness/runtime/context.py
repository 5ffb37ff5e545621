"""The runtime's shared state inside the child process: settings, the ledger writer, site lookup.

The parent (harness.run) passes settings as JSON in the HARNESS_RUNTIME environment variable.
Hooks (io_hooks, shim, tracer) read settings from here and emit ledger events through emit().

Events go to the parent through the inherited ledger channel (settings.ledger_fd; harness.ledger
ChannelWriter) when the parent gave one, else to a file in settings.ledger_dir (tests, the shim's own
command line). The writer's emit is captured when the context is made, so a script that replaces
`emit` on the context, the writer or its class changes nothing already captured, and `tamper_check()`
(run at exit) reports the replacement.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.ledger import ChannelWriter, LedgerWriter

ENV_VAR = "HARNESS_RUNTIME"


@dataclass
class RuntimeSettings:
    ledger_dir: str
    t0: float  # harness clock origin (parent's time.time() at launch)
    device: str = "cpu"  # "cpu": install the CUDA shim; "cuda": real GPU
    bf16_as_fp32: bool = True
    trace: bool = False
    submission_dir: str = ""  # the run's working copy of the submission folder
    vocab_size: int | None = None
    ledger_fd: int | None = None  # the parent's ledger channel (harness.ledger.ChannelWriter)
    # settings the script must not see (private_settings_fd): read into `extra` and closed by bootstrap
    private_fd: int | None = None
    val_glob: str = "fineweb_val_*.bin"
    train_glob: str = "fineweb_train_*.bin"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "RuntimeSettings | None":
        raw = os.environ.get(ENV_VAR)
        if not raw:
            return None
        data = json.loads(raw)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def to_env(self) -> str:
        return json.dumps(self.__dict__)


def private_settings_fd(payload: dict[str, Any] | None) -> int:
    """(parent) An unlinked in-memory file holding `payload` as JSON, for the child to inherit.

    Every run gets one, empty or not, at the same place in the settings, so the environment of a run
    with private settings (the score-order replay) is spelled exactly like any other run's; the
    child's bootstrap reads and closes it before the script's first line."""
    data = json.dumps(payload or {}).encode()
    try:
        fd = os.memfd_create("harness-settings", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # no memfd: an unlinked temporary file does the same
        import tempfile

        with tempfile.TemporaryFile() as f:
            fd = os.dup(f.fileno())
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def read_private_settings(fd: int) -> dict[str, Any]:
    """(child) What the parent put in the private descriptor; {} when it is gone or unreadable."""
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0) if size else b""
        payload = json.loads(data) if data else {}
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


class RuntimeContext:
    """One per process. Hooks register here; tracer replaces tag_validation."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self.rank = int(os.environ.get("RANK", "0"))
        self.ledger: Any = None
        self.set_writer(new_writer(settings, self.rank, f"ledger.rank{self.rank}.jsonl"))
        # called at exit (bootstrap): each returns a list of (what, detail) the runtime saw tampered with
        self.exit_checks: list[Callable[[], list[tuple[str, str]]]] = [self.tamper_check]
        sub = settings.submission_dir
        self._sub_prefix = str(Path(sub).resolve()) + os.sep if sub else None
        self._is_sub: dict[str, bool] = {}
        # Called by io_hooks when validation tokens enter the process; the tracer replaces it so the
        # returned array carries provenance (positions lo, lo+1, ...). Default: no tracing.
        self.tag_validation: Callable[[Any, int, str], Any] = lambda arr, lo, file: arr

    def set_writer(self, writer: Any) -> None:
        """Use `writer` from now on (a descendant's own stream); its emit is captured here."""
        self.ledger = writer
        self._writer = writer
        self._send = type(writer).emit.__get__(writer)  # the class's own method, bound now

    def emit(self, kind: str, site: str | None = None, **fields: Any) -> int:
        return self._send(kind, site=site if site is not None else self.site(), **fields)

    def tamper_check(self) -> list[tuple[str, str]]:
        """What of the ledger's path the script replaced (instance or class attributes)."""
        out = []
        if "emit" in self.__dict__ or type(self).emit is not _CTX_EMIT:
            out.append(("ledger", "the runtime context's emit was replaced"))
        if self.ledger is not self._writer:
            out.append(("ledger", "the runtime context's ledger writer was replaced"))
        w = self._writer
        if "emit" in getattr(w, "__dict__", {}) or type(w).emit is not _WRITER_EMIT.get(type(w)):
            out.append(("ledger", f"{type(w).__name__}.emit was replaced"))
        if isinstance(w, ChannelWriter) and w._fd != self.settings.ledger_fd:
            out.append(("ledger", "the ledger channel's descriptor was changed"))
        return out

    def tamper(self, what: str, detail: str, site: str | None = None) -> None:
        """Record that the script reached for the runtime's controls (the verdict: C1/C3/C4 INCONCLUSIVE)."""
        try:
            self._send("tamper", site=site if site is not None else self.site(), what=what, detail=detail)
        except Exception:  # noqa: BLE001 - at interpreter exit
            pass

    def is_submission_file(self, filename: str) -> bool:
        # memoized: site() runs on hot paths (every traced op that emits)
        hit = self._is_sub.get(filename)
        if hit is None:
            try:
                # "<frozen importlib._bootstrap>" would otherwise resolve under the working directory
                hit = (
                    self._sub_prefix is not None
                    and not filename.startswith("<frozen ")
                    and str(Path(filename).resolve()).startswith(self._sub_prefix)
                )
            except OSError:
                hit = False
            self._is_sub[filename] = hit
        return hit

    def site(self, skip: int = 1) -> str | None:
        """Innermost frame that belongs to the submission's own files, as 'file:line'."""
        f = sys._getframe(skip)
        while f is not None:
            fn = f.f_code.co_filename
            if self.is_submission_file(fn):
                return f"{Path(fn).name}:{f.f_lineno}"
            f = f.f_back
        return None


_CTX_EMIT = RuntimeContext.emit
_WRITER_EMIT = {ChannelWriter: ChannelWriter.emit, LedgerWriter: LedgerWriter.emit}


def new_writer(settings: RuntimeSettings, rank: int, name: str) -> Any:
    """The parent's channel when it gave one, else a file `name` in settings.ledger_dir."""
    if settings.ledger_fd is not None:
        return ChannelWriter(int(settings.ledger_fd), rank=rank, t0=settings.t0)
    return LedgerWriter(Path(settings.ledger_dir) / name, rank=rank, t0=settings.t0)


_CTX: RuntimeContext | None = None


def get() -> RuntimeContext | None:
    return _CTX


def init(settings: RuntimeSettings) -> RuntimeContext:
    global _CTX
    _CTX = RuntimeContext(settings)
    return _CTX
