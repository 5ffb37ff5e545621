"""`nvidia-smi` answered in-process with plausible output (and a `subprocess` ledger event).

Patched at the bottom (subprocess.Popen, which run / check_output / call / getoutput / os.popen all use)
plus os.system. The shim's Popen subclasses whatever subprocess.Popen is at install time, so the io hooks'
own Popen (recording and allow-listing other programs) still sees every other launch.
"""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from typing import Any

from harness.runtime.shim import nvidia_smi, state
from harness.runtime.shim.cuda_api import device_count

PROGRAMS = ("nvidia-smi",)


def fake_argv(args: Any, shell: bool = False) -> list[str] | None:
    """The argv if this launches nvidia-smi, else None."""
    try:
        if isinstance(args, (str, bytes)):
            text = os.fsdecode(args)
            argv = shlex.split(text) if (shell or " " in text) else [text]
        else:
            argv = [os.fsdecode(a) for a in args]
    except (TypeError, ValueError):
        return None
    if not argv:
        return None
    prog = os.path.basename(argv[0])
    if prog.endswith(".exe"):
        prog = prog[:-4]
    if prog not in PROGRAMS:
        return None
    if shell and any(c in os.fsdecode(args) for c in "|;&><`$"):  # a pipeline: not ours to answer
        return None
    return argv


def _answer(argv: list[str]) -> tuple[str, int]:
    out, rc = nvidia_smi.render(argv, device_count())
    state.emit("subprocess", argv=argv, allowed=True, faked=True)
    return out, rc


def install() -> None:
    base = subprocess.Popen
    if getattr(base, "_harness_shim", False):
        return

    class Popen(base):  # type: ignore[misc, valid-type]
        _harness_shim = True

        def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
            argv = fake_argv(args, bool(kw.get("shell", False)))
            if argv is None:
                super().__init__(args, *a, **kw)
                return
            self._init_fake(args, argv, kw)

        def _init_fake(self, args: Any, argv: list[str], kw: dict[str, Any]) -> None:
            out, rc = _answer(argv)
            text = bool(kw.get("text") or kw.get("universal_newlines") or kw.get("encoding")
                        or kw.get("errors"))
            self.args = args
            self.pid = -1
            self.returncode = None
            self._fake_rc = rc
            self._child_created = False
            self.text_mode = text
            self.encoding = kw.get("encoding")
            self.errors = kw.get("errors")
            self.stdin = None
            data: Any = out if text else out.encode()
            empty: Any = "" if text else b""
            self.stdout = self.stderr = None
            target_out = kw.get("stdout")
            if target_out == subprocess.PIPE:
                self.stdout = io.StringIO(data) if text else io.BytesIO(data)
            else:
                _write_to(target_out, out)
            if kw.get("stderr") == subprocess.PIPE:
                self.stderr = io.StringIO(empty) if text else io.BytesIO(empty)

        def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
            if not hasattr(self, "_fake_rc"):
                return super().communicate(input, timeout)
            out = self.stdout.read() if self.stdout is not None else None
            err = self.stderr.read() if self.stderr is not None else None
            self.returncode = self._fake_rc
            return out, err

        def poll(self) -> int | None:
            if not hasattr(self, "_fake_rc"):
                return super().poll()
            self.returncode = self._fake_rc
            return self.returncode

        def wait(self, timeout: float | None = None) -> int:
            if not hasattr(self, "_fake_rc"):
                return super().wait(timeout)
            self.returncode = self._fake_rc
            return self.returncode

        def send_signal(self, sig: int) -> None:
            if not hasattr(self, "_fake_rc"):
                super().send_signal(sig)

        def terminate(self) -> None:
            if not hasattr(self, "_fake_rc"):
                super().terminate()

        def kill(self) -> None:
            if not hasattr(self, "_fake_rc"):
                super().kill()

        def __del__(self) -> None:
            if not hasattr(self, "_fake_rc"):
                super().__del__()

    Popen.__name__ = Popen.__qualname__ = "Popen"
    Popen.__module__ = "subprocess"
    subprocess.Popen = Popen  # type: ignore[misc]

    orig_system = os.system

    def system(command: Any) -> int:
        argv = fake_argv(command, shell=True)
        if argv is None:
            return orig_system(command)
        out, rc = _answer(argv)
        _write_to(None, out)
        return rc << 8

    os.system = system
    state.note("nvidia-smi")


def _write_to(target: Any, text: str) -> None:
    """Where a real child would have written its stdout: inherited stdout, a file object or an fd."""
    if target == subprocess.DEVNULL:
        return
    try:
        if target is None or target == subprocess.STDOUT:
            sys.stdout.write(text)
            sys.stdout.flush()
        elif isinstance(target, int):
            os.write(target, text.encode())
        elif hasattr(target, "write"):
            try:
                target.write(text)
            except TypeError:
                target.write(text.encode())
    except Exception:
        pass
