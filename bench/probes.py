"""Wall time of each probe on the reference submissions (and what each decided).

    python bench/probes.py                                  # every reference, each probe alone
    python bench/probes.py --subs legal_sliding_window --probes c2 --candidates 0   # exhaustive C2
    python bench/probes.py --no-fork                        # one run per variant: what the fork saves

Each probe runs alone (its own session), with the tracer on, so the times add up what `harness probe`
costs per probe: the traced base run, then one fork-server child (or one run) per variant stream.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.config import load_config  # noqa: E402
from harness.probes import probe_rule_results  # noqa: E402


def _expected_env(name: str) -> dict[str, str]:
    """The environment overrides a reference needs (its expected.toml), as `harness run` gets them."""
    import tomllib

    f = ROOT / "submissions" / name / "expected.toml"
    if not f.is_file():
        return {}
    return {str(k): str(v) for k, v in (tomllib.loads(f.read_text(encoding="utf-8")).get("env") or {}).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subs", nargs="*", default=None, help="reference folders under submissions/ (default: all)")
    ap.add_argument("--probes", nargs="*", default=["c2", "c1", "canary"])
    ap.add_argument("--blocks", type=int, default=16, help="stream length in sequences (at least two TTT chunks)")
    ap.add_argument("--candidates", type=int, default=32, help="C2 candidates (0 = the whole vocabulary)")
    ap.add_argument("--no-fork", action="store_true", help="one run per variant instead of the fork server")
    ap.add_argument("--no-trace", action="store_true")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    subs = args.subs or sorted(p.parent.name for p in (ROOT / "submissions").glob("*/train_gpt.py")
                               if p.parent.name.startswith(("legal_", "illegal_", "adversarial_")))
    cfg = load_config()
    cfg.raw.setdefault("probes", {}).update({"blocks": args.blocks, "fork": not args.no_fork, "jobs": args.jobs})
    cfg.raw.setdefault("rules", {}).setdefault("C2", {})["c2_candidates"] = args.candidates
    print(f"{'submission':32} {'probe':7} {'wall_s':>7} {'runs':>4} {'forks':>5} {'per_var':>7} "
          f"{'fork_at':>7}  rows")
    total = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-probes-") as tmp:
        for name in subs:
            env = _expected_env(name)
            for probe in args.probes:
                t0 = time.time()
                try:
                    rows, sec = probe_rule_results(ROOT / "submissions" / name, cfg,
                                                   {"trace": not args.no_trace, "out_dir": f"{tmp}/{name}-{probe}",
                                                    "env": env}, which=(probe,))
                except Exception as e:  # noqa: BLE001 - a bench line, not a crash
                    print(f"{name:32} {probe:7} {time.time() - t0:7.1f}  error: {type(e).__name__}: {e}")
                    continue
                wall = time.time() - t0
                total += wall
                cost = sec.get("cost") or {}
                per = (cost.get("variant_s") or {}).get("median") or float("nan")
                fork_at = cost.get("fork_at_s")
                verdicts = " ".join(f"{o['rule_id']}:{o['probe']}={o['status']}" for o in sec["outcomes"])
                print(f"{name:32} {probe:7} {wall:7.1f} {cost.get('runs', 0):4d} {cost.get('forks', 0):5d} "
                      f"{per:7.2f} {fork_at if fork_at is not None else float('nan'):7.2f}  {verdicts}", flush=True)
    print(f"total {total:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
