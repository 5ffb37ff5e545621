"""Probe decisions on Python stand-in predictors of known legality, and the rows they become."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

from harness.probes import DEFAULTS, DISAGREE, merge_rule_results, rule_results, run_session
from harness.probes.execute import ModelExecutor, Variant, VariantRun
from harness.probes.standins import STANDINS, hashed_target_blend, legal_cache, target_peek
from harness.results import Finding, RuleResult, Status

V = 64
BLOCK = 16


def _val(seed: int = 0) -> np.ndarray:
    # text-like: a bigram chain with a few strong transitions, documents start with BOS
    rng = np.random.default_rng(seed)
    nxt = rng.integers(4, V, size=(V, 3))
    out = [1]
    for _ in range(3000):
        prev = out[-1]
        out.append(int(nxt[prev, rng.integers(0, 3)]) if rng.random() < 0.8 else int(rng.integers(4, V)))
    return np.asarray(out, dtype=np.uint16)


def _params(**kw):
    p = dict(DEFAULTS)
    p.update(blocks=8, c2_candidates=0)
    p.update(kw)
    return p


def _session(fn, trusted=True, seed=11, **kw):
    ex = ModelExecutor(fn, trusted_scores=trusted)
    outs, section = run_session(ex, _val(), V, BLOCK, _params(**kw), seed=seed)
    return {o.probe: o for o in outs}, rule_results(outs), section


@pytest.mark.parametrize("name", sorted(STANDINS))
def test_standins_get_their_known_verdicts(name):
    make, expected = STANDINS[name]
    _, rows, _ = _session(make(V))
    got = {r.rule_id: r.status.value for r in rows}
    for rid, want in expected.items():
        assert got[rid] == want, (name, rid, [(r.rule_id, r.summary) for r in rows])
    if name == "legal_cache":
        assert all(r.status is Status.PASS for r in rows)
    assert all(r.checker == "probe" for r in rows)


def test_legal_cache_details():
    by, rows, section = _session(legal_cache(V))
    c2 = by["c2"]
    assert c2.numbers["exhaustive"] and c2.numbers["z"] == pytest.approx(1.0, abs=1e-9)
    assert by["c1"].numbers["replay"]["identical"]
    # base, replay, c1 x2, canaries x2, the batched stream, then one variant per other token (runs of their own
    # compare with the first base: a second base is a fork server's alone)
    assert section["variants"] == 2 + 2 + 2 + 1 + (V - 1)
    assert "c2-shift" not in by
    # an adaptive cache scores the same token differently at the batched stream's two control sites
    assert "carries state" in c2.numbers["batched"]


def test_batched_c2_is_exact_for_a_fixed_model_and_catches_a_target_peek():
    by, _, section = _session(STANDINS["fixed_bigram"][0](V))
    c2 = by["c2"]
    assert c2.numbers["mode"] == "batched" and c2.status is Status.PASS
    assert c2.numbers["z"] == pytest.approx(1.0, abs=1e-9) and c2.numbers["sites"] == V
    assert section["variants"] == 2 + 2 + 2 + 1  # no per-candidate variants needed
    by2, _, _ = _session(STANDINS["fixed_target_peek"][0](V))
    assert by2["c2"].numbers["mode"] == "batched" and by2["c2"].status is Status.FAIL
    assert by2["c2"].numbers["z"] > 2


def test_hashed_blend_sum_far_above_one_and_canary_tracer_free_with_small_table():
    by, _, _ = _session(hashed_target_blend(V))
    assert by["c2"].status is Status.FAIL and by["c2"].numbers["partial_sum"] > 2
    # the true token and the tokens seen after the same context are always among the candidates
    assert by["c2"].numbers["forced"] >= 1
    # a tiny hash table collides on random canary documents: the dip shows from the printed total alone
    by2, _, _ = _session(hashed_target_blend(V, buckets=5), trusted=False)
    assert by2["canary"].status is Status.FAIL and by2["canary"].tracer_free


def test_future_peek_caught_by_perturbation_and_by_c2_variants():
    by, rows, _ = _session(STANDINS["future_peek"][0](V))
    assert by["c1"].status is Status.FAIL
    assert by["c1"].evidence and by["c1"].evidence[0].positions
    # substituting the last token moved the score of the position before it
    assert by["c2-shift"].status is Status.FAIL and by["c2-shift"].rule_id == "C1"
    assert by["c2"].status is Status.PASS  # at the last position there is nothing left to peek at
    c1 = next(r for r in rows if r.rule_id == "C1")
    assert c1.status is Status.FAIL and any("c1 probe" in f.message for f in c1.findings)


def test_untrusted_scores_give_inconclusive_except_tracer_free_canary():
    by, rows, _ = _session(target_peek(V), trusted=False)
    assert by["c2"].status is Status.INCONCLUSIVE and "absolute level" in by["c2"].message
    assert by["c1"].status is Status.INCONCLUSIVE
    assert by["canary"].status is Status.FAIL and by["canary"].tracer_free
    c2 = next(r for r in rows if r.rule_id == "C2")
    assert c2.status is Status.FAIL  # the tracer-free canary decides it


def test_sampled_c2_estimate_and_limits():
    by, _, _ = _session(legal_cache(V), c2_candidates=24, c2_sampled_tolerance=0.5)
    c2 = by["c2"]
    assert not c2.numbers["exhaustive"]
    lo, hi = c2.numbers["interval"]
    assert lo <= 1.0 <= hi
    assert c2.status in (Status.PASS, Status.INCONCLUSIVE)
    assert "cannot see excess" in c2.power
    # a strict band on a small sample never passes
    by2, _, _ = _session(legal_cache(V), c2_candidates=8, c2_sampled_tolerance=1e-6)
    assert by2["c2"].status is Status.INCONCLUSIVE


def test_nondeterministic_script_is_not_called_a_c1_violation():
    base_fn = legal_cache(V)
    rng = np.random.default_rng(0)

    def noisy(tokens):
        return base_fn(tokens) + rng.normal(0, 1e-4, size=tokens.size)

    by, _, _ = _session(noisy)
    assert by["c1"].status is Status.INCONCLUSIVE
    assert "nondetermin" in by["c1"].message


def test_failed_variants_are_missing_not_legal():
    class Flaky(ModelExecutor):
        def run(self, variants):
            out = super().run(variants)
            for r in out:
                if r.purpose == "c2" and r.name.endswith("5"):
                    r.ok, r.reason = False, "crash"
            return out

    ex = Flaky(legal_cache(V))
    outs, _ = run_session(ex, _val(), V, BLOCK, _params(), seed=3)
    c2 = next(o for o in outs if o.probe == "c2")
    assert c2.numbers["missing"] > 0 and not c2.numbers["exhaustive"]
    assert c2.status is not Status.PASS or "estimated" in c2.message


class _BaseOnlyLedger(ModelExecutor):
    """Only the base run's ledger is usable: the C2 variants count on printed totals."""

    def run(self, variants):
        out = super().run(variants)
        for r in out:
            if r.purpose == "c2":
                r.scores, r.score_note = None, "untraced"
        return out


