"""The verdict from hand-written ledgers: each rule's PASS / FAIL / INCONCLUSIVE and its evidence."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from harness.errors import BadInput
from harness.results import Status
from harness.verdict import judge
from harness.verdict.handwritten import LedgerBuilder
from harness.verdict.passes import Printed

N = 129  # served tokens: targets 1..128
RNG = np.random.default_rng(7)
VT = RNG.integers(4, 1000, size=N)
PB = np.r_[0, RNG.integers(1, 5, size=N - 1)]  # bytes of each target position
NLL = RNG.uniform(0.5, 4.0, size=N)  # a model's NLL per position
LN2 = math.log(2.0)


def numbers(pos, nll) -> tuple[float, float]:
    pos, nll = np.asarray(list(pos)), np.asarray(list(nll), dtype=float)
    return float(nll.mean()), float(nll.sum() / LN2 / PB[pos].sum())


def start(b: LedgerBuilder, *, artifact: bool = True, read: bool = True, train: bool = True) -> None:
    b.run_start()
    if train:
        b.train_read(site="train_gpt.py:64")
    if artifact:
        b.artifact_write(site="train_gpt.py:226")
    if read:
        b.read(0, N, site="train_gpt.py:70")


def sliding_pass(b: LedgerBuilder, nll=NLL, site="train_gpt.py:188", consume_site="train_gpt.py:200",
                 per_batch=True, chunk=32, update_after=False, rank=0, positions=None) -> list[int]:
    """Score positions in chunks; per-batch `.item()` consumes, or one consume at the end."""
    positions = list(range(1, N)) if positions is None else list(positions)
    sids: list[int] = []
    for i in range(0, len(positions), chunk):
        ps = positions[i : i + chunk]
        s = b.score(ps, [nll[p] for p in ps], site=site, rank=rank)
        sids += s
        if per_batch:
            b.consume(s, site=consume_site, rank=rank)
        if update_after:
            b.update(ps[0] - 1, ps[-1], site="train_gpt.py:210", rank=rank)
    if not per_batch:
        b.consume(sids, site=consume_site, rank=rank)
    return sids


def verdict(b: LedgerBuilder, printed: Printed | None = None, **kw):
    kw.setdefault("seq_lens", [64])
    return judge(b.ledger(), printed=printed if printed is not None else b.printed(), val_tokens=VT, pos_bytes=PB,
                 **kw)


def status(v, rid: str) -> Status:
    r = v.result(rid)
    assert r is not None, rid
    return r.status


def test_legal_sliding_window_pass_is_found_among_two_passes():
    b = LedgerBuilder()
    start(b)
    other = NLL * 1.01
    sliding_pass(b, nll=other, consume_site="train_gpt.py:150")  # the round-trip eval, its own site
    b.stdout("final_int8_zlib_roundtrip val_loss:... val_bpb:...")
    sliding_pass(b, per_batch=False)
    loss, bpb = numbers(range(1, N), NLL[1:])
    b.reported("final_int8_sliding_window_exact", loss, bpb)
    b.stats()
    v = verdict(b)
    for rid in ("C1", "C3", "C4", "D1", "D2", "D3", "B4"):
        assert status(v, rid) is Status.PASS, (rid, v.result(rid).summary)
    m = v.analysis.search.match
    assert m.cand.selection == "all" and m.rows.size == N - 1
    assert "train_gpt.py:200" in m.cand.label  # the sliding pass, not the round trip
    assert abs(m.val_loss - loss) < 1e-12 and abs(m.val_bpb - bpb) < 1e-12
    assert status(v, "C2") is Status.NOT_RUN


def test_same_site_passes_are_told_apart_by_repeated_positions():
    # both evals run through one function (same consume site), no score line printed in between
    b = LedgerBuilder()
    start(b)
    first = NLL + 0.3
    sliding_pass(b, nll=first)
    sids2 = sliding_pass(b)
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    v = verdict(b)
    assert status(v, "C4") is Status.PASS
    rows = v.analysis.search.match.rows
    assert sorted(v.analysis.tables.sid[rows].tolist()) == sids2
    # and the first pass when it is the one printed
    b2 = LedgerBuilder()
    start(b2)
    sids1 = sliding_pass(b2, nll=first)
    sliding_pass(b2)
    b2.reported("final", *numbers(range(1, N), first[1:]))
    v2 = verdict(b2)
    assert sorted(v2.analysis.tables.sid[v2.analysis.search.match.rows].tolist()) == sids1


def test_score_first_updates_pass_c3():
    b = LedgerBuilder()
    start(b)
    sliding_pass(b, update_after=True)  # chunk scored, then trained on (inputs start one token earlier)
    b.reported("legal_ttt_exact", *numbers(range(1, N), NLL[1:]))
    v = verdict(b)
    assert status(v, "C3") is Status.PASS
    assert "4 updates" in v.result("C3").summary


def test_training_on_all_validation_before_scoring_fails_c3_with_evidence():
    b = LedgerBuilder()
    start(b)
    up = b.update(0, N - 1, site="train_gpt.py:210")
    sliding_pass(b)
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    v = verdict(b)
    r = v.result("C3")
    assert r.status is Status.FAIL
    f = r.findings[0]
    assert f.message.startswith("position 1 was used in a gradient step at train_gpt.py:210")
    assert "before it was scored at train_gpt.py:188" in f.message
    assert "128 of 128" in f.message
    ev = f.evidence[0]
    assert ev.where == "train_gpt.py:210" and ev.positions[:3] == [1, 2, 3] and up["seq"] in ev.events
    assert ev.time_s == pytest.approx(up["t"])
    # the other trace rules are unaffected
    assert status(v, "C1") is Status.PASS and status(v, "C4") is Status.PASS


@pytest.mark.parametrize("last_read", ["before", "during", "unknown", "escaped", "unnamed"])
def test_a_throwaway_copy_trained_on_validation_before_the_pass(last_read: str):
    """A compile warmup trains a LoRA built for the purpose on the first validation tokens, then drops it
    (an accepted record does this; a graph it left alive keeps the LoRA in memory to the end). Never read
    again once the pass began: no score can use it but through traced values, not counted for C3. Read
    during the pass, no record of its reads, or values that left torch meanwhile: the update stays (FAIL,
    or undecided)."""
    b = LedgerBuilder()
    start(b)
    up = b.update(0, 32, site="train_gpt.py:3278", states=None if last_read == "unnamed" else [3, 4])
    warm_done = b.next_seq
    b.phase("eval_start")
    sids = b.score(range(1, 65), NLL[1:65], site="train_gpt.py:188")
    in_pass = b.next_seq
    sids += b.score(range(65, N), NLL[65:N], site="train_gpt.py:188")
    b.consume(sids, site="train_gpt.py:200")
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    if last_read != "unknown":  # at the end of tracing: both blocks still alive
        b.release([4, 3], last_read=[warm_done, in_pass if last_read == "during" else warm_done],
                  escapes=[0, 2] if last_read == "escaped" else None)
    r = verdict(b).result("C3")
    if last_read == "before":
        assert r.status is Status.PASS, r.summary
        assert "1 update(s) of state unread once the pass began not counted" in r.summary
        note = r.findings[-1]
        assert note.status is Status.PASS and "train_gpt.py:3278 on positions 0..32" in note.message
        assert up["seq"] in note.evidence[0].events
    elif last_read == "escaped":
        assert r.status is Status.INCONCLUSIVE, r.summary
        assert "2 value(s) left torch" in r.summary
    else:
        assert r.status is Status.FAIL, r.summary
        assert r.findings[0].message.startswith("position 1 was used in a gradient step at train_gpt.py:3278")


@pytest.mark.parametrize("bos_at_end", [True, False])
def test_an_update_whose_only_proof_is_a_document_opening_bos_is_undecided(bos_at_end: bool):
    """Phased TTT: the document opening at position 64 (its BOS) is scored and trained on before the previous
    document, whose last target is that BOS, is scored. The update's interval ends at the BOS, which per-
    document training reads only as a first input: no proof (INCONCLUSIVE, never PASS). Any other token at
    that end proves the use (FAIL)."""
    from harness.data.shards import BOS_ID

    vt = VT.copy()
    if bos_at_end:
        vt[64] = BOS_ID
    b = LedgerBuilder()
    start(b)
    sids = b.score(range(65, N), NLL[65:N], site="train_gpt.py:188")  # the later documents first
    b.update(64, N - 1, site="train_gpt.py:2450")  # global SGD on what was scored
    # scored by the updated model: each score depends on positions up to the last (scored already)
    sids += b.score(range(1, 65), NLL[1:65], dep=[N - 1] * 64, site="train_gpt.py:188")
    b.consume(sids, site="train_gpt.py:200")
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    v = judge(b.ledger(), printed=b.printed(), val_tokens=vt, pos_bytes=PB, seq_lens=[64])
    r = v.result("C3")
    if bos_at_end:
        assert r.status is Status.INCONCLUSIVE, r.summary
        assert "its end at 64 is a document's opening BOS" in r.findings[0].message
    else:
        assert r.status is Status.FAIL, r.summary
        assert r.findings[0].message.startswith("position 64 was used in a gradient step at train_gpt.py:2450")


def test_calibration_state_set_aside_for_c3_still_shaped_the_artifact():
    """Statistics gathered from validation activations before the artifact (AWQ / GPTQ calibration) are read
    to build the artifact and never again: C3 sets them aside, D1 still FAILs on them."""
    b = LedgerBuilder()
    b.run_start()
    b.train_read(site="train_gpt.py:64")
    b.read(0, N, site="train_gpt.py:70")
    b.update(0, 64, target="table", op="add_", site="train_gpt.py:916", states=[7])
    b.release([7])
    b.artifact_write(site="train_gpt.py:226")
    sliding_pass(b)
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    v = verdict(b)
    assert status(v, "C3") is Status.PASS and "not counted" in v.result("C3").summary
    d1 = v.result("D1")
    assert d1.status is Status.FAIL and "train_gpt.py:916" in d1.findings[0].message


def test_lost_provenance_never_passes_but_a_proven_violation_stands():
    """An op whose rule and coarse fallback both failed (a MemoryError on vocabulary-sized logits) leaves its
    output with no provenance: a violation may hide there, so the trace rules cannot PASS; a FAIL the trace
    proves elsewhere stays a FAIL."""
    for illegal in (False, True):
        b = LedgerBuilder()
        start(b)
        if illegal:
            b.update(0, N - 1, site="train_gpt.py:210")
        sliding_pass(b)
        b.reported("final", *numbers(range(1, N), NLL[1:]))
        b.stats(coarse={"untraced_output:div:MemoryError": 2, "rule_error:div:MemoryError": 2})
        v = verdict(b)
        if illegal:
            assert status(v, "C3") is Status.FAIL
        else:
            for rid in ("C1", "C3", "C4"):
                r = v.result(rid)
                assert r.status is Status.INCONCLUSIVE, (rid, r.summary)
                assert "lost the provenance of 2 op output(s) (div:MemoryError x2" in r.summary
        assert status(v, "D3") is Status.PASS  # not a trace rule


def test_c3_names_the_first_offending_position_inside_a_chunk():
    b = LedgerBuilder()
    start(b)
    s1 = b.score(range(1, 65), NLL[1:65])
    b.consume(s1, site="a:1")
    b.update(40, 70, target="table", op="index_put_", site="train_gpt.py:300")  # 65..70 not scored yet
    s2 = b.score(range(65, N), NLL[65:N])
    b.consume(s2, site="a:1")
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    r = verdict(b).result("C3")
    assert r.status is Status.FAIL
    assert r.findings[0].evidence[0].positions == [65, 66, 67, 68, 69, 70]
    assert "a cache/table write" in r.findings[0].message and "6 of 128" in r.findings[0].message


def test_c1_dependence_on_the_target_or_later_fails():
    b = LedgerBuilder()
    start(b)
    pos = list(range(1, N))
    dep = [p - 1 for p in pos]
    dep[9] = 10  # position 10 depends on itself
    dep[19] = 40  # position 20 on a later token
    s = b.score(pos, NLL[1:], dep=dep, site="train_gpt.py:400")
    b.consume(s)
    b.reported("final", *numbers(pos, NLL[1:]))
    r = verdict(b).result("C1")
    assert r.status is Status.FAIL
    assert r.findings[0].message.startswith("position 10 was scored from a value that depends on the target itself")
    assert r.findings[0].evidence[0].positions == [10, 20]
    assert r.findings[0].evidence[0].where == "train_gpt.py:400"
    assert "2 scores" in r.summary


def test_untraced_scores_make_c1_and_c3_inconclusive():
    b = LedgerBuilder()
    start(b)
    pos = list(range(1, N))
    s = b.score(pos, NLL[1:], dep=[-1] * len(pos))
    b.consume(s)
    b.reported("final", *numbers(pos, NLL[1:]))
    v = verdict(b)
    assert status(v, "C1") is Status.INCONCLUSIVE and status(v, "C3") is Status.INCONCLUSIVE
    assert status(v, "C4") is Status.PASS  # the numbers still match
    # a score event without any dep field at all
    b2 = LedgerBuilder()
    start(b2)
    b2.ev("score", sid=[0, 1], pos=[1, 2], nll=[1.0, 2.0], grad=[False, False], op="x")
    b2.consume([0, 1])
    b2.reported("final", 1.5, 3.0 / LN2 / PB[[1, 2]].sum())
    assert status(judge(b2.ledger(), printed=b2.printed(), val_tokens=VT, pos_bytes=PB), "C1") is Status.INCONCLUSIVE


def test_min_over_passes_fails_c4():
    b = LedgerBuilder()
    start(b)
    pos = list(range(1, N))
    a = NLL[1:]
    c = RNG.uniform(0.5, 4.0, size=N - 1)
    sa = b.score(pos, a, site="train_gpt.py:500")
    sb = b.score(pos, c, site="train_gpt.py:500")
    b.combine(pos, [[x, y] for x, y in zip(sa, sb)], op="minimum", site="train_gpt.py:510")
    b.consume(sorted(sa + sb), op="item", site="train_gpt.py:512")
    best = np.minimum(a, c)
    b.reported("final_multipass_exact", *numbers(pos, best))
    v = verdict(b)
    r = v.result("C4")
    assert r.status is Status.FAIL
    msgs = " ".join(f.message for f in r.findings)
    assert "equals the min per position" in msgs and "minimum" in msgs
    assert v.analysis.search.match.cand.selection == "min"
    assert status(v, "C3") is Status.PASS


def test_combine_reaching_the_print_fails_c4_even_without_a_match():
    b = LedgerBuilder()
    start(b)
    sa = b.score([1, 2], [1.0, 2.0])
    sb = b.score([1, 2], [1.5, 1.0])
    b.combine([1, 2], [[sa[0], sb[0]], [sa[1], sb[1]]], op="where", site="t.py:9")
    b.consume(sa + sb)
    b.reported("final", 9.0, 9.0)  # numbers nothing reproduces
    r = verdict(b).result("C4")
    assert r.status is Status.FAIL and "reached the last number consumed" in r.findings[0].message


def test_no_matching_pass_is_inconclusive_everywhere_it_matters():
    b = LedgerBuilder()
    start(b)
    sliding_pass(b)
    b.reported("final", 7.77, 3.33)
    v = verdict(b)
    for rid in ("C1", "C3", "C4"):
        assert status(v, rid) is Status.INCONCLUSIVE
        assert "no pass matches the printed score" in v.result(rid).summary
    assert "closest" in v.result("C4").findings[0].message


def test_printed_bpb_that_disagrees_with_the_tokenizer_bytes_fails_c4():
    b = LedgerBuilder()
    start(b)
    sliding_pass(b)
    loss, bpb = numbers(range(1, N), NLL[1:])
    b.reported("final", loss, bpb * 0.9)  # the script counted 11% more bytes
    r = verdict(b).result("C4")
    assert r.status is Status.FAIL
    assert any("wrong byte counting" in f.message for f in r.findings)


def test_bytes_unknown_leave_c4_inconclusive_but_find_the_pass():
    b = LedgerBuilder()
    start(b)
    sliding_pass(b)
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    v = judge(b.ledger(), printed=b.printed(), val_tokens=VT, pos_bytes=None, seq_lens=[64])
    assert status(v, "C4") is Status.INCONCLUSIVE and status(v, "C3") is Status.PASS


def test_skipped_positions_fail_c4():
    b = LedgerBuilder()
    start(b)
    pos = [p for p in range(1, N) if not 50 <= p < 60]
    sliding_pass(b, positions=pos)
    b.reported("final", *numbers(pos, NLL[pos]))
    r = verdict(b).result("C4")
    assert r.status is Status.FAIL
    f = next(f for f in r.findings if "never scored" in f.message)
    assert "10 target positions" in f.message and "(first: 50)" in f.message


def test_tail_truncation_to_the_sequence_length_is_not_a_skip():
    vt = np.r_[VT, VT[:10]]  # 139 tokens: 138 targets, 128 = 2 x 64 evaluated
    pb = np.r_[PB, PB[1:11]]
    b = LedgerBuilder()
    start(b)
    sliding_pass(b)
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    ok = judge(b.ledger(), printed=b.printed(), val_tokens=vt, pos_bytes=pb, seq_lens=[64])
    assert status(ok, "C4") is Status.PASS and "seq-len 64 truncation" in ok.result("C4").summary
    warn = judge(b.ledger(), printed=b.printed(), val_tokens=vt, pos_bytes=pb, seq_lens=[50])
    assert status(warn, "C4") is Status.WARN
    bad = judge(b.ledger(), printed=b.printed(), val_tokens=vt, pos_bytes=pb, seq_lens=[])
    assert status(bad, "C4") is Status.FAIL


def test_a_position_scored_twice_in_the_reported_pass_fails_c4():
    b = LedgerBuilder()
    start(b)
    pos = list(range(1, N)) + [5]
    nll = list(NLL[1:]) + [NLL[5]]
    s = b.score(pos, nll)
    b.consume(s)
    b.reported("final", float(np.mean(nll)), float(np.sum(nll) / LN2 / PB[pos].sum()))
    r = verdict(b).result("C4")
    assert r.status is Status.FAIL
    assert any("position 5 is scored 2 times" in f.message for f in r.findings)


def _tail_rescored(update_between: bool = False, extra: int = 1):
    """Positions 1..128 scored once, then the last 8 scored `extra` more times by shorter windows."""
    b = LedgerBuilder()
    start(b)
    pos, nll = list(range(1, N)), list(NLL[1:])
    s = list(b.score(list(pos), list(nll)))  # copies: the builder keeps the lists it is given and returns
    if update_between:
        b.update(0, 64, site="train_gpt.py:210")
    for k in range(extra):
        tail = list(range(N - 8, N))
        tail_nll = [NLL[p] + 0.1 * (k + 1) for p in tail]  # less context: a different NLL, same model
        s += b.score(tail, tail_nll)
        pos += tail
        nll += tail_nll
    b.consume(s)
    b.reported("legal_ttt_exact", float(np.mean(nll)), float(np.sum(nll) / LN2 / PB[pos].sum()))
    return verdict(b).result("C4")


def test_tail_rescored_by_the_same_state_is_a_counting_warning_not_a_second_pass():
    """Shorter tail windows of the same model score the last 8 positions again (accepted records do this):
    a counting defect, WARN with the score counted once each; never PASS."""
    r = _tail_rescored()
    assert r.status is Status.WARN, r.summary
    msg = next(f.message for f in r.findings if f.status is Status.WARN)
    assert "last 8 positions (121..128)" in msg and "8 extra scores" in msg
    assert f"{float(NLL[1:].mean()):.6f}" in msg  # the score with each position counted once


def test_tail_rescored_after_an_update_or_beyond_the_allowance_fails_c4():
    for kw in ({"update_between": True}, {"extra": 9}):  # extra=9: 72 extra scores > the 64-token allowance
        r = _tail_rescored(**kw)
        assert r.status is Status.FAIL, (kw, r.summary)
        msg = next(f.message for f in r.findings if f.status is Status.FAIL)
        assert "position 121 is scored" in msg and "8 positions scored more than once" in msg
        assert f"{float(NLL[1:].mean()):.6f}" in msg  # the score with each position counted once


def test_the_last_block_scored_twice_by_the_same_state_is_a_counting_warning():
    """The last block scored a second time by the same state, identical NLLs, both into the printed mean
    (the schedule [score 0, score 1, score 2, score 2]): within the tail allowance and with no update between,
    the shape of the accepted sliding-window tail defect: C4 WARN naming it, never PASS."""
    b = LedgerBuilder()
    start(b)
    s: list[int] = []
    for lo in (1, 33, 65, 97):
        ps = list(range(lo, lo + 32))
        s += b.score(ps, [NLL[p] for p in ps])
    ps = list(range(97, N))
    s += b.score(ps, [NLL[p] for p in ps])  # block 4 again, no update between: the same values
    b.consume(s)
    pos = list(range(1, N)) + ps
    b.reported("final", *numbers(pos, NLL[pos]))
    v = verdict(b)
    assert v.analysis.search.match.rows.size == 160  # the printed number is the mean over all 160 scores
    r = v.result("C4")
    assert r.status is Status.WARN, r.summary
    assert any("last 32 positions (97..128)" in f.message and "32 extra scores" in f.message for f in r.findings)
    assert status(v, "C1") is Status.PASS and status(v, "C3") is Status.PASS


def _two_passes_in_one_consume(value: float | None, second=NLL):
    """Two passes over 1..128 whose scores one consume carries; the print is the first pass's mean."""
    b = LedgerBuilder()
    start(b)
    pos = list(range(1, N))
    s = b.score(pos, NLL[pos]) + b.score(pos, second[pos])
    b.consume(s, value=value)
    b.reported("final", *numbers(pos, NLL[pos]))
    return verdict(b)


