"""Canary documents: streams the harness draws itself, so the best any legal predictor can do is known.

iid canary: documents of tokens drawn uniformly from an alphabet of k ordinary tokens. However a legal
predictor adapts (TTT, caches), its expected NLL at a random position is >= log k (cross-entropy is at
least the entropy), and the likelihood-ratio bound in stats makes that a test with a p-value from the
printed val_loss alone. A legal adaptive model can approach log k from above, never go significantly
below it. A significant dip means the scores saw their own targets or do not form a normalized
distribution (C2: "a proper distribution ... fixed before x_t is looked at").

echo canary: each random token is followed by `copies - 1` copies of itself. The copies are
predictable from the past (entropy 0), the first of each run is not (log k). A predictor that peeks at
any of the next `copies - 1` tokens sees the first token's value, so a dip below the run-starts'
entropy means the scores depended on later tokens (C1).

Both are decided tracer-free. When the ledger's per-position scores reproduce the printed number they
add detail (mean NLL at random and at predictable positions) but never the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.probes.execute import Variant, VariantRun
from harness.probes.outcome import ProbeOutcome
from harness.probes.stats import format_p, likelihood_ratio_test, mean_interval
from harness.probes.streams import CanaryStream, canary_stream, pick_alphabet
from harness.results import Evidence, Status


@dataclass
class CanaryPlan:
    name: str
    kind: str  # canary | echo
    stream: CanaryStream


def plan_canary(length: int, ids: np.ndarray, k: int, doc_len: int, copies: int, rng: np.random.Generator,
                kind: str) -> tuple[CanaryPlan, Variant]:
    alphabet = pick_alphabet(ids, k, rng)
    cs = canary_stream(length, alphabet, doc_len, copies, rng)
    name = "canary_iid" if kind == "canary" else f"canary_echo{copies}"
    return CanaryPlan(name, kind, cs), Variant(name, cs.tokens, kind)


def analyze_canary(plan: CanaryPlan, run: VariantRun | None, params: dict[str, Any]) -> ProbeOutcome:
    cs = plan.stream
    kind = plan.kind
    rule = "C2" if kind == "canary" else "C1"
    alpha = float(params["canary_alpha" if kind == "canary" else "echo_alpha"])
    tol = float(params["normalization_tolerance"])
    k = int(cs.alphabet.size)
    shape = (f"{cs.n_targets} targets in documents of {cs.doc_len} tokens, {cs.n_random} drawn uniformly from "
             f"k={k} tokens" + (f", each followed by {cs.copies - 1} cop{'y' if cs.copies == 2 else 'ies'}"
                                if cs.copies > 1 else ""))
    numbers: dict[str, Any] = {"alphabet": cs.alphabet.tolist(), "doc_len": cs.doc_len, "copies": cs.copies,
                               "n_targets": cs.n_targets, "n_random": cs.n_random, "log_k": math.log(k)}
    if run is None or not run.ok or run.total_nll is None:
        why = "not run" if run is None else (run.reason or "no printed score")
        return ProbeOutcome(kind, rule, Status.INCONCLUSIVE, f"the {kind} run gave no printed score ({why}).",
                            shape, numbers=numbers)
    # rounding of the printed value, and the normalization tolerance a legal predictor is allowed
    slack = run.total_slack + cs.n_targets * math.log1p(tol)
    exact = _exact(run)
    # two tests when the ledger adds up exactly to the printed total: the total (tracer-free) and the
    # random positions alone (same Ville argument over a subset fixed in advance; far more power when
    # a model pays for the predictable positions); each at alpha/2
    a = alpha / 2 if exact else alpha
    test = likelihood_ratio_test(run.total_nll, cs.n_targets, cs.n_random, k, a, slack)
    numbers.update(total_nll=run.total_nll, printed_val_loss=run.val_loss, slack=slack, mean_nll=test.mean_nll,
                   legal_floor=test.legal_floor, p_value=test.p_value, log_lr=test.log_lr,
                   min_detectable_dip=test.min_detectable_dip, alpha_each=a)
    power = (f"{shape}; from the printed total alone a mean dip of >= {test.min_detectable_dip:.4f} nats per random "
             f"token below log k = {math.log(k):.4f} is flagged at alpha={a:g} (Ville bound, valid for any adaptive "
             "legal predictor)")
    ev = [Evidence(detail="printed total: " + test.describe())]
    sub = None
    if run.scores is not None:
        detail = _per_position(cs, run.scores)
        numbers["per_position"] = detail
        ev.append(Evidence(positions=detail.get("lowest_random", [])[:5],
                           detail=f"ledger: mean NLL at random positions {detail['random_mean']:.4f} "
                           f"[{detail['random_lo']:.4f}, {detail['random_hi']:.4f}], at predictable positions "
                           f"{detail['predictable_mean']:.4f}"))
        if exact:
            rand = [p for p in cs.random_positions().tolist() if p in run.scores]
            sub_total = math.fsum(run.scores[p] for p in rand)
            sub = likelihood_ratio_test(sub_total, len(rand), len(rand), k, a,
                                        len(rand) * math.log1p(tol) + 1e-9 * len(rand))
            numbers["random_positions_test"] = {"p_value": sub.p_value, "mean_nll": sub.mean_nll,
                                                "legal_floor": sub.legal_floor, "n": len(rand)}
            power += (f"; from the ledger's random positions alone (their scores add up to the printed total) a dip "
                      f"of >= {sub.min_detectable_dip:.4f} nats is flagged")
            ev.append(Evidence(detail="ledger, random positions only: " + sub.describe()))
        else:
            numbers["random_positions_test"] = "skipped: the ledger's scores do not add up exactly to the printed total"
    hit = test if test.significant else (sub if sub is not None and sub.significant else None)
    if hit is not None:
        src = "the printed total" if hit is test else "the ledger's random positions"
        if kind == "canary":
            msg = (f"on random canary documents the scores average {hit.mean_nll:.4f} nats per random token "
                   f"(from {src}), below the entropy log {k} = {math.log(k):.4f} (p = {format_p(hit.p_value)}): "
                   "no legal predictor can do that, so the scores saw their targets (C1) or are not a normalized "
                   "distribution (C2).")
        else:
            msg = (f"on echo canary documents the run starts score {hit.mean_nll:.4f} nats per random token "
                   f"(from {src}), below their entropy log {k} = {math.log(k):.4f} (p = {format_p(hit.p_value)}): "
                   "the scores used their own target or the tokens that follow it (C1).")
        out = ProbeOutcome(kind, rule, Status.FAIL, msg, power, ev, numbers)
        out.tracer_free = hit is test
        return out
    best = sub if sub is not None else test
    msg = (f"{kind} documents score {best.mean_nll:.4f} nats per random token vs log {k} = {math.log(k):.4f} "
           f"(p = {format_p(min(test.p_value, sub.p_value) if sub is not None else test.p_value)}): no dip below "
           "the entropy.")
    return ProbeOutcome(kind, rule, Status.PASS, msg, power, ev, numbers)


def _exact(r: VariantRun) -> bool:
    if r.scores is None or r.total_nll is None:
        return False
    return abs(math.fsum(r.scores.values()) - r.total_nll) <= r.total_slack + 1e-6 * max(1, r.n_targets)


def _per_position(cs: CanaryStream, scores: dict[int, float]) -> dict[str, Any]:
    rand = [p for p in cs.random_positions().tolist() if p in scores]
    pred = [p for p in range(1, cs.tokens.size) if not cs.random_mask[p] and p in scores]
    rv = [scores[p] for p in rand]
    mi = mean_interval(rv, 0.99)
    lowest = sorted(rand, key=lambda p: scores[p])[:10]
    return {"random_mean": mi.mean, "random_lo": mi.lo, "random_hi": mi.hi, "random_n": mi.n,
            "predictable_mean": float(np.mean([scores[p] for p in pred])) if pred else math.nan,
            "lowest_random": lowest}
