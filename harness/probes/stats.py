"""The bounds behind the probes' verdicts. Each result carries the numbers a report states.

Three kinds of evidence, none of which trusts the in-process tracer:

* Canary likelihood-ratio test. The harness draws a stream with known probabilities q_t (uniform
  over an alphabet of k tokens at "random" positions, certainty at deterministic ones such as BOS or
  echoed copies). For ANY predictor whose p_t is fixed before x_t and sums to at most 1, however it
  adapts to the past, E[p_t(x_t)/q_t(x_t) | past] = sum_v p_t(v) <= 1, so the running product
  LR = prod p_t(x_t)/q_t(x_t) is a nonnegative supermartingale of mean <= 1 and Ville's inequality
  gives P(LR >= 1/alpha) <= alpha. log LR = sum(-log q_t) - sum NLL_t = entropy - total NLL, so the
  test needs only the total NLL: the printed val_loss times the number of targets.
* Normalization sums. Exhaustive: Z = sum_v exp(-score_t(v)) over the whole vocabulary, exact.
  Sampled: the evaluated terms give a certain lower bound on Z, and with candidates drawn uniformly
  at random the scaled sum is an unbiased estimate of Z, so Markov's inequality bounds the chance a
  legal predictor (Z <= 1 + tol) shows a large estimate.
* Prefix comparisons (C1): scores are compared position by position; a difference is a fact, not a
  statistic (bitwise for fp32 on CPU, a stated tolerance otherwise).
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------- printed-number precision

_NUM = r"([-+]?\d+(?:\.(\d+))?(?:[eE][-+]?\d+)?)"


def printed_half_ulp(line: str | None, key: str = "val_loss", default: float = 5e-5) -> float:
    """Half a unit in the last printed digit of `key:<number>` in a score line (the rounding error of
    the printed value). Unknown line or shape: `default` (4 decimals, the coarsest common format)."""
    if not line:
        return default
    m = re.search(rf"{re.escape(key)}\s*[:=]\s*{_NUM}", line)
    if not m:
        return default
    number, decimals = m.group(1), m.group(2)
    if "e" in number.lower():
        mant, exp = number.lower().split("e")
        d = len(mant.split(".")[1]) if "." in mant else 0
        return 0.5 * 10.0 ** (int(exp) - d)
    return 0.5 * 10.0 ** (-(len(decimals) if decimals else 0))


# ---------------------------------------------------------------- canary likelihood ratio


@dataclass(frozen=True)
class LikelihoodRatioTest:
    """Ville test of 'the scores are a legal predictor's' on a harness-drawn stream."""

    n_targets: int  # scored targets in the stream
    n_random: int  # of which drawn uniformly from the alphabet
    alphabet: int  # k
    entropy_nats: float  # sum of -log q_t over the targets (= n_random * log k)
    total_nll: float  # sum of the scores over the targets, nats
    slack: float  # numeric slack: rounding of the printed value times the number of targets
    alpha: float

    @property
    def log_lr(self) -> float:
        # the slack is charged in the predictor's favour: rounding never makes a legal run fail
        return self.entropy_nats - self.total_nll - self.slack

    @property
    def p_value(self) -> float:
        return 1.0 if self.log_lr <= 0 else math.exp(-self.log_lr)

    @property
    def significant(self) -> bool:
        return self.log_lr > math.log(1.0 / self.alpha)

    @property
    def log_k(self) -> float:
        return math.log(self.alphabet)

    @property
    def mean_nll(self) -> float:
        """Total NLL per random token (deterministic targets' NLL charged to them, >= 0 anyway)."""
        return self.total_nll / max(1, self.n_random)

    @property
    def legal_floor(self) -> float:
        """Mean NLL per random token below which the test rejects at level alpha."""
        return (self.entropy_nats - math.log(1.0 / self.alpha) - self.slack) / max(1, self.n_random)

    @property
    def min_detectable_dip(self) -> float:
        """Dip below log k (nats per random token) that the test is sure to flag."""
        return (math.log(1.0 / self.alpha) + self.slack) / max(1, self.n_random)

    def describe(self) -> str:
        return (f"mean NLL {self.mean_nll:.4f} nats per random token vs log k = {self.log_k:.4f} (k={self.alphabet}); "
                f"legal floor at alpha={self.alpha:g}: {self.legal_floor:.4f}; p = {format_p(self.p_value)} "
                f"(Ville, {self.n_random} random of {self.n_targets} targets)")


