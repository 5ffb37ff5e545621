"""Bad input never reaches exit 5: each case is exit 3 with one `harness:` line, or the exit code the README
gives it (a failed run is 4, in the JSON too), or a rule finding naming the field."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.data.shards import write_shard
from harness.ledger import read_ledger

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def folder(tmp_path: Path, claims: str = '{"val_bpb": 1.0, "seeds": [1]}', script: str | None = None) -> Path:
    """A complete, tiny submission folder (checks in well under a second)."""
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "train_gpt.py").write_text(script or "import os\nprint('final_x val_loss:2.0 val_bpb:1.0')\n")
    (sub / "README.md").write_text("# tiny\n")
    (sub / "submission.json").write_text(claims)
    (sub / "train_seed1.log").write_text("step:1/1 train_loss:2.0\nfinal_x val_loss:2.0 val_bpb:1.0\n")
    return sub


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("harness:")]
    assert len(lines) == 1 and "internal error" not in lines[0], err
    return lines[0]


def report(cli, sub: Path, tmp_path: Path, *extra: str) -> tuple[int, dict]:
    js = tmp_path / "r.json"
    r = cli("check", sub, "--no-hints", "--json", js, *extra)
    assert r.code != 5, r.err
    return r.code, json.loads(js.read_text())


def s2(rep: dict) -> dict:
    return next(r for r in rep["rules"] if r["rule_id"] == "S2")


# -- submission.json ---------------------------------------------------------------------------------


def test_a_5000_digit_integer_is_an_unusable_claim_named_by_s2(tmp_path: Path, cli) -> None:
    code, rep = report(cli, folder(tmp_path, '{"val_bpb": ' + "9" * 5000 + ', "seeds": [1]}'), tmp_path)
    row = s2(rep)
    assert row["status"] == "FAIL" and "val_bpb" in row["summary"]
    assert "5000-digit integer" in row["findings"][0]["message"]


def test_json_nested_100k_deep_is_unreadable_paperwork(tmp_path: Path, cli) -> None:
    code, rep = report(cli, folder(tmp_path, "[" * 100_000 + "]" * 100_000), tmp_path)
    s1 = next(r for r in rep["rules"] if r["rule_id"] == "S1")
    assert s1["status"] == "FAIL" and "nested more than" in s1["summary"]


@pytest.mark.parametrize("claims, field, status", [
    ('{"val_bpb": NaN, "seeds": [1]}', "val_bpb", "FAIL"),
    ('{"results": {"mean_val_bpb": Infinity}, "seeds": [1]}', "results.mean_val_bpb", "FAIL"),
    ('{"val_bpb": 1.0, "val_loss": "abc", "seeds": [1]}', "val_loss", "WARN"),
    ('{"val_bpb": 1.0, "seed_results": {"1": {"val_bpb": [1]}}}', "seed_results.1.val_bpb", "WARN"),
    ('{"val_bpb": 1.0, "bytes_total": 1.5, "seeds": [1]}', "bytes_total", "WARN"),
])
def test_nan_infinite_or_wrong_typed_claims_are_named(tmp_path: Path, cli, claims: str, field: str,
                                                      status: str) -> None:
    code, rep = report(cli, folder(tmp_path, claims), tmp_path)
    row = s2(rep)
    assert row["status"] == status and not row["summary"].startswith("claims agree"), row
    assert any(f["message"].startswith(f"submission.json {field}:") for f in row["findings"]), row["findings"]


# -- unreadable files ------------------------------------------------------------------------------


def _eio_on(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """Every open of `target` fails with EIO (a failing disk), through io.open, open and os.open."""
    real_io, real_os = io.open, os.open

    def bad(path: object) -> bool:
        try:
            return os.fspath(path) == str(target)  # type: ignore[arg-type]
        except TypeError:
            return False

    def io_open(file, *a, **k):  # noqa: ANN001, ANN202
        if bad(file):
            raise OSError(errno.EIO, "Input/output error", str(target))
        return real_io(file, *a, **k)

    def os_open(path, *a, **k):  # noqa: ANN001, ANN202
        if bad(path):
            raise OSError(errno.EIO, "Input/output error", str(target))
        return real_os(path, *a, **k)

    monkeypatch.setattr(io, "open", io_open)
    monkeypatch.setattr("builtins.open", io_open)
    monkeypatch.setattr(os, "open", os_open)


@pytest.mark.parametrize("name", ["train_gpt.py", "train_seed1.log", "submission.json", "README.md"])
def test_an_unreadable_file_is_never_exit_5(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    sub = folder(tmp_path)
    _eio_on(monkeypatch, sub / name)
    r = cli("check", sub, "--no-hints")
    assert r.code != 5, r.err
    if name in ("train_gpt.py", "train_seed1.log"):  # nothing to check without them: bad input
        assert r.code == 3 and "Input/output error" in one_line(r.err.replace("bad input: ", ""))
    if name == "submission.json":  # paperwork: S1 says it
        assert "cannot read (Input/output error)" in r.out.replace("\n", " ")


def test_an_unreadable_file_stops_the_copy_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import BadInput
    from harness.run.workdir import prepare_workdir

    sub = folder(tmp_path)
    _eio_on(monkeypatch, (sub / "README.md").resolve())
    with pytest.raises(BadInput, match="Input/output error"):
        prepare_workdir(sub, str(tmp_path / "runs"))


# -- the script --------------------------------------------------------------------------------------


def test_a_syntax_error_is_reported_with_file_and_line(tmp_path: Path, cli) -> None:
    sub = folder(tmp_path, script="import os\n\ndef f(:\n    pass\n")
    r = cli("check", sub, "--no-hints")
    assert r.code == 3
    assert one_line(r.err) == "harness: bad input: train_gpt.py:3: syntax error: invalid syntax (the script cannot run)"


def test_python_312_syntax_is_not_a_syntax_error(tmp_path: Path, cli) -> None:
    sub = folder(tmp_path, script=(SCRIPTS / "py312.py").read_text())
    r = cli("check", sub, "--no-hints")
    assert r.code in (0, 2) and "syntax error" not in r.err, r.err


# -- the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize("args, says", [
    (["check", "{sub}", "--json", "{tmp}"], "is a folder"),
    (["check", "{sub}", "--json", "{tmp}/missing/r.json"], "no such folder"),
    (["check", "{sub}", "--markdown", "{sub}/README.md/x.md"], "not a folder"),
    (["run", "{sub}", "--out", "{sub}/README.md"], "is a file, not a folder"),
    (["run", "{sub}", "--nproc", "0"], "--nproc must be a whole number above 0, got 0"),
    (["run", "{sub}", "--timeout", "-5"], "--timeout must be a number above 0, got -5.0"),
    (["run", "{sub}", "--timeout", "inf"], "--timeout must be a number above 0"),
    (["check", "{sub}", "--run", "--vocab-size", "-1"], "--vocab-size must be a whole number above 0"),
])
def test_bad_usage_is_exit_3_one_line(tmp_path: Path, cli, args: list[str], says: str) -> None:
    sub = folder(tmp_path)
    r = cli(*[a.format(sub=sub, tmp=tmp_path) for a in args])
    assert r.code == 3 and says in one_line(r.err), r.err
    assert not (tmp_path / "missing").exists()


# -- a failed run: exit 4, and the JSON says 4 ---------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name in ("fineweb_train_000000.bin", "fineweb_val_000000.bin"):
        write_shard(d / name, np.concatenate([[1], rng.integers(3, 1024, 2999)]).astype(np.uint16))
    return d


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_failed_run_exits_4_and_its_json_says_4(tmp_path: Path, cli, data: Path, command: str) -> None:
    sub = tmp_path / "crash"
    sub.mkdir()
    shutil.copy(SCRIPTS / "crash.py", sub / "train_gpt.py")
    shutil.copy(SCRIPTS / "_shards.py", sub / "_shards.py")
    js = tmp_path / "r.json"
    extra = ["--run", "--no-probes", "--no-hints"] if command == "check" else []
    r = cli(command, sub, *extra, "--data-path", data, "--out", tmp_path / "o", "--no-trace", "--json", js)
    assert r.code == 4, r.err
    rep = json.loads(js.read_text())
    assert rep["exit_code"] == 4 and rep["run_failed"].startswith("crash: ValueError: boom at step 3")


# -- the ledger: read streaming, capped ----------------------------------------------------------------


def test_the_ledger_is_read_under_a_size_cap(tmp_path: Path) -> None:
    line = json.dumps({"seq": 0, "t": 0.0, "rank": 0, "kind": "read", "file": "x" * 200}) + "\n"
    (tmp_path / "ledger.rank0.jsonl").write_text(line * 20_000 + "[" * 50_000 + "\n" + line)  # ~5 MB, one deep line
    led = read_ledger(tmp_path, max_bytes=1 << 20)
    assert led.truncated and "passed 1,048,576 bytes" in led.truncated
    assert len(led.events) < 20_000 * (1 << 20) // (len(line) * 20_000) + 1
    whole = read_ledger(tmp_path)
    assert not whole.truncated and len(whole.events) == 20_001 and whole.skipped_lines == 1  # deep line skipped


def test_a_truncated_ledger_passes_no_trace_rule() -> None:
    from test_verdict import NLL, PB, VT, N, numbers, sliding_pass, start

    from harness.verdict.core import judge
    from harness.verdict.handwritten import LedgerBuilder

    b = LedgerBuilder()
    start(b)
    sliding_pass(b, per_batch=False)
    b.reported("final_exact", *numbers(range(1, N), NLL[1:]))
    b.stats()
    whole = judge(b.ledger(), printed=b.printed(), val_tokens=VT, pos_bytes=PB, seq_lens=[64])
    assert whole.result("C3").status.value == "PASS"
    cut = b.ledger()
    cut.truncated = "the ledger passed 1,000 bytes at ledger.rank0.jsonl: the rest was not read"
    v = judge(cut, printed=b.printed(), val_tokens=VT, pos_bytes=PB, seq_lens=[64])
    for rid in ("C1", "C3", "C4", "D1", "D2", "D3", "B4"):
        assert v.result(rid).status.value in ("INCONCLUSIVE", "FAIL"), (rid, v.result(rid).summary)


def test_a_report_written_to_a_device_leaves_the_device_a_device(tmp_path):
    """--json /dev/null must not rename a regular file over /dev/null (it did, as root)."""
    import stat

    from harness.fsutil import atomic_write_text

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    import threading

    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    atomic_write_text(fifo, "report")
    reader.join(5)
    assert got == [b"report"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    atomic_write_text("/dev/null", "x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
