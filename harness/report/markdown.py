"""Markdown ready to paste as a pull-request comment."""

from __future__ import annotations

from pathlib import Path

from harness.fsutil import atomic_write_text
from harness.results import Report, Status

ICON = {Status.PASS: "✅", Status.FAIL: "❌", Status.WARN: "⚠️", Status.INCONCLUSIVE: "❔", Status.NOT_RUN: "➖"}


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def report_markdown(report: Report) -> str:
    out = [f"### Parameter Golf compliance: {report.status.value} ({report.command})", ""]
    out.append(f"`{report.submission}` — harness {report.harness_version}, schema {report.schema_version}, "
               f"{report.created}")
    out += ["", "**Verdict**, in three parts:", ""]
    for part in report.parts.values():
        name, what = part.line().split(" — ", 1)
        out.append(f"- {ICON[part.status]} {name} — {what}")
    acc = report.sections.get("accounting")
    if acc:
        from harness.report.console import bytes_lines

        lines = bytes_lines(acc)
        if lines:
            out += ["", "**Bytes**: " + "<br>".join(_cell(x) for x in lines)]
    out += ["", "| rule | title | status | evidence |", "|---|---|---|---|"]
    for r in report.rules:
        out.append(f"| {r.rule_id} | {_cell(r.title)} | {ICON[r.status]} {r.status.value} | {_cell(r.summary)} |")
    details = [(r, f) for r in report.rules for f in r.findings
               if f.status in (Status.FAIL, Status.INCONCLUSIVE, Status.WARN)]
    if details:
        out += ["", "#### Findings"]
        for _, f in details:
            out.append(f"- **{f.rule_id} {f.status.value}**: {f.message}")
            for ev in f.evidence[:3]:
                line = ev.one_line()
                if line:
                    out.append(f"  - `{line}`" if ev.where else f"  - {line}")
    if report.hints:
        out += ["", "<details><summary>Static hints (look here; never verdicts)</summary>", ""]
        for h in report.hints[:30]:
            out.append(f"- `{h.where}` [{h.rule_id}] {h.message}")
        out += ["", "</details>"]
    from harness.check.configuration import report_lines

    conf_lines = report_lines(report.sections)
    if conf_lines:
        out += ["", "<details><summary>Configuration (as the record was run)</summary>", "", "```", *conf_lines,
                "```", "", "</details>"]
    from harness.report.console import claimed_lines

    cl = claimed_lines(report.sections.get("claimed_runs"))
    if cl:
        out += ["", "<details><summary>Claimed runs and logs set aside</summary>", "", "```", *cl, "```", "",
                "</details>"]
    timeline = report.sections.get("timeline_text")
    if timeline:
        out += ["", "<details><summary>Timeline</summary>", "", "```", timeline, "```", "", "</details>"]
    for n in report.notes:
        out.append(f"\n_note: {n}_")
    out.append("")
    return "\n".join(out)


def write_markdown(report: Report, path: str | Path) -> None:
    atomic_write_text(path, report_markdown(report))