def test_tracer_free_c2_differences_anchored_on_the_base_score():
    ex = _BaseOnlyLedger(legal_cache(V), decimals=8)
    outs, _ = run_session(ex, _val(), V, BLOCK, _params(), seed=5)
    c2 = next(o for o in outs if o.probe == "c2")
    assert "printed totals" in c2.numbers["source"]
    assert 0 < c2.numbers["score_error_nats"] < 1e-5
    assert c2.status is Status.PASS and c2.numbers["z"] == pytest.approx(1.0, abs=1e-4)
    # the same with 4-decimal score lines: too coarse to decide within 1e-3, never a PASS
    ex4 = _BaseOnlyLedger(legal_cache(V), decimals=4)
    outs4, _ = run_session(ex4, _val(), V, BLOCK, _params(), seed=5)
    c24 = next(o for o in outs4 if o.probe == "c2")
    assert c24.status is Status.INCONCLUSIVE and c24.numbers["score_error_nats"] > 1e-3
    # and a blend still fails from printed differences alone
    exb = _BaseOnlyLedger(hashed_target_blend(V), decimals=8)
    outsb, _ = run_session(exb, _val(), V, BLOCK, _params(), seed=5)
    assert next(o for o in outsb if o.probe == "c2").status is Status.FAIL


# ---------------------------------------------------------------- merging with the trace