def test_a_part_of_a_consumed_sum_is_not_the_pass_when_the_value_carried_both_passes():
    """The consumed value is the sum over both passes (the print is it over 256 scores): the first pass alone
    reproduces the mean only because the repeats are identical. The number held every score: C4 fails."""
    v = _two_passes_in_one_consume(float(2 * NLL[1:].sum()))
    assert status(v, "C4") is Status.FAIL, v.result("C4").summary
    assert not v.analysis.search.match.cand.label.startswith("part ")


def test_a_part_of_a_widened_consume_is_the_pass_when_the_value_is_that_part_alone():
    """The trace widened the consume to a second pass (other NLLs), but its value is one pass's sum, its mean,
    its bpb, or unknown: the part is the reported pass and each position is scored once."""
    loss, bpb = numbers(range(1, N), NLL[1:])
    for value in (float(NLL[1:].sum()), loss, bpb, None):
        v = _two_passes_in_one_consume(value, second=NLL * 1.3)
        assert v.analysis.search.match.cand.label.startswith("part "), value
        assert status(v, "C4") is Status.PASS, (value, v.result("C4").summary)


def test_a_separate_diagnostic_rescore_not_in_the_printed_number_passes_c4():
    """The same block scored again afterwards, printed on its own line and left out of the reported number:
    a diagnostic, not a rescore of the reported pass."""
    b = LedgerBuilder()
    start(b)
    sliding_pass(b, per_batch=False)
    ps = list(range(97, N))
    b.consume(b.score(ps, [NLL[p] for p in ps]), site="train_gpt.py:260")
    b.stdout("diag tail val_loss:...")
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    v = verdict(b)
    assert v.analysis.search.match.rows.size == N - 1
    assert status(v, "C4") is Status.PASS, v.result("C4").summary


