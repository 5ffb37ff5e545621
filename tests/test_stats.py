"""harness.check.significance: Student t from the incomplete beta, and the B5 one-sided improvement test."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.check.significance import (
    one_sided_improvement_test,
    regularized_incomplete_beta,
    student_t_cdf,
    student_t_ppf,
)

# (p, df, t_p) from standard Student t tables
KNOWN_QUANTILES = [
    (0.99, 2, 6.964557), (0.75, 2, 0.816497), (0.99, 4, 3.746947), (0.975, 1, 12.706205),
    (0.975, 2, 4.302653), (0.95, 10, 1.812461), (0.995, 30, 2.749996), (0.9, 3, 1.637744),
    (0.975, 30, 2.042272), (0.975, 120, 1.979930), (0.75, 1, 1.0),
]


@pytest.mark.parametrize("p, df, t", KNOWN_QUANTILES)
def test_known_quantiles(p, df, t):
    assert student_t_ppf(p, df) == pytest.approx(t, abs=2e-6)
    assert student_t_cdf(t, df) == pytest.approx(p, abs=1e-6)
    assert student_t_cdf(-t, df) == pytest.approx(1 - p, abs=1e-6)


def test_incomplete_beta_closed_forms():
    # I_x(2, 3) = sum_{j=2..4} C(4, j) x^j (1-x)^(4-j)
    x = 0.3
    exact = sum(math.comb(4, j) * x**j * (1 - x) ** (4 - j) for j in range(2, 5))
    assert regularized_incomplete_beta(x, 2, 3) == pytest.approx(exact, rel=1e-12)
    assert regularized_incomplete_beta(0.7, 1, 1) == pytest.approx(0.7, rel=1e-12)  # uniform
    assert regularized_incomplete_beta(0.0, 2, 3) == 0.0 and regularized_incomplete_beta(1.0, 2, 3) == 1.0
    with pytest.raises(ValueError):
        regularized_incomplete_beta(1.5, 2, 3)
    with pytest.raises(ValueError):
        regularized_incomplete_beta(0.5, 0, 3)


@settings(max_examples=200, deadline=None)
@given(t=st.floats(min_value=-1e4, max_value=1e4, allow_nan=False))
def test_cdf_matches_closed_forms_for_one_and_two_degrees_of_freedom(t):
    assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-10)
    assert student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-10)


def test_tiny_t_keeps_its_precision():
    # found by hypothesis: df/(df+t^2) rounds next to 1 for |t| ~ 1e-8 and used to lose ~5e-10
    t = 1.2853354218917915e-08
    assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-15)
    assert student_t_cdf(-t, 7) < 0.5 < student_t_cdf(t, 7)


@settings(max_examples=150, deadline=None)
@given(t=st.floats(min_value=-50, max_value=50, allow_nan=False), df=st.integers(min_value=1, max_value=200))
def test_cdf_symmetric_monotone_and_bounded(t, df):
    c = student_t_cdf(t, df)
    assert 0.0 <= c <= 1.0
    assert c + student_t_cdf(-t, df) == pytest.approx(1.0, abs=1e-10)
    assert student_t_cdf(t + 0.01, df) >= c - 1e-12


def test_large_df_approaches_the_normal():
    phi = 0.5 * (1 + math.erf(1.96 / math.sqrt(2)))
    assert student_t_cdf(1.96, 100_000) == pytest.approx(phi, abs=1e-5)
    assert student_t_cdf(math.inf, 3) == 1.0 and student_t_cdf(-math.inf, 3) == 0.0


# ------------------------------------------------------------------ B5 test

def test_clear_improvement_is_significant():
    # mean 1.930, reference 1.940: beats reference - 0.005 = 1.935 by 0.005 with sd 0.001
    r = one_sided_improvement_test([1.9300, 1.9310, 1.9290], 1.9400)
    assert r.n == 3 and r.mean == pytest.approx(1.93) and r.std == pytest.approx(0.001)
    assert r.t_stat == pytest.approx((1.93 - 1.935) / (0.001 / math.sqrt(3)))
    assert r.p_value == pytest.approx(student_t_cdf(r.t_stat, 2))
    assert r.p_value < 0.01 and r.significant is True
    assert "significant at p<0.01" in r.message and "1.93500" in r.message


def test_improvement_smaller_than_the_margin_is_not_significant():
    # beats the reference by 0.003 nats only: below the required 0.005
    r = one_sided_improvement_test([1.9370, 1.9371, 1.9369], 1.9400)
    assert r.t_stat > 0 and r.p_value > 0.5 and r.significant is False
    assert "not significant" in r.message


def test_noisy_seeds_fail_at_p001_but_pass_the_practised_p025():
    vals = [1.928, 1.936, 1.930]
    strict = one_sided_improvement_test(vals, 1.940, alpha=0.01)
    loose = one_sided_improvement_test(vals, 1.940, alpha=0.25)
    assert strict.p_value == pytest.approx(loose.p_value)
    assert strict.significant is False and loose.significant is True


def test_p_value_against_a_table_quantile():
    # with df=2, t = -t_{0.99,2} gives p = 0.01 exactly
    sd = 0.002
    n = 3
    mean = 1.935 - 6.964557 * sd / math.sqrt(n)
    vals = [mean - sd, mean, mean + sd]  # sample sd = sd
    r = one_sided_improvement_test(vals, 1.940)
    assert r.p_value == pytest.approx(0.01, abs=1e-6)


@pytest.mark.parametrize("vals", [[], [1.93]])
def test_fewer_than_two_seeds_gives_no_verdict(vals):
    r = one_sided_improvement_test(vals, 1.94)
    assert r.significant is None and r.p_value is None and r.t_stat is None
    assert "need at least 2 seeds" in r.message


def test_zero_variance_is_decided_without_a_t_statistic():
    good = one_sided_improvement_test([1.93, 1.93, 1.93], 1.94)
    assert good.significant is True and good.p_value == 0.0 and good.t_stat is None and good.std == 0.0
    bad = one_sided_improvement_test([1.937, 1.937], 1.94)
    assert bad.significant is False and bad.p_value == 1.0


def test_non_finite_inputs_give_no_verdict():
    assert one_sided_improvement_test([1.93, math.nan], 1.94).significant is None
    assert one_sided_improvement_test([1.93, 1.92], math.inf).significant is None
    assert one_sided_improvement_test([1.93, 1.92], 1.94, alpha=0).significant is None


@settings(max_examples=100, deadline=None)
@given(vals=st.lists(st.floats(min_value=1.0, max_value=3.0, allow_nan=False), min_size=2, max_size=8),
       ref=st.floats(min_value=1.0, max_value=3.0, allow_nan=False))
def test_never_crashes_and_p_is_a_probability(vals, ref):
    r = one_sided_improvement_test(vals, ref)
    assert r.significant in (True, False)
    assert 0.0 <= r.p_value <= 1.0
    # significance means the mean really is below the threshold
    if r.significant:
        assert r.mean < ref - 0.005
