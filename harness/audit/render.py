"""The audit's one summary table: console (rich), JSON, Markdown, CSV. Every file is written atomically."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from harness.audit.rows import COLUMNS, AuditRow
from harness.audit.run import AuditResult
from harness.fsutil import atomic_write_text

_STYLE = {"COMPLIANT": "green", "VIOLATION": "bold red", "INCONCLUSIVE": "yellow", "BAD INPUT": "magenta",
          "RUN FAILED": "red", "HARNESS ERROR": "bold magenta", "TIMEOUT": "red"}
_PART_STYLE = {"PASS": "green", "FAIL": "red", "WARN": "yellow", "INCONCLUSIVE": "yellow", "NOT RUN": "dim"}
_HEAD = {"exit_code": "exit", "first_finding": "first finding", "seconds": "s"}


def _cell(row: AuditRow, col: str) -> str:
    v = getattr(row, col)
    if col == "cached":
        return "yes" if v else "no"
    if col == "seconds":
        return f"{v:.1f}"
    return str(v)


def summary_line(res: AuditResult) -> str:
    counts: dict[str, int] = {}
    for r in res.rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    what = ", ".join(f"{n} {v.lower()}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    cached = sum(r.cached for r in res.rows)
    return (f"audit: {len(res.rows)} folder(s): {what}; {cached} from the cache ({res.cache_dir}); "
            f"{res.wall_s:.1f} s; exit {res.exit_code} (the most severe, in the order 1, 5, 4, 3, 2, 0)")


def print_console(res: AuditResult) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(header_style="bold", show_lines=False)
    for col in COLUMNS:
        table.add_column(_HEAD.get(col, col), overflow="fold",
                         no_wrap=col not in ("folder", "first_finding"), ratio=2 if col == "first_finding" else None)
    for r in res.rows:
        cells = []
        for col in COLUMNS:
            text = _cell(r, col)
            style = _STYLE.get(text) if col == "verdict" else _PART_STYLE.get(text) if col in (
                "legality", "budgets", "paperwork") else None
            cells.append(f"[{style}]{escape(text)}[/]" if style else escape(text))
        table.add_row(*cells)
    con = Console()
    if not con.is_terminal:  # a pipe or a file: wide enough for the table, not 80 columns
        con = Console(width=max(con.width, 200))
    con.print(table)
    con.print(summary_line(res), markup=False, highlight=False, soft_wrap=True)


def markdown(res: AuditResult, title: str = "Parameter Golf audit") -> str:
    out = [f"### {title}: {len(res.rows)} folder(s)", "",
           f"harness {res.to_dict()['harness_version']}, ruleset {res.ruleset_version}, {res.created}; "
           f"flags: `{' '.join(res.flags) or '(static check)'}`", ""]
    out += markdown_table(res.rows)
    out += ["", summary_line(res), ""]
    return "\n".join(out)


def markdown_table(rows: Sequence[AuditRow], columns: Sequence[str] = COLUMNS) -> list[str]:
    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(_HEAD.get(c, c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [f"`{esc(r.folder)}`" if c == "folder" else esc(_cell(r, c)) for c in columns]
        out.append("| " + " | ".join(cells) + " |")
    return out


def csv_text(rows: Sequence[AuditRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(r, c) for c in COLUMNS])
    return buf.getvalue()


def write_outputs(res: AuditResult, json_path: str | None, md_path: str | None, csv_path: str | None) -> None:
    if json_path:
        atomic_write_text(Path(json_path), json.dumps(res.to_dict(), indent=2) + "\n")
    if md_path:
        atomic_write_text(Path(md_path), markdown(res))
    if csv_path:
        atomic_write_text(Path(csv_path), csv_text(res.rows))
