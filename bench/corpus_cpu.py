"""Corpus entries on this CPU at tiny scale: untraced and traced wall time to the final score, and where
the time goes (Triton's interpreter, the tracer).

    python bench/corpus_cpu.py [FILTER] [--timeout S] [--mode both|untraced|traced] [--env K=V ...]
                               [--corpus DIR] [--out DIR]

FILTER is a regex on the entry id (dev.tsv's first column). Each run is one `harness run ... --device cpu
--scale tiny` in a subprocess; the figures come from its run.json and ledger:

- wall: the run's wall time; score: seconds from start to the printed final score line (phases.reported);
- train / eval: the runner's phases (first train read -> last train read, first validation read -> score);
- kernels: launches and seconds spent in Triton kernel launches (the interpreter, plus the tracer's shadow
  in a traced run), from the last `kernel_time` ledger event;
- traced ops: ops the tracer handled (its last `stats` event); tracer: traced wall - untraced wall.

A record run in two steps (a training run that crashed after its artifact, then the evaluation-only rerun
that prints the score: harness.run.eval_only) gets a second line, "+rerun"; its overhead counts both runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"


def entries(corpus: Path, pattern: str | None) -> list[dict[str, str]]:
    with open(corpus / "dev.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    rx = re.compile(pattern) if pattern else None
    return [r for r in rows if rx is None or rx.search(r["id"])]


def last_event(ledger: Path, kind: str) -> dict[str, Any] | None:
    last = None
    for f in sorted(ledger.glob("*.jsonl")) if ledger.is_dir() else []:
        for ln in f.read_text(errors="replace").splitlines():
            if f'"{kind}"' not in ln:
                continue
            try:
                e = json.loads(ln)
            except ValueError:
                continue
            if e.get("kind") == kind:
                last = e
    return last


def run_one(folder: Path, out: Path, traced: bool, timeout: float, env: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "harness", "run", str(folder), "--device", "cpu", "--scale", "tiny",
           "--timeout", str(timeout), "--out", str(out)]
    if not traced:
        cmd.append("--no-trace")
    for kv in env:
        cmd += ["--env", kv]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout + 120)
    res: dict[str, Any] = {"outer_s": time.time() - t0, "rc": proc.returncode}
    try:
        res.update(figures(out))
    except (OSError, ValueError):
        res["reason"] = "no run.json: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:100]
        return res
    rerun = out / "eval_only"  # an evaluation-only rerun of the training run's artifact (harness.run.eval_only)
    if (rerun / "run.json").is_file():
        try:
            res["eval_only"] = figures(rerun)
        except (OSError, ValueError):
            pass
    return res


def figures(out: Path) -> dict[str, Any]:
    """The figures of the run saved in `out` (run.json and its ledger); OSError / ValueError when unreadable."""
    rj = json.loads((out / "run.json").read_text())
    res: dict[str, Any] = {}
    ph = rj.get("phases") or {}
    res.update(reason=rj.get("reason"), message=(rj.get("message") or "")[:120], wall=rj.get("wall_s"),
               score=ph.get("reported"), reported=rj.get("reported"))
    if ph.get("first_train_read") is not None and ph.get("last_train_read") is not None:
        res["train"] = ph["last_train_read"] - ph["first_train_read"]
    if ph.get("first_val_read") is not None and ph.get("reported") is not None:
        res["eval"] = ph["reported"] - max(ph["first_val_read"], ph.get("last_train_read") or 0)
    kt = last_event(Path(rj.get("ledger_dir") or out / "ledger"), "kernel_time")
    if kt:
        res["kernel_s"], res["launches"] = kt.get("seconds"), kt.get("launches")
        res["kernels"] = kt.get("kernels")
    st = last_event(Path(rj.get("ledger_dir") or out / "ledger"), "stats")
    if st:
        res["traced_ops"] = st.get("traced_ops")
        res["unruled"] = sum((st.get("unruled_ops") or {}).values())
    res["tracer_part"] = ((rj.get("runtime") or {}).get("0") or {}).get("tracer")
    return res


def fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("filter", nargs="?", help="regex on the entry id")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--mode", choices=("both", "untraced", "traced"), default="both")
    ap.add_argument("--env", action="append", default=[], help="extra K=V for every run")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    a = ap.parse_args(argv)
    rows = entries(a.corpus, a.filter)
    if not rows:
        print("no entry matches", file=sys.stderr)
        return 2
    base = a.out or Path(tempfile.mkdtemp(prefix="corpus-cpu-"))
    modes = {"both": (False, True), "untraced": (False,), "traced": (True,)}[a.mode]
    results: dict[str, dict[str, Any]] = {}
    hdr = (f"{'entry':<44} {'mode':<8} {'reason':<10} {'wall':>6} {'score@':>7} {'train':>6} {'eval':>6} "
           f"{'kern_s':>7} {'launch':>6} {'tr_ops':>8}  tracer / note")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        folder = a.corpus / "dev" / r["id"]
        for traced in modes:
            mode = "traced" if traced else "untraced"
            res = run_one(folder, base / r["id"] / mode, traced, a.timeout, a.env)
            results.setdefault(r["id"], {})[mode] = res
            for label, x in ((mode, res), ("+rerun", res.get("eval_only"))):
                if x is None:
                    continue
                note = x.get("tracer_part") if traced else ""
                if x.get("reason") != "ok":
                    note = (x.get("message") or x.get("reason") or "")[:60]
                elif label == "+rerun":
                    note = "evaluation-only rerun of the artifact (the score line)"
                print(f"{r['id'][:44]:<44} {label:<8} {fmt(x.get('reason')):<10} {fmt(x.get('wall')):>6} "
                      f"{fmt(x.get('score')):>7} {fmt(x.get('train')):>6} {fmt(x.get('eval')):>6} "
                      f"{fmt(x.get('kernel_s')):>7} {fmt(x.get('launches')):>6} {fmt(x.get('traced_ops')):>8}  "
                      f"{note}", flush=True)
    if a.mode == "both":
        print("\ntracer overhead (traced wall - untraced wall), kernel time share:")
        for eid, m in results.items():
            u, t = dict(m.get("untraced", {})), dict(m.get("traced", {}))
            for x in (u, t):  # a record run in two steps: both runs' time
                eo = x.get("eval_only") or {}
                if x.get("wall") is not None and eo.get("wall") is not None:
                    x["wall"] += eo["wall"]
                    if x.get("kernel_s") is not None or eo.get("kernel_s") is not None:
                        x["kernel_s"] = (x.get("kernel_s") or 0.0) + (eo.get("kernel_s") or 0.0)
            if u.get("wall") is not None and t.get("wall") is not None:
                share = [f"{k}: {fmt(x.get('kernel_s'))}s of {fmt(x.get('wall'))}s" for k, x in (("untraced", u), ("traced", t))
                         if x.get("kernel_s") is not None]
                print(f"  {eid[:60]:<60} {t['wall'] - u['wall']:+.1f}s  {'; '.join(share)}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nruns kept under {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