def _row(rid, status, summary="s"):
    return RuleResult(rid, rid, status, summary, [], checker="trace")


def test_merge_trace_pass_probe_fail_is_fail_and_says_disagree():
    probe = RuleResult("C1", "C1", Status.FAIL, "echo probe: dip", [Finding("C1", Status.FAIL, "dip")], "probe")
    rows, notes = merge_rule_results([_row("C1", Status.PASS), _row("C3", Status.PASS)], [probe])
    c1 = next(r for r in rows if r.rule_id == "C1")
    assert c1.status is Status.FAIL and DISAGREE in c1.summary and c1.checker == "trace+probe"
    assert any(DISAGREE in n for n in notes)
    assert next(r for r in rows if r.rule_id == "C3").status is Status.PASS


def test_merge_inconclusive_trace_and_probe_fail_on_other_rule_notes_disagreement():
    probe = RuleResult("C2", "C2", Status.FAIL, "canary dip", [], "probe")
    rows, notes = merge_rule_results([_row("C1", Status.INCONCLUSIVE), _row("C2", Status.NOT_RUN)], [probe])
    assert next(r for r in rows if r.rule_id == "C2").status is Status.FAIL
    assert next(r for r in rows if r.rule_id == "C2").checker == "probe"
    assert notes and DISAGREE in notes[0]


def test_merge_never_relaxes_the_trace():
    probe = RuleResult("C1", "C1", Status.PASS, "no change", [], "probe")
    rows, notes = merge_rule_results([_row("C1", Status.FAIL)], [probe])
    assert rows[0].status is Status.FAIL and notes
    rows, notes = merge_rule_results([_row("C1", Status.INCONCLUSIVE)], [probe])
    assert rows[0].status is Status.INCONCLUSIVE and not notes
    z1 = RuleResult("C2", "C2", Status.PASS, "z=1", [], "probe")
    rows, _ = merge_rule_results([_row("C2", Status.NOT_RUN)], [z1])
    assert rows[0].status is Status.PASS and rows[0].checker == "probe"
    rows, _ = merge_rule_results([_row("C4", Status.PASS)], [])
    assert rows[0].status is Status.PASS


def test_variant_run_totals():
    r = VariantRun("x", "canary", 100, True, val_loss=2.0, line="t val_loss:2.0000 val_bpb:1.0")
    assert r.total_nll == 200.0 and r.total_slack == pytest.approx(100 * 5e-5)
    assert VariantRun("y", "c2", 10, False).total_nll is None
    v = Variant("v", np.zeros(5, np.uint16), "c2")
    assert v.tokens.size == 5
    assert math.isfinite(r.total_slack)


def test_fold_probes_merges_into_a_report(monkeypatch):
    from harness.cli import commands
    from harness.cli.options import ProbeOptions
    from harness.config import load_config
    from harness.results import Report
    from harness.run.options import RunOptions

    def fake(path, cfg, run_opts, which, sampled=False, main_result=None):
        rows = [RuleResult("C2", "C2", Status.FAIL, "canary probe: dip", [], "probe")]
        return rows, {"which": list(which), "outcomes": []}

    monkeypatch.setattr(commands, "probe_rule_results", fake)
    report = Report("x", "check", "0", "now", rules=[_row("C4", Status.PASS), _row("C1", Status.PASS),
                                                      _row("C2", Status.NOT_RUN)])
    commands.fold_probes(report, "x", load_config(), RunOptions(), ProbeOptions())
    assert [r.rule_id for r in report.rules] == ["C1", "C2", "C4"]
    assert report.result("C2").status is Status.FAIL and report.sections["probes"]["which"] == ["c2", "c1", "canary"]
    assert any(DISAGREE in n for n in report.notes)
    assert any(n.startswith("probes cost ") for n in report.notes)  # the probes' cost is said


