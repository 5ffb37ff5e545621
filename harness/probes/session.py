"""One probe session: plan every variant stream, run them through an Executor, analyse each probe.

Pure given the executor: tests drive it with a Python stand-in model (execute.ModelExecutor), the CLI
with the real script (execute.HarnessExecutor). Every stream has the same length, so one fork-server
run can serve them all.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.errors import BadInput
from harness.probes.c1_future import C1Plan, analyze_c1, plan_c1
from harness.probes.c2_normalization import (
    C2Plan,
    analyze_c2,
    analyze_c2_batched,
    certainly_not_normalized,
    plan_c2,
    plan_c2_batched,
    shift_outcome,
)
from harness.probes.canary import CanaryPlan, analyze_canary, plan_canary
from harness.probes.execute import Executor, Variant, VariantRun
from harness.probes.outcome import ProbeOutcome
from harness.probes.streams import base_stream, ordinary_ids, stream_length
from harness.results import Status

PROBES = ("c2", "c1", "canary")
REPLAY = "replay"

# The rules whose parameters the probes decide with (rules/conditions.toml; [rules.C1] / [rules.C2] in
# harness.toml override them). How the probes execute is set in harness.toml [probes]: EXECUTION names
# those settings, their values come from the shipped harness.toml (never from code).
PROBE_RULES = ("C2", "C1")
EXECUTION = ("blocks", "fork", "jobs", "variant_timeout_s", "c2_batched", "c2_batched_max_tokens",
             "default_budget_s")  # default_budget_s: when check --run's cheap default probes run (cli/commands)
# seed unset: a fresh secret seed per session (stated in the report, so it can be replayed); c2_chunk unset: 16
OPTIONAL_EXECUTION = ("seed", "c2_chunk")


def probe_params(cfg: Any, device: str = "cpu") -> dict[str, Any]:
    """Everything the probes read: C1 / C2 rule parameters, then harness.toml [probes] execution settings.

    cfg None: the default settings (the shipped harness.toml) and the rules. BadInput names a missing
    setting, and a rule parameter set in [probes] (it belongs under [rules.C1] / [rules.C2])."""
    from harness.config import load_config

    if cfg is None:
        from harness.config import Config, default_settings_path

        path = default_settings_path()
        cfg = load_config(path) if path is not None else Config()
    p: dict[str, Any] = {}
    for rid in PROBE_RULES:
        p.update(cfg.rule_params(rid))
    probes = cfg.section("probes")
    misplaced = sorted(k for k in probes if k in p)
    if misplaced:
        owner = {k: rid for rid in PROBE_RULES for k in cfg.rule_params(rid)}
        raise BadInput("harness.toml [probes]: " + ", ".join(f"{k} is a {owner[k]} rule parameter (set it under "
                                                             f"[rules.{owner[k]}])" for k in misplaced))
    unknown = sorted(set(probes) - set(EXECUTION) - set(OPTIONAL_EXECUTION))
    if unknown:
        raise BadInput(f"harness.toml [probes]: unknown setting(s) {', '.join(unknown)} "
                       f"(known: {', '.join(EXECUTION + OPTIONAL_EXECUTION)})")
    missing = [k for k in EXECUTION if k not in probes]
    if missing:
        raise BadInput(f"harness.toml [probes] lacks {', '.join(missing)} (the shipped harness.toml sets them)")
    p.update(probes)
    p.setdefault("seed", None)
    p.setdefault("c2_chunk", 16)
    if device != "cpu":
        p["c1_abs_tolerance"] = max(float(p["c1_abs_tolerance"]), float(p["c1_cuda_abs_tolerance"]))
    return p


def __getattr__(name: str) -> Any:
    # DEFAULTS: every parameter the probes read, from the rules and the shipped settings (computed on use,
    # so importing this module reads no file)
    if name == "DEFAULTS":
        return probe_params(None)
    raise AttributeError(name)


@dataclass
class SessionPlan:
    base: np.ndarray
    block: int
    vocab: int
    seed: int
    rng: np.random.Generator
    variants: list[Variant] = field(default_factory=list)
    c2: C2Plan | None = None
    c1: C1Plan | None = None
    canaries: list[CanaryPlan] = field(default_factory=list)


def plan_session(val_tokens: np.ndarray, vocab: int, block: int, params: Mapping[str, Any],
                 which: Iterable[str] = PROBES, tables: Any = None, seed: int | None = None,
                 length: int | None = None, replay: bool = True) -> SessionPlan:
    """length: the main run's served stream length (every variant gets it: a probe is not told apart from the
    main run by its length); None: blocks * block + 1. replay False: no replay variant up front (run_session
    adds it when a comparison needs it)."""
    which = set(which)
    unknown = which - set(PROBES)
    if unknown:
        raise ValueError(f"unknown probe(s): {', '.join(sorted(unknown))}")
    seed = int(seed if seed is not None else (params.get("seed") if params.get("seed") not in (None, "")
                                              else secrets.randbits(63)))
    rng = np.random.default_rng(seed)
    n = int(length) if length else stream_length(block, int(params["blocks"]))
    ids = ordinary_ids(vocab, tables)
    base = base_stream(val_tokens, n)
    plan = SessionPlan(base=base, block=block, vocab=vocab, seed=seed, rng=rng)
    plan.variants.append(Variant("base", base, "base"))
    # a replay of the base stream: the determinism control for every comparison between runs
    if replay:
        plan.variants.append(_replay_variant(base))
    if "c1" in which:
        plan.c1, vs = plan_c1(base, block, int(params["c1_perturbations"]), rng, ids)
        plan.variants += vs
    if "canary" in which:
        k = min(int(params["canary_alphabet"]), max(2, ids.size // 2))
        doc = int(params["canary_doc_len"])
        cp, v = plan_canary(n, ids, k, doc, 1, rng, "canary")
        plan.canaries.append(cp)
        plan.variants.append(v)
        ep, v = plan_canary(n, ids, k, doc, int(params["echo_copies"]), rng, "echo")
        plan.canaries.append(ep)
        plan.variants.append(v)
    return plan


C2_BASE = "base_c2"


def _replay_variant(base: np.ndarray) -> Variant:
    return Variant(REPLAY, np.array(base, copy=True), "replay")


def _saw_a_move(outcomes: list[ProbeOutcome]) -> bool:
    """A score moved between two runs: only a replay of the unchanged stream can say it was not noise."""
    for o in outcomes:
        if o.probe == "c2-shift":
            return True
        if o.probe == "c1" and any(c.get("changed") for c in o.numbers.get("comparisons", [])):
            return True
    return False


def _no_site_level(base: VariantRun | None) -> str:
    """Why no C2 candidate could be measured, known from the base run alone ("" when one could): its
    reported pass scores some position more than once (a sliding window's re-scored tail), so its ledger
    gives no one score per position, and a candidate changes only the last token, not which positions the
    script scores; printed totals alone give only differences between candidates (c2_normalization)."""
    if base is None or not base.ok or base.scores is not None or base.score_lists is None:
        return ""
    return (f"the base run's reported pass scores a position more than once ({base.score_note}), so no "
            "candidate's score at the site has an absolute level")


@dataclass(frozen=True)
class MainRun:
    """What the main traced run of the same script, at the probes' stream length, already told: the probes
    plan their C2 candidates from it and run them beside the first variants instead of after them. The
    base run still decides; where it disagrees with this, run_session falls back to the sequential plan."""

    variant_s: float | None  # what one variant costs (the main run is one run of the same length: variant_estimate)
    twice: bool | None  # its reported pass scores some position more than once (None: its ledger did not say)


def variant_estimate(result: Any) -> tuple[float | None, str]:
    """What one probe variant will cost, from the main run: its CPU seconds as the kernel counted them (a
    variant runs one thread, and CPU time does not grow with other work on the machine, so the same run
    gets the same decision under load), else its wall time. The second value says which, for the note."""
    cpu = getattr(result, "cpu_s", None)
    if cpu is not None and cpu > 0:
        return float(cpu), " of CPU"
    wall = getattr(result, "wall_s", None)
    return (None if wall is None else float(wall)), ""


def c2_budget(params: Mapping[str, Any], vocab: int, per_variant_s: float | None) -> tuple[int, str]:
    """Candidates to evaluate: c2_candidates (0 = all), capped by the time budget at the measured cost."""
    want = int(params["c2_candidates"]) or vocab
    want = min(want, vocab)
    budget = float(params["c2_time_budget_s"] or 0)
    if per_variant_s is None or per_variant_s <= 0 or budget <= 0:
        return want, ""
    cap = max(2, int(budget / per_variant_s))
    if cap >= want:
        return want, f"{want} candidates at ~{per_variant_s:.2f} s each"
    return cap, (f"{cap} of {want} candidates: {want} at ~{per_variant_s:.2f} s each would exceed the "
                 f"{budget:.0f} s budget (c2_time_budget_s)")


def _candidates_until_decided(executor: Executor, plan: C2Plan, base: VariantRun, vs: list[Variant],
                              params: Mapping[str, Any]) -> tuple[list[VariantRun], int]:
    """The C2 candidates in chunks of c2_chunk runs (the always-evaluated ones first: the true token's
    context continuations, where a target-keyed blend puts its mass), stopping once those run already sum
    certainly above 1: a FAIL the rest cannot undo. A normalized distribution runs them all (only the whole
    vocabulary can PASS). Returns the runs and how many candidates were left out."""
    chunk = max(1, int(params.get("c2_chunk") or len(vs) or 1))
    done: list[VariantRun] = []
    for i in range(0, len(vs), chunk):
        done += executor.run(vs[i:i + chunk])
        left = len(vs) - (i + chunk)
        if left > 0 and certainly_not_normalized(plan, base, {r.name: r for r in done}, dict(params)):
            return done, left
    return done, 0


def analyze_session(plan: SessionPlan, runs: list[VariantRun], params: Mapping[str, Any]) -> list[ProbeOutcome]:
    by = {r.name: r for r in runs}
    base = by.get("base")
    params = dict(params)
    out: list[ProbeOutcome] = []
    if plan.c1 is not None and base is not None:
        out.append(analyze_c1(plan.c1, base, by, params))
    # C2 compares its variants with the base stream served by the same session (C2_BASE), when run
    c2_base = by.get(C2_BASE) or base
    if plan.c2 is not None and c2_base is not None:
        c2 = analyze_c2(plan.c2, c2_base, by, params)
        out.insert(0, c2)
        same = replay_identical(base, by.get(REPLAY))
        if same and c2_base is not base:
            same = replay_identical(base, c2_base)
        shift = shift_outcome(c2, same)
        if shift is not None:
            out.append(shift)
    for cp in plan.canaries:
        out.append(analyze_canary(cp, by.get(cp.name), params))
    return out


def replay_identical(base: VariantRun | None, replay: VariantRun | None) -> bool | None:
    a = base.per_position if base is not None else None
    b = replay.per_position if replay is not None else None
    if a is None or b is None:
        return None
    return a == b


def run_session(executor: Executor, val_tokens: np.ndarray, vocab: int, block: int, params: Mapping[str, Any],
                which: Iterable[str] = PROBES, tables: Any = None,
                seed: int | None = None, length: int | None = None,
                main: MainRun | None = None) -> tuple[list[ProbeOutcome], dict[str, Any]]:
    """Plan, run and analyse; returns the outcomes and the report's `probes` section.

    main: what the main run told (MainRun). With it, C2's candidates (when no batched stream is tried) are
    planned up front and run in the same pool as the first variants: one round of runs less."""
    t0 = time.time()
    which = tuple(which)
    # lazy_replay (the cheap default, which decides only by a violation): the replay runs only when a score
    # moved, to tell a dependence from noise; a fork server's replay must come from its first session
    lazy = bool(params.get("lazy_replay")) and not getattr(executor, "fork", False)
    plan = plan_session(val_tokens, vocab, block, params, which, tables, seed, length, replay=not lazy)
    c2_note = ""
    batched_outcome = None
    batched_note = ""
    batched_len = 2 * block * (vocab + 8) + 1
    too_long = batched_len > int(params["c2_batched_max_tokens"])
    batched = "c2" in which and bool(params["c2_batched"]) and not too_long
    # the candidates up front: their number from the main run's cost, whether any runs from its pass
    early = ("c2" in which and not batched and main is not None and main.variant_s is not None
             and not getattr(executor, "fork", False))
    early_names: set[str] = set()
    if early:
        assert main is not None
        n, c2_note = c2_budget(params, vocab, main.variant_s)
        if main.twice:
            n = 1
        plan.c2, vs = plan_c2(plan.base, vocab, n, plan.rng)
        plan.variants += vs
        early_names = {v.name for v in vs}
    runs = executor.run(plan.variants)
    base = next((r for r in runs if r.name == "base"), None)  # the first session's: the others read against it
    if early:
        assert main is not None
        unanchored = _no_site_level(base)
        if unanchored and early_names:
            # the base run scores the site twice after all: its candidates cannot be measured (as below)
            runs = [r for r in runs if r.name not in early_names]
            plan.variants = [v for v in plan.variants if v.name not in early_names]
            plan.c2, _ = plan_c2(plan.base, vocab, 1, plan.rng)
        if unanchored:
            c2_note = f"candidates not run: {unanchored}"
        elif main.twice:
            early = False  # the main run scored a position twice, its base run did not: the candidates below
    # what one more variant of this length costs (before the batched stream, which is longer)
    cost = getattr(executor, "cost", None)
    per = cost.per_variant_s() if cost is not None and hasattr(cost, "per_variant_s") else None
    if "c2" in which and params["c2_batched"] and too_long:
        batched_note = (f"a {batched_len}-token stream would exceed c2_batched_max_tokens "
                        f"({params['c2_batched_max_tokens']})")
    elif "c2" in which and params["c2_batched"]:
        # the whole vocabulary after one context, in one stream: exact when the evaluation is
        # block-independent (the control sites say whether it was); otherwise the variants below
        b, bv = plan_c2_batched(plan.base, vocab, block, plan.rng)
        plan.variants.append(bv)
        brun = executor.run([bv])
        runs += brun
        batched_outcome, batched_note = analyze_c2_batched(b, brun[0] if brun else None, vocab, dict(params))
    if "c2" in which and batched_outcome is None and not early:
        # second session: the candidates, sized by what one variant was measured to cost
        n, c2_note = c2_budget(params, vocab, per)
        unanchored = _no_site_level(base)
        if unanchored:
            n, c2_note = 1, f"candidates not run: {unanchored}"  # the true token only: the base run itself
        plan.c2, vs = plan_c2(plan.base, vocab, n, plan.rng)
        # a fork server's second session needs its own base; runs of their own compare with the first one's
        fresh_base = bool(getattr(executor, "fork", False))
        more = ([Variant(C2_BASE, np.array(plan.base, copy=True), "base")] if fresh_base else []) + vs
        plan.variants += more
        if fresh_base or base is None:
            runs += executor.run(more)
        else:
            done, left = _candidates_until_decided(executor, plan.c2, base, vs, params)
            runs += done
            if left:
                c2_note += (f"{'; ' if c2_note else ''}stopped after {len(vs) - left} of {len(vs)} candidate runs: "
                            "those already sum certainly above 1, which no candidate left out can undo")
    outcomes = analyze_session(plan, runs, params)
    replay_note = ""
    if lazy:
        if _saw_a_move(outcomes):
            rv = _replay_variant(plan.base)
            plan.variants.append(rv)
            runs += executor.run([rv])
            outcomes = analyze_session(plan, runs, params)
            replay_note = "run: a score moved between runs"
        else:
            replay_note = "not run: no score moved between runs (the cheap probes decide only by a violation)"
    if batched_outcome is not None:
        outcomes.insert(0, batched_outcome)
    else:
        for o in outcomes:
            if o.probe == "c2" and batched_note:
                o.numbers["batched"] = f"not used: {batched_note}"
    failed = [r for r in runs if not r.ok]
    cost = getattr(executor, "cost", None)
    section: dict[str, Any] = {
        "which": sorted(set(which)),
        "executor": getattr(executor, "description", type(executor).__name__),
        "seed": plan.seed,
        "stream": {"length": int(plan.base.size), "block": block, "blocks": int(params["blocks"]), "vocab": vocab},
        "variants": len(plan.variants),
        "variants_failed": [r.summary() for r in failed[:10]],
        "variants_with_trusted_scores": sum(1 for r in runs if r.scores is not None),
        "wall_s": round(time.time() - t0, 3),
        "c2_candidates": c2_note,
        "replay": replay_note or "run up front",
        "cost": cost.to_dict() if cost is not None and hasattr(cost, "to_dict") else None,
        "outcomes": [o.to_dict() for o in outcomes],
    }
    if base is not None:
        section["base"] = base.summary()
    return outcomes, section


def block_length(env: Mapping[str, str], default: int = 1024) -> int:
    """The stream granularity: the least common multiple of the *SEQ_LEN values the run uses (the runner
    aligns the main run's stream to the same block: harness.run.serve.block_length)."""
    from harness.run.serve import block_length as served_block

    return served_block(env, default)


def blocks_for(env: Mapping[str, str], block: int, blocks: int) -> int:
    """At least `blocks` sequences, and enough to span two chunks of any chunked evaluation the run's
    environment names (TTT_CHUNK_TOKENS and the like) plus a sequence: a probe stream inside one chunk
    cannot see a chunk scored after training on it."""
    chunk = 0
    for k, v in env.items():
        if "CHUNK" in str(k).upper():
            try:
                chunk = max(chunk, int(str(v)))
            except ValueError:
                continue
    need = -(-(2 * chunk + block) // block) if chunk > 0 else 0
    return max(int(blocks), need)


def overall(outcomes: list[ProbeOutcome]) -> Status:
    from harness.results import worst

    return worst([o.status for o in outcomes], default=Status.NOT_RUN)


def session_dir_name(path: str | os.PathLike[str]) -> str:
    import re
    from pathlib import Path

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).resolve().name)[:60] or "submission"
    return f"probe-{time.strftime('%Y%m%d-%H%M%S')}-{name}-{secrets.token_hex(2)}"
