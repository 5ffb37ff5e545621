"""Bounds behind the probes: Ville likelihood-ratio test, normalization sums, prefix comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.probes.stats import (
    compare_prefix,
    decide_normalization,
    likelihood_ratio_test,
    logsumexp_neg,
    mean_interval,
    normal_quantile,
    normalization_sum,
    printed_half_ulp,
)


@pytest.mark.parametrize(
    "line, want",
    [
        ("final_int8_zlib_roundtrip_exact val_loss:2.05372224 val_bpb:1.21632999", 5e-9),
        ("final_int8_zlib_roundtrip val_loss:2.0537 val_bpb:1.2163 eval_time:67952ms", 5e-5),
        ("ttt:done val_loss=1.768268 val_bpb=1.047270", 5e-7),
        ("x val_loss: 3 val_bpb: 1", 0.5),
        ("x val_loss:2.5e-1 val_bpb:1", 0.005),
        ("no score here", 5e-5),
        (None, 5e-5),
    ],
)
def test_printed_half_ulp(line, want):
    assert printed_half_ulp(line) == pytest.approx(want)


def test_lr_test_numbers():
    k, n = 8, 1000
    # a legal uniform predictor on an alphabet of 8: total NLL = n log k exactly -> no evidence
    t = likelihood_ratio_test(n * math.log(k), n, n, k, alpha=1e-3)
    assert t.log_lr == pytest.approx(0.0, abs=1e-9)
    assert t.p_value == 1.0 and not t.significant
    # a dip of exactly ln(1/alpha) total is the boundary; a bit more is significant
    t2 = likelihood_ratio_test(n * math.log(k) - math.log(1e3) - 0.01, n, n, k, alpha=1e-3)
    assert t2.significant and t2.p_value < 1e-3
    assert t2.legal_floor == pytest.approx(math.log(k) - math.log(1e3) / n)
    assert t2.min_detectable_dip == pytest.approx(math.log(1e3) / n)
    # slack is charged in the predictor's favour
    t3 = likelihood_ratio_test(n * math.log(k) - math.log(1e3) - 0.01, n, n, k, alpha=1e-3, slack=0.02)
    assert not t3.significant
    with pytest.raises(ValueError):
        likelihood_ratio_test(1.0, 10, 0, 8, 1e-3)


def test_ville_bound_holds_for_lucky_legal_predictors():
    """A legal predictor that bets 0.9 on a random guess before seeing x_t is sometimes lucky; the
    test must still reject no more than alpha of the time (Ville), for any such strategy."""
    rng = np.random.default_rng(12345)
    k, n, trials, alpha = 8, 20, 20000, 0.05
    x = rng.integers(0, k, size=(trials, n))
    guess = rng.integers(0, k, size=(trials, n))
    p = np.where(x == guess, 0.9, 0.1 / (k - 1))
    total = -np.log(p).sum(axis=1)
    rejects = sum(likelihood_ratio_test(float(tt), n, n, k, alpha).significant for tt in total)
    # binomial slack: 4 standard deviations above alpha
    assert rejects / trials <= alpha + 4 * math.sqrt(alpha * (1 - alpha) / trials)


def test_lr_test_has_power_against_a_target_seeing_predictor():
    rng = np.random.default_rng(7)
    k, n = 8, 300
    x = rng.integers(0, k, size=n)
    # puts 0.3 on the true token (it looked), spreads the rest: mean NLL ~ 1.2 < log 8 ~ 2.08
    total = float(-np.log(np.full(n, 0.3)).sum())
    assert likelihood_ratio_test(total, n, n, k, 1e-3).significant
    del x


@given(st.lists(st.floats(min_value=0.0, max_value=50.0), min_size=1, max_size=40))
@settings(max_examples=60, deadline=None)
def test_logsumexp_neg_matches_direct_sum(nlls):
    direct = sum(math.exp(-x) for x in nlls)
    assert math.exp(logsumexp_neg(nlls)) == pytest.approx(direct, rel=1e-9)


def _nll_of(p):
    return {i: -math.log(x) for i, x in enumerate(p)}


def test_normalization_exhaustive_pass_fail_warn():
    p = np.full(50, 1 / 50)
    ok = normalization_sum(10, 50, {0: -math.log(p[0])}, {i: -math.log(p[i]) for i in range(1, 50)})
    assert ok.exhaustive and ok.partial_sum == pytest.approx(1.0)
    d = decide_normalization([ok], 1e-3, 1e-3)
    assert d.status == "PASS"
    over = normalization_sum(10, 50, {0: -math.log(0.5)}, {i: -math.log(1 / 50) for i in range(1, 50)})
    assert decide_normalization([over], 1e-3, 1e-3).status == "FAIL"
    under = normalization_sum(10, 50, {0: -math.log(0.001)}, {i: -math.log(1 / 50) for i in range(1, 50)})
    assert decide_normalization([under], 1e-3, 1e-3).status == "WARN"


def test_normalization_sampled_never_passes_and_estimates_unbiased():
    rng = np.random.default_rng(0)
    V = 200
    p = rng.dirichlet(np.ones(V))
    forced = {0: -math.log(p[0])}
    ests = []
    for _ in range(400):
        s = rng.choice(np.arange(1, V), size=20, replace=False)
        ns = normalization_sum(3, V, forced, {int(i): -math.log(p[i]) for i in s})
        assert not ns.exhaustive
        assert ns.partial_sum <= 1.0 + 1e-12  # a certain lower bound never exceeds the truth
        ests.append(ns.estimate)
    assert np.mean(ests) == pytest.approx(1.0, abs=0.03)
    d = decide_normalization([ns], 1e-3, 1e-3)
    assert d.status == "INCONCLUSIVE"
    # a sampled sum that is certainly above 1 fails without any statistics
    big = normalization_sum(3, V, {0: -math.log(0.9)}, {1: -math.log(0.5)})
    assert decide_normalization([big], 1e-3, 1e-3).status == "FAIL"


def test_compare_prefix():
    a = {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0}
    b = {1: 1.0, 2: 2.0 + 1e-7, 3: 3.0, 4: 9.0}
    c = compare_prefix(a, b, upto=3, atol=0.0)
    assert c.changed == [2] and c.compared == 3 and not c.identical
    assert compare_prefix(a, b, upto=3, atol=1e-6).identical
    assert compare_prefix(a, {1: 1.0}, upto=3, atol=0.0).missing == [2, 3]


def test_mean_interval_and_quantile():
    assert normal_quantile(0.975) == pytest.approx(1.959964, abs=1e-5)
    mi = mean_interval([1.0, 2.0, 3.0, 4.0], 0.95)
    assert mi.mean == 2.5 and mi.lo < 2.5 < mi.hi