def test_reported_scores_trust_only_a_ledger_that_reproduces_the_print(tmp_path):
    from harness.probes.execute import reported_scores
    from harness.verdict.handwritten import LedgerBuilder

    toks = np.arange(65, dtype=np.uint16)
    nll = [1.0 + 0.01 * p for p in range(1, 65)]
    b = LedgerBuilder()
    b.run_start()
    b.read(0, 65)
    sids = b.score(range(1, 65), nll=nll)
    b.consume(sids)
    mean = float(np.mean(nll))
    b.write(tmp_path / "ok")
    got = reported_scores(tmp_path / "ok", ("final_exact", mean, 1.0, ""), toks, None)
    assert got.scores == {p: pytest.approx(1.0 + 0.01 * p) for p in range(1, 65)} and "reported pass" in got.note
    assert got.orders == {p: 0 for p in range(1, 65)} and got.lists is None  # one scoring event
    # a printed number the ledger does not reproduce: not trusted
    got = reported_scores(tmp_path / "ok", ("final_exact", mean + 0.5, 1.0, ""), toks, None)
    assert got.scores is None and got.orders is None and "do not reproduce" in got.note
    # scored in two events, the second half first: ranks follow the events, not the positions
    b3 = LedgerBuilder()
    b3.run_start()
    b3.read(0, 65)
    late = b3.score(range(33, 65), nll=nll[32:])
    early = b3.score(range(1, 33), nll=nll[:32])
    b3.consume(late + early)
    b3.write(tmp_path / "two")
    got = reported_scores(tmp_path / "two", ("final_exact", mean, 1.0, ""), toks, None)
    assert got.orders == {p: (0 if p >= 33 else 1) for p in range(1, 65)}, got.note
    # a min over two passes: the selected values are what the print used
    b2 = LedgerBuilder()
    b2.run_start()
    b2.read(0, 65)
    s1 = b2.score(range(1, 65), nll=2.0)
    s2 = b2.score(range(1, 65), nll=[1.0 if p % 2 else 3.0 for p in range(1, 65)])
    b2.consume(s1 + s2)
    b2.write(tmp_path / "min")
    got = reported_scores(tmp_path / "min", ("final_exact", 1.5, 1.0, ""), toks, None)
    assert got.note.startswith("reported: the min") and got.scores[1] == 1.0 and got.scores[2] == 2.0
    assert set(got.orders.values()) == {0}  # the first score of each position came in the first pass
    none = reported_scores(tmp_path / "none", ("t", 1.0, 1.0, ""), toks, None)
    assert (none.scores, none.orders, none.lists, none.note) == (None, None, None, "no ledger")
    # a sliding window whose last window overlaps the one before: the pass scores positions 33..64 twice,
    # and the printed mean counts them twice; one value per position cannot hold it, the lists can
    b4 = LedgerBuilder()
    b4.run_start()
    b4.read(0, 65)
    w1 = b4.score(range(1, 65), nll=1.0)
    w2 = b4.score(range(33, 65), nll=3.0)
    b4.consume(w1 + w2)
    b4.write(tmp_path / "overlap")
    got = reported_scores(tmp_path / "overlap", ("final_exact", (64 * 1.0 + 32 * 3.0) / 96, 1.0, ""), toks, None)
    assert got.scores is None and "twice" in got.note
    assert got.lists == {p: ((1.0,) if p < 33 else (1.0, 3.0)) for p in range(1, 65)}


