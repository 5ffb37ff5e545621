"""C2 normalization probe: substitute candidate tokens for the target and add up their probabilities.

The site is the LAST position t of the stream, so every variant differs from the base stream only in
x_t and nothing is scored after it: total(v) - total(base) = score_t(v) - score_t(base) exactly,
from the printed numbers alone (tracer-free). One absolute level is still needed, score_t(base); it
comes from the base run's ledger when the ledger reproduces the printed score, and every variant's
own ledger score (when trusted) is checked against the tracer-free difference.

Candidates: the true token and every token that followed the same short context earlier in the stream
(where caches put their mass, so where target-keyed blends leak) are always evaluated; the rest of the
vocabulary is enumerated, or sampled uniformly when the budget is smaller (then the sum is an estimate
with a stated interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.probes.execute import Variant, VariantRun
from harness.probes.outcome import ProbeOutcome
from harness.probes.stats import decide_normalization, format_p, normal_quantile, normalization_sum
from harness.probes.streams import BatchedSites, batched_sites, sample_candidates, with_token
from harness.results import Evidence, Status

MAX_FORCED = 16


@dataclass
class C2Plan:
    site: int
    vocab: int
    base_token: int
    forced: list[int]  # includes base_token first
    sampled: list[int]
    names: dict[int, str] = field(default_factory=dict)  # candidate -> variant name (base_token: the base run)


def seen_continuations(stream: np.ndarray, t: int, orders: tuple[int, ...] = (1, 2, 3)) -> list[int]:
    """Tokens that followed the context ending at t-1 (of each order) earlier in the stream."""
    out: list[int] = []
    s = np.asarray(stream)
    for o in sorted(orders, reverse=True):
        if t - o < 0:
            continue
        ctx = s[t - o:t]
        for p in range(o, t):
            if np.array_equal(s[p - o:p], ctx):
                out.append(int(s[p]))
    return list(dict.fromkeys(out))


def plan_c2(base: np.ndarray, vocab: int, budget: int, rng: np.random.Generator) -> tuple[C2Plan, list[Variant]]:
    """budget: candidates in all (0 or >= vocab: the whole vocabulary)."""
    t = int(base.size - 1)
    bt = int(base[t])
    forced = [bt] + [v for v in seen_continuations(base, t) if v != bt and 0 <= v < vocab][:MAX_FORCED - 1]
    if 0 < budget < vocab:
        forced = forced[:max(1, budget)]  # the budget counts every candidate, the forced ones too
    n_sample = vocab if budget <= 0 else max(0, budget - len(forced))
    cands = sample_candidates(vocab, forced, n_sample, rng)
    plan = C2Plan(site=t, vocab=vocab, base_token=bt, forced=forced, sampled=cands[len(forced):])
    variants = []
    for v in cands:
        if v == bt:
            continue
        name = f"c2_t{t}_v{v}"
        plan.names[v] = name
        variants.append(Variant(name, with_token(base, t, v), "c2"))
    return plan, variants


@dataclass
class _Measured:
    forced: dict[int, float]
    sampled: dict[int, float]
    missing: int
    err: float  # bound on each score's error, nats
    source: str
    disagreements: list[tuple[int, float, float]]  # candidate, ledger score, tracer-free score
    moved: list[tuple[int, list[int], float]]  # candidate, positions != site whose score moved, largest move
    reordered: int = 0  # candidates whose run scored positions in another order (not compared for moves)
    scored_after_site: int = 0  # positions scored after the site (out of stream order): not compared for moves


def _exact(r: VariantRun) -> bool:
    """The ledger's pass adds up to the printed total within its rounding (tighter than 'trusted')."""
    if r.scores is None or r.total_nll is None:
        return False
    return abs(math.fsum(r.scores.values()) - r.total_nll) <= r.total_slack + 1e-6 * max(1, r.n_targets)


