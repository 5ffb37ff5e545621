"""Run a callback when a module finishes importing (numpy, torch): patch without importing them early."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any, Callable

Callback = Callable[[ModuleType], None]


class _Loader(importlib.abc.Loader):
    def __init__(self, real: Any, callbacks: list[Callback]) -> None:
        self._real = real
        self._callbacks = callbacks

    def create_module(self, spec: Any) -> Any:
        create = getattr(self._real, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        self._real.exec_module(module)
        # the module sees its own loader again (importlib.resources and friends use it)
        module.__loader__ = self._real
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._real
        for cb in self._callbacks:
            try:
                cb(module)
            except Exception as e:  # noqa: BLE001 - a hook bug must not break the import
                sys.stderr.write(f"harness runtime: hook for {module.__name__} failed: {type(e).__name__}: {e}\n")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class PostImportFinder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callback]] = {}
        self._busy = threading.local()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.callbacks:
            return None
        busy = getattr(self._busy, "names", None)
        if busy is None:
            busy = self._busy.names = set()
        if name in busy:
            return None
        busy.add(name)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            busy.discard(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader, self.callbacks[name])
        return spec


_FINDER: PostImportFinder | None = None


def when_imported(name: str, callback: Callback) -> None:
    """Call callback(module) once `name` is imported (now, if it already is)."""
    global _FINDER
    mod = sys.modules.get(name)
    if mod is not None:
        callback(mod)
        return
    if _FINDER is None:
        _FINDER = PostImportFinder()
        sys.meta_path.insert(0, _FINDER)
    _FINDER.callbacks.setdefault(name, []).append(callback)
