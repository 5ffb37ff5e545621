"""C1 future-perturbation probe: change every token after t; no score at a position <= t may move.

Which scores are compared: the REPORTED PASS's score of each position (the set of per-position scores
whose recomputation equals the printed val_loss / val_bpb, found by the verdict's pass search). Why
that is sound for score-first TTT: a legal script scores a chunk before it trains on it, so the score
of a position p <= t was computed from the artifact, tokens < p, and updates that used only chunks
before p's chunk, all of which lie before t or are shared by both streams; the perturbed tokens (> t)
enter the model only after p was scored. Earlier, discarded passes (a TTT epoch's training loss) may
legitimately differ and are not compared; a score that the printed number uses and that moved is a
dependence on the future, whatever the trace says. Streams keep their length and every BOS, so chunk,
window and document layouts are identical.

"Future" is taken in scoring order, not stream order: a position is compared only if the base run scored
it no later than the first changed token was scored (same event included: a batch scored at once may not
see its own later tokens). Phased or document-batched TTT scores documents out of stream order and
legitimately trains on a later-in-stream document before scoring an earlier one; such positions are not
compared, and their count is reported. That reading needs both runs to have scored positions in the same
order; a perturbed run that did not is unusable for the probe (INCONCLUSIVE, never PASS). For runs in
stream order every position <= t is compared, as before.

A replay of the unchanged stream guards against nondeterminism: if it does not reproduce the base
run's scores, differences cannot be attributed to the perturbation and the probe is INCONCLUSIVE
(unless they exceed the replay's own noise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.probes.execute import Variant, VariantRun
from harness.probes.outcome import ProbeOutcome
from harness.probes.stats import PrefixComparison, compare_prefix
from harness.probes.streams import perturb_after
from harness.results import Evidence, Status


@dataclass
class C1Plan:
    sites: list[int]  # perturb after each
    names: dict[int, str]
    replay: str
    changed: dict[int, np.ndarray] = field(default_factory=dict)  # site -> stream positions whose token changed


def c1_sites(length: int, block: int, n: int) -> list[int]:
    """Perturbation points: a mid-block position, then block boundaries, spread over the stream's
    second half (so the prefix holds several blocks / chunks of scores to compare)."""
    n_targets = length - 1
    sites = [min(n_targets - 1, n_targets // 2 + block // 2)]
    b = n_targets // 2
    while len(sites) < n and b < n_targets - 1:
        b += max(1, block)
        if b < n_targets - 1 and b not in sites:
            sites.append(b)
    k = 1
    while len(sites) < n and n_targets - 1 - k > 1:
        cand = n_targets - 1 - k
        if cand not in sites:
            sites.append(cand)
        k += 7
    return sorted(sites[:n])


def plan_c1(base: np.ndarray, block: int, n: int, rng: np.random.Generator,
            ids: np.ndarray) -> tuple[C1Plan, list[Variant]]:
    sites = c1_sites(base.size, block, n)
    plan = C1Plan(sites=sites, names={}, replay="replay")  # the session's replay of the base stream
    variants = []
    for t in sites:
        name = f"c1_after{t}"
        plan.names[t] = name
        tokens = perturb_after(base, t, rng, ids)
        plan.changed[t] = np.flatnonzero(tokens != base)
        variants.append(Variant(name, tokens, "c1"))
    return plan, variants


def scored_by_then(t: int, changed: np.ndarray | None, orders: dict[int, int] | None
                   ) -> tuple[set[int] | None, int]:
    """Positions <= t the run scored no later than the first changed token was scored (None: every one, the
    run scored all at once), and how many positions <= t it scored only after that (not compared).
    changed None: every position after t."""
    if orders is None:
        return None, 0
    later_ranks = (orders[j] for j in (orders if changed is None else changed.tolist()) if j > t and j in orders)
    m = min(later_ranks, default=None)
    if m is None:  # no changed token was ever scored: nothing scored before one
        return None, 0
    keep = {q for q, r in orders.items() if q <= t and r <= m}
    later = sum(1 for q, r in orders.items() if q <= t and r > m)
    return keep, later


def analyze_c1(plan: C1Plan, base: VariantRun, runs: dict[str, VariantRun], params: dict[str, Any]) -> ProbeOutcome:
    atol = float(params["c1_abs_tolerance"])
    numbers: dict[str, Any] = {"sites": plan.sites, "abs_tolerance": atol}
    how = "bitwise" if atol == 0 else f"|diff| <= {atol:g}"
    power = (f"{len(plan.sites)} perturbation(s) (after positions {', '.join(map(str, plan.sites))}), every score of "
             f"the reported pass at positions <= t scored no later than the first changed token compared ({how}); "
             "a replay of the unchanged stream checks determinism")
    if not base.ok:
        return ProbeOutcome("c1", "C1", Status.INCONCLUSIVE, f"the base run failed ({base.reason}).", power,
                            numbers=numbers, tracer_free=False)
    bs = base.per_position  # a position's values in event order: a pass may score one twice (overlapping windows)
    if bs is None:
        return ProbeOutcome("c1", "C1", Status.INCONCLUSIVE,
                            f"C1 perturbation needs per-position scores and the base run has none it can trust "
                            f"({base.score_note}); the echo canary is the tracer-free check.", power,
                            numbers=numbers, tracer_free=False)
    replay = runs.get(plan.replay)
    noise = 0.0
    replay_note = "replay not run"
    if replay is not None and replay.ok and replay.per_position is not None:
        rc = compare_prefix(bs, replay.per_position, max(bs), 0.0)
        noise = rc.max_abs_diff
        replay_note = ("replay identical" if rc.identical else
                       f"replay differs at {len(rc.changed)} position(s), max {rc.max_abs_diff:.2e}")
        numbers["replay"] = {"identical": rc.identical, "max_abs_diff": rc.max_abs_diff,
                             "changed": len(rc.changed), "missing": len(rc.missing)}
    elif replay is not None:
        replay_note = f"replay unusable ({replay.reason or replay.score_note})"
    numbers["replay_note"] = replay_note
    tol = max(atol, 10.0 * noise)
    comps: list[tuple[int, PrefixComparison]] = []
    unusable: list[str] = []
    scored_later: dict[int, int] = {}
    for t in plan.sites:
        r = runs.get(plan.names[t])
        if r is None or not r.ok or r.per_position is None:
            unusable.append(f"after {t}: " + ("not run" if r is None else (r.reason if not r.ok else r.score_note)))
            continue
        if base.scored_otherwise(r):
            unusable.append(f"after {t}: the perturbed run scored positions in another order than the base run")
            continue
        keep, scored_later[t] = scored_by_then(t, plan.changed.get(t), base.orders)
        c = compare_prefix(bs, r.per_position, t, tol, keep)
        if c.compared == 0 and not c.missing:
            unusable.append(f"after {t}: every position <= {t} was scored after a changed token was")
            continue
        comps.append((t, c))
    numbers["comparisons"] = [{"after": t, "compared": c.compared, "changed": len(c.changed),
                               "first_changed": c.changed[:10], "max_abs_diff": c.max_abs_diff,
                               "missing": len(c.missing), "scored_after_a_changed_token": scored_later.get(t, 0)}
                              for t, c in comps]
    later_note = ""
    if any(scored_later.values()):
        later_note = (f"{sum(scored_later[t] for t, _ in comps)} position(s) at or before a change point were "
                      "scored after a changed token was (out of stream order) and were not compared")
    if unusable:
        numbers["unusable"] = unusable
    bad = [(t, c) for t, c in comps if c.changed]
    if bad:
        t, c = min(bad, key=lambda x: x[1].changed[0])
        noisy = noise > atol
        ev = [Evidence(positions=c.changed[:10],
                       detail=f"tokens after {t} changed; {len(c.changed)} of {c.compared} scores at positions <= {t} "
                       f"moved (max |diff| {c.max_abs_diff:.3g} nats; {replay_note})") for t, c in bad[:3]]
        status = Status.FAIL
        more = f" and {len(c.changed) - 1} more at or before {t}" if len(c.changed) > 1 else ""
        msg = (f"changing only the tokens after position {t} changed the reported score of position "
               f"{c.changed[0]}{more}: the scores depend on later tokens.")
        if noisy and c.max_abs_diff <= 100.0 * max(noise, 1e-12):
            status = Status.INCONCLUSIVE
            msg = (f"scores at or before {t} moved by up to {c.max_abs_diff:.2e} when later tokens changed, but "
                   f"the replay itself moves by {noise:.2e}: nondeterminism, not attributable.")
        msg += f" ({later_note}.)" if later_note else ""
        return ProbeOutcome("c1", "C1", status, msg, power, ev, numbers, tracer_free=False)
    if not comps:
        return ProbeOutcome("c1", "C1", Status.INCONCLUSIVE,
                            "no perturbed run could be compared with the base run: " + "; ".join(unusable[:3]) + ".",
                            power, numbers=numbers, tracer_free=False)
    if noise > atol:
        return ProbeOutcome("c1", "C1", Status.INCONCLUSIVE,
                            f"the replay of the unchanged stream moved scores by {noise:.2e} (nondeterministic), so "
                            "identical prefixes cannot be demanded; no larger change was seen.", power,
                            numbers=numbers, tracer_free=False)
    missing = sum(len(c.missing) for _, c in comps)
    if missing or unusable:
        return ProbeOutcome("c1", "C1", Status.INCONCLUSIVE,
                            f"no compared score moved, but {missing} position(s) were scored in only one run"
                            + (f" and {len(unusable)} perturbation(s) gave nothing usable" if unusable else "") + ".",
                            power, numbers=numbers, tracer_free=False)
    total = sum(c.compared for _, c in comps)
    return ProbeOutcome("c1", "C1", Status.PASS,
                        f"after changing every later token, all {total} compared scores at or before the change "
                        f"point stayed {'bitwise identical' if atol == 0 else 'within tolerance'} ({replay_note})"
                        f"{'; ' + later_note if later_note else ''}.",
                        power, numbers=numbers, tracer_free=False)