def _measure(plan: C2Plan, base: VariantRun, runs: dict[str, VariantRun]) -> _Measured | str:
    """Each candidate's score at the site.

    Ledger scores are used when every run's ledger adds up exactly to what it printed; then a
    difference between (ledger score at t) and (difference of printed totals) can only come from
    other positions' scores, which are compared directly: a position before t that moved when only
    x_t changed is a C1 observation, when it was scored no later than the site (phased TTT scores the
    last document early and legitimately trains on it before scoring earlier-in-stream ones) and both
    runs scored positions in the same order. Otherwise the tracer-free difference of printed totals, anchored
    on the base run's score at t, is used (valid when nothing but position t changed)."""
    t = plan.site
    if not base.ok or base.total_nll is None:
        return f"the base run failed ({base.reason})"
    anchor = base.scores.get(t) if base.scores else None
    measured: list[tuple[int, VariantRun]] = []
    missing = 0
    for v in plan.forced + plan.sampled:
        if v == plan.base_token:
            continue
        r = runs.get(plan.names[v])
        if r is None or not r.ok or r.total_nll is None:
            missing += 1
        else:
            measured.append((v, r))
    if anchor is None and not any(r.scores and t in r.scores for _, r in measured):
        return ("no absolute level: the base run's ledger has no trusted score at the site "
                f"({base.score_note or 'untraced'}), and printed totals give only differences between candidates")
    ledger_ok = anchor is not None and _exact(base) and all(_exact(r) and t in r.scores for _, r in measured)
    scores: dict[int, float] = {}
    disagreements: list[tuple[int, float, float]] = []
    moved: list[tuple[int, list[int], float]] = []
    err = 0.0
    if anchor is not None:
        scores[plan.base_token] = anchor
    else:
        missing += 1  # the true token has no score without the base run's ledger
    reordered = scored_after = 0
    if ledger_ok:
        limit = None if base.orders is None else base.orders.get(t)
        if limit is not None:
            scored_after = sum(1 for p, k in base.orders.items() if p != t and k > limit)
        for v, r in measured:
            scores[v] = r.scores[t]
            if base.scored_otherwise(r):
                reordered += 1  # its schedule read the substituted token: moves are not attributable
                continue
            diffs = [(p, abs(r.scores[p] - s)) for p, s in base.scores.items() if p != t and p in r.scores
                     and r.scores[p] != s and (limit is None or base.orders.get(p, limit + 1) <= limit)]
            if diffs:
                moved.append((v, [p for p, _ in diffs][:10], max(d for _, d in diffs)))
        src = "ledger scores (each run's ledger adds up to its printed total)"
    elif anchor is not None:
        for v, r in measured:
            free = anchor + (r.total_nll - base.total_nll)
            slack = r.total_slack + base.total_slack
            if r.scores and t in r.scores and abs(r.scores[t] - free) > slack + 1e-6:
                disagreements.append((v, r.scores[t], free))
            scores[v] = free
            err = max(err, slack)
        src = "printed totals (tracer-free differences) anchored on the base run's ledger score"
    else:
        for v, r in measured:
            if r.scores and t in r.scores:
                scores[v] = r.scores[t]
            else:
                missing += 1
        src = "ledger scores only (the base run's ledger had no score at the site)"
    forced_set = set(plan.forced)
    forced = {v: s for v, s in scores.items() if v in forced_set}
    sampled = {v: s for v, s in scores.items() if v not in forced_set}
    return _Measured(forced, sampled, missing, err, src, disagreements, moved, reordered, scored_after)


def analyze_c2(plan: C2Plan, base: VariantRun, runs: dict[str, VariantRun], params: dict[str, Any]) -> ProbeOutcome:
    out = _analyze_c2(plan, base, runs, params)
    out.tracer_free = False  # the absolute level (the true token's score) comes from the base run's ledger
    return out


