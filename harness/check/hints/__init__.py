"""Static hints: shapes in train_gpt.py that *may* break a rule. Never a verdict.

The run and its ledger decide; a hint only says "look here", with the rule it may break, a pattern id,
file:line and the line itself. Patterns (rule, what the code looks like):

  ttt_before_score            C3  a loop takes optimizer steps / backward over validation tokens with
                                  no scoring earlier in the same loop (train on all chunks, then eval)
  min_over_passes             C4  minimum / best-of over per-token losses, or scores overwritten inside
                                  an epoch loop that trains on validation (the last epoch's scores kept)
  target_in_hash              C1  a hashed key that mixes in the target token and is used to read a table
  delta_vs_targets            C1  a fresh requires_grad tensor (delta, logit bias) optimized against the
                                  targets before they are scored (SLOT)
  val_calibration             B4  validation data passed to a calibration / GPTQ / Hessian function
  train_loader_after_training D2  training data read after the main training loop
  gate_on_target              C1  a mixing choice that compares cache and model probabilities of the
                                  true token
  unparsed                    -   the source does not parse here (e.g. Python 3.12 f-strings under 3.11)
  wrapped                     -   the file is a compressed exec() wrapper: unwrap it before scanning

Precision matters more than recall here (legal score-first TTT must stay quiet):
- a step counts as score-first when, before it, the same loop (or a loop around every call of the
  function holding it) evaluates a loss under no_grad / inference_mode, calls an eval/score function,
  or adds to a score accumulator (loss_sum, byte_count, ...);
- a loop is TTT only if its backward() loss derives from validation data and it reads no training
  data (the main training loop validates inline, and may reuse names);
- a stepping function nobody calls or references is dead code and is not judged alone; otherwise the
  hint names the chain of callers that reach it without scoring first;
- "training data" means a read (a loader or stream built from the train files, a batch drawn from it),
  not a config class that only defines the path, nor values computed from batches (Hessians).
Data flow is tracked per function, flow-insensitively, by names (validation data, targets, values picked
by the target, training-data handles); nothing crosses function boundaries except calls by name.

Layout (one module per pattern family; ``scan_source`` runs them all):
  patterns.py     HINT_PATTERNS: pattern id -> the rule it may break
  vocabulary.py   the name / callee regexes the patterns share (validation data, targets, losses, ...)
  syntax.py       small AST helpers (callee names, positions, names used by an expression)
  index.py        the per-script index: scopes, data flow by name, training-data reads, score evidence
  ttt.py          ttt_before_score, delta_vs_targets (optimizer steps over validation before scoring)
  rescoring.py    min_over_passes (best-of / last-epoch scores over passes)
  ngram_cache.py  target_in_hash, gate_on_target (cache tables keyed or gated by the target)
  calibration.py  val_calibration (validation data into calibration / GPTQ / Hessians)
  train_data.py   train_loader_after_training (training data read after the training loop)
  parsing.py      lenient parsing (PEP 701 f-strings), the line-scan fallback, exec() wrappers
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.check.hints.calibration import _p_val_calibration
from harness.check.hints.index import _Index
from harness.check.hints.ngram_cache import _p_gate_on_target, _p_target_in_hash
from harness.check.hints.parsing import _parse, _regex_scan, _wrapper_call, parse_lenient
from harness.check.hints.patterns import HINT_PATTERNS
from harness.check.hints.rescoring import _p_min_over_passes
from harness.check.hints.train_data import _p_train_after_training
from harness.check.hints.ttt import _p_steps
from harness.results import Hint

__all__ = ["HINT_PATTERNS", "parse_lenient", "scan_source"]


def scan_source(source: str, filename: str = "train_gpt.py") -> list[Hint]:
    """Static hints for a submission script: where to look, never whether it is legal."""
    lines = source.splitlines()
    tree, repaired, err = _parse(source)
    hints: list[Hint] = []
    if err is not None:
        where = f"{filename}:{max(err.lineno or 1, 1)}"
        if tree is None:
            return [Hint(HINT_PATTERNS["unparsed"], "unparsed", where,
                         f"The source does not parse ({err.msg or err}); only a line scan ran, so these hints "
                         f"are coarse and most patterns were not checked.",
                         lines[err.lineno - 1].strip()[:200] if err.lineno and err.lineno <= len(lines) else "")
                    ] + _regex_scan(lines, filename)
        hints.append(Hint(HINT_PATTERNS["unparsed"], "unparsed", where,
                          f"The source does not parse under this Python ({err.msg}); f-strings on "
                          f"{len(repaired)} line(s) were blanked to analyse the rest (run it with Python >= 3.12).",
                          lines[err.lineno - 1].strip()[:200] if err.lineno and err.lineno <= len(lines) else ""))
    wrapper = _wrapper_call(tree)
    if wrapper is not None:
        hints.append(Hint(HINT_PATTERNS["wrapped"], "wrapped", f"{filename}:{wrapper.lineno}",
                          "The script is a compressed exec() wrapper; hints need the unwrapped source.",
                          lines[wrapper.lineno - 1].strip()[:200] if wrapper.lineno <= len(lines) else ""))
        return hints
    try:
        ix = _Index(tree, lines)
        for finder in (_p_steps, _p_min_over_passes, _p_target_in_hash, _p_gate_on_target, _p_val_calibration,
                       _p_train_after_training):
            hints.extend(finder(ix, filename))
    except RecursionError:  # absurdly deep expressions: fall back to the line scan, say so
        return [Hint(HINT_PATTERNS["unparsed"], "unparsed", f"{filename}:1",
                     "The source is too deeply nested to analyse; only a line scan ran, so these hints are coarse.",
                     lines[0].strip()[:200] if lines else "")] + _regex_scan(lines, filename)
    return _dedupe(hints)


def _dedupe(hints: Iterable[Hint]) -> list[Hint]:
    seen: set[tuple[str, str]] = set()
    out = []
    for h in hints:
        key = (h.pattern, h.where)
        if key not in seen:
            seen.add(key)
            out.append(h)

    def line_of(h: Hint) -> int:
        try:
            return int(h.where.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            return 0

    return sorted(out, key=lambda h: (line_of(h), h.pattern))
