"""Programs answered in-process (and a `subprocess` ledger event): `nvidia-smi` with plausible output,
`pyminify` (python-minifier's CLI, which records run on their own source to report the compressed code
size) by python_minifier itself, in this process.

Patched at the bottom (subprocess.Popen, which run / check_output / call / getoutput / os.popen all use)
plus os.system. The shim's Popen subclasses whatever subprocess.Popen is at install time, so the io hooks'
own Popen (recording and allow-listing other programs) still sees every other launch. A stand-in is not
a real subprocess: nothing is started, the allow-list is not consulted, and the ledger event says
faked=True. Without python_minifier installed, `pyminify` fails as a missing program does
(FileNotFoundError; 127 from a shell), with MISSING_PYMINIFY as the reason.
"""

from __future__ import annotations

import errno
import io
import os
import shlex
import subprocess
import sys
import threading
import traceback
from typing import Any

from harness.runtime.shim import nvidia_smi, state
from harness.runtime.shim.cuda_api import device_count

PROGRAMS = ("nvidia-smi", "pyminify")
MISSING_PYMINIFY = ("pyminify is answered in-process by the harness with python_minifier, which is not "
                    "installed in the harness's environment (pip install python-minifier)")
_PYTHON_MODULES = {"python_minifier": "pyminify"}  # `python -m python_minifier ...` is pyminify too
_std_lock = threading.Lock()


def _split(args: Any, shell: bool) -> list[str] | None:
    try:
        if isinstance(args, (str, bytes)):
            text = os.fsdecode(args)
            return shlex.split(text) if (shell or " " in text) else [text]
        return [os.fsdecode(a) for a in args]
    except (TypeError, ValueError):
        return None


def _prog(name: str) -> str:
    prog = os.path.basename(name)
    return prog[:-4] if prog.endswith(".exe") else prog


def fake_argv(args: Any, shell: bool = False) -> list[str] | None:
    """The argv (argv[0] the program's name) if this launches a program the shim answers, else None."""
    argv = _split(args, shell)
    if not argv:
        return None
    prog = _prog(argv[0])
    if prog.startswith("python") and len(argv) >= 3 and argv[1] == "-m" and argv[2] in _PYTHON_MODULES:
        argv = [_PYTHON_MODULES[argv[2]], *argv[3:]]
        prog = argv[0]
    if prog not in PROGRAMS:
        return None
    if shell and any(c in os.fsdecode(args) for c in "|;&><`$"):  # a pipeline: not ours to answer
        return None
    return argv


def pyminify_available() -> bool:
    try:
        import python_minifier.__main__  # noqa: F401
    except Exception:  # noqa: BLE001 - absent or broken: the program is missing
        return False
    return True


def run_pyminify(argv: list[str], stdin: bytes = b"", cwd: Any = None) -> tuple[bytes, bytes, int]:
    """(stdout, stderr, returncode) of `pyminify ARGS` run in this process: python_minifier's own command
    line (every option it has: --no-rename-locals, --no-hoist-literals, --remove-literal-statements,
    --output/-o, --in-place, `-` for stdin, ...), with sys.argv / stdin / stdout / stderr (and the working
    folder, when `cwd` is given) swapped for the call."""
    import python_minifier.__main__ as cli

    out, err = io.BytesIO(), io.BytesIO()
    rc = 0
    with _std_lock:
        saved = sys.argv, sys.stdin, sys.stdout, sys.stderr
        here = os.getcwd() if cwd is not None else None
        w_in = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
        w_out = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
        w_err = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
        try:
            if cwd is not None:
                os.chdir(os.fsdecode(cwd))
            sys.argv, sys.stdin, sys.stdout, sys.stderr = ["pyminify", *argv[1:]], w_in, w_out, w_err
            cli.main()
        except SystemExit as e:
            code = e.code
            if code is None:
                rc = 0
            elif isinstance(code, int):
                rc = code
            else:
                w_err.write(f"{code}\n")
                rc = 1
        except Exception:  # noqa: BLE001 - the program's crash: a traceback on stderr, status 1
            w_err.write(traceback.format_exc())
            rc = 1
        finally:
            sys.argv, sys.stdin, sys.stdout, sys.stderr = saved
            if here is not None:
                os.chdir(here)
            for w in (w_out, w_err):
                w.flush()
    return out.getvalue(), err.getvalue(), rc


def _missing(argv: list[str], shell: bool) -> tuple[bytes, bytes, int]:
    state.emit("subprocess", argv=argv, allowed=True, faked=True, missing=True)
    if not shell:
        raise FileNotFoundError(errno.ENOENT, f"No such file or directory ({MISSING_PYMINIFY})", argv[0])
    return b"", f"sh: 1: {argv[0]}: not found ({MISSING_PYMINIFY})\n".encode(), 127


def _answer(argv: list[str], stdin: bytes = b"", cwd: Any = None, shell: bool = False) -> tuple[bytes, bytes, int]:
    """(stdout, stderr, returncode) of a program the shim answers."""
    prog = argv[0]
    if prog == "pyminify":
        if not pyminify_available():
            return _missing(argv, shell)
        state.emit("subprocess", argv=argv, allowed=True, faked=True)
        return run_pyminify(argv, stdin, cwd)
    out, rc = nvidia_smi.render(argv, device_count())
    state.emit("subprocess", argv=argv, allowed=True, faked=True)
    return out.encode(), b"", rc


