"""B5 significance: does a submission beat the previous record by the required margin?

The README asks a new record to improve on the previous one by at least 0.005 nats at p < 0.01,
typically over 3 seeds. We test the per-seed val_loss values with a one-sample, one-sided Student t test:

    H0: mean(val_loss) >= reference - margin        H1: mean(val_loss) < reference - margin

No scipy: the Student t CDF comes from the regularized incomplete beta function, evaluated with its
continued fraction (modified Lentz). Quantiles are found by bisection on the CDF (used in tests and to
say how far a result is from significance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_EPS = 1e-14
_TINY = 1e-300
_MAX_ITER = 500


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """Continued fraction of I_x(a, b) (without its prefactor), by the modified Lentz method.

    The fraction is 1/(1 + d1/(1 + d2/(1 + ...))) with
    d_{2m}   =  m (b - m) x / ((a + 2m - 1)(a + 2m))
    d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
    """
    # Lentz: f = b0 + a1/(b1 + a2/(b2 + ...)); here every b_j = 1 and the a_j are the d_j above.
    f = _TINY
    c = f
    d = 0.0
    for j in range(1, 2 * _MAX_ITER + 2):
        if j == 1:
            aj = 1.0  # the leading 1/(1 + ...)
        else:
            k = j - 1  # index of d_k
            m = k // 2
            if k % 2 == 0:
                aj = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
            else:
                aj = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + aj * d
        d = _TINY if abs(d) < _TINY else d
        c = 1.0 + aj / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = c * d
        f *= delta
        if j > 2 and abs(delta - 1.0) < _EPS:
            return f
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (x={x}, a={a}, b={b})")


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) for 0 <= x <= 1, a > 0, b > 0."""
    if not (a > 0 and b > 0):
        raise ValueError("a and b must be positive")
    if math.isnan(x) or x < 0.0 or x > 1.0:
        raise ValueError("x must lie in [0, 1]")
    if x == 0.0 or x == 1.0:
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    # the fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(1.0 - x, b, a) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    if not df > 0:
        raise ValueError("df must be positive")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    t2 = t * t
    if t2 < df:
        # small |t|: P(|T| < |t|) = I_{t^2/(df+t^2)}(1/2, df/2); the argument stays small, where
        # df/(df+t^2) would round next to 1 and lose the digits that matter
        inner = regularized_incomplete_beta(t2 / (df + t2), 0.5, df / 2.0)
        return 0.5 + 0.5 * inner if t > 0 else 0.5 - 0.5 * inner
    # large |t|: P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2)
    tail = 0.5 * regularized_incomplete_beta(df / (df + t2), df / 2.0, 0.5)
    return 1.0 - tail if t > 0 else tail


def student_t_ppf(p: float, df: float) -> float:
    """The t with student_t_cdf(t, df) == p (bisection; |error| < 1e-10 relative)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must lie in (0, 1)")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
        if hi > 1e300:
            return math.inf
    for _ in range(400):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass
class SignificanceResult:
    n: int
    mean: float
    std: float | None  # sample standard deviation (n - 1); None when n < 2
    reference: float  # the previous record's val_loss (nats)
    margin: float  # required improvement (0.005 nats)
    t_stat: float | None
    p_value: float | None  # one-sided: P(T <= t) under H0 at the boundary mean = reference - margin
    alpha: float
    significant: bool | None  # None: the test could not be made (too few seeds, bad values)
    message: str
    threshold: float = 0.0  # reference - margin: the mean must be below this
    df: int | None = None


def _fmt(x: float) -> str:
    return f"{x:.5f}"


def one_sided_improvement_test(values: list[float], reference: float, *, margin: float = 0.005,
                               alpha: float = 0.01) -> SignificanceResult:
    """Is mean(values) significantly below reference - margin? (values: per-seed val_loss in nats)"""
    vals = [float(v) for v in values]
    n = len(vals)
    threshold = float(reference) - float(margin)
    base = dict(n=n, reference=float(reference), margin=float(margin), alpha=float(alpha), threshold=threshold)
    bad = [v for v in vals if not math.isfinite(v)]
    if not math.isfinite(threshold) or not 0.0 < alpha < 1.0:
        return SignificanceResult(mean=math.nan, std=None, t_stat=None, p_value=None, significant=None,
                                  message=f"cannot test: reference {reference!r}, margin {margin!r} or "
                                          f"alpha {alpha!r} is not usable", **base)
    if bad:
        return SignificanceResult(mean=math.nan, std=None, t_stat=None, p_value=None, significant=None,
                                  message=f"cannot test: {len(bad)} of {n} val_loss value(s) are not finite",
                                  **base)
    if n < 2:
        mean = vals[0] if vals else math.nan
        what = "no seeds" if n == 0 else f"1 seed (val_loss {_fmt(mean)})"
        return SignificanceResult(mean=mean, std=None, t_stat=None, p_value=None, significant=None,
                                  message=f"cannot test significance with {what}: need at least 2 seeds",
                                  **base)
    mean = math.fsum(vals) / n
    var = math.fsum((v - mean) ** 2 for v in vals) / (n - 1)
    std = math.sqrt(var)
    gap = threshold - mean  # > 0: the mean beats the threshold
    head = (f"mean val_loss {_fmt(mean)} over {n} seeds vs reference {_fmt(reference)} - {margin:g} "
            f"= {_fmt(threshold)}")
    # all seeds equal (to rounding): the sample has no spread and the answer is deterministic
    if std <= 1e-12 * max(1.0, abs(mean)):
        sig = gap > 0
        return SignificanceResult(
            mean=mean, std=0.0, t_stat=None, p_value=0.0 if sig else 1.0, significant=sig, df=n - 1,
            message=f"{head}: all seeds equal, so the mean {'is' if sig else 'is not'} below the threshold "
                    f"with certainty ({'significant' if sig else 'not significant'})", **base)
    se = std / math.sqrt(n)
    t = (mean - threshold) / se
    p = student_t_cdf(t, n - 1)
    sig = p < alpha
    verdict = "significant" if sig else "not significant"
    return SignificanceResult(
        mean=mean, std=std, t_stat=t, p_value=p, significant=sig, df=n - 1,
        message=f"{head}: t={t:.3f}, one-sided p={p:.4g} (df={n - 1}); {verdict} at p<{alpha:g}", **base)