def test_ranks_each_consume_their_share_and_a_cross_rank_update_counts():
    b = LedgerBuilder()
    start(b)
    b.read(0, N, rank=1)
    pos0, pos1 = list(range(1, 65)), list(range(65, N))
    s0 = b.score(pos0, NLL[pos0], rank=0)
    b.update(60, 70, rank=1, site="train_gpt.py:777")  # rank 1 touches 65..70 before it scores them
    s1 = b.score(pos1, NLL[pos1], rank=1)
    b.consume(s0, op="all_reduce", rank=0, site="train_gpt.py:300")
    b.consume(s1, op="all_reduce", rank=1, site="train_gpt.py:300")
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    v = verdict(b)
    assert v.analysis.search.match.rows.size == N - 1  # the union over both ranks
    assert "2 ranks" in v.analysis.search.match.cand.label
    r = v.result("C3")
    assert r.status is Status.FAIL and r.findings[0].evidence[0].positions == [65, 66, 67, 68, 69, 70]
    assert "rank 1" in r.findings[0].evidence[0].detail


def test_c2_obvious_only_for_a_negative_nll():
    b = LedgerBuilder()
    start(b)
    nll = NLL.copy()
    nll[7] = -0.5
    sliding_pass(b, nll=nll)
    b.reported("final", *numbers(range(1, N), nll[1:]))
    r = verdict(b).result("C2")
    assert r.status is Status.FAIL and "position 7" in r.findings[0].message


