"""`pyminify` (python-minifier's CLI) answered in-process by the CPU shim: records run it as a subprocess on
their own source (some with check=True) to report the compressed code size. The stand-in gives what the
program gives, starts nothing, and without python_minifier fails as a missing program does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT as REPO
from harness.runtime.shim import subprocs

SCRIPTS = Path(__file__).parent / "scripts"
OPTS = ["--no-rename-locals", "--no-hoist-literals", "--remove-literal-statements"]
SOURCE = b'"""doc"""\nimport os\n\n\ndef f(a, b):\n    """doc"""\n    return a + b  # sum\n\n\nprint(f(1, 2))\n'


def _shim_run(script: Path, ledger: Path, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **env)
    e.pop("HARNESS_RUNTIME", None)
    return subprocess.run([sys.executable, "-m", "harness.runtime.shim", "--ledger", str(ledger), str(script)],
                          capture_output=True, text=True, env=e, cwd=REPO, timeout=180)


def test_fixture_script_gets_minified_output_under_the_shim(tmp_path: Path) -> None:
    pytest.importorskip("python_minifier")
    r = _shim_run(SCRIPTS / "pyminify_user.py", tmp_path / "ledger")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "code_bytes raw:" in r.stdout and "output_file bytes:" in r.stdout
    assert "missing_file rc:1" in r.stdout and "syntax_error rc:1" in r.stdout  # the program's own failures
    led = "".join(p.read_text() for p in (tmp_path / "ledger").glob("*.jsonl"))
    assert '"argv":["pyminify","--no-rename-locals"' in led and '"faked":true' in led


def test_stand_in_output_equals_the_program() -> None:
    pytest.importorskip("python_minifier")
    out, err, rc = subprocs.run_pyminify(["pyminify", *OPTS, "-"], SOURCE)
    assert rc == 0 and err == b""
    assert out == b"import os\ndef f(a,b):return a+b\nprint(f(1,2))"
    exe = Path(sys.executable).with_name("pyminify")
    if exe.exists():  # the real CLI, when installed next to this interpreter
        real = subprocess.run([str(exe), *OPTS, "-"], input=SOURCE, capture_output=True, timeout=60)
        assert real.stdout == out and real.returncode == rc


def test_argv_forms_answered_and_others_passed_through() -> None:
    assert subprocs.fake_argv(["pyminify", "-"]) == ["pyminify", "-"]
    assert subprocs.fake_argv(["/usr/local/bin/pyminify", "x.py"]) == ["/usr/local/bin/pyminify", "x.py"]
    assert subprocs.fake_argv([sys.executable, "-m", "python_minifier", "-"]) == ["pyminify", "-"]
    assert subprocs.fake_argv("pyminify x.py -o y.py", shell=True) == ["pyminify", "x.py", "-o", "y.py"]
    assert subprocs.fake_argv("pyminify x.py | wc -c", shell=True) is None  # a pipeline: a real shell's
    assert subprocs.fake_argv(["echo", "pyminify"]) is None


class _FakeStd:
    """Installs the shim's Popen over a plain one for one test, restoring it after."""

    def __enter__(self) -> None:
        self.saved = subprocess.Popen, os.system
        subprocs.install()

    def __exit__(self, *exc: object) -> None:
        subprocess.Popen, os.system = self.saved


def test_popen_forms_under_the_shim(tmp_path: Path) -> None:
    pytest.importorskip("python_minifier")
    src = tmp_path / "m.py"
    src.write_bytes(SOURCE)
    with _FakeStd():
        r = subprocess.run(["pyminify", *OPTS, "-"], input=SOURCE, capture_output=True, check=True)
        assert r.returncode == 0 and b"doc" not in r.stdout and r.stderr == b""
        t = subprocess.run(["pyminify", *OPTS, "-"], input=SOURCE.decode(), capture_output=True, text=True)
        assert t.stdout == r.stdout.decode()
        assert subprocess.check_output(["pyminify", *OPTS, "m.py"], cwd=tmp_path) == r.stdout  # cwd honoured
        p = subprocess.Popen(["pyminify", *OPTS, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        p.stdin.write(SOURCE)
        p.stdin.close()
        assert p.wait() == 0 and p.stdout.read() == r.stdout
        with open(src, "rb") as f:  # a file as stdin
            assert subprocess.run(["pyminify", *OPTS, "-"], stdin=f, stdout=subprocess.PIPE).stdout == r.stdout
        out = tmp_path / "o.py"
        assert subprocess.run(["pyminify", *OPTS, str(src), "--output", str(out)]).returncode == 0
        assert out.read_bytes() == r.stdout
        bad = subprocess.run(["pyminify", "-"], input=b"def f(:\n", capture_output=True)
        assert bad.returncode == 1 and bad.stderr
        with pytest.raises(subprocess.CalledProcessError):
            subprocess.run(["pyminify", "-"], input=b"def f(:\n", capture_output=True, check=True)


def test_missing_python_minifier_fails_like_a_missing_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocs, "pyminify_available", lambda: False)
    with _FakeStd():
        with pytest.raises(FileNotFoundError) as e:
            subprocess.run(["pyminify", "-"], input=b"x = 1\n", capture_output=True, check=True)
        assert e.value.errno == 2 and "python_minifier" in str(e.value) and "\n" not in str(e.value)
        r = subprocess.run("pyminify -", shell=True, capture_output=True)
        assert r.returncode == 127 and b"not installed" in r.stderr
        assert os.system("pyminify x.py") >> 8 == 127


def test_nvidia_smi_still_answered(capsys: pytest.CaptureFixture[str]) -> None:
    with _FakeStd():
        r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        assert r.returncode == 0 and "GPU 0" in r.stdout
        b = subprocess.check_output(["nvidia-smi"])
        assert isinstance(b, bytes) and b"NVIDIA-SMI" in b
