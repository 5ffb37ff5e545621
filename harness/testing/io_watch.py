"""The runtime's own io hooks (harness.runtime.io_hooks) for the length of one traced block.

The hooks were written for a child process that never takes them off, so they have no uninstall. Here
they run inside the caller's process (a pytest run): every attribute they patch is remembered before
`io_hooks.install` and put back afterwards. The patch points are found generically (every attribute of
the namespaces the hooks touch that now holds an io-hook function), so a hook added to io_hooks later is
undone too; `leftovers()` names anything still patched (a test guards it).
"""

from __future__ import annotations

import builtins
import io
import multiprocessing.process
import os
import posix
import socket
import subprocess
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_MISSING = object()


def _namespaces() -> list[Any]:
    import numpy as np

    from harness.runtime import io_hooks
    from harness.runtime.io_hooks import files, imports

    out: list[Any] = [builtins, io, socket, socket.socket, os, posix, subprocess.Popen,
                      multiprocessing.process.BaseProcess, np, np.memmap, io_hooks, files, imports]
    if "torch" in sys.modules:
        out.append(sys.modules["torch"])
    return out


def _snapshot() -> list[tuple[Any, dict[str, Any]]]:
    return [(ns, dict(vars(ns))) for ns in _namespaces()]


def _hooks_dir() -> str:
    from harness.runtime import io_hooks

    return str(Path(io_hooks.__file__).resolve().parent) + os.sep


def _hook_made(value: Any) -> bool:
    """A function defined in harness/runtime/io_hooks/ (by its code: functools.wraps copies __module__)."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if not isinstance(value, types.FunctionType):
        return False
    return str(Path(value.__code__.co_filename).resolve()).startswith(_hooks_dir())


def _restore(snap: list[tuple[Any, dict[str, Any]]]) -> None:
    for ns, before in snap:
        now = dict(vars(ns))
        for name, old in before.items():
            cur = now.get(name, _MISSING)
            # only what the hooks replaced: a patch someone else made meanwhile (the CPU shim) stays
            if cur is not old and (_hook_made(cur) or name in ("_STATE", "_FINDER")):
                setattr(ns, name, old)
        for name in now.keys() - before.keys():
            # attributes the hooks added (never submodules imported meanwhile)
            if _hook_made(now[name]):
                delattr(ns, name)


def leftovers() -> list[str]:
    """Attributes of the hooked namespaces that still hold an io-hook function (should be none)."""
    out = []
    for ns in _namespaces():
        if getattr(ns, "__name__", "").startswith("harness.runtime.io_hooks"):
            continue  # the hooks' own modules define them
        for name, v in vars(ns).items():
            if _hook_made(v):
                out.append(f"{getattr(ns, '__name__', ns)}.{name}")
    return out


@contextmanager
def watching_io(ctx: Any) -> Iterator[bool]:
    """Install harness.runtime.io_hooks into `ctx` for the block; every patch is undone on exit. Yields
    False (nothing installed) when the process already has hooks reporting to another ledger."""
    import numpy  # noqa: F401 - imported first so the hooks patch it now (no import hook left behind)

    from harness.runtime import io_hooks

    if io_hooks.state() is not None:
        yield False  # a process the runtime instrumented (`harness run`): its hooks write its own ledger
        return
    snap = _snapshot()
    meta = list(sys.meta_path)
    try:
        io_hooks.install(ctx)
        yield True
    finally:
        io_hooks.flush()
        _restore(snap)
        sys.meta_path[:] = meta  # a post-import finder registered for a module not imported yet