def test_no_printed_score_and_untraced_runs():
    b = LedgerBuilder()
    start(b)
    sliding_pass(b)
    v = judge(b.ledger(), printed=None, val_tokens=VT, pos_bytes=PB)
    assert status(v, "C4") is Status.INCONCLUSIVE and "printed no final" in v.result("C4").summary
    u = LedgerBuilder()
    u.run_start(traced=False)
    u.train_read()
    u.artifact_write()
    u.read(0, N)
    u.reported("final", 1.0, 1.0)
    vu = judge(u.ledger(), printed=u.printed(), val_tokens=VT, pos_bytes=PB)
    assert all(status(vu, r) is Status.NOT_RUN for r in ("C1", "C3", "C4"))
    assert status(vu, "D1") is Status.PASS
    m = LedgerBuilder()
    m.run_start()
    m.phase("runtime_ready")
    m.events[-1]["parts"] = {"io_hooks": "ok", "tracer": "failed: ImportError: x"}
    m.read(0, N)
    m.reported("final", 1.0, 1.0)
    vm = judge(m.ledger(), printed=m.printed(), val_tokens=VT, pos_bytes=PB)
    assert status(vm, "C3") is Status.INCONCLUSIVE and "tracer did not start" in vm.result("C3").summary


def test_validation_never_observed_is_inconclusive():
    b = LedgerBuilder()
    start(b, read=False)
    sliding_pass(b)
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    v = verdict(b)
    for rid in ("C1", "C3", "C4", "D1"):
        assert status(v, rid) is Status.INCONCLUSIVE, rid
        assert "never observed" in v.result(rid).summary


