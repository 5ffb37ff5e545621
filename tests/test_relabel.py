"""The score-order replay (harness.verdict.relabel): a second run with positions labeled in scoring order
decides what one interval per value left undecided, on hand-written ledgers of both runs.

Stream of 129 tokens, documents opening with BOS at 0, 40 and 80: D0 = 0..39 (targets 1..40, its last
target the BOS at 40), D1 = 40..79 (targets 41..80), D2 = 80..128 (targets 81..128). Phased TTT scores D0
and D2 first, takes a global SGD step on their tokens (0..40 and 80..128), then scores D1 with the adapted
model. Run 1 sees the step over positions 0..128: it cannot tell whether D1 (unscored) was used."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data.shards import BOS_ID
from harness.results import Status
from harness.verdict import judge
from harness.verdict.handwritten import LedgerBuilder
from harness.verdict.relabel import decide, labels_from_runs, score_order_runs, undecided

from test_verdict import NLL, PB, VT, N, numbers, start

VT3 = VT.copy()
VT3[[0, 40, 80]] = BOS_ID
P1 = [*range(1, 41), *range(81, N)]
P2 = list(range(41, 81))


def _phased(lab=lambda p: p, sgd_tokens=(*range(0, 41), *range(80, N)), nll=NLL, relabeled=None) -> LedgerBuilder:
    """The phased run's ledger; `lab` maps positions to labels (identity: run 1)."""
    b = LedgerBuilder()
    start(b)
    window = lambda d0, p: max(lab(q) for q in range(d0, p))  # noqa: E731 - causal, from the document's BOS
    s = b.score([lab(p) for p in range(1, 41)], nll[1:41], dep=[window(0, p) for p in range(1, 41)], site="t.py:10")
    s += b.score([lab(p) for p in range(81, N)], nll[81:N], dep=[window(80, p) for p in range(81, N)], site="t.py:10")
    labs = [lab(q) for q in sgd_tokens]
    b.update(min(labs), max(labs), site="t.py:20")  # the global step: one interval over what it read
    params = max(labs)
    s += b.score([lab(p) for p in P2], nll[41:81], dep=[max(params, window(40, p)) for p in P2], site="t.py:10")
    b.consume(s, site="t.py:30")
    b.reported("final", *numbers(range(1, N), nll[1:N]))
    b.stats(relabeled=relabeled)
    return b


def _judge(b: LedgerBuilder, replay=None):
    return judge(b.ledger(), printed=b.printed(), val_tokens=VT3, pos_bytes=PB, seq_lens=[64], replay=replay)


def _replayed(sgd_tokens=(*range(0, 41), *range(80, N)), nll2=NLL, relabeled=True):
    v1 = _judge(_phased(sgd_tokens=sgd_tokens))
    an1 = v1.analysis
    runs = score_order_runs(an1, N)
    label = labels_from_runs(runs, N)
    b2 = _phased(lab=lambda p: int(label[p]), sgd_tokens=sgd_tokens, nll=nll2, relabeled=relabeled)
    led2 = b2.ledger()
    rp = decide(an1, led2, runs, _phased(sgd_tokens=sgd_tokens).printed(), PB, 1e-6, 1e-6)
    return v1, rp, _judge(_phased(sgd_tokens=sgd_tokens), replay=rp)


def test_the_labels_put_each_scoring_event_in_one_block_and_an_opening_bos_with_its_document():
    v1 = _judge(_phased())
    label = labels_from_runs(score_order_runs(v1.analysis, N), N)
    assert sorted(label.tolist()) == list(range(N))
    first = [0, *range(1, 41), 80, *range(81, N)]  # D0 and D2 (with D2's opening BOS), then D1
    assert sorted(label[first].tolist()) == list(range(len(first)))
    assert label[P2[:-1]].min() == len(first)


def test_runs_that_are_not_a_permutation_are_refused():
    with pytest.raises(ValueError):
        labels_from_runs([[0, 5], [3, 4]], 7)
    with pytest.raises(ValueError):
        labels_from_runs([[0, 5]], 7)
    with pytest.raises(ValueError):
        labels_from_runs([["a", 1]])


def test_run_one_alone_leaves_phased_ttt_undecided():
    v1 = _judge(_phased())
    assert v1.result("C1").status is Status.INCONCLUSIVE
    assert v1.result("C3").status is Status.INCONCLUSIVE
    assert undecided(v1.analysis) > 0


def test_the_replay_decides_phased_ttt_on_scored_documents():
    _, rp, v = _replayed()
    assert rp.used, rp.why
    assert not rp.c1_proven and not rp.c3_proven
    c1, c3 = v.result("C1"), v.result("C3")
    # D1's scores use a model trained on D2's opening BOS (80), which is also D1's last target: a boundary
    assert c1.status is Status.WARN and "score-order replay" in c1.summary, c1.summary
    assert c3.status is Status.WARN, c3.summary
    assert rp.c3_boundary == {80}
    assert set(P2[:-1]) <= rp.c3_clear


def test_the_replay_proves_a_global_step_on_an_unscored_document():
    v1, rp, v = _replayed(sgd_tokens=tuple(range(0, N)))  # the step also read D1 before scoring it
    assert v1.result("C3").status is not Status.PASS
    assert rp.used and rp.c3_proven
    c3 = v.result("C3")
    assert c3.status is Status.FAIL, c3.summary
    assert any(f.status is Status.FAIL and "relabeled" in f.message for f in c3.findings)


def test_a_replay_that_does_not_reproduce_run_one_decides_nothing():
    nll2 = NLL.copy()
    nll2[50] += 1e-9  # within the printed tolerance: the pass is found, its scores differ
    _, rp, v = _replayed(nll2=nll2)
    assert not rp.used and "other values" in rp.why
    assert v.result("C1").status is Status.INCONCLUSIVE
    assert v.result("C3").status is Status.INCONCLUSIVE


def test_a_replay_with_a_process_that_traced_without_the_labels_decides_nothing():
    _, rp, v = _replayed(relabeled=False)
    assert not rp.used and "without the relabeling" in rp.why
    assert v.result("C1").status is Status.INCONCLUSIVE
    assert v.result("C3").status is Status.INCONCLUSIVE
