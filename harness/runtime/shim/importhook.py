"""Post-import hooks: run a patch right after a module's own code has executed.

This is what makes the shim lazy: `torch` is patched when the script (or anything) first imports it, so a
process that never imports torch pays nothing but one meta-path lookup per import. A module imported
before the hook existed is patched at once.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

Callback = Callable[[ModuleType], None]
# fullname -> a find_spec replacement for that name (used by the triton guard)
SpecHandler = Callable[[str, Any, Any], "importlib.machinery.ModuleSpec | None"]


class _AfterLoader(importlib.abc.Loader):
    """Delegates to the real loader; runs the callbacks once the module's code has run."""

    def __init__(self, loader: Any, finder: "PostImportFinder", fullname: str) -> None:
        self._loader = loader
        self._finder = finder
        self._fullname = fullname

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        # the module sees its real loader again (importlib.resources, pkgutil use it)
        if getattr(module, "__loader__", None) is self:  # (ModuleType's setattr: config modules refuse others)
            ModuleType.__setattr__(module, "__loader__", self._loader)
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        self._finder.run_callbacks(self._fullname, module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, is_package, resources ...
        return getattr(self._loader, name)


class PostImportFinder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {}
        self._handlers: dict[str, SpecHandler] = {}
        self._prefix_handlers: dict[str, SpecHandler] = {}
        self._busy = threading.local()

    # registration -----------------------------------------------------------------------------
    def when_imported(self, fullname: str, fn: Callback) -> None:
        mod = sys.modules.get(fullname)
        if mod is not None and getattr(mod, "__spec__", None) is not None and not _initializing(mod):
            _safe_call(fn, mod, fullname)
            return
        self._callbacks.setdefault(fullname, []).append(fn)

    def handle(self, fullname: str, handler: SpecHandler, *, submodules: bool = False) -> None:
        """Let `handler` answer find_spec for fullname (and fullname.* when submodules)."""
        self._handlers[fullname] = handler
        if submodules:
            self._prefix_handlers[fullname + "."] = handler

    # the finder protocol ------------------------------------------------------------------------
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        handler = self._handlers.get(fullname)
        if handler is None and "." in fullname:
            for prefix, h in self._prefix_handlers.items():
                if fullname.startswith(prefix):
                    handler = h
                    break
        if handler is not None:
            return handler(fullname, path, target)
        if fullname not in self._callbacks:
            return None
        return self.wrap(self.find_other(fullname, path, target), fullname)

    def wrap(self, spec: Any, fullname: str, fn: Callback | None = None) -> Any:
        """Make `spec` run the callbacks registered for fullname (plus fn) once its module has executed."""
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        if fn is not None:
            self._callbacks.setdefault(fullname, []).append(fn)
        if not isinstance(spec.loader, _AfterLoader):
            spec.loader = _AfterLoader(spec.loader, self, fullname)
        return spec

    def find_other(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        """The spec the rest of sys.meta_path would give (re-entry guarded)."""
        busy: set[str] = self._busy.__dict__.setdefault("names", set())
        if fullname in busy:
            return None
        busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    return spec
            return None
        finally:
            busy.discard(fullname)

    def run_callbacks(self, fullname: str, module: ModuleType) -> None:
        for fn in self._callbacks.pop(fullname, []):
            _safe_call(fn, module, fullname)


def _initializing(mod: ModuleType) -> bool:
    spec = getattr(mod, "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _safe_call(fn: Callback, mod: ModuleType, name: str) -> None:
    try:
        fn(mod)
    except Exception as exc:  # a failed patch must not break the import; the later error will show
        sys.stderr.write(f"harness: shim: could not patch {name}: {type(exc).__name__}: {exc}\n")


_FINDER: PostImportFinder | None = None


def finder() -> PostImportFinder:
    """The one finder of this process, first on sys.meta_path."""
    global _FINDER
    if _FINDER is None:
        _FINDER = PostImportFinder()
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    return _FINDER