# ---------------------------------------------------------------- data access


def test_d1_update_before_the_artifact_fails():
    b = LedgerBuilder()
    b.run_start()
    b.train_read()
    b.read(0, N, site="train_gpt.py:70")
    b.update(0, 63, target="buffer", op="copy_", site="train_gpt.py:450")
    b.artifact_write()
    r = judge(b.ledger(), printed=None).result("D1")
    assert r.status is Status.FAIL
    assert "running-statistic (buffer) update at train_gpt.py:450" in r.findings[0].message
    assert r.findings[0].evidence[0].positions == [0]


def test_d1_early_read_policies():
    b = LedgerBuilder()
    b.run_start()
    b.read(0, N, site="train_gpt.py:70")
    b.train_read()
    b.artifact_write()
    assert judge(b.ledger(), printed=None).result("D1").status is Status.WARN
    strict = judge(b.ledger(), printed=None, params={"D1": {"early_read": "fail"}}, titles={})
    assert strict.result("D1").status is Status.FAIL
    u = LedgerBuilder()
    u.run_start(traced=False)
    u.read(0, N)
    u.artifact_write()
    assert judge(u.ledger(), printed=None).result("D1").status is Status.INCONCLUSIVE
    n = LedgerBuilder()
    n.run_start()
    n.read(0, N)
    assert "no artifact" in judge(n.ledger(), printed=None).result("D1").summary