def _analyze_c2(plan: C2Plan, base: VariantRun, runs: dict[str, VariantRun], params: dict[str, Any]) -> ProbeOutcome:
    tol = float(params["normalization_tolerance"])
    alpha = float(params["c2_alpha"])
    band = float(params["c2_sampled_tolerance"])
    level = float(params["c2_confidence"])
    t = plan.site
    m = _measure(plan, base, runs)
    n_cand = len(plan.forced) + len(plan.sampled)
    power_base = (f"site {t} (last position), {n_cand} of {plan.vocab} candidates "
                  f"({len(plan.forced)} always: the true token and tokens seen after the same context)")
    if isinstance(m, str):
        return ProbeOutcome("c2", "C2", Status.INCONCLUSIVE, f"C2 probe could not measure: {m}.", power_base,
                            numbers={"site": t, "candidates": n_cand})
    ns = normalization_sum(t, plan.vocab, m.forced, m.sampled, m.missing)
    numbers: dict[str, Any] = {
        "mode": "variants", "site": t, "vocab": plan.vocab, "forced": len(m.forced), "sampled": len(m.sampled), "missing": m.missing,
        "partial_sum": ns.partial_sum, "estimate": ns.estimate, "exhaustive": ns.exhaustive,
        "score_error_nats": m.err, "source": m.source,
        "top": [{"token": v, "p": p} for v, p in ns.top],
        "ledger_disagreements": [{"token": v, "ledger": a, "printed": b} for v, a, b in m.disagreements[:5]],
        "moved_before_site": [{"token": v, "positions": ps, "max_abs_diff": d} for v, ps, d in m.moved[:10]],
        "moved_candidates": len(m.moved),
        "reordered_candidates": m.reordered,
        "scored_after_site": m.scored_after_site,
    }
    ev = [Evidence(positions=[t], detail=f"sum of p over {ns.evaluated} candidates = {ns.partial_sum:.6g}; "
                   f"largest: " + ", ".join(f"{v}:{p:.3g}" for v, p in ns.top[:3]))]
    if m.disagreements:
        v, a, b = m.disagreements[0]
        ev.append(Evidence(positions=[t], detail=f"ledger and printed totals disagree for {len(m.disagreements)} "
                           f"candidate(s), e.g. token {v}: ledger {a:.6f} vs printed {b:.6f} nats"))
    if _certainly_above_one(m, ns, tol):
        how = "the whole vocabulary" if ns.exhaustive else f"{ns.evaluated} of {plan.vocab} candidates"
        return ProbeOutcome("c2", "C2", Status.FAIL,
                            f"at position {t} the probabilities of {how} sum to {ns.partial_sum:.4g} > 1: "
                            "the scores do not come from one normalized distribution (a certain lower bound).",
                            power_base, ev, numbers)
    if ns.exhaustive:
        z = ns.partial_sum
        numbers["z"] = z
        if m.err > tol:
            return ProbeOutcome("c2", "C2", Status.INCONCLUSIVE,
                                f"Z = {z:.6f} at position {t}, but the printed numbers are too coarse ({m.err:.1e} "
                                f"nats per score) to decide within {tol:g}.", power_base, ev, numbers)
        d = decide_normalization([ns], tol, alpha)
        status = Status(d.status)
        msg = (f"the whole vocabulary ({plan.vocab} tokens) substituted at position {t} sums to Z = {z:.6f}"
               + (" (within " if status is Status.PASS else " (outside ") + f"{tol:g} of 1).")
        return ProbeOutcome("c2", "C2", status, msg, power_base + f"; exact sum, tolerance {tol:g}", ev, numbers)
    # sampled: estimate Z with a finite-population normal interval over the sampled part
    est, half = _interval(m, plan.vocab, level)
    numbers.update(estimate=est, interval=[est - half, est + half], level=level)
    power = (power_base + f"; Z estimated {est:.4f} +/- {half:.4f} ({level:.0%} normal interval, sampling "
             f"without replacement); a sampled probe passes only inside 1 +/- {band:g} and cannot see excess "
             "mass on tokens it did not draw")
    if est - half > 1.0 + tol:
        p = _one_sided_p(est, half, level, 1.0 + tol)
        numbers["p_value"] = p
        return ProbeOutcome("c2", "C2", Status.FAIL,
                            f"at position {t} the candidates' probabilities add up to an estimated Z = {est:.4f} "
                            f"(interval {est - half:.4f}..{est + half:.4f}, p ~ {format_p(p)}): not normalized.",
                            power, ev, numbers)
    forced_missing = len(plan.forced) - len(m.forced)
    if forced_missing == 0 and est - half >= 1.0 - band and est + half <= 1.0 + band:
        return ProbeOutcome("c2", "C2", Status.PASS,
                            f"estimated Z = {est:.4f} +/- {half:.4f} at position {t} from {ns.evaluated} of "
                            f"{plan.vocab} candidates: consistent with a normalized distribution.", power, ev, numbers)
    return ProbeOutcome("c2", "C2", Status.INCONCLUSIVE,
                        f"estimated Z = {est:.4f} +/- {half:.4f} at position {t}: too uncertain to decide "
                        f"({ns.evaluated} of {plan.vocab} candidates).", power, ev, numbers)