def _val_docs(seed: int = 0) -> np.ndarray:
    """Text-like tokens in documents of 4..29 tokens, each opening with BOS."""
    rng = np.random.default_rng(seed)
    nxt = rng.integers(4, V, size=(V, 3))
    out: list[int] = []
    while len(out) < 3000:
        out.append(1)
        for _ in range(int(rng.integers(3, 29))):
            prev = out[-1]
            out.append(int(nxt[prev, rng.integers(0, 3)]) if rng.random() < 0.8 else int(rng.integers(4, V)))
    return np.asarray(out, dtype=np.uint16)


def test_c1_probe_judges_the_future_in_score_order_for_phased_scoring():
    from harness.probes.standins import phased_cache

    def c1(fn):
        outs, _ = run_session(ModelExecutor(fn), _val_docs(0), V, BLOCK, _params(), seed=0)
        return next(o for o in outs if o.probe == "c1")

    # phased TTT legally trains on a later-in-stream document scored in an earlier phase: stream-order
    # "future" would call that a leak (the 04-19 false illegal); positions scored after a changed token
    # are not compared, and the rest stay identical
    legal = c1(phased_cache(V))
    assert legal.status is Status.PASS, legal.message
    later = sum(c["scored_after_a_changed_token"] for c in legal.numbers["comparisons"])
    assert later > 0 and f"{later} position(s)" in legal.message
    assert all(c["compared"] > 0 for c in legal.numbers["comparisons"])
    # the same schedule, training on the next phase before scoring it: caught on the compared positions
    leak = c1(phased_cache(V, peek_next_phase=True))
    assert leak.status is Status.FAIL, leak.message
    assert leak.evidence and leak.evidence[0].positions


def _run(name, scores, orders):
    return VariantRun(name, "c1", 8, ok=True, reason="ok", val_loss=1.0, scores=scores, orders=orders)


def test_c1_probe_needs_the_same_score_order_in_both_runs_and_compares_a_batch_whole():
    from harness.probes.c1_future import C1Plan, analyze_c1

    plan = C1Plan(sites=[4], names={4: "c1_after4"}, replay="replay", changed={4: np.arange(5, 9)})
    base_s = {p: 1.0 for p in range(1, 9)}
    moved = {**base_s, 2: 1.5}  # a score at or before the change point moved
    one_event = {p: 0 for p in range(1, 9)}
    stream = {p: p - 1 for p in range(1, 9)}
    params = {"c1_abs_tolerance": 0.0}
    # scored in one event (a batch), or in stream order: position 2 was scored before any changed token
    for orders in (one_event, stream, None):
        out = analyze_c1(plan, _run("base", base_s, orders),
                         {"c1_after4": _run("c1_after4", moved, orders), "replay": _run("replay", base_s, orders)},
                         params)
        assert out.status is Status.FAIL and out.evidence[0].positions == [2], (orders, out.message)
    # positions 5..8 scored first (a phase), then 1..4: the move at 2 is a legal adaptation, not compared
    phased = {p: (0 if p >= 5 else 1) for p in range(1, 9)}
    out = analyze_c1(plan, _run("base", base_s, phased),
                     {"c1_after4": _run("c1_after4", moved, phased), "replay": _run("replay", base_s, phased)},
                     params)
    assert out.status is Status.INCONCLUSIVE and "scored after a changed token" in out.message
    # the perturbed run scored in another order (its schedule read the changed tokens): not comparable
    out = analyze_c1(plan, _run("base", base_s, stream),
                     {"c1_after4": _run("c1_after4", base_s, one_event), "replay": _run("replay", base_s, stream)},
                     params)
    assert out.status is Status.INCONCLUSIVE and "another order" in out.message


def test_c2_substitutions_count_a_moved_score_only_if_it_was_scored_before_the_site():
    from harness.probes.standins import phased_cache

    def outcomes(fn, seed):
        outs, _ = run_session(ModelExecutor(fn), _val_docs(seed), V, BLOCK, _params(c2_candidates=8), seed=seed)
        return {o.probe: o for o in outs}

    # the last document is scored in an early phase and trained on: positions scored after it move, legally
    legal = outcomes(phased_cache(V), 3)
    assert "c2-shift" not in legal and legal["c2"].numbers["scored_after_site"] > 0
    # training on the next phase before scoring it: a substitution at the site moves a score made before it
    leak = outcomes(phased_cache(V, peek_next_phase=True), 2)
    assert leak["c2-shift"].status is Status.FAIL, leak["c2-shift"].message


