"""The full-scale path on a real GPU, as one prepared script (issue 15): run it as is on a CUDA machine,
or with --dry-run on a CPU (the tests do) to check every step's plumbing before GPU time is spent.

Steps, each a `harness` command (or a short Python probe) in its own process, timed by this script:
  env           torch sees CUDA; `nvidia-smi -L` is the real tool (on CPU: the shim's answer)
  budget_kill   `harness run SUB --scale full` with B2 lowered through a harness.toml ([rules.B2]
                max_seconds): the harness clock must kill training; checks the kill reason, the phase
                marks, the one-line "run stopped" reason and the exit code
  fit_traced /  the same record with a budget it fits (ITERATIONS lowered): artifact written, B2/B3
  fit_untraced  measured; traced and untraced wall times side by side (their ratio is printed)
  triton        a script with a @triton.jit kernel to its final score (compiled on a GPU; Triton's
                interpreter on a CPU, skipped when the `triton` extra is missing); --triton-record DIR
                adds a real record with Triton kernels (tiny scale, to its final score)
  compile       torch.compile left on: a compiled function runs as a real graph (inductor on CUDA, the
                eager backend in a dry run) and matches eager

Writes OUT/gpu_check.json and OUT/gpu_check.md and prints one line per step; exits 0 when every step's
checks held, 1 otherwise. Usage:
    python bench/gpu_check.py --out /tmp/gpu                 # on the GPU machine
    python bench/gpu_check.py --dry-run --out /tmp/gpu-dry   # on a CPU, what the tests run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "scripts"


@dataclass
class Step:
    name: str
    argv: list[str]
    check: Callable[["Outcome"], list[str]]  # problems; empty when the step held
    env: dict[str, str] = field(default_factory=dict)
    json_out: Path | None = None
    skip: str | None = None  # why the step does not run here


@dataclass
class Outcome:
    name: str
    argv: list[str]
    rc: int | None = None
    wall_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def run(self) -> dict[str, Any]:
        return (self.report.get("sections") or {}).get("run") or {}

    def rule(self, rid: str) -> dict[str, Any]:
        return next((r for r in self.report.get("rules", []) if r.get("rule_id") == rid), {})


def _harness(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def _need(cond: bool, what: str) -> list[str]:
    return [] if cond else [what]


def check_env(o: Outcome) -> list[str]:
    facts = json.loads(o.stdout.strip().splitlines()[-1]) if o.stdout.strip() else {}
    return _need(o.rc == 0, f"probe exited {o.rc}") + _need(bool(facts.get("cuda")), "torch sees no CUDA device") + \
        _need(bool(facts.get("smi")), "nvidia-smi -L listed no GPU")


def check_kill(o: Outcome) -> list[str]:
    run = o.run
    phases = run.get("phases") or {}
    return (_need(o.rc in (1, 4), f"exit {o.rc}, expected 4 (run stopped) or 1 (B2 FAIL)")
            + _need(run.get("reason") == "train_budget", f"reason {run.get('reason')!r}, expected train_budget")
            + _need(phases.get("train_start") is not None and phases.get("exit") is not None,
                    "no train_start / exit phase marks")
            + _need(o.rule("B2").get("status") == "FAIL", f"B2 {o.rule('B2').get('status')}, expected FAIL")
            + _need("run stopped: train_budget" in o.stderr, "no one-line 'run stopped: train_budget' on stderr"))


def check_fit(o: Outcome) -> list[str]:
    run = o.run
    phases = run.get("phases") or {}
    budgets = run.get("budgets") or {}
    return (_need(o.rc == 0, f"exit {o.rc}, expected 0")
            + _need(run.get("reason") == "ok", f"reason {run.get('reason')!r}")
            + _need(phases.get("artifact_write") is not None, "no artifact written")
            + _need(budgets.get("train_s") is not None and budgets.get("eval_s") is not None,
                    "B2/B3 not measured by the harness clock"))


def check_scored(o: Outcome) -> list[str]:
    # reaching the final score line through the kernels is the point; the verdict is the record's own
    return (_need(o.run.get("reason") == "ok", f"run ended {o.run.get('reason')!r} (exit {o.rc})")
            + _need(bool(o.run.get("reported")), "no final score line reported"))


def check_compile(o: Outcome) -> list[str]:
    facts = json.loads(o.stdout.strip().splitlines()[-1]) if o.stdout.strip() else {}
    return _need(o.rc == 0, f"probe exited {o.rc}: {o.stderr[-300:]}") + \
        _need(facts.get("graphs", 0) >= 1, "torch.compile made no graph (identity?)") + \
        _need(bool(facts.get("matches")), "compiled output differs from eager")


ENV_PROBE = """
import json, shutil, subprocess, torch
smi = shutil.which("nvidia-smi")
out = subprocess.run([smi, "-L"], capture_output=True, text=True).stdout if smi else ""
print(json.dumps({"cuda": torch.cuda.is_available(), "name": torch.cuda.get_device_name(0)
                  if torch.cuda.is_available() else None, "smi": "GPU" in out, "smi_out": out.strip()[:200]}))