def test_d2_and_b4_training_read_after_the_artifact():
    b = LedgerBuilder()
    start(b)
    late = b.train_read(site="train_gpt.py:888", first=False)
    v = judge(b.ledger(), printed=None)
    assert status(v, "D2") is Status.FAIL and status(v, "B4") is Status.FAIL
    f = v.result("D2").findings[0]
    assert f.evidence[0].where == "train_gpt.py:888" and late["seq"] in f.evidence[0].events
    assert "D2" in v.result("B4").summary
    none = LedgerBuilder()
    start(none, train=False)
    vn = judge(none.ledger(), printed=None)
    assert status(vn, "D2") is Status.INCONCLUSIVE and status(vn, "B4") is Status.INCONCLUSIVE


def test_d3_network_and_download_commands():
    b = LedgerBuilder()
    start(b)
    b.net("huggingface.co", 443, site="train_gpt.py:12")
    v = judge(b.ledger(), printed=None)
    assert status(v, "D3") is Status.FAIL and status(v, "B4") is Status.FAIL
    assert "huggingface.co:443" in v.result("D3").findings[0].message
    c = LedgerBuilder()
    start(c)
    c.ev("subprocess", argv=["nvidia-smi"], allowed=True)
    assert judge(c.ledger(), printed=None).result("D3").status is Status.PASS
    c.ev("subprocess", argv=["/usr/bin/wget", "http://x/y.bin"], allowed=False)
    assert judge(c.ledger(), printed=None).result("D3").status is Status.FAIL


# ---------------------------------------------------------------- budgets


def test_budgets_informational_at_tiny_scale_and_decisive_at_full_scale():
    b = LedgerBuilder()
    start(b)
    tiny = judge(b.ledger(), printed=None, scale="tiny")
    assert tiny.result("B2").status is Status.PASS and tiny.result("B2").severity == "info"
    phases = {"train_start": 0.0, "train_end": 590.0, "eval_start": 590.0, "eval_end": 1300.0}
    full = judge(b.ledger(), printed=None, scale="full", phases=phases)
    assert full.result("B2").status is Status.PASS
    assert full.result("B3").status is Status.FAIL and "710.0 s" in full.result("B3").summary
    killed = judge(b.ledger(), printed=None, scale="full", run_reason="train_budget",
                   phases={"train_start": 0.0, "train_end": None})
    assert killed.result("B2").status is Status.FAIL
    assert killed.result("B3").status is not Status.FAIL


# ---------------------------------------------------------------- evaluate(): a run's out folder


