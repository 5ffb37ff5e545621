"""`harness run`: run a submission's own train_gpt.py under the harness runtime (parent side).

Library API (check and probe code call these):
    run_submission(path, cfg, *, device, nproc, scale, data_path, tokenizer, vocab_size, python, env,
                   timeout, out_dir, trace, val_tokens, val_override, keep_workdir, score_tag) -> RunResult
    RunResult, Reported (harness.run.result)
"""

from harness.run.result import BUDGET_REASONS, REASONS, Reported, RunResult
from harness.run.runner import run_submission

__all__ = ["BUDGET_REASONS", "REASONS", "Reported", "RunResult", "run_submission"]