def test_lazy_replay_runs_only_when_a_score_moved():
    from harness.probes.standins import future_peek

    def session(fn):
        ex = ModelExecutor(fn)
        outs, section = run_session(ex, _val(), V, BLOCK, _params(lazy_replay=True), seed=11)
        return {o.probe: o for o in outs}, section, ex.cost.variants

    legal, sec, n_legal = session(legal_cache(V))
    assert sec["replay"].startswith("not run") and legal["c1"].status is Status.PASS
    leak, sec, n_leak = session(future_peek(V))
    # the move is confirmed against a replay of the unchanged stream, run for that reason alone
    assert sec["replay"].startswith("run:") and n_leak == n_legal + 1
    assert leak["c1"].status is Status.FAIL and leak["c1"].numbers["replay"]["identical"]
    # noise shows in the replay too: not called a violation
    base_fn = legal_cache(V)
    rng = np.random.default_rng(0)
    noisy, sec, _ = session(lambda tokens: base_fn(tokens) + rng.normal(0, 1e-4, size=tokens.size))
    assert sec["replay"].startswith("run:") and noisy["c1"].status is Status.INCONCLUSIVE


def test_c1_probe_compares_a_position_scored_twice_value_by_value():
    from harness.probes.c1_future import C1Plan, analyze_c1

    plan = C1Plan(sites=[4], names={4: "c1_after4"}, replay="replay", changed={4: np.arange(5, 9)})
    lists = {p: ((1.0,) if p < 3 else (1.0, 2.0)) for p in range(1, 9)}  # 3..8 scored twice (overlapping windows)

    def run(name, ls):
        return VariantRun(name, "c1", 8, ok=True, reason="ok", val_loss=1.0, score_lists=ls,
                          orders={p: 0 for p in range(1, 9)})

    same = analyze_c1(plan, run("base", lists), {"c1_after4": run("c1_after4", dict(lists)),
                                                  "replay": run("replay", dict(lists))}, {"c1_abs_tolerance": 0.0})
    assert same.status is Status.PASS and same.numbers["comparisons"][0]["compared"] == 4
    # the second score of position 3 (its later window) moved when only tokens after 4 changed
    moved = {**lists, 3: (1.0, 2.5)}
    out = analyze_c1(plan, run("base", lists), {"c1_after4": run("c1_after4", moved),
                                                 "replay": run("replay", dict(lists))}, {"c1_abs_tolerance": 0.0})
    assert out.status is Status.FAIL and out.evidence[0].positions == [3]


class _TailScoredTwice(ModelExecutor):
    """Every run's reported pass scores its last position twice (a sliding window's re-scored tail): the
    ledger has lists per position, no one score each."""

    def run(self, variants):
        out = super().run(variants)
        for r in out:
            if r.scores is not None:
                last = max(r.scores)
                r.score_lists = {p: ((v, v) if p == last else (v,)) for p, v in r.scores.items()}
                r.scores, r.score_note = None, "the reported pass scores a position twice"
        return out


def test_c2_candidates_are_not_run_when_the_base_run_gives_the_site_no_level():
    def c2_runs(ex):
        outs, section = run_session(ex, _val(), V, BLOCK, _params(c2_batched=False, c2_candidates=8), seed=5)
        ran = [name for name in ex.ran if name.startswith("c2_")]
        return next(o for o in outs if o.probe == "c2"), section, ran

    class Counting:
        def run(self, variants):
            self.ran = getattr(self, "ran", []) + [v.name for v in variants]
            return super().run(variants)

    c2, section, ran = c2_runs(type("T", (Counting, _TailScoredTwice), {})(legal_cache(V)))
    assert not ran and section["c2_candidates"].startswith("candidates not run")
    assert c2.status is Status.INCONCLUSIVE and "no absolute level" in c2.message
    # one score per position: the candidates run as before
    c2, section, ran = c2_runs(type("C", (Counting, ModelExecutor), {})(legal_cache(V)))
    assert len(ran) == 7 and not section["c2_candidates"].startswith("candidates not run")