def test_evaluate_reads_the_out_folder(tmp_path):
    from harness.config import load_config
    from harness.verdict import evaluate, verdict_for_run

    b = LedgerBuilder()
    start(b)
    sliding_pass(b)
    loss, bpb = numbers(range(1, N), NLL[1:])
    ledger_dir = b.write(tmp_path / "ledger")
    np.save(tmp_path / "val_tokens.npy", VT.astype(np.uint16))
    rr = SimpleNamespace(reported=SimpleNamespace(tag="final", val_loss=loss, val_bpb=bpb, line=""), reason="ok",
                         phases={}, out_dir=str(tmp_path), tokenizer=None, env={"TRAIN_SEQ_LEN": "64"}, scale="tiny")
    cfg = load_config()
    results = {r.rule_id: r for r in evaluate(ledger_dir, rr, cfg)}
    assert results["C3"].status is Status.PASS and results["C1"].status is Status.PASS
    assert results["C4"].status is Status.INCONCLUSIVE  # no tokenizer: val_bpb not recomputed
    assert results["C1"].title == cfg.rules["C1"].title
    v = verdict_for_run(ledger_dir, rr, cfg)
    assert any("no tokenizer" in n for n in v.notes)
    with pytest.raises(BadInput):
        evaluate(tmp_path / "missing", rr, cfg)


def test_evaluate_recomputes_bpb_from_the_tokenizer(tmp_path):
    from harness.data import bpb as hb
    from harness.config import load_config
    from harness.data.builtin import ensure_data
    from harness.data.shards import read_shard
    from harness.verdict import evaluate

    paths = ensure_data(1024, cache_dir=tmp_path / "cache")
    vt = read_shard(paths.val_files[0])[:N].astype(np.int64)
    pb = hb.stream_bytes(hb.byte_tables(paths.tokenizer), vt)
    b = LedgerBuilder()
    start(b)
    sliding_pass(b)
    pos = np.arange(1, N)
    loss, bpb = float(NLL[pos].mean()), float(NLL[pos].sum() / LN2 / pb[pos].sum())
    np.save(tmp_path / "val_tokens.npy", vt.astype(np.uint16))
    rr = {"reported": ("final", loss, bpb), "out_dir": str(tmp_path), "tokenizer": str(paths.tokenizer),
          "env": {"TRAIN_SEQ_LEN": "64"}}
    res = {r.rule_id: r for r in evaluate(b.write(tmp_path / "ledger"), rr, load_config())}
    assert res["C4"].status is Status.PASS, res["C4"].summary
    rr["reported"] = ("final", loss, bpb * 1.05)
    res = {r.rule_id: r for r in evaluate(tmp_path / "ledger", rr, load_config())}
    assert res["C4"].status is Status.FAIL


def test_enabled_rules_only_and_stats_are_cumulative():
    b = LedgerBuilder()
    start(b)
    sliding_pass(b)
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    b.stats(unruled={"aten.foo": 3}, escapes=1, traced_ops=10)
    b.stats(unruled={"aten.foo": 5}, escapes=2, traced_ops=50)  # the same counters, later
    v = verdict(b, enabled={"C3", "D3"})
    assert [r.rule_id for r in v.results] == ["C3", "D3"]
    assert v.analysis.stats.traced_ops == 50 and v.analysis.stats.unruled_ops == {"aten.foo": 5}
    assert "5 unruled" in v.result("C3").summary


def test_without_consume_events_the_pass_is_inferred_from_score_order():
    b = LedgerBuilder()
    start(b)
    b.score(range(1, N), NLL[1:] + 0.2)  # a diagnostic pass
    for c in range(1, N, 32):  # the reported pass, no consume recorded (the value escaped untraced)
        b.score(range(c, c + 32), NLL[c : c + 32])
        b.score(range(c, c + 32), NLL[c : c + 32] * 2, grad=True)  # training forwards do not count
    b.reported("final", *numbers(range(1, N), NLL[1:]))
    r = verdict(b).result("C4")
    assert r.status is Status.PASS and "inferred from score order" in r.summary


def test_a_consumed_value_equal_to_the_print_identifies_the_pass_when_nlls_do_not():
    # the tracer missed part of the computation: recorded NLLs differ from what the script summed
    b = LedgerBuilder()
    start(b)
    pos = list(range(1, N))
    dep = [p - 1 for p in pos]
    dep[3] = 4  # and one score looked at its target
    s = b.score(pos, NLL[1:], dep=dep)
    true_loss = float(NLL[1:].mean()) - 0.25
    b.consume(s, value=true_loss, site="train_gpt.py:450")
    b.reported("final", true_loss, 1.0)
    v = verdict(b)
    assert v.analysis.search.match.by_value
    assert status(v, "C4") is Status.INCONCLUSIVE and "cannot be recomputed" in v.result("C4").findings[0].message
    assert status(v, "C1") is Status.FAIL and status(v, "C3") is Status.PASS


def _lora_boundary_ledger(dep_of_boundary: int, boundary_is_bos: bool):
    """Two documents; the second document's first update (its own LoRA state) reads the BOS at 64, which is
    the first document's last target, scored later in the first document's final chunk."""
    vt = VT.copy()
    vt[64] = 1 if boundary_is_bos else 7
    b = LedgerBuilder()
    start(b)
    s1 = b.score(range(1, 33), NLL[1:33], site="train_gpt.py:900")
    s2 = b.score(range(65, 97), NLL[65:97], site="train_gpt.py:900")
    b.update(64, 96, target="param", op="add_", site="train_gpt.py:946")  # doc 2's chunk, BOS at 64 as input
    dep = [p - 1 for p in range(33, 65)]
    dep[-1] = dep_of_boundary
    s3 = b.score(range(33, 65), NLL[33:65], dep=dep, site="train_gpt.py:900")
    s4 = b.score(range(97, N), NLL[97:N], site="train_gpt.py:900")
    b.consume(s1 + s2 + s3 + s4)
    b.reported("final_ttt_lora", *numbers(range(1, N), NLL[1:]))
    return judge(b.ledger(), printed=b.printed(), val_tokens=vt, pos_bytes=PB, seq_lens=[64])


