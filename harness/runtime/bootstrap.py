"""Child-side start of the harness runtime (imported by the injected sitecustomize).

Order: settings from HARNESS_RUNTIME -> context.init -> run_start -> io hooks -> CUDA shim (device
"cpu") -> tracer (trace) -> the probes' fork server (a probe plan) -> a `phase runtime_ready` event
saying which parts are active. The parent reads that event: a run whose tracer or io hooks did not
start is reported as untraced, never as clean.

Process roles:
- torchrun's launcher (several processes, no RANK yet): not instrumented; it runs no submission code.
- a worker / the single process: instrumented, ledger `ledger.rank<R>.jsonl`.
- a descendant of an instrumented process (an allowed subprocess, a forked worker): instrumented
  too, into its own stream (`ledger.rank<R>.pid<P>.jsonl`) so two writers never share one.

Events travel on the parent's ledger channel (harness.ledger.ChannelWriter) when it gave one: each
process numbers its own events and ends its stream at exit, after the exit checks (context
tamper_check, the tracer's mode check) have written what they found as `tamper` events.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any

from harness.runtime import context
from harness.runtime.context import RuntimeContext, RuntimeSettings, new_writer

# Set in the environment by an instrumented process; inherited by its descendants.
OWNER_ENV = "HARNESS_RUNTIME_OWNER"

_started = False


def is_torchrun_launcher(settings: RuntimeSettings, environ: Any = None) -> bool:
    env = os.environ if environ is None else environ
    nproc = int(settings.extra.get("nproc", 1) or 1)
    return nproc > 1 and "LOCAL_RANK" not in env and "TORCHELASTIC_RUN_ID" not in env


def _argv() -> list[str]:
    # sys.argv is not final while site runs (`-m` shows as '-m'); the kernel's copy is.
    try:
        raw = Path("/proc/self/cmdline").read_bytes()
        return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    except OSError:
        return list(getattr(sys, "orig_argv", sys.argv))


def use_own_ledger(ctx: RuntimeContext) -> None:
    """Point this process's events at a per-pid file (descendants, forked children)."""
    old = ctx.ledger
    ctx.set_writer(new_writer(ctx.settings, ctx.rank, f"ledger.rank{ctx.rank}.pid{os.getpid()}.jsonl"))
    if getattr(old, "path", None) is None:
        return  # a channel writer: the parent's stream of the pid that forked must not end here
    try:
        old.close()
    except Exception:  # noqa: BLE001 - a lock held by another thread at fork time
        pass


