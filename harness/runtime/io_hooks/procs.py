"""Process creation: every fork / exec / spawn is recorded as a `subprocess` event.

Who asked decides: a spawn whose nearest caller (past the process machinery of os, subprocess,
multiprocessing, concurrent.futures, and the pass-through wrappers of these hooks and the CPU shim) is
library code (torch's compile workers, ctypes.util, a DataLoader) or another part of the harness
runtime (the probes' fork server) is allowed. Library means: a module imported from the interpreter's
own library folders, running in its own namespace (not a path that merely contains "site-packages", not
source the script compiled under a library's file name). Every spawn is recorded either way, and the
process belongs to the run's PID namespace (it dies with the run) where the sandbox has one. One asked
for by the submission's own code, or by code with no file (exec of a string), is allowed only when its program is on the allow-list (settings extra
`allow_subprocess`, default nvidia-smi; "fork" and "multiprocessing" name those kinds of start).
Others raise PermissionError. RLIMIT_NPROC does not bind root, hence this layer. On CPU runs the shim
answers nvidia-smi and pyminify in-process (harness/runtime/shim/subprocs.py) before any of this: no
process starts, so the allow-list is not consulted for them.
"""

from __future__ import annotations

import errno
import functools
import os
import shlex
import sys
import sysconfig
from typing import Any

from harness.runtime.io_hooks.state import HookState

_SHELL_META = set(";&|`$()<>\n")


class SubprocessBlocked(PermissionError):
    pass


def _dir_of(mod: Any) -> str:
    f = getattr(mod, "__file__", None) or ""
    return os.path.dirname(os.path.abspath(f)) + os.sep if f else "\0"


class Origin:
    """Classifies the frame that asked for a new process."""

    def __init__(self, st: HookState) -> None:
        import concurrent.futures
        import multiprocessing
        import subprocess

        import harness.runtime
        import harness.runtime.io_hooks

        self.st = st
        self.machinery_files = {
            os.path.abspath(subprocess.__file__), os.path.abspath(os.__file__),
        }
        runtime = _dir_of(harness.runtime)
        self.machinery_dirs = (
            _dir_of(multiprocessing), _dir_of(concurrent.futures), _dir_of(harness.runtime.io_hooks),
            runtime + "shim" + os.sep,  # the shim's Popen subclass passes other programs through
        )
        self.harness_dir = runtime
        libs = set()
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            p = sysconfig.get_paths().get(key)
            if p:
                libs.add(os.path.realpath(p) + os.sep)
        try:
            import site

            libs.update(os.path.realpath(p) + os.sep for p in site.getsitepackages())
        except (AttributeError, OSError):  # a virtualenv's old site module
            pass
        # only the interpreter's own library folders, fixed before the script runs: never a name that merely
        # looks like one ("site-packages" in a path the script chose)
        self.lib_dirs = tuple(sorted(libs))

    def _machinery(self, fn: str) -> bool:
        return fn in self.machinery_files or fn.startswith(self.machinery_dirs)

    def __call__(self) -> str:
        f = sys._getframe(2)
        while f is not None:
            fn = f.f_code.co_filename
            afn = os.path.abspath(fn) if not fn.startswith("<") else fn
            if not self._machinery(afn):
                if afn.startswith("<"):
                    return "script"  # exec'd / compiled source: the submission's, presumably
                if self.st.ctx.is_submission_file(afn):
                    return "script"
                if afn.startswith(self.harness_dir) and _loaded_module(f, afn):
                    return "harness"
                if os.path.realpath(afn).startswith(self.lib_dirs) and _loaded_module(f, afn):
                    return "library"
                return "script"
            f = f.f_back
        return "script"


def _loaded_module(frame: Any, filename: str) -> bool:
    """Whether the frame runs in an imported module's own namespace, loaded from `filename`: code compiled
    by the script under a library's file name (compile(src, ".../site-packages/x.py", "exec")) is not."""
    g = frame.f_globals
    mod = sys.modules.get(g.get("__name__", "") if isinstance(g.get("__name__"), str) else "")
    if mod is None or getattr(mod, "__dict__", None) is not g:
        return False
    spec = getattr(mod, "__spec__", None)
    origin = getattr(spec, "origin", None) or getattr(mod, "__file__", None)
    if not isinstance(origin, str):
        return False
    try:
        return os.path.realpath(origin) == os.path.realpath(filename)
    except (OSError, ValueError):
        return False