def likelihood_ratio_test(
    total_nll: float, n_targets: int, n_random: int, alphabet: int, alpha: float, slack: float = 0.0
) -> LikelihoodRatioTest:
    if n_random <= 0 or alphabet < 2:
        raise ValueError("a canary needs random positions and an alphabet of at least 2 tokens")
    return LikelihoodRatioTest(n_targets, n_random, alphabet, n_random * math.log(alphabet), float(total_nll),
                               float(slack), float(alpha))


@dataclass(frozen=True)
class MeanInterval:
    """Descriptive normal-approximation interval of a mean (per-position scores, when trusted)."""

    n: int
    mean: float
    lo: float
    hi: float
    level: float


def mean_interval(values: Sequence[float], level: float = 0.99) -> MeanInterval:
    n = len(values)
    if n == 0:
        return MeanInterval(0, math.nan, math.nan, math.nan, level)
    m = math.fsum(values) / n
    var = math.fsum((v - m) ** 2 for v in values) / max(1, n - 1)
    z = normal_quantile(0.5 + level / 2.0)
    h = z * math.sqrt(var / n)
    return MeanInterval(n, m, m - h, m + h, level)


def normal_quantile(p: float) -> float:
    """Inverse standard normal CDF (bisection on erf; plenty for report numbers)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must lie in (0, 1)")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


# ---------------------------------------------------------------- normalization sums


def logsumexp_neg(nlls: Iterable[float]) -> float:
    """log sum_i exp(-nll_i), stable; -inf for no terms."""
    xs = [-float(x) for x in nlls]
    if not xs:
        return -math.inf
    m = max(xs)
    if m == -math.inf:
        return -math.inf
    if m == math.inf:
        return math.inf
    return m + math.log(math.fsum(math.exp(x - m) for x in xs))


@dataclass(frozen=True)
class NormalizationSum:
    """sum_v p_t(v) at one position, over the candidates the probe evaluated."""

    position: int
    vocab: int
    forced: int  # candidates always evaluated (e.g. the true token)
    sampled: int  # candidates drawn uniformly from the rest
    log_forced: float  # log of the forced candidates' probability sum
    log_sampled: float  # log of the sampled candidates' probability sum
    top: tuple[tuple[int, float], ...] = ()  # the largest (candidate, probability) pairs seen
    missing: int = 0  # candidates whose score could not be measured

    @property
    def evaluated(self) -> int:
        return self.forced + self.sampled

    @property
    def exhaustive(self) -> bool:
        return self.evaluated >= self.vocab and self.missing == 0

    @property
    def partial_sum(self) -> float:
        """The probabilities actually measured: a certain lower bound on Z."""
        return _exp(self.log_forced) + _exp(self.log_sampled)

    @property
    def estimate(self) -> float:
        """Unbiased estimate of Z (exact when exhaustive): forced terms plus the scaled sample."""
        if self.exhaustive or self.sampled == 0:
            return self.partial_sum
        rest = self.vocab - self.forced
        return _exp(self.log_forced) + _exp(self.log_sampled) * rest / self.sampled


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def normalization_sum(
    position: int,
    vocab: int,
    forced: Mapping[int, float],
    sampled: Mapping[int, float],
    missing: int = 0,
    top: int = 5,
) -> NormalizationSum:
    """forced / sampled: candidate token -> NLL of the score at `position` with that token there."""
    everything = {**sampled, **forced}
    best = sorted(everything.items(), key=lambda kv: kv[1])[:top]
    return NormalizationSum(
        position=position, vocab=vocab, forced=len(forced), sampled=len(sampled),
        log_forced=logsumexp_neg(forced.values()), log_sampled=logsumexp_neg(sampled.values()),
        top=tuple((int(v), _exp(-s)) for v, s in best), missing=missing,
    )


@dataclass
class NormalizationDecision:
    status: str  # "PASS" | "FAIL" | "WARN" | "INCONCLUSIVE"
    message: str
    p_value: float | None = None  # Markov p-value over sampled sites (None when all exhaustive)
    worst: NormalizationSum | None = None


def decide_normalization(sums: Sequence[NormalizationSum], tol: float, alpha: float) -> NormalizationDecision:
    """PASS only when every site was enumerated exhaustively and sums to 1 within tol.

    FAIL when a certain lower bound already exceeds 1 + tol, or when the sampled estimates are so
    large that a legal predictor (E[estimate] = Z <= 1 + tol) shows them with probability < alpha
    (Markov's inequality on their mean). Z < 1 - tol on an exhaustive site: WARN (sub-normalized:
    not a proper distribution, but it cannot lower the score).
    """
    if not sums:
        return NormalizationDecision("INCONCLUSIVE", "no position could be probed")
    over = [s for s in sums if s.partial_sum > 1.0 + tol]
    if over:
        w = max(over, key=lambda s: s.partial_sum)
        how = "the whole vocabulary" if w.exhaustive else f"only {w.evaluated} of {w.vocab} candidates"
        return NormalizationDecision(
            "FAIL", f"at position {w.position} the probabilities of {how} already sum to {w.partial_sum:.4g} > 1",
            None, w)
    sampled = [s for s in sums if not s.exhaustive]
    p = None
    if sampled:
        mean_est = math.fsum(s.estimate for s in sampled) / len(sampled)
        p = 1.0 if mean_est <= 0 else min(1.0, (1.0 + tol) / mean_est)
        if p < alpha:
            w = max(sampled, key=lambda s: s.estimate)
            return NormalizationDecision(
                "FAIL", f"sampled sums estimate Z = {mean_est:.4g} on average over {len(sampled)} position(s) "
                f"(Markov p = {format_p(p)} < {alpha:g})", p, w)
    under = [s for s in sums if s.exhaustive and s.partial_sum < 1.0 - tol]
    if under:
        w = min(under, key=lambda s: s.partial_sum)
        return NormalizationDecision(
            "WARN", f"at position {w.position} the whole vocabulary sums to {w.partial_sum:.6f} < 1 "
            "(sub-normalized: not a proper distribution, though it cannot lower the score)", p, w)
    if sampled:
        w = max(sampled, key=lambda s: s.estimate)
        return NormalizationDecision(
            "INCONCLUSIVE", f"no violation among {sum(s.evaluated for s in sampled)} sampled candidates at "
            f"{len(sampled)} position(s) (largest estimate Z = {w.estimate:.4g}, Markov p = {format_p(p)}); "
            "only an exhaustive enumeration can show Z = 1", p, w)
    w = max(sums, key=lambda s: abs(s.partial_sum - 1.0))
    return NormalizationDecision(
        "PASS", f"{len(sums)} position(s) enumerated over all {w.vocab} tokens: |Z - 1| <= "
        f"{abs(w.partial_sum - 1.0):.2e} (tolerance {tol:g})", None, w)


# ---------------------------------------------------------------- C1 prefix comparison


@dataclass
class PrefixComparison:
    """Scores at positions <= upto in a base run and a run whose tokens after `upto` differ."""

    upto: int
    atol: float
    compared: int = 0
    changed: list[int] = field(default_factory=list)  # positions whose score moved by more than atol
    max_abs_diff: float = 0.0
    missing: list[int] = field(default_factory=list)  # scored in one run, not in the other

    @property
    def identical(self) -> bool:
        return not self.changed and not self.missing and self.compared > 0


def _gap(a: float, b: float) -> float:
    return abs(a - b) if math.isfinite(a) and math.isfinite(b) else math.inf


def compare_prefix(base: Mapping[int, Any], other: Mapping[int, Any], upto: int, atol: float,
                   only: Container[int] | None = None) -> PrefixComparison:
    """Scores at positions <= upto (and in `only`, when given) of two runs, position by position. A value is
    a score, or the tuple of a position's scores in event order (a pass that scores it more than once)."""
    out = PrefixComparison(upto=upto, atol=atol)
    keys = sorted(p for p in set(base) | set(other) if p <= upto and (only is None or p in only))
    for p in keys:
        a, b = base.get(p), other.get(p)
        if a is None or b is None:
            out.missing.append(p)
            continue
        out.compared += 1
        if a == b:
            continue
        if isinstance(a, tuple) or isinstance(b, tuple):
            ta, tb = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
            d = max(map(_gap, ta, tb)) if len(ta) == len(tb) else math.inf
        else:
            d = _gap(a, b)
        out.max_abs_diff = max(out.max_abs_diff, d)
        if d > atol:
            out.changed.append(p)
    return out


# ---------------------------------------------------------------- formatting


def format_p(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    if p >= 0.001:
        return f"{p:.3g}"
    if p == 0:
        return "0"
    return f"{p:.1e}"