def _certainly_above_one(m: _Measured, ns: Any, tol: float) -> bool:
    """The measured candidates alone sum above 1 + tol, even with every score widened towards legality by its
    error (m.err nats): a FAIL that no candidate left out can undo (probabilities are not negative)."""
    return ns.partial_sum * math.exp(-m.err) > 1.0 + tol


def certainly_not_normalized(plan: C2Plan, base: VariantRun, runs: dict[str, VariantRun],
                             params: dict[str, Any]) -> bool:
    """What analyze_c2 would call a certain FAIL from the candidates run so far: the candidates still to run
    cannot change it (run_session stops there)."""
    m = _measure(plan, base, runs)
    if isinstance(m, str):
        return False
    ns = normalization_sum(plan.site, plan.vocab, m.forced, m.sampled, m.missing)
    return _certainly_above_one(m, ns, float(params["normalization_tolerance"]))


def _interval(m: _Measured, vocab: int, level: float) -> tuple[float, float]:
    """Estimate of Z and the half-width of a normal-approximation interval (sampling without
    replacement). The sample variance is floored at (largest sampled p)^2 / k, as if one more draw
    had been that large: a sample that happens to show no spread must not look certain."""
    f_sum = math.fsum(math.exp(-s) for s in m.forced.values())
    ps = [math.exp(-s) for s in m.sampled.values()]
    rest = vocab - len(m.forced)
    k = len(ps)
    if k == 0:
        return f_sum, math.inf
    mean = math.fsum(ps) / k
    est = f_sum + rest * mean
    if k >= rest:
        return est, 0.0
    var = math.fsum((p - mean) ** 2 for p in ps) / max(1, k - 1)
    var = max(var, max(ps) ** 2 / k)
    fpc = (rest - k) / max(1, rest - 1)
    se = rest * math.sqrt(var / k * fpc)
    # score errors (printed rounding) widen the interval proportionally
    se_err = est * (math.exp(m.err) - 1.0)
    z = normal_quantile(0.5 + level / 2.0)
    return est, z * se + se_err


def _one_sided_p(est: float, half: float, level: float, null: float) -> float:
    z = normal_quantile(0.5 + level / 2.0)
    se = half / z if z > 0 else math.inf
    if se == 0:
        return 0.0
    x = (est - null) / se
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def shift_outcome(c2: ProbeOutcome, replay_identical: bool | None) -> ProbeOutcome | None:
    """C1 from the C2 variants: changing only the last token moved scores of earlier positions."""
    moved = c2.numbers.get("moved_before_site") or []
    if not moved:
        return None
    first = min((p for m in moved for p in m["positions"]), default=None)
    n = int(c2.numbers.get("moved_candidates", len(moved)))
    site = c2.numbers.get("site")
    big = max(m["max_abs_diff"] for m in moved)
    ev = [Evidence(positions=sorted({p for m in moved for p in m["positions"]})[:10],
                   detail=f"substituting {n} candidate(s) at position {site} moved these earlier scores by up to "
                   f"{big:.3g} nats (e.g. token {moved[0]['token']})")]
    power = (f"from the C2 variants: {n} substitution(s) at the last position {site}, every earlier score scored "
             "no later than the site compared bitwise")
    if replay_identical:
        return ProbeOutcome("c2-shift", "C1", Status.FAIL,
                            f"changing only the token at position {site} changed the reported score of position "
                            f"{first}: earlier scores depend on a later token.", power, ev,
                            {"moved": moved}, tracer_free=False)
    why = "no replay was run" if replay_identical is None else "the replay of the unchanged stream was not identical"
    return ProbeOutcome("c2-shift", "C1", Status.INCONCLUSIVE,
                        f"changing only the token at position {site} moved earlier scores (first {first}), but {why}, "
                        "so nondeterminism cannot be ruled out.", power, ev, {"moved": moved}, tracer_free=False)


