"""`harness audit`: folder discovery, the exit-code order, child processes that crash or hang, the cache
(a re-audit only reads it; a changed file re-checks its folder), Ctrl-C, and the summary files."""

from __future__ import annotations

import _thread
import csv
import json
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import SUBMISSIONS

from harness.audit.cache import ResultCache, folder_digest
from harness.audit.discover import find_folders
from harness.audit.rows import first_finding, worst_exit
from harness.audit.run import AuditOptions, audit
from harness.config import load_config
from harness.errors import BadInput, HarnessError


def _touch(p: Path, text: str = "") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_discover_tree_list_file_and_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path / "records/track/a/train_gpt.py")
    _touch(tmp_path / "records/track/b/train_gpt_cuda_ternary.py")  # a record whose script a README launches
    _touch(tmp_path / "records/track/b/sub/train_gpt.py")  # a record's own files: never a record of its own
    _touch(tmp_path / "records/track/c/README.md")  # no script: not found in a tree
    _touch(tmp_path / "records/.hidden/d/train_gpt.py")
    tree = find_folders(["records"])
    assert [p.as_posix() for p in tree] == ["records/track/a", "records/track/b"]
    # a list file (blank lines and comments skipped; a listed folder counts even without a script) and @FILE
    _touch(tmp_path / "list.txt", "# to audit\nrecords/track/c\n\nrecords/track/a\n")
    assert [p.as_posix() for p in find_folders(["list.txt"])] == ["records/track/c", "records/track/a"]
    assert [p.as_posix() for p in find_folders(["@list.txt", "records"])] == [
        "records/track/c", "records/track/a", "records/track/b"]  # each folder once
    assert [p.as_posix() for p in find_folders(["records/track/a/train_gpt.py"])] == ["records/track/a"]
    for bad in (["nowhere"], ["records/track/c"]):
        with pytest.raises(BadInput):
            find_folders(bad)


def test_exit_code_order():
    assert worst_exit([]) == 0
    assert worst_exit([0, 2, 3]) == 3
    assert worst_exit([2, 4, 3]) == 4
    assert worst_exit([4, 5, 0]) == 5
    assert worst_exit([5, 1, 4]) == 1  # a violation decides
    assert worst_exit([0, 99]) == 5  # an unknown code counts as a harness error


def test_first_finding_prefers_legality_and_budgets():
    report = {"verdict": {"paperwork": {"rules": {"S1": "FAIL"}}},
              "rules": [{"rule_id": "S1", "status": "FAIL", "summary": "missing a train log", "findings": []},
                        {"rule_id": "B1", "status": "INCONCLUSIVE", "summary": "no model size", "findings": []}]}
    assert first_finding(report) == "B1 INCONCLUSIVE: no model size"
    assert first_finding({**report, "input_errors": ["x.ptz: truncated"]}) == "bad input: x.ptz: truncated"
    assert first_finding({**report, "run_failed": "crash: exit 1"}) == "run failed: crash: exit 1"


def _fake_report(status: str) -> str:
    return json.dumps({"submission": "x", "exit_code": 0, "input_errors": [],
                       "verdict": {"legality": {"status": "NOT RUN"}, "budgets": {"status": status},
                                   "paperwork": {"status": "PASS", "rules": {}}},
                       "rules": [{"rule_id": "B1", "status": status, "summary": "fake", "findings": []}]})


def _folders(tmp_path: Path, *names: str) -> list[str]:
    out = []
    for n in names:
        _touch(tmp_path / "recs" / n / "train_gpt.py", f"# {n}\n")
        out.append(str(tmp_path / "recs" / n))
    return out


def test_crash_and_hang_never_stop_the_others(tmp_path):
    """Each folder is a child process: one that hangs is killed at the folder timeout, one that crashes is a
    row with its one-line error; neither is cached (they may be the machine's fault), the good one is."""
    ok, crash, hang = _folders(tmp_path, "ok", "crash", "hang")
    script = {
        "ok": "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])",
        "crash": "import sys; sys.stderr.write('harness: internal error: boom\\n'); sys.exit(5)",
        "hang": "import time; time.sleep(60)",
    }

    def command(folder: Path, report: Path) -> list[str]:
        return [sys.executable, "-c", script[folder.name], str(report), _fake_report("PASS")]

    opts = AuditOptions(paths=(str(tmp_path / "recs"),), jobs=3, cache_dir=str(tmp_path / "cache"), folder_timeout=2)
    t0 = time.monotonic()
    res = audit(opts, load_config(None), command_for=command)
    assert time.monotonic() - t0 < 20
    rows = {Path(r.folder).name: r for r in res.rows}
    assert (rows["ok"].verdict, rows["ok"].exit_code, rows["ok"].budgets) == ("COMPLIANT", 0, "PASS")
    assert (rows["crash"].verdict, rows["crash"].exit_code) == ("HARNESS ERROR", 5)
    assert "boom" in rows["crash"].first_finding
    assert (rows["hang"].verdict, rows["hang"].exit_code) == ("TIMEOUT", 5)  # static: a hang is the harness's
    assert res.exit_code == 5
    assert len(list((tmp_path / "cache" / "results").rglob("*.json"))) == 1


