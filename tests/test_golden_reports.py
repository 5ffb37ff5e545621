"""Golden reports: `harness check` (folder checks only, no --run: fast and deterministic) on two reference
submissions gives the committed JSON and Markdown reports in tests/golden/, after normalizing what changes
from run to run or release to release (the created timestamp, harness and ruleset versions, absolute paths).
A mismatch prints a unified diff.

When a report change is intended, regenerate the golden files with one command and review their diff:

    PGOLF_UPDATE_GOLDEN=1 python -m pytest -q tests/test_golden_reports.py
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path

import pytest

from conftest import GOLDEN, ROOT

CASES = ["check_compliant", "check_claims_disagree"]  # a clean PASS, and a FAIL with findings (S2)
UPDATE = os.environ.get("PGOLF_UPDATE_GOLDEN", "") not in ("", "0")

ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")


def _volatile(key: str) -> bool:
    """Keys whose values change without the report's content changing: when it was made, by which harness
    and ruleset release. The schema version stays: a format change must show in the golden files."""
    return key in ("created", "harness_version") or (key.endswith("version") and key != "schema_version")


def _normalize_json(obj, found: dict[str, str], key: str = ""):
    if isinstance(obj, dict):
        return {k: _normalize_json(v, found, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_normalize_json(v, found, key) for v in obj]
    if key and _volatile(key) and obj is not None:
        found.setdefault(f"<{key}>", str(obj))
        return f"<{key}>"
    if isinstance(obj, str):
        return _normalize_text(obj, {})
    return obj


def _normalize_text(text: str, found: dict[str, str]) -> str:
    # longest first, so a value that contains another is replaced whole
    for placeholder, value in sorted(found.items(), key=lambda kv: -len(kv[1])):
        if len(value) >= 3:  # a short value ("1") would hit unrelated text
            text = re.sub(rf"(?<![\w.]){re.escape(value)}(?![\w])", placeholder, text)
    text = text.replace(str(ROOT) + os.sep, "").replace(str(ROOT), "<ROOT>")
    return ISO_TIME.sub("<created>", text)


def _reports(cli, name: str, tmp_path: Path) -> dict[str, str]:
    js, md = tmp_path / f"{name}.json", tmp_path / f"{name}.md"
    res = cli("check", f"submissions/{name}", "--json", js, "--markdown", md)
    assert "Traceback" not in res.err, res.err
    found: dict[str, str] = {}
    report = _normalize_json(json.loads(js.read_text(encoding="utf-8")), found)
    md_text = md.read_text(encoding="utf-8").replace(str(tmp_path), "<TMP>")
    return {
        f"{name}.json": json.dumps(report, indent=2, ensure_ascii=False) + "\n",
        f"{name}.md": _normalize_text(md_text, found),
    }


@pytest.mark.parametrize("name", CASES)
def test_report_matches_golden(name: str, cli, tmp_path: Path):
    produced = _reports(cli, name, tmp_path)
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        for fname, text in produced.items():
            (GOLDEN / fname).write_text(text, encoding="utf-8")
        return
    problems = []
    for fname, text in produced.items():
        golden = GOLDEN / fname
        if not golden.is_file():
            problems.append(f"tests/golden/{fname} is missing")
            continue
        want = golden.read_text(encoding="utf-8")
        if text != want:
            problems.append("".join(difflib.unified_diff(
                want.splitlines(keepends=True), text.splitlines(keepends=True),
                f"tests/golden/{fname}", f"produced/{fname}")))
    assert not problems, ("\n".join(problems)
                          + "\nIf intended: PGOLF_UPDATE_GOLDEN=1 python -m pytest -q tests/test_golden_reports.py")


def test_normalization_hides_only_volatile_fields():
    found: dict[str, str] = {}
    rep = _normalize_json({"created": "2026-12-04T14:53:18+00:00", "harness_version": "0.1.0",
                           "ruleset_version": "2026.11", "schema_version": "1.1",
                           "path": str(ROOT / "submissions" / "x"), "n": 1}, found)
    assert rep == {"created": "<created>", "harness_version": "<harness_version>",
                   "ruleset_version": "<ruleset_version>", "schema_version": "1.1",
                   "path": "submissions/x", "n": 1}
    md = _normalize_text("harness 0.1.0, schema 1.0, rules 2026.11, 2026-12-04T14:53:18+00:00", found)
    assert md == "harness <harness_version>, schema 1.0, rules <ruleset_version>, <created>"
