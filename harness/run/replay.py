"""Running the score-order replay after a run whose C1/C3 rows one interval per value left undecided.

The decision itself is pure (harness.verdict.relabel.decide); here: whether to replay, the second run
(the same script, options and served stream, its tracer told the relabeling through the runtime's private
settings), and the run's rows judged again with what the replay decided. The replay's run folder is
`<run>/replay/`, with the relabeling it ran under (`relabel.json`, written by the parent), so
`harness verdict <run>` decides again from the saved replay without running anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import Config
from harness.errors import BadInput
from harness.fsutil import atomic_write_text
from harness.ledger import read_ledger
from harness.run.judge import Judged, judge_run, load_saved_run
from harness.run.result import RunResult
from harness.run.runner import run_submission
from harness.verdict.core import printed_from
from harness.verdict.relabel import decide, score_order_runs, undecided

REPLAY_DIR = "replay"
RUNS_FILE = "relabel.json"


def why_no_replay(cfg: Config, result: RunResult, judged: Judged) -> str | None:
    """Why no replay follows this run (None: replay). Silent cases return ""."""
    an = getattr(judged, "analysis", None)
    if result.failed or an is None or not cfg.get("replay", "enabled", True):
        return ""
    n = undecided(an)
    if n == 0:
        return ""
    limit = float(cfg.get("replay", "max_run_s", 600.0))
    if result.wall_s is not None and result.wall_s > limit:
        return (f"{n} C1/C3 row(s) stay undecided by one interval per value: the score-order replay would re-run "
                f"the script, which took {result.wall_s:.0f} s, past [replay] max_run_s = {limit:.0f} s")
    return None


def replay(path: str, cfg: Config, run_kwargs: dict[str, Any], result: RunResult, judged: Judged,
           claimed: Any = None) -> Judged:
    """The run's rows again, with what a score-order replay decided (or a note why it decided nothing)."""
    why = why_no_replay(cfg, result, judged)
    if why is not None:
        if why:
            judged.notes.append(f"score-order replay not run: {why}")
        return judged
    an = judged.analysis
    runs = score_order_runs(an, int(an.n_val))
    folder = Path(result.out_dir) / REPLAY_DIR
    kw = dict(run_kwargs)
    kw["out_dir"] = str(folder)
    # out of the environment: the script sees the replay spelled exactly as run 1 (runtime_private)
    kw["runtime_private"] = {**(kw.get("runtime_private") or {}), "relabel": runs}
    kw["val_override"] = np.asarray(an.val_tokens, dtype=np.uint16)  # the very stream run 1 was served
    r2 = run_submission(path, cfg, **kw)
    atomic_write_text(folder / RUNS_FILE, json.dumps(runs))
    return _judged_with(cfg, result, judged, r2, runs, claimed)


def rejudge_saved(cfg: Config, result: RunResult, judged: Judged) -> Judged:
    """`harness verdict`: what the saved replay beside a saved run decides (nothing is run)."""
    folder = Path(result.out_dir) / REPLAY_DIR
    if why_no_replay(cfg, result, judged) is not None or not (folder / "run.json").is_file():
        return judged
    try:
        runs = json.loads((folder / RUNS_FILE).read_text(encoding="utf-8"))
        r2 = load_saved_run(folder)
    except (OSError, ValueError, BadInput) as e:
        judged.notes.append(f"score-order replay: the saved replay in {folder} is unreadable "
                            f"({type(e).__name__}: {e}); C1/C3 rows stay undecided")
        return judged
    return _judged_with(cfg, result, judged, r2, runs, None)


def _judged_with(cfg: Config, result: RunResult, judged: Judged, r2: RunResult, runs: Any, claimed: Any) -> Judged:
    if r2.failed:
        judged.notes.append(f"score-order replay: the second run failed ({r2.reason}: {r2.message}); C1/C3 rows "
                            f"stay undecided")
        return judged
    an = judged.analysis
    c4 = cfg.rule_params("C4")
    ledger2 = read_ledger(r2.ledger_dir)
    rp = decide(an, ledger2, runs, printed_from(r2, ledger2), an.pos_bytes, float(c4["val_loss_abs_tolerance"]),
                float(c4["val_bpb_abs_tolerance"]), wall_s=r2.wall_s)
    again = judge_run(result, cfg, claimed=claimed, replay=rp)
    again.notes.append(rp.line() + ("" if rp.used else "; C1/C3 rows stay undecided"))
    return again