def test_interrupt_keeps_finished_results_and_a_rerun_completes(tmp_path):
    fast, slow = _folders(tmp_path, "fast", "slow")
    opts = AuditOptions(paths=(fast, slow), jobs=2, cache_dir=str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "results"
    sleepy = {"fast": 0, "slow": 60}

    def command(folder: Path, report: Path) -> list[str]:
        code = f"import sys, time, pathlib; time.sleep({sleepy[folder.name]}); pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"
        return [sys.executable, "-c", code, str(report), _fake_report("PASS")]

    def ctrl_c_after_first_result() -> None:
        deadline = time.monotonic() + 30
        while not list(cache.rglob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        _thread.interrupt_main()  # what Ctrl-C does: KeyboardInterrupt in the main thread

    # A shell's background job starts with SIGINT ignored, and interrupt_main then does nothing: restore
    # Python's own Ctrl-C handler for this test, as an interactive terminal has it.
    old_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=ctrl_c_after_first_result, daemon=True).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(HarnessError, match="audit interrupted: 1 of 2 folder"):
            audit(opts, load_config(None), command_for=command)
    finally:
        signal.signal(signal.SIGINT, old_handler)
    assert time.monotonic() - t0 < 20  # the sleeping child was stopped, not waited for
    assert len(list(cache.rglob("*.json"))) == 1
    sleepy["slow"] = 0
    res = audit(opts, load_config(None), command_for=command)
    assert [(Path(r.folder).name, r.cached) for r in res.rows] == [("fast", True), ("slow", False)]
    assert res.exit_code == 0


def test_audit_static_parallel_cached_then_changed(tmp_path, cli):
    """Two real folders checked in parallel child processes; the re-audit reads only the cache; a changed
    file re-checks its folder alone. The summary files hold the same rows."""
    recs = tmp_path / "records" / "track"
    for name in ("check_over_cap_strict", "check_truncated_artifact"):  # the two quickest checks
        shutil.copytree(SUBMISSIONS / name, recs / name)
    cache = tmp_path / "cache"
    out = {k: tmp_path / f"summary.{k}" for k in ("json", "md", "csv")}
    args = ("audit", tmp_path / "records", "--jobs", "2", "--cache-dir", cache)
    r = cli(*args, "--json", out["json"], "--markdown", out["md"], "--csv", out["csv"])
    assert r.code == 3, r.err  # compliant (0) and a truncated artifact (3): the worse one
    summary = json.loads(out["json"].read_text())
    rows = {Path(x["folder"]).name: x for x in summary["rows"]}
    assert rows["check_over_cap_strict"]["verdict"] == "COMPLIANT" and rows["check_over_cap_strict"]["exit_code"] == 0
    assert rows["check_over_cap_strict"]["budgets"] == "WARN"  # over the cap only when the helper counts
    assert rows["check_truncated_artifact"]["verdict"] == "BAD INPUT"
    assert "truncated" in rows["check_truncated_artifact"]["first_finding"] or \
        "end marker" in rows["check_truncated_artifact"]["first_finding"]
    assert not any(x["cached"] for x in summary["rows"]) and summary["exit_code"] == 3
    table = list(csv.DictReader(out["csv"].open()))
    assert list(table[0]) == ["folder", "exit_code", "verdict", "legality", "budgets", "paperwork",
                              "first_finding", "seconds", "cached"]
    assert "| `" in out["md"].read_text() and "BAD INPUT" in out["md"].read_text()

    t0 = time.monotonic()
    r2 = cli(*args, "--json", out["json"])
    assert time.monotonic() - t0 < 5
    assert r2.code == 3 and all(x["cached"] for x in json.loads(out["json"].read_text())["rows"])

    readme = recs / "check_over_cap_strict" / "README.md"
    readme.write_text(readme.read_text() + "\nan edit\n")
    r3 = cli(*args, "--json", out["json"])
    cached = {Path(x["folder"]).name: x["cached"] for x in json.loads(out["json"].read_text())["rows"]}
    assert r3.code == 3 and cached == {"check_over_cap_strict": False, "check_truncated_artifact": True}


def test_cache_key_sees_content_not_mtime(tmp_path):
    f = _touch(tmp_path / "s" / "train_gpt.py", "print(1)\n")
    d0 = folder_digest(tmp_path / "s")
    f.touch()
    assert folder_digest(tmp_path / "s") == d0
    f.write_text("print(2)\n")
    assert folder_digest(tmp_path / "s") != d0
    cache = ResultCache(tmp_path / "c")
    cache.put("ab" * 32, {"row": {}})
    assert cache.get("ab" * 32)["row"] == {} and cache.get("cd" * 32) is None
    assert (tmp_path / "c" / ".gitignore").read_text().endswith("*\n")


def test_check_flags_round_trip_through_the_check_parser():
    """The flags an audit gives each child parse, as `harness check`, to the audit's own options."""
    from harness.audit.child import check_flags
    from harness.cli.options import options_from
    from harness.cli.parser import build_parser

    cfg = load_config(None)
    common = ["--score-tag", "final_int8", "--reference-val-loss", "2.5", "--no-hints", "--run", "--no-probes",
              "--device", "cpu", "--nproc", "2", "--env", "A=1", "--env", "B=x y", "--timeout", "90", "--no-trace"]
    a = options_from(build_parser().parse_args(["audit", "recs", "--jobs", "2", *common]), cfg)
    flags = check_flags(a.audit.check, a.audit.run, a.audit.probes)
    c = options_from(build_parser().parse_args(["check", "recs/x", *flags]), cfg)
    assert c.check == a.audit.check and c.run == a.audit.run and c.probes is None
    static = options_from(build_parser().parse_args(["audit", "recs"]), cfg).audit
    assert check_flags(static.check, static.run, static.probes) == [] and static.run is None