def _read_stdin(target: Any) -> bytes:
    """What a child would read on its stdin when it is not a pipe: a file object or an fd (never the
    harness process's own stdin)."""
    if target is None or target == subprocess.DEVNULL:
        return b""
    try:
        if isinstance(target, int):
            chunks = []
            while True:
                b = os.read(target, 1 << 20)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks)
        if hasattr(target, "read"):
            data = target.read()
            return data.encode() if isinstance(data, str) else bytes(data)
    except Exception:  # noqa: BLE001 - unreadable: an empty stdin
        pass
    return b""


class _Feed(io.BytesIO):
    """The stand-in's stdin pipe: collects what is written; closing it runs the program (EOF)."""

    def __init__(self, proc: Any, text: bool, encoding: str | None) -> None:
        super().__init__()
        self._proc, self._text, self._encoding = proc, text, encoding or "utf-8"

    def write(self, data: Any) -> int:  # type: ignore[override]
        if isinstance(data, str):
            data = data.encode(self._encoding)
        return super().write(data)

    def close(self) -> None:
        if not self.closed:
            data = self.getvalue()
            super().close()
            self._proc._finish(data)


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
            self._init_fake(args, argv, _popen_kwargs(a, kw))

        def _init_fake(self, args: Any, argv: list[str], kw: dict[str, Any]) -> None:
            text = bool(kw.get("text") or kw.get("universal_newlines") or kw.get("encoding")
                        or kw.get("errors"))
            shell = bool(kw.get("shell", False))
            if argv[0] == "pyminify" and not shell and not pyminify_available():
                _missing(argv, shell)  # raises FileNotFoundError, as for a program not on PATH
            self.args = args
            self.pid = -1
            self.returncode = None
            self._fake_rc = None
            self._fake_argv, self._fake_kw, self._fake_shell = argv, kw, shell
            self._child_created = False
            self.text_mode = text
            self.encoding = kw.get("encoding")
            self.errors = kw.get("errors")
            self.stdin = self.stdout = self.stderr = None
            if kw.get("stdout") == subprocess.PIPE:
                self.stdout = io.BytesIO()
            if kw.get("stderr") == subprocess.PIPE:
                self.stderr = io.BytesIO()
            if kw.get("stdin") == subprocess.PIPE:
                self.stdin = _Feed(self, text, self.encoding)  # runs when closed (or at communicate)
            else:
                self._finish(_read_stdin(kw.get("stdin")))

        def _finish(self, stdin: bytes) -> None:
            """Run the stand-in on its whole stdin and route its output where a child's would go."""
            if self._fake_rc is not None:
                return
            kw = self._fake_kw
            out, err, rc = _answer(self._fake_argv, stdin, kw.get("cwd"), self._fake_shell)
            self._fake_rc = rc
            if kw.get("stderr") == subprocess.STDOUT:
                out, err = out + err, b""
            for name, data, target in (("stdout", out, kw.get("stdout")), ("stderr", err, kw.get("stderr"))):
                if target == subprocess.PIPE:
                    setattr(self, name, self._pipe(data))
                elif data and not (name == "stderr" and target == subprocess.STDOUT):
                    _write_to(target, data, sys.stdout if name == "stdout" else sys.stderr)

        def _pipe(self, data: bytes) -> Any:
            if not self.text_mode:
                return io.BytesIO(data)
            text = data.decode(self.encoding or "utf-8", self.errors or "strict")
            return io.StringIO(text.replace("\r\n", "\n"))

        def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
            if not hasattr(self, "_fake_rc"):
                return super().communicate(input, timeout)
            if self.stdin is not None and not self.stdin.closed:
                if input is not None:
                    self.stdin.write(input)
                self.stdin.close()
            out = self.stdout.read() if self.stdout is not None else None
            err = self.stderr.read() if self.stderr is not None else None
            self.returncode = self._fake_rc
            return out, err

        def _fake_done(self) -> int:
            if self._fake_rc is None:  # waited on with its stdin still open: EOF now
                self.stdin.close()
            self.returncode = self._fake_rc
            return self.returncode

        def poll(self) -> int | None:
            if not hasattr(self, "_fake_rc"):
                return super().poll()
            return self._fake_done()

        def wait(self, timeout: float | None = None) -> int:
            if not hasattr(self, "_fake_rc"):
                return super().wait(timeout)
            return self._fake_done()

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
        out, err, rc = _answer(argv, b"", None, shell=True)
        _write_to(None, out, sys.stdout)
        _write_to(None, err, sys.stderr)
        return rc << 8

    os.system = system
    state.note("nvidia-smi")
    state.note("pyminify")


_POPEN_ORDER = ("bufsize", "executable", "stdin", "stdout", "stderr", "preexec_fn", "close_fds", "shell", "cwd",
                "env", "universal_newlines", "startupinfo", "creationflags", "restore_signals",
                "start_new_session", "pass_fds")


def _popen_kwargs(a: tuple[Any, ...], kw: dict[str, Any]) -> dict[str, Any]:
    """Popen's keyword view of its arguments (positional ones after args are rare but legal)."""
    out = dict(zip(_POPEN_ORDER, a))
    out.update(kw)
    return out


def _write_to(target: Any, data: bytes, inherited: Any) -> None:
    """Where a real child would have written: the inherited stream, a file object or an fd."""
    if target == subprocess.DEVNULL or not data:
        return
    try:
        if target is None:
            inherited.flush()
            buf = getattr(inherited, "buffer", None)
            if buf is not None:
                buf.write(data)
                buf.flush()
            else:
                inherited.write(data.decode("utf-8", "replace"))
                inherited.flush()
        elif isinstance(target, int):
            os.write(target, data)
        elif hasattr(target, "write"):
            try:
                target.write(data)
            except TypeError:
                target.write(data.decode("utf-8", "replace"))
            if hasattr(target, "flush"):
                target.flush()
    except Exception:
        pass
