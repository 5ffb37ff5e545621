"""One Markdown pull-request comment from the per-folder `harness check --json` reports of a workflow run.

The comment starts with MARKER (a hidden HTML comment) so the workflow finds and updates its own comment
instead of adding one per push. It holds one summary row per folder (harness.audit.rows, as `harness
audit` prints them), then each folder's own Markdown report (the `.md` beside its `.json`, when there is
one) folded, as long as the comment stays under GitHub's size limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import __version__
from harness.audit.render import markdown_table
from harness.audit.rows import AuditRow, row_from_report, row_without_report, worst_exit
from harness.errors import BadInput

MARKER = "<!-- pgolf-harness -->"
MAX_CHARS = 60_000  # GitHub refuses comments over 65,536 characters
COLUMNS = ("folder", "exit_code", "verdict", "legality", "budgets", "paperwork", "first_finding")


def find_reports(dirs: Iterable[str | Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every check report (a JSON object with `verdict` and `rules`) under the folders, sorted by path."""
    out = []
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            raise BadInput(f"no such report folder: {d}")
        for p in sorted(root.rglob("*.json")):
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and "verdict" in data and "rules" in data and "submission" in data:
                out.append((p, data))
    return out


def expected_folders(matrix_json: str | None) -> list[str]:
    """The folders of a changed-folders matrix (`{"include": [{"folder": ...}]}`, or a plain list)."""
    if not matrix_json:
        return []
    try:
        m = json.loads(matrix_json)
    except ValueError as e:
        raise BadInput(f"--expect is not JSON: {e}") from None
    items = m.get("include", []) if isinstance(m, dict) else m
    if not isinstance(items, list):
        raise BadInput("--expect: expected {\"include\": [...]} or a list of folders")
    return [str(x["folder"] if isinstance(x, Mapping) else x) for x in items]


def _norm(folder: str) -> str:
    return folder.strip().rstrip("/").removeprefix("./")


def build_comment(reports: Sequence[tuple[Path, Mapping[str, Any]]], expect: Sequence[str] = (),
                  details_url: str | None = None) -> str:
    rows: list[AuditRow] = []
    details: list[tuple[str, str]] = []
    seen: set[str] = set()
    for path, rep in reports:
        folder = _norm(str(rep.get("submission", path.parent)))
        seen.add(folder)
        seconds = float(((rep.get("sections") or {}).get("run") or {}).get("wall_s") or 0.0)
        row = row_from_report(folder, rep, int(rep.get("exit_code", 5)), seconds)
        rows.append(row)
        md = path.with_suffix(".md")
        if md.is_file():
            details.append((f"{folder}: {row.verdict}", md.read_text(encoding="utf-8", errors="replace")))
    for folder in map(_norm, expect):
        if folder not in seen:
            rows.append(row_without_report(folder, 5, "NO REPORT", "the check wrote no report (see the job's log)",
                                           0.0))
    rows.sort(key=lambda r: r.folder)
    code = worst_exit(r.exit_code for r in rows)
    head = {0: "✅ compliant", 1: "❌ violation found", 2: "❔ inconclusive", 3: "⚠️ bad input",
            4: "⚠️ a run failed", 5: "⚠️ harness error or missing report"}[code]
    out = [MARKER, f"### Parameter Golf compliance: {head}", "",
           f"{len(rows)} submission folder(s) changed in this pull request, checked by `harness check --run` "
           f"at tiny scale on CPU (harness {__version__}).", ""]
    if rows:
        out += markdown_table(rows, COLUMNS)
    else:
        out.append("_No reports were found._")
    if details_url:
        out += ["", f"Reports, run logs and timelines: [the workflow run]({details_url})"]
    body = "\n".join(out) + "\n"
    left_out = 0
    for summary, md in details:
        block = f"\n<details><summary>{summary}</summary>\n\n{md.strip()}\n\n</details>\n"
        if len(body) + len(block) > MAX_CHARS - 200:
            left_out += 1
            continue
        body += block
    if left_out:
        body += f"\n_{left_out} report(s) left out for length: see the workflow run's artifacts._\n"
    return body