# ------------------------------------------------ the main run plans the candidates (one round of runs less)

def _sessions_of(base_cls, fn, **kw):
    """(outcomes by probe, section, the variant names of each executor.run call)"""
    class Recording(base_cls):
        def run(self, variants):
            self.calls = getattr(self, "calls", []) + [[v.name for v in variants]]
            return super().run(variants)

    ex = Recording(fn)
    outs, section = run_session(ex, _val(), V, BLOCK, _params(c2_batched=False, c2_candidates=8), seed=5, **kw)
    return {o.probe: o.to_dict() for o in outs}, section, ex.calls


@pytest.mark.parametrize("fn", [legal_cache(V), hashed_target_blend(V), target_peek(V)],
                         ids=["legal_cache", "hashed_target_blend", "target_peek"])
def test_candidates_planned_from_the_main_run_join_the_first_pool_with_the_same_outcomes(fn):
    from harness.probes.session import MainRun

    seq, seq_sec, seq_calls = _sessions_of(ModelExecutor, fn)
    early, early_sec, early_calls = _sessions_of(ModelExecutor, fn, main=MainRun(variant_s=1e-3, twice=False))
    assert len(seq_calls) == 2 and len(early_calls) == 1  # the candidates ran beside the first variants
    assert sorted(early_calls[0]) == sorted(seq_calls[0] + seq_calls[1])
    assert early == seq
    # sized by the main run's cost (a stand-in measures none, so the sequential plan states no size)
    assert early_sec["c2_candidates"].startswith("8 candidates at ~") and seq_sec["c2_candidates"] == ""


def test_main_run_and_base_run_disagreeing_on_the_site_fall_back_to_what_the_base_run_says():
    from harness.probes.session import MainRun

    # the main run said "scored twice" but the base run gives one score per position: candidates run after
    seq, seq_sec, _ = _sessions_of(ModelExecutor, legal_cache(V))
    out, sec, calls = _sessions_of(ModelExecutor, legal_cache(V), main=MainRun(variant_s=1e-3, twice=True))
    assert len(calls) == 2 and [n for n in calls[0] if n.startswith("c2_")] == [] and calls[1]
    assert out == seq and sec["c2_candidates"] == seq_sec["c2_candidates"] == ""
    # the main run said "one score each" but the base run scores its tail twice: the candidates' runs are
    # dropped, as if never run, and the report says why
    seq, seq_sec, _ = _sessions_of(_TailScoredTwice, legal_cache(V))
    out, sec, calls = _sessions_of(_TailScoredTwice, legal_cache(V), main=MainRun(variant_s=1e-3, twice=False))
    assert len(calls) == 1 and any(n.startswith("c2_") for n in calls[0])
    assert sec["c2_candidates"].startswith("candidates not run") and sec["c2_candidates"] == seq_sec["c2_candidates"]
    assert out == seq