def _program(argv: Any, shell: bool) -> tuple[list[str], str | None]:
    """(argv as a list, the program name when the command is plain; None: not allow-listable)."""
    if isinstance(argv, (str, bytes)):
        cmd = os.fsdecode(argv)
        if shell and _SHELL_META & set(cmd):
            return [cmd], None
        try:
            parts = shlex.split(cmd) if shell else [cmd]
        except ValueError:
            return [cmd], None
        argv_l = parts or [cmd]
    else:
        try:
            argv_l = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in argv]
        except TypeError:
            argv_l = [repr(argv)]
        if shell:
            return argv_l, None if _SHELL_META & set(" ".join(argv_l)) else os.path.basename(argv_l[0])
    return argv_l, os.path.basename(argv_l[0]) if argv_l else None


def install(st: HookState) -> None:
    import multiprocessing.process
    import posix
    import subprocess

    origin = Origin(st)

    def decide(argv: list[str], program: str | None) -> None:
        who = origin()
        allowed = who in ("library", "harness") or (program is not None and program in st.allow)
        st.subprocess(argv, allowed, who)
        if not allowed:
            raise SubprocessBlocked(
                errno.EPERM, f"subprocess blocked by the harness sandbox: {' '.join(argv)[:120]}"
            )

    # subprocess.Popen (run, call, check_output, os.popen, asyncio...)
    real_init = subprocess.Popen.__init__

    @functools.wraps(real_init)
    def popen_init(self: Any, *args: Any, **kwargs: Any) -> None:
        if not st.quiet():
            # by the standard library's positions (args, bufsize, executable, ..., shell = 9th), never by the
            # signature of whatever __init__ is installed now: a (*args, **kwargs) wrapper (the CPU shim's
            # subclass, the runtime's ledger-channel pass-through) would hide them
            cmd = kwargs.get("args", args[0] if args else None)
            shell = bool(kwargs.get("shell", args[8] if len(args) > 8 else False))
            exe = kwargs.get("executable", args[2] if len(args) > 2 else None)
            argv, program = _program(cmd, shell)
            if exe is not None and not shell:
                try:
                    program = os.path.basename(os.fsdecode(exe))
                except TypeError:
                    program = None
            decide(argv, program)
        with st.quietly():
            real_init(self, *args, **kwargs)

    subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]

    # os.system
    real_system = os.system

    @functools.wraps(real_system)
    def system(command: Any) -> int:
        if not st.quiet():
            argv, program = _program(command, True)
            decide(argv, program)
        return real_system(command)

    # fork (os.fork, posix.fork; os.spawn* and multiprocessing's fork start use it)
    real_fork = os.fork

    @functools.wraps(real_fork)
    def fork() -> int:
        if not st.quiet():
            decide(["fork"], "fork")
        return real_fork()

    real_forkpty = getattr(os, "forkpty", None)

    def exec_wrap(real: Any, name: str) -> Any:
        @functools.wraps(real)
        def wrapper(path: Any, args: Any, *rest: Any, **kwargs: Any) -> Any:
            if not st.quiet():
                argv, _ = _program(list(args) if not isinstance(args, (str, bytes)) else [args], False)
                decide([name, os.fsdecode(path)] + argv[1:], os.path.basename(os.fsdecode(path)))
            return real(path, args, *rest, **kwargs)

        return wrapper

    patched: dict[str, Any] = {"system": system, "fork": fork}
    if real_forkpty is not None:

        @functools.wraps(real_forkpty)
        def forkpty() -> Any:
            if not st.quiet():
                decide(["forkpty"], "fork")
            return real_forkpty()

        patched["forkpty"] = forkpty
    for name in ("execv", "execve", "posix_spawn", "posix_spawnp"):
        real = getattr(os, name, None)
        if real is not None:
            patched[name] = exec_wrap(real, name)
    for name, fn in patched.items():
        setattr(os, name, fn)
        if hasattr(posix, name):
            setattr(posix, name, fn)

    # multiprocessing (spawn / forkserver starts bypass fork and Popen)
    real_start = multiprocessing.process.BaseProcess.start

    @functools.wraps(real_start)
    def start(self: Any) -> None:
        if st.quiet():
            return real_start(self)
        target = getattr(self, "_target", None)
        name = getattr(target, "__qualname__", None) or repr(target)
        decide(["multiprocessing", str(name)], "multiprocessing")
        with st.quietly():
            return real_start(self)

    multiprocessing.process.BaseProcess.start = start  # type: ignore[method-assign]
