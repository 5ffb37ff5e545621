"""Wall time of each reference submission at tiny scale: plain python, under the harness runtime
(sandbox + shim, untraced), and traced; with the ratios, all measured in one run on this machine.

    python bench/overhead.py                      # every legal_/illegal_ reference
    python bench/overhead.py --subs legal_sliding_window legal_score_first_ttt --repeat 3

"plain" runs `python train_gpt.py` in the same working copy with the same environment and served data
as the harness run, without the runtime (our reference scripts need no CUDA shim on a CPU). Each figure
is the minimum over --repeat runs; the machine is noisy, compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.config import load_config  # noqa: E402
from harness.run import run_submission  # noqa: E402


def _env(name: str) -> dict[str, str]:
    f = ROOT / "submissions" / name / "expected.toml"
    data = tomllib.loads(f.read_text()) if f.is_file() else {}
    return {str(k): str(v) for k, v in (data.get("env") or {}).items()}


def _plain(workdir: Path, env_overrides: dict[str, str]) -> float:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), "OMP_NUM_THREADS": "1",
           **env_overrides}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "train_gpt.py"], cwd=workdir, env=env, capture_output=True, text=True,
                       timeout=600)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"plain run failed: {p.stderr[-500:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subs", nargs="*", default=None)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    names = args.subs or sorted(p.name for p in (ROOT / "submissions").iterdir()
                                if p.is_dir() and p.name.startswith(("legal_", "illegal_")))
    cfg = load_config()
    print(f"{'submission':32} {'plain s':>8} {'runtime s':>9} {'traced s':>9} {'runtime/plain':>13} "
          f"{'traced/runtime':>14} {'traced/plain':>12}")
    for name in names:
        folder = ROOT / "submissions" / name
        plain, runtime, traced = [], [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                r = run_submission(folder, cfg, trace=False, keep_workdir=True, env=_env(name),
                                   out_dir=Path(tmp) / "untraced")
                if r.failed:
                    print(f"{name:32} untraced run failed: {r.reason}: {r.message}")
                    break
                runtime.append(r.wall_s)
                try:
                    work = next(Path(r.workdir).rglob("train_gpt.py")).parent  # the copy the runtime ran
                    plain.append(_plain(work, r.env_overrides))
                finally:
                    shutil.rmtree(r.workdir, ignore_errors=True)
                rt = run_submission(folder, cfg, trace=True, env=_env(name), out_dir=Path(tmp) / "traced")
                if rt.failed:
                    print(f"{name:32} traced run failed: {rt.reason}: {rt.message}")
                    break
                traced.append(rt.wall_s)
        if not (plain and runtime and traced):
            continue
        p, u, t = min(plain), min(runtime), min(traced)
        print(f"{name:32} {p:8.2f} {u:9.2f} {t:9.2f} {u / p:13.2f} {t / u:14.2f} {t / p:12.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