def test_harness_executor_runs_variant_0_in_the_pool_once_the_score_line_is_known(tmp_path):
    import threading

    from harness.probes.execute import HarnessExecutor

    class Res:
        def __init__(self, name):
            self.name, self.ok, self.reason, self.wall_s, self.ledger_dir = name, True, "ok", 1.0, None
            self.reported = type("R", (), {"tag": "final", "val_loss": 1.0, "val_bpb": 1.0, "line": "x"})()

    def session(tag):
        both = threading.Barrier(2, timeout=2.0)
        overlapped, seen = [], []

        def runner(path, cfg, **kw):
            name = os.path.basename(kw["out_dir"])
            seen.append(kw.get("score_tag"))
            try:
                both.wait()  # returns only while a second variant is running beside this one
                overlapped.append(name)
            except threading.BrokenBarrierError:
                both.reset()
            if name == "base":
                time.sleep(0.2)  # the base run finishes last: it must still be the one read as the base
            return Res(name)

        ex = HarnessExecutor("x", None, {}, tmp_path / str(tag), fork=False, jobs=2, runner=runner,
                             tol_loss=1e-6, tol_bpb=1e-6)
        ex.score_tag = tag
        vs = [Variant(n, np.arange(5, dtype=np.uint16), "p") for n in ("base", "a", "b")]
        ex.run(vs)
        return ex, overlapped, seen

    ex, overlapped, seen = session("final")
    assert "base" in overlapped and ex.base_result.name == "base" and set(seen) == {"final"}
    ex, overlapped, seen = session(None)
    assert "base" not in overlapped and ex.base_result.name == "base"  # alone first: its line names the others'
    assert seen[0] is None and set(seen[1:]) == {"final"}


def test_c2_candidates_stop_once_their_sum_is_certainly_above_one():
    def full_c2(fn, **kw):
        ex = ModelExecutor(fn)
        outs, section = run_session(ex, _val(), V, BLOCK, _params(c2_batched=False, c2_candidates=0, **kw),
                                    which=("c2",), seed=5)
        return next(o for o in outs if o.probe == "c2"), section, ex.cost.variants

    # a target-keyed blend: the first chunk (the context's continuations first) already sums above 1
    fail, sec, n = full_c2(hashed_target_blend(V), c2_chunk=8)
    assert fail.status is Status.FAIL and fail.numbers["partial_sum"] > 1.0
    assert fail.numbers["missing"] == V - 1 - 8 and "stopped after 8 of 63" in sec["c2_candidates"]
    whole, _, n_whole = full_c2(hashed_target_blend(V), c2_chunk=1000)
    assert whole.status is Status.FAIL and n_whole - n == V - 1 - 8  # unchunked: every candidate ran, same verdict
    # a normalized distribution runs them all, chunk after chunk, and passes on the whole vocabulary
    ok, sec, n_ok = full_c2(legal_cache(V), c2_chunk=8)
    assert ok.status is Status.PASS and n_ok == n_whole and "stopped" not in sec["c2_candidates"]


def test_the_main_run_is_the_base_variant_only_when_it_served_that_very_stream(tmp_path):
    from harness.probes.execute import HarnessExecutor

    class Res:
        def __init__(self, name, served=None):
            self.name, self.ok, self.failed, self.reason, self.wall_s, self.ledger_dir = name, True, False, "ok", 1.0, None
            self.served = served or {}
            self.reported = type("R", (), {"tag": "final", "val_loss": 1.0, "val_bpb": 1.0, "line": "x"})()

    base = np.arange(1, 40, dtype=np.uint16)
    np.save(tmp_path / "main.npy", base)

    def session(tokens):
        ran = []

        def runner(path, cfg, **kw):
            ran.append(os.path.basename(kw["out_dir"]))
            return Res(ran[-1])

        ex = HarnessExecutor("x", None, {}, tmp_path / f"s{len(list(tmp_path.iterdir()))}", fork=False, jobs=1,
                             runner=runner, tol_loss=1e-6, tol_bpb=1e-6)
        ex.main_run = Res("main", {"val_tokens_path": str(tmp_path / "main.npy")})
        out = ex.run([Variant("base", tokens, "base"), Variant("c1", tokens[::-1].copy(), "c1")])
        return ex, out, ran

    ex, out, ran = session(base)
    assert ran == ["c1"] and out[0].how == "main run" and ex.base_result.name == "main"
    assert any("main run" in n for n in ex.cost.notes) and ex.score_tag == "final"
    other = base.copy()
    other[-1] += 1  # one token differs: the main run is not this variant's run
    ex, out, ran = session(other)
    assert ran == ["base", "c1"] and out[0].how == "run" and ex.base_result.name == "base"