"""

COMPILE_PROBE = """
import json, sys, torch, torch._dynamo
dev, backend = sys.argv[1], sys.argv[2]
def f(x, w):
    return torch.nn.functional.gelu(x @ w).sum(-1)
x, w = torch.randn(64, 128, device=dev), torch.randn(128, 128, device=dev)
g = torch.compile(f, backend=backend)
y = g(x, w)
graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
print(json.dumps({"graphs": int(graphs), "matches": bool(torch.allclose(y, f(x, w), atol=1e-3, rtol=1e-3)),
                  "backend": backend}))
"""


def plan(args: argparse.Namespace, work: Path) -> list[Step]:
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    sub = str(Path(args.submission).resolve())
    data = ["--data-path", args.data_path, "--tokenizer", args.tokenizer]
    b2 = work / "b2.toml"
    b2.write_text(f"[rules.B2]\nmax_seconds = {args.b2_seconds}\ngrace_seconds = 1.0\n")
    full = ["--device", device, "--nproc", "1", *data]
    fit_scale = ["--scale", "tiny"] if dry else ["--scale", "full", "--env", f"ITERATIONS={args.iterations}"]
    try:
        import triton  # noqa: F401
        has_triton = True
    except Exception:
        has_triton = False
    steps = [
        Step("env", [sys.executable, "-c", ENV_PROBE], check_env,
             skip="dry run: no GPU here (the CPU shim answers nvidia-smi inside runs)" if dry else None),
        # ITERATIONS far past what fits: only the harness clock can end training
        Step("budget_kill", _harness("--config", str(b2), "run", sub, "--scale", "full", *full, "--env",
                                     "ITERATIONS=1000000", "--json", str(work / "kill.json")), check_kill,
             json_out=work / "kill.json"),
        Step("fit_traced", _harness("run", sub, *fit_scale, "--device", device, "--nproc", "1", *data,
                                    "--json", str(work / "fit.json")), check_fit, json_out=work / "fit.json"),
        Step("fit_untraced", _harness("run", sub, *fit_scale, "--device", device, "--nproc", "1", *data,
                                      "--no-trace", "--json", str(work / "fit_untraced.json")), check_fit,
             json_out=work / "fit_untraced.json"),
        Step("triton", _harness("run", str(SCRIPTS / "triton_eval.py"), "--scale", "tiny", "--device", device,
                                 *data, "--json", str(work / "triton.json")), check_scored,
             json_out=work / "triton.json",
             skip=None if has_triton else "the `triton` extra is not installed (pip install '.[triton]')"),
        Step("compile", [sys.executable, "-c", COMPILE_PROBE, device, "eager" if dry else "inductor"], check_compile),
    ]
    if args.triton_record:
        steps.insert(5, Step("triton_record", _harness("run", str(Path(args.triton_record).resolve()), "--scale",
                                                       "tiny", "--device", device, "--json",
                                                       str(work / "triton_record.json")), check_scored,
                             json_out=work / "triton_record.json",
                             skip=None if has_triton else "the `triton` extra is not installed"))
    return steps


def run_step(step: Step, timeout: float) -> Outcome:
    o = Outcome(step.name, step.argv)
    if step.skip:
        o.skipped = step.skip
        return o
    t0 = time.monotonic()
    try:
        p = subprocess.run(step.argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                           env={**os.environ, **step.env})
        o.rc, o.stdout, o.stderr = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        o.rc, o.problems = None, [f"timed out after {timeout:.0f} s"]
    o.wall_s = time.monotonic() - t0
    if step.json_out is not None and step.json_out.is_file():
        o.report = json.loads(step.json_out.read_text())
    if o.rc is not None:
        o.problems = step.check(o)
    return o


def summary(outcomes: list[Outcome], dry: bool) -> dict[str, Any]:
    by = {o.name: o for o in outcomes}
    t, u = by.get("fit_traced"), by.get("fit_untraced")
    ratio = (t.wall_s / u.wall_s) if t and u and t.rc == 0 and u.rc == 0 and u.wall_s else None
    fit_budgets = (t.run.get("budgets") if t else None) or {}
    return {
        "mode": "dry-run (CPU)" if dry else "GPU", "date": time.strftime("%Y-%m-%d"), "ok": all(not o.problems for o in outcomes),
        "traced_over_untraced": round(ratio, 2) if ratio else None,
        "fit_train_s": fit_budgets.get("train_s"), "fit_eval_s": fit_budgets.get("eval_s"),
        "steps": [{"name": o.name, "rc": o.rc, "wall_s": round(o.wall_s, 1), "problems": o.problems,
                   "skipped": o.skipped, "cmd": " ".join(o.argv[2:] if o.argv[:2] == [sys.executable, "-m"] else o.argv[:2]),
                   "reason": o.run.get("reason"), "stderr_tail": o.stderr[-400:] if o.problems else ""}
                  for o in outcomes],
    }


def markdown(s: dict[str, Any]) -> str:
    lines = [f"# GPU check ({s['mode']}, {s['date']})", "", "| step | exit | wall s | result |", "|---|---|---|---|"]
    for st in s["steps"]:
        res = f"skipped: {st['skipped']}" if st["skipped"] else ("ok" if not st["problems"] else "; ".join(st["problems"]))
        lines.append(f"| {st['name']} | {st['rc']} | {st['wall_s']} | {res} |")
    lines += ["", f"traced / untraced wall time: {s['traced_over_untraced']}",
              f"fit run, harness clock: train {s['fit_train_s']} s, eval {s['fit_eval_s']} s"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU: the same steps at CPU sizes")
    ap.add_argument("--out", default="gpu-check-out")
    ap.add_argument("--submission", default=str(ROOT / "submissions" / "check_compliant"))
    ap.add_argument("--data-path", default=None, help="shards folder (default: the built-in data, built once)")
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--b2-seconds", type=float, default=None, help="lowered B2 budget (default 25 on GPU, 20 dry)")
    ap.add_argument("--iterations", type=int, default=300, help="ITERATIONS of the fitting run (GPU)")
    ap.add_argument("--triton-record", default=None, help="a real record folder with Triton kernels")
    ap.add_argument("--step-timeout", type=float, default=None, help="seconds per step (default 240 GPU, 180 dry)")
    ap.add_argument("--only", action="append", default=None, help="run only these steps (repeatable)")
    args = ap.parse_args(argv)
    if args.b2_seconds is None:
        args.b2_seconds = 20.0 if args.dry_run else 25.0
    if args.data_path is None:
        from harness.data.builtin import ensure_data

        paths = ensure_data(1024)
        args.data_path, args.tokenizer = str(paths.data_dir), str(paths.tokenizer)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-", dir=out))
    steps = [s for s in plan(args, work) if not args.only or s.name in args.only]
    timeout = args.step_timeout or (180.0 if args.dry_run else 240.0)
    outcomes = []
    for step in steps:
        o = run_step(step, timeout)
        outcomes.append(o)
        state = "SKIP" if o.skipped else ("ok" if not o.problems else "FAIL")
        print(f"{step.name:14s} {state:5s} rc={o.rc} {o.wall_s:6.1f} s  {'; '.join(o.problems) or o.skipped or ''}",
              flush=True)
    s = summary(outcomes, args.dry_run)
    (out / "gpu_check.json").write_text(json.dumps(s, indent=2))
    (out / "gpu_check.md").write_text(markdown(s))
    print(f"traced/untraced {s['traced_over_untraced']}; report {out / 'gpu_check.md'}")
    return 0 if s["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
