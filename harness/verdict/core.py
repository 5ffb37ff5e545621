"""The verdict: a run's ledger (and what the runner measured) -> one RuleResult per rule it decides.

`judge` is pure: a Ledger, the printed numbers, the served validation tokens and their bytes in,
rule results out (a verdict from a hand-written ledger). `evaluate` reads a run's out folder and
settings and calls it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import BadInput, HarnessError
from harness.ledger import Ledger, read_ledger
from harness.results import RuleResult, Status
from harness.rules import RuleParams, decided_by, load_rules, rule_order
from harness.verdict.access import check_b4, check_d1, check_d2, check_d3
from harness.verdict.analysis import Analysis, analyze
from harness.verdict.budgets import ClaimedTraining, check_budget, late_train_reads, timing
from harness.verdict.conditions import c2_premises_hold, check_c1, check_c2, check_c3, check_c4
from harness.verdict.integrity import apply as apply_integrity
from harness.verdict.integrity import check_integrity
from harness.verdict.passes import Printed

RULE_IDS = decided_by("run")  # B2-B4, C1-C4, D1-D3: the rules a run decides (harness.rules.STAGES)
VAL_TOKENS_FILE = "val_tokens.npy"


@dataclass
class Verdict:
    results: list[RuleResult]
    analysis: Analysis
    notes: list[str] = field(default_factory=list)

    def result(self, rule_id: str) -> RuleResult | None:
        return next((r for r in self.results if r.rule_id == rule_id), None)


def judge(
    ledger: Ledger,
    *,
    printed: Printed | None,
    val_tokens: np.ndarray | None = None,
    pos_bytes: np.ndarray | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    titles: Mapping[str, str] | None = None,
    severities: Mapping[str, str] | None = None,
    scale: str | None = None,
    run_reason: str | None = None,
    phases: Any = None,
    seq_lens: Sequence[int] = (),
    enabled: Iterable[str] | None = None,
    claimed: ClaimedTraining | None = None,
    classes: Any = None,
    replay: Any = None,
) -> Verdict:
    """Rule results for B2-B4, C1-C4, D1-D3 from one run's ledger.

    printed: the final score line (None: the script printed none). val_tokens: the served stream.
    pos_bytes[p]: bytes of target p (harness.bpb.stream_bytes); None: val_bpb is not recomputed.
    params/titles/severities: per rule id (default: rules/). seq_lens: sequence lengths the run used (the
    standard truncation of validation to a multiple of one of them, plus one, is not a skip).
    claimed: what the submission's claimed runs (its logs) state about their training clock
    (budgets.claimed_training); with training reads after the script's clock stopped it decides B2.
    classes: the tokenizer's token classes (bpb.token_classes): a printed val_bpb below the recomputation
    names the classes whose byte counts explain it.
    replay: what a score-order replay of this run decided (harness.verdict.relabel.Replay): it clears C1/C3
    rows one interval per value left undecided, never more.
    """
    rules = load_rules()
    # a rule's parameters: what `params` gives for it (a strict RuleParams from Config.rule_params, or a plain
    # mapping of overrides), over the rules' own; a parameter neither has raises BadInput naming it
    given = params or {}
    params = {k: v if isinstance(v, RuleParams) else RuleParams(k, {**r.parameters, **dict(v)})
              for k, r in rules.items() for v in [given.get(k, {})]}
    params.update({k: v if isinstance(v, RuleParams) else RuleParams(k, v) for k, v in given.items() if k not in rules})
    titles = titles if titles is not None else {k: r.title for k, r in rules.items()}
    severities = severities if severities is not None else {k: r.severity for k, r in rules.items()}
    c4p = params.get("C4", RuleParams("C4", {}))
    an = analyze(ledger, printed, val_tokens, pos_bytes,
                 float(c4p["val_loss_abs_tolerance"]), float(c4p["val_bpb_abs_tolerance"]))
    an.replay = replay
    if scale is None:
        rs = ledger.first("run_start")
        scale = str(rs.get("scale")) if rs is not None and rs.get("scale") else None
    tm = timing(ledger, phases)
    d2, d3 = check_d2(an), check_d3(an)
    # C2's trace proof stands on these: the row fixed by earlier positions only (C1), no state trained on
    # the target before its score (C3), on validation before the artifact (D1), the printed number the sum
    # of these scores (C4)
    premises = {"C1": check_c1(an), "C3": check_c3(an), "C4": check_c4(an, c4p, seq_lens, classes),
                "D1": check_d1(an, params.get("D1", {}))}
    out = {
        "C1": premises["C1"],
        "C2": check_c2(an, params.get("C2", {}), premises),
        "C3": premises["C3"],
        "C4": premises["C4"],
        "D1": premises["D1"],
        "D2": d2,
        "D3": d3,
        "B4": check_b4(d2, d3),
        "B2": check_budget("B2", "train", tm, params.get("B2", {}), scale, run_reason, late_train_reads(ledger),
                           claimed),
        "B3": check_budget("B3", "eval", tm, params.get("B3", {}), scale, run_reason),
    }
    want = set(enabled) if enabled is not None else set(out)
    integ = check_integrity(ledger)  # channel, tamper, OS witness: untrusted evidence never passes
    if ledger.truncated:  # read under a size cap: events past it are unseen, so nothing passes on them
        integ.add(("C1", "C3", "C4", "D1", "D2", "D3", "B4"), ledger.truncated)
    lost = an.stats.lost_outputs
    if lost:  # provenance dropped, not widened: a violation may hide there, so nothing passes on the trace
        top = ", ".join(f"{k} x{v}" for k, v in sorted(lost.items(), key=lambda kv: -kv[1])[:3])
        integ.add(("C1", "C2", "C3", "C4", "D1"),
                  f"the tracer lost the provenance of {sum(lost.values())} op output(s) ({top}: the op's rule and "
                  f"its coarse fallback both failed); what they carried is unknown")
    out = dict(zip(out, apply_integrity(list(out.values()), integ)))
    if out["C2"].status is Status.PASS and not c2_premises_hold(out):
        # a premise of C2's trace proof no longer passes (untrusted evidence): C2 goes back to the probe
        out["C2"] = check_c2(an, params.get("C2", {}), None)
    results = []
    for rid in sorted(out, key=rule_order):
        if rid not in want:
            continue
        r = out[rid]
        r.title = titles.get(rid, r.title or rid)
        if r.severity != "info":  # tiny-scale budget figures stay informational
            r.severity = severities.get(rid, r.severity)
        results.append(r)
    notes = list(integ.notes)
    if an.tables.malformed:
        notes.append(f"{an.tables.malformed} score events had parallel lists of different lengths and were skipped")
    if ledger.skipped_lines:
        notes.append(f"{ledger.skipped_lines} ledger lines were unreadable (a killed process?)")
    if an.search is not None and an.search.missing_ids:
        notes.append(f"{an.search.missing_ids} consumed score ids match no recorded score")
    if an.traced and not an.stats.ranks and an.part_failed("tracer") is None:
        notes.append("the tracer wrote no stats event (the run ended early?): trace precision unknown")
    an.notes.extend(notes)
    return Verdict(results, an, notes)


# ------------------------------------------------------------------ reading a run's out folder


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def printed_from(run_result: Any, ledger: Ledger) -> Printed | None:
    """The final score line: the run result's `reported`, else the ledger's last `reported` event."""
    rep = _get(run_result, "reported") if run_result is not None else None
    if rep is None:
        evs = list(ledger.of("reported"))
        rank0 = [e for e in evs if e.get("rank", 0) == 0] or evs
        rep = rank0[-1] if rank0 else None
    if rep is None:
        return None
    if isinstance(rep, (tuple, list)) and len(rep) >= 3 and not isinstance(rep, Printed):
        tag, loss, bpb = rep[0], rep[1], rep[2]
        line = rep[3] if len(rep) > 3 else ""
    else:
        tag, loss, bpb, line = (_get(rep, "tag", ""), _get(rep, "val_loss"), _get(rep, "val_bpb"),
                                _get(rep, "line", ""))
    try:
        fl, fb = float(loss), float(bpb)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(fl) and math.isfinite(fb)):
        return None
    return Printed(str(tag or ""), fl, fb, str(line or ""))


def _seq_lens(run_result: Any, cfg: Any) -> list[int]:
    env = _get(run_result, "env") if run_result is not None else None
    if not isinstance(env, Mapping):
        env = (cfg.section("run").get("tiny_env") if cfg is not None else None) or {}
    out = set()
    for k, v in env.items():
        if str(k).endswith("SEQ_LEN"):
            try:
                out.add(int(str(v)))
            except ValueError:
                pass
    return sorted(x for x in out if x > 0)


def _load_val_tokens(folders: Sequence[Path]) -> np.ndarray | None:
    for d in folders:
        f = d / VAL_TOKENS_FILE
        if f.is_file():
            try:
                arr = np.load(f, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise BadInput(f"{f}: not a numpy token array ({e})") from None
            if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                raise BadInput(f"{f}: expected a 1-D integer token array, got {arr.dtype} {arr.shape}")
            return arr
    return None


def verdict_for_run(ledger_dir: str | os.PathLike[str], run_result: Any, cfg: Any,
                    claimed: ClaimedTraining | None = None, replay: Any = None) -> Verdict:
    """The verdict for a finished run: its ledger folder, the runner's RunResult, the user's Config.

    From run_result (attributes or mapping keys, all optional): reported (tag, val_loss, val_bpb),
    reason (why the run ended; a budget kill contains "budget"), phases, out_dir (holds
    val_tokens.npy), tokenizer (the SentencePiece model the served data was made with), vocab_size,
    scale ("tiny" | "full"), env (the environment overrides; *SEQ_LEN values explain truncation).
    claimed: the claimed runs' stated training clock (budgets.claimed_training of the folder's logs).
    """
    d = Path(ledger_dir)
    if not d.exists():
        raise BadInput(f"ledger folder not found: {d}")
    ledger = read_ledger(d)
    printed = printed_from(run_result, ledger)
    out_dir = _get(run_result, "out_dir") if run_result is not None else None
    folders = [Path(out_dir)] if out_dir else []
    folders += [d, d.parent] if d.is_dir() else [d.parent]
    val_tokens = _load_val_tokens(folders)
    notes: list[str] = []
    served = _get(run_result, "served") if run_result is not None else None
    want = served.get("val_sha256") if isinstance(served, Mapping) else None
    if val_tokens is not None and want:
        from harness.run.serve import tokens_sha256

        if tokens_sha256(val_tokens) != want:  # changed after the parent wrote it: not the served stream
            notes.append(f"{VAL_TOKENS_FILE} does not match the hash the harness recorded when serving it: not used")
            val_tokens = None
    pos_bytes = None
    classes = None
    tok = _get(run_result, "tokenizer") if run_result is not None else None
    tok_want = served.get("tokenizer_sha256") if isinstance(served, Mapping) else None
    if tok and tok_want:
        from harness.run.serve import file_sha256

        if file_sha256(tok) != tok_want:  # the byte table's source changed since it was served
            notes.append(f"val_bpb not recomputed: the tokenizer {Path(tok).name} is not the one served (sha256)")
            tok = None
    if val_tokens is not None and tok:
        from harness.data import bpb

        try:
            tables = bpb.byte_tables(tok, _get(run_result, "vocab_size"))
            pos_bytes = bpb.stream_bytes(tables, val_tokens)
            classes = bpb.token_classes(tok, _get(run_result, "vocab_size"))
            # the harness's own table, checked on every run against the decoded text of the served stream
            notes.append(bpb.validate_tables(tok, val_tokens, pos_bytes).line() + f" (tokenizer {Path(tok).name})")
        except HarnessError as e:
            notes.append(f"val_bpb not recomputed: {e}")
    elif val_tokens is None:
        notes.append(f"val_bpb not recomputed: no {VAL_TOKENS_FILE} in the run's out folder")
    elif not any("is not the one served" in n for n in notes):
        notes.append("val_bpb not recomputed: the run result names no tokenizer")
    params = {rid: cfg.rule_params(rid) for rid in RULE_IDS} if cfg is not None else None
    titles = {rid: r.title for rid, r in cfg.rules.items()} if cfg is not None else None
    severities = {rid: r.severity for rid, r in cfg.rules.items()} if cfg is not None else None
    scale = _get(run_result, "scale") if run_result is not None else None
    if scale is None and cfg is not None:
        rs = ledger.first("run_start")
        scale = (rs or {}).get("scale") or cfg.get("run", "scale")
    v = judge(
        ledger,
        printed=printed,
        val_tokens=val_tokens,
        pos_bytes=pos_bytes,
        params=params,
        titles=titles,
        severities=severities,
        scale=scale,
        run_reason=_get(run_result, "reason") if run_result is not None else None,
        phases=_get(run_result, "phases") if run_result is not None else None,
        seq_lens=_seq_lens(run_result, cfg),
        enabled=(cfg.enabled & set(RULE_IDS)) if cfg is not None else None,
        claimed=claimed,
        classes=classes,
        replay=replay,
    )
    v.notes[:0] = notes
    v.analysis.notes[:0] = notes
    return v


def evaluate(ledger_dir: str | os.PathLike[str], run_result: Any, cfg: Any) -> list[RuleResult]:
    """Rule results (B2-B4, C1-C4, D1-D3, those enabled) for a finished run; see verdict_for_run."""
    return verdict_for_run(ledger_dir, run_result, cfg).results


def summary_counts(results: Sequence[RuleResult]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        out[r.status.value] = out.get(r.status.value, 0) + 1
    return out


__all__ = ["Verdict", "judge", "evaluate", "verdict_for_run", "printed_from", "RULE_IDS"]
