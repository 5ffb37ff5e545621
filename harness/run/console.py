"""The console summary of one run: what ran, its phases by the harness clock, budgets, score, end."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness.run.result import RunResult

_PHASE_LABELS = {
    "start": "launch",
    "run_start": "runtime started",
    "first_train_read": "first training read",
    "last_train_read": "last training read",
    "artifact_write": "artifact written",
    "last_artifact_write": "last artifact write",
    "checkpoint_write": "raw checkpoint written",
    "artifact_read": "artifact read back",
    "first_val_read": "first validation read",
    "reported": "score printed",
    "exit": "exit",
}


def _console() -> Console:
    c = Console(highlight=False, soft_wrap=False)
    if not c.is_terminal:
        c = Console(highlight=False, width=120, soft_wrap=False)
    return c


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def print_run_summary(r: RunResult, console: Console | None = None) -> None:
    con = console or _console()
    style = "bold green" if r.ok else ("bold red" if r.reason != "no_score" else "bold yellow")
    con.print(f"[bold]harness run[/] {' '.join(r.command)}", markup=True, highlight=False)
    con.print(
        f"device {r.device} x{r.nproc}, scale {r.scale}, python {r.python}, traced {'yes' if r.traced else 'no'}, "
        f"network {r.sandbox.get('net_isolation', '?')}; out {r.out_dir}",
        markup=False,
    )
    if r.sandbox.get("protections"):  # which sandbox protections were on, which off and why
        from harness.run.sandbox import protections_line

        con.print(protections_line(r.sandbox["protections"]), markup=False)
    served = r.served
    if served:
        con.print(
            f"served: {served.get('val_tokens')} validation tokens"
            f"{' (truncated)' if served.get('truncated') else ''} from {served.get('source')}, "
            f"{len(served.get('train_files', []))} training shard(s)",
            markup=False,
        )
    for note in r.notes:
        con.print(note, markup=False)
    t = Table(header_style="bold", title="phases (harness clock)")
    t.add_column("phase")
    t.add_column("t", justify="right")
    for name, label in _PHASE_LABELS.items():
        t.add_row(label, _s(r.phases.get(name)))
    con.print(t)
    b = r.budgets
    if b:
        mode = "enforced" if b.get("enforced") else "information (tiny scale)"
        script = []
        if "script_train_s" in b:
            script.append(f"script says train {b['script_train_s']:.2f} s")
        if "script_eval_s" in b:
            script.append(f"eval {b['script_eval_s']:.2f} s")
        con.print(
            f"budgets ({mode}): train {_s(b.get('train_s'))} of {b.get('train_limit_s')} s "
            f"(from {b.get('train_from')}), eval {_s(b.get('eval_s'))} of {b.get('eval_limit_s')} s"
            + (f"; {', '.join(script)}" if script else ""),
            markup=False,
        )
        if b.get("train_reads_after_artifact"):
            con.print("[bold yellow]training data was read after the artifact was written[/]")
    if r.reported is not None:
        con.print(
            f"reported: {r.reported.tag} val_loss {r.reported.val_loss} val_bpb {r.reported.val_bpb}", markup=False
        )
    for n in r.net_attempts[:3]:
        con.print(f"[bold yellow]network blocked[/] {n.get('host')}:{n.get('port')} at {n.get('site', '?')}")
    for s in [s for s in r.subprocesses if not s.get("allowed")][:3]:
        con.print(f"[bold yellow]subprocess blocked[/] {' '.join(s.get('argv', []))[:80]} at {s.get('site', '?')}")
    for part, status in sorted({p: s for parts in r.runtime.values() for p, s in parts.items()}.items()):
        if status != "ok":
            con.print(f"runtime part {part}: {status}", markup=False)
    out = r.output.get("stdout", {})
    if out.get("truncated"):
        con.print(f"stdout cut at {out.get('kept')} of {out.get('seen')} bytes", markup=False)
    con.print(f"end: [{style}]{r.reason}[/] - {r.message} (rc {r.rc}, {r.wall_s:.1f} s)")
    if not r.ok and (r.stderr_tail or r.stdout_tail):
        tail = (r.stderr_tail or r.stdout_tail).strip().splitlines()[-12:]
        con.print("output tail:", markup=False)
        for ln in tail:
            con.print(f"  {ln}", markup=False)