def test_bos_boundary_used_by_the_next_documents_own_state_is_a_warning():
    v = _lora_boundary_ledger(dep_of_boundary=63, boundary_is_bos=True)
    r = v.result("C3")
    assert r.status is Status.WARN, r.summary
    assert r.findings[0].evidence[0].positions == [64]
    assert "document-boundary" in r.findings[0].message


def test_boundary_rule_does_not_excuse_a_real_look_or_an_ordinary_token():
    # the score at the boundary depends on its own target: the state that scored it saw the token. C1 proves
    # that look; the update's BOS end alone proves no C3 use (see proof_ends), so C3 is undecided, not PASS
    v = _lora_boundary_ledger(dep_of_boundary=64, boundary_is_bos=True)
    assert v.result("C1").status is Status.FAIL
    assert v.result("C3").status is Status.INCONCLUSIVE
    # not a BOS: an ordinary token used before its score
    assert _lora_boundary_ledger(dep_of_boundary=63, boundary_is_bos=False).result("C3").status is Status.FAIL


def _phased(update_hi: int, dep_of_rest: int):
    """Phase 1 scores two scattered blocks of documents, a global step trains on them, phase 2 scores the rest
    with the trained weights (so its scores depend on the later, already-scored block)."""
    b = LedgerBuilder()
    start(b)
    first = list(range(1, 33)) + list(range(97, N))
    s1 = b.score(first, NLL[first], dep=[p - 1 for p in first])
    b.consume(s1)
    b.update(1, update_hi, site="train_gpt.py:500")
    rest = list(range(33, 97))
    s2 = b.score(rest, NLL[rest], dep=[dep_of_rest] * len(rest))
    b.consume(s2)
    everything = first + rest
    b.reported("final", *numbers(everything, NLL[everything]))
    return verdict(b)


def test_phased_ttt_on_scattered_scored_documents_is_undecided_not_a_violation():
    # the step's range 1..128 has both ends scored first: the positions 33..96 inside may never have been used
    v = _phased(update_hi=N - 1, dep_of_rest=N - 1)
    c3, c1 = v.result("C3"), v.result("C1")
    assert c3.status is Status.INCONCLUSIVE and c1.status is Status.INCONCLUSIVE
    assert "both ends of that range were scored first" in c3.findings[0].message
    assert c3.findings[0].evidence[0].positions[:2] == [33, 34]
    assert "already scored" in c1.findings[0].message


def test_an_unscored_end_of_a_range_or_an_unscored_later_dependence_proves_the_violation():
    # the step's range ends at 90, which phase 2 scores only after it: proven, C3 FAIL
    c3 = _phased(update_hi=90, dep_of_rest=31).result("C3")
    assert c3.status is Status.FAIL and "an end of its range 1..90" in c3.findings[0].message
    # phase-2 scores depend on position 96, which is scored only with them: C1 FAIL
    c1 = _phased(update_hi=N - 1, dep_of_rest=96).result("C1")
    assert c1.status is Status.FAIL and "a later position (96)" in c1.findings[0].message


def _mixture(zsum: float, then_log: bool):
    """Scores picked from full-vocabulary rows with the given sums; `then_log`: the script takes the log of
    the picked probability afterwards (the tracer writes that as a second score of the same value)."""
    b = LedgerBuilder()
    start(b)
    pos = list(range(1, N))
    s = b.score(pos, NLL[1:], site="train_gpt.py:461", op="gather", zsum=[zsum] * len(pos))
    if then_log:
        s = b.score(pos, NLL[1:], site="train_gpt.py:461", op="log")
    b.consume(s)
    b.reported("final", *numbers(pos, NLL[1:]))
    return verdict(b).result("C2")


def test_scores_picked_from_rows_that_do_not_sum_to_one_fail_c2():
    for then_log in (False, True):
        r = _mixture(3.17, then_log)
        assert r.status is Status.FAIL, r.summary
        assert "sums to 3.1700, not 1" in r.findings[0].message
        assert r.findings[0].evidence[0].where == "train_gpt.py:461"
    # rows that do sum to 1 (within the tolerance) prove nothing: the probe decides
    assert _mixture(1.0 + 1e-5, True).status is Status.NOT_RUN


def test_a_pick_divided_afterwards_is_not_the_scored_value():
    b = LedgerBuilder()
    start(b)
    pos = list(range(1, N))
    b.score(pos, NLL[1:] - 1.0, site="train_gpt.py:461", op="gather", zsum=[5.0] * len(pos))  # counts
    s = b.score(pos, NLL[1:], site="train_gpt.py:462", op="log")  # count / total: another value
    b.consume(s)
    b.reported("final", *numbers(pos, NLL[1:]))
    assert verdict(b).result("C2").status is Status.NOT_RUN