# ---------------------------------------------------------------- batched: the whole vocabulary in one run


BATCHED = "c2_batched"


def plan_c2_batched(base: np.ndarray, vocab: int, block: int, rng: np.random.Generator,
                    n_controls: int = 4) -> tuple[BatchedSites, Variant]:
    """Every token of the vocabulary after the context of the base stream's last position, in a random
    order, in one stream (see streams.batched_sites); controls: the true token and a few random ones."""
    t = int(base.size - 1)
    context = np.asarray(base[t - block:t], dtype=np.uint16)
    filler = np.asarray(base[1:block + 1], dtype=np.uint16)
    cands = rng.permutation(vocab).tolist()
    controls = [int(base[t])] + [int(x) for x in rng.choice(vocab, size=max(0, n_controls - 1), replace=False)]
    b = batched_sites(context, filler, cands, controls)
    return b, Variant(BATCHED, b.tokens, "c2")


def analyze_c2_batched(b: BatchedSites, run: VariantRun | None, vocab: int,
                       params: dict[str, Any]) -> tuple[ProbeOutcome | None, str]:
    """(outcome, why not): an outcome only when the batched sum stands for one distribution: every site
    scored by a ledger that adds up to the printed total, and every control pair bitwise equal."""
    tol = float(params["normalization_tolerance"])
    if run is None or not run.ok:
        return None, f"the batched run failed ({'not run' if run is None else run.reason})"
    if run.scores is None or not _exact(run):
        return None, f"the batched run's ledger cannot be used ({run.score_note or 'scores do not add up'})"
    missing = [p for p in b.sites if p not in run.scores]
    if missing:
        return None, f"{len(missing)} site(s) not scored (first at position {missing[0]})"
    for i, j in b.controls:
        a, c = run.scores[b.sites[i]], run.scores[b.sites[j]]
        if a != c:
            return None, (f"token {b.candidates[i]} after the same context scored {a:.6f} early and {c:.6f} late: "
                          "the evaluation carries state between sequences (adaptive, or overlapping context), so "
                          "one stream cannot stand for one distribution")
    sites = [b.sites[i] for i in b.measured]
    nll = {int(b.candidates[i]): run.scores[b.sites[i]] for i in b.measured}
    ns = normalization_sum(int(sites[-1]), vocab, {}, nll)
    z = ns.partial_sum
    numbers = {"mode": "batched", "vocab": vocab, "z": z, "exhaustive": True, "sites": len(sites),
               "control_pairs": len(b.controls), "stream_length": int(b.tokens.size), "partial_sum": z,
               "top": [{"token": v, "p": p} for v, p in ns.top]}
    ev = [Evidence(detail=f"all {vocab} tokens after one context (one stream, {len(sites)} sites, "
                   f"{len(b.controls)} control pairs bitwise equal): sum = {z:.6f}; largest: "
                   + ", ".join(f"{v}:{p:.3g}" for v, p in ns.top[:3]))]
    power = (f"exact sum over the whole vocabulary at one context (batched: {len(sites)} sites in a "
             f"{b.tokens.size}-token stream), tolerance {tol:g}; it stands for one distribution because "
             f"{len(b.controls)} control tokens scored bitwise the same early and late in the stream")
    if z > 1.0 + tol:
        st, msg = Status.FAIL, (f"all {vocab} tokens substituted after the same context sum to Z = {z:.6f} > 1: the "
                                "scores are not one normalized distribution.")
    elif z < 1.0 - tol:
        st, msg = Status.WARN, (f"all {vocab} tokens after the same context sum to Z = {z:.6f} < 1 (sub-normalized: "
                                "not a proper distribution, though it cannot lower the score).")
    else:
        st, msg = Status.PASS, (f"all {vocab} tokens substituted after the same context sum to Z = {z:.6f} "
                                f"(within {tol:g} of 1).")
    out = ProbeOutcome("c2", "C2", st, msg, power, ev, numbers)
    out.tracer_free = False
    return out, ""
