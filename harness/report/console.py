"""Rich console rendering: one table row per rule, then findings, hints and notes."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness.config import Config
from harness.results import Report, Status
from harness.rules import rule_order

STYLE = {
    Status.PASS: "bold green",
    Status.FAIL: "bold red",
    Status.WARN: "bold yellow",
    Status.INCONCLUSIVE: "bold magenta",
    Status.NOT_RUN: "dim",
}


def _console() -> Console:
    # width fixed when not a terminal so CI logs and tests are stable
    c = Console(highlight=False, soft_wrap=False)
    if not c.is_terminal:
        c = Console(highlight=False, width=120, soft_wrap=False)
    return c


def render_report(report: Report, console: Console | None = None) -> None:
    con = console or _console()
    con.print(f"[bold]Parameter Golf compliance[/] — {report.command} {report.submission}")
    for line in bytes_lines(report.sections.get("accounting")):
        con.print(line, markup=False)
    table = Table(show_lines=False, header_style="bold")
    table.add_column("rule", no_wrap=True)
    table.add_column("title")
    table.add_column("status", no_wrap=True)
    table.add_column("evidence", overflow="fold")
    for r in report.rules:
        table.add_row(r.rule_id, r.title, f"[{STYLE[r.status]}]{r.status.value}[/]", r.summary)
    con.print(table)
    for r in report.rules:
        for f in r.findings:
            if f.status in (Status.FAIL, Status.INCONCLUSIVE, Status.WARN):
                con.print(f"[{STYLE[f.status]}]{f.rule_id} {f.status.value}[/] {f.message}")
                for ev in f.evidence[:3]:
                    line = ev.one_line()
                    if line:
                        con.print(f"    {line}", markup=False)
    if report.hints:
        con.print(f"[bold]look here[/] ({len(report.hints)} static hint(s), never verdicts):")
        for h in report.hints[:20]:
            con.print(f"  {h.where} [{h.rule_id}] {h.message}", markup=False)
    from harness.check.configuration import report_lines

    conf_lines = report_lines(report.sections, limit=8)
    if conf_lines:
        con.print("[bold]configuration[/]")
        for line in conf_lines:
            con.print(f"  {line}", markup=False)
    timeline = report.sections.get("timeline_text")
    if timeline:
        con.print(timeline, markup=False)
    for n in report.notes:
        con.print(f"note: {n}", markup=False)
    for line in claimed_lines(report.sections.get("claimed_runs")):
        con.print(line, markup=False)
    st = report.status
    if report.input_errors:
        con.print(f"[bold red]bad input[/] ({len(report.input_errors)}): the verdict below covers what could "
                  "be read")
    for part in report.parts.values():
        con.print(f"  [{STYLE[part.status]}]{part.status.value:>12}[/] {part.line().split(': ', 1)[0]}: "
                  f"{part.line().split(' — ', 1)[1]}", markup=True, highlight=False)
    con.print(f"verdict: [{STYLE[st]}]{_verdict_word(report)}[/] (exit {int(report.exit_code)})")


def bytes_lines(acc: dict | None) -> list[str]:
    """B1's figures: the code as it is, as the harness compresses it, as the logs state it; the totals."""
    if not acc:
        return []
    code = acc.get("code") or {}
    p, s = acc["practised"], acc["strict"]
    out = []
    if code:
        hc = code.get("harness_compressed")
        stated = code.get("log_stated") or []
        out.append(f"code bytes: as is {code.get('as_is', p['code']):,} | harness compressed "
                   + (f"{hc:,}" if hc is not None else "not built")
                   + " | logs state " + (", ".join(f"{c:,}" for c in stated) if stated else "nothing")
                   + f" -> counted {code.get('decided', p['code']):,} ({code.get('counted_as', '')})")
    total = acc.get("decided_total", p.get("total"))
    if total is not None:
        un = acc.get("unwrapped_source_bytes")
        wrapped = f"; the wrapper unpacks to {un:,} B of source" if un and un != p["code"] else ""
        out.append(f"bytes: total {total:,} (model {p['model']:,}, {acc.get('model_source', '')}) | strict "
                   f"{s['total']:,} (code {s['code']:,}) | cap {acc['cap']:,}{wrapped}")
    return out


def claimed_lines(cl: dict | None) -> list[str]:
    """The claimed runs and the logs set aside (with why)."""
    if not cl:
        return []
    runs = cl.get("runs") or []
    seeds = ", ".join("?" if r["seed"] is None else str(r["seed"]) for r in runs)
    out = [f"claimed runs ({cl.get('seed_source', '')}): {len(runs)}" + (f" (seeds {seeds})" if runs else "")]
    for a in cl.get("set_aside") or []:
        out.append(f"  set aside {a['log']}: {a['why']}")
    for n in cl.get("notes") or []:
        out.append(f"  {n}")
    return out


def _verdict_word(report: Report) -> str:
    not_run = sum(1 for r in report.rules if r.status is Status.NOT_RUN)
    ran = len(report.rules) - not_run
    word = {Status.PASS: "COMPLIANT", Status.FAIL: "VIOLATION", Status.INCONCLUSIVE: "INCONCLUSIVE"}[report.status]
    return f"{word} on {ran} rule(s) checked" + (f", {not_run} NOT RUN" if not_run else "")


def print_rules(cfg: Config, console: Console | None = None) -> None:
    from harness.rules import ruleset_version

    con = console or _console()
    con.print(f"ruleset version {ruleset_version(cfg.get('harness', 'rules_dir'))}", markup=False)
    table = Table(header_style="bold")
    for col in ("id", "title", "severity", "parameters", "sources"):
        table.add_column(col, overflow="fold")
    for rid in sorted(cfg.rules, key=rule_order):
        r = cfg.rules[rid]
        params = ", ".join(f"{k}={v}" for k, v in cfg.rule_params(rid).items())
        table.add_row(r.id, r.title, r.severity, params, ", ".join(r.sources))
    con.print(table)
