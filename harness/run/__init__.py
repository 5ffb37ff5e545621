"""`harness run`: run a submission's own train_gpt.py under the harness runtime (parent side).

Library API (check and probe code call these):
    run_submission(path, cfg, *, device="cpu", nproc=1, scale="tiny", data_path=None, tokenizer=None,
                   vocab_size=None, python=None, env=None, timeout=None, out_dir=None, trace=True,
                   val_tokens=None, val_override=None, keep_workdir=False, score_tag=None,
                   runtime_extra=None) -> RunResult
        runtime_extra: merged into RuntimeSettings.extra (e.g. {"probe": plan} for the fork server)
    RunResult, Reported (harness.run.result); RunResult.load(out_dir / "run.json")
    harness.run.options.RunOptions(...).kwargs()            run_submission's keyword arguments
    harness.run.judge.judge_run(result, cfg) -> Judged      rule rows for a finished run
    harness.run.judge.load_saved_run(out_dir) -> RunResult  a saved run folder (`harness verdict`)
The commands (`harness run`, `check --run`, `verdict`) are composed in harness.cli.commands.

Layout: runner (the flow), workdir (fresh copy), serve (data served), scale (environment), sandbox
(limits, namespaces through the launcher nsinit, output capture, killing), monitor (ledger watching, phases, budgets),
ending (why it ended), result (RunResult), console (summary).
The child side is harness.runtime.bootstrap + harness.runtime.io_hooks.
"""

from harness.run.result import BUDGET_REASONS, REASONS, Reported, RunResult
from harness.run.runner import run_submission

__all__ = ["BUDGET_REASONS", "REASONS", "Reported", "RunResult", "run_submission"]