def _keep_channel_in_subprocesses(*fds: int) -> None:
    """subprocess closes inherited descriptors by default: torchrun's workers and allowed subprocesses
    must keep the ledger channel (each writes its own stream on it); torchrun's launcher also keeps the
    private settings for its workers."""
    import subprocess

    orig = subprocess.Popen.__init__
    if getattr(orig, "_harness_channel", False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("close_fds", True):
            kwargs["pass_fds"] = tuple(sorted({*kwargs.get("pass_fds", ()), *fds}))
        orig(self, *args, **kwargs)

    __init__._harness_channel = True  # type: ignore[attr-defined]
    subprocess.Popen.__init__ = __init__  # type: ignore[method-assign]


def _private_settings(settings: RuntimeSettings, descendant: bool) -> None:
    """Move the parent's private settings into `extra` and close their descriptor, before any of the
    script's code runs (so the script finds neither the descriptor nor anything in its environment).
    A descendant gets none: its owner closed the descriptor, and the number may name another file now."""
    fd = settings.private_fd
    if fd is None or descendant:
        return
    fd = int(fd)
    settings.extra.update(context.read_private_settings(fd))
    try:
        os.close(fd)
    except OSError:
        pass


def _install_optional(module: str, ctx: RuntimeContext) -> str:
    """Install an optional runtime part; returns 'ok', 'missing' or 'failed: <why>'."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module or module.startswith(e.name + ".")):
            return "missing"
        return f"failed: {type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001
        return f"failed: {type(e).__name__}: {e}"
    # the tracer's switch is private (a script cannot call it by name); other parts keep `install`
    install = getattr(mod, "_install", None) or getattr(mod, "install", None)
    if install is None:
        return "missing"
    try:
        install(ctx)
    except Exception as e:  # noqa: BLE001
        sys.stderr.write(f"harness runtime: {module}.install failed: {type(e).__name__}: {e}\n")
        return f"failed: {type(e).__name__}: {e}"
    return "ok"


def main() -> RuntimeContext | None:
    global _started
    if _started:
        return context.get()
    settings = RuntimeSettings.from_env()
    if settings is None:
        return None
    launcher = is_torchrun_launcher(settings)
    descendant = bool(os.environ.get(OWNER_ENV))
    keep = [settings.ledger_fd] + ([settings.private_fd] if launcher else [])
    _keep_channel_in_subprocesses(*(int(fd) for fd in keep if fd is not None))
    if launcher:
        return None
    _private_settings(settings, descendant)
    _started = True
    ctx = context.init(settings)
    if descendant:
        use_own_ledger(ctx)
    os.environ[OWNER_ENV] = str(os.getpid())
    ctx.emit(
        "run_start",
        site="",  # "" = no site (None would look one up)
        argv=_argv(),
        pid=os.getpid(),
        ppid=os.getppid(),
        python=sys.version.split()[0],
        device=settings.device,
        scale=settings.extra.get("scale", ""),
        traced=bool(settings.trace),
        descendant=descendant,
    )
    # registered before the parts install theirs: atexit runs last-in first-out, so the tracer's
    # final stats event is written before child_exit
    atexit.register(_at_exit)
    parts: dict[str, str] = {}
    try:
        from harness.runtime import io_hooks

        io_hooks.install(ctx)
        parts["io_hooks"] = "ok"
    except Exception as e:  # noqa: BLE001 - reported, never silent
        sys.stderr.write(f"harness runtime: io hooks failed: {type(e).__name__}: {e}\n")
        parts["io_hooks"] = f"failed: {type(e).__name__}: {e}"
    if settings.device == "cpu":
        parts["shim"] = _install_optional("harness.runtime.shim", ctx)
    if settings.trace:
        parts["tracer"] = _install_optional("harness.runtime.tracer", ctx)
    # opt-in fork mode only ([probes] fork = true): the default probes serve each variant as files, with
    # nothing in the environment that tells a probe from the main run
    if settings.extra.get("probe") or os.environ.get("HARNESS_PROBE"):
        # the probes' fork server wraps the tracer's tag_validation: installed after it
        parts["forkserver"] = _install_optional("harness.runtime.forkserver", ctx)
    # offline stand-ins (huggingface_hub) after everything installed: a real package always wins
    fallback = os.path.join(os.path.dirname(os.path.abspath(__file__)), "offline_fallback")
    if os.path.isdir(fallback) and fallback not in sys.path:
        sys.path.append(fallback)
    ctx.emit("phase", site="", name="runtime_ready", parts=parts)
    os.register_at_fork(after_in_child=_after_fork_in_child)
    return ctx


def _after_fork_in_child() -> None:
    ctx = context.get()
    if ctx is None:
        return
    use_own_ledger(ctx)
    os.environ[OWNER_ENV] = str(os.getpid())
    try:
        from harness.runtime import io_hooks

        io_hooks.after_fork()
    except Exception:  # noqa: BLE001
        pass


def _at_exit() -> None:
    ctx = context.get()
    if ctx is None:
        return
    try:
        from harness.runtime import io_hooks

        io_hooks.flush()
        for check in list(ctx.exit_checks):
            try:
                for what, detail in check():
                    ctx.tamper(what, detail, site="")
            except Exception as e:  # noqa: BLE001 - a check that fails is itself a finding
                ctx.tamper("check", f"an exit check failed: {type(e).__name__}: {e}", site="")
        ctx.emit("phase", site="", name="child_exit", pid=os.getpid())
        # a file ledger stays open (late writers must not hit a closed file); a channel ends its stream:
        # an event after this is reported by the parent
        writer = ctx._writer  # the writer the context captured, whatever the script put in ctx.ledger
        if getattr(writer, "path", None) is None:
            writer.close()
    except Exception:  # noqa: BLE001 - interpreter shutdown
        pass
