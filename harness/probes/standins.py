"""Python predictors whose legality is known by construction: the probes' test bench.

Each is a function tokens -> NLL per position (index = position; entry 0 unused), scored left to
right like a score-first evaluation. Use with execute.ModelExecutor.

    legal_cache        adaptive bigram cache over already-scored tokens, Dirichlet-smoothed: causal,
                       normalized (Track B, legal)
    fixed_bigram       a fixed bigram model (Track A, legal); with boost_target it looks at the target
    hashed_target_blend the #940 pattern: a hashed n-gram count whose key includes the target, blended
                       only into the target's probability (C2 violation; sums above 1)
    future_peek        a normalized distribution that boosts the NEXT token (C1 violation)
    target_peek        a distribution that boosts the target itself, renormalized per target (C1/C2
                       violation: each row sums to 1, but the row depends on x_t; the C2 probes see it)
    phased_cache       documents scored in phases, longest first, each phase from a bigram cache of the
                       phases before it (phased TTT: legal, out of stream order); with peek_next_phase
                       the cache also holds the next phase's documents, not yet scored (C1 violation)

A stand-in that scores out of stream order carries `score_order(tokens) -> rank per position` (equal
ranks: scored in one event), which ModelExecutor reports as the run's score order.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

ScoreFn = Callable[[np.ndarray], np.ndarray]


def _bigram_probs(counts: np.ndarray, row: int, alpha: float) -> np.ndarray:
    c = counts[row]
    return (c + alpha) / (c.sum() + alpha * c.size)


def legal_cache(vocab: int, alpha: float = 0.5) -> ScoreFn:
    def score(tokens: np.ndarray) -> np.ndarray:
        counts = np.zeros((vocab, vocab))
        out = np.zeros(tokens.size)
        for t in range(1, tokens.size):
            prev, y = int(tokens[t - 1]), int(tokens[t])
            out[t] = -math.log(_bigram_probs(counts, prev, alpha)[y])
            counts[prev, y] += 1  # update after scoring
        return out

    return score


def fixed_bigram(vocab: int, seed: int = 0, boost_target: float = 0.0) -> ScoreFn:
    """A fixed (Track A) bigram model: every score depends only on the previous token. boost_target > 0
    makes it look at the target (a C2 violation that the batched probe sees in one stream)."""
    logits = np.random.default_rng(seed).normal(0, 2, size=(vocab, vocab))

    def score(tokens: np.ndarray) -> np.ndarray:
        out = np.zeros(tokens.size)
        for t in range(1, tokens.size):
            row = logits[int(tokens[t - 1])].copy()
            y = int(tokens[t])
            row[y] += boost_target
            out[t] = -(row[y] - np.logaddexp.reduce(row))
        return out

    return score


def hashed_target_blend(vocab: int, buckets: int = 61, lam: float = 0.5, alpha: float = 0.5) -> ScoreFn:
    def score(tokens: np.ndarray) -> np.ndarray:
        counts = np.zeros((vocab, vocab))
        full = np.zeros(buckets)  # hash(prev, target) -> count
        ctx = np.zeros(buckets)  # hash(prev) -> count
        out = np.zeros(tokens.size)
        for t in range(1, tokens.size):
            prev, y = int(tokens[t - 1]), int(tokens[t])
            p = _bigram_probs(counts, prev, alpha)[y]
            hf = (prev * 1_000_003 + y * 7919) % buckets  # the key includes the target
            hc = (prev * 1_000_003) % buckets
            if full[hf] > 0 and ctx[hc] > 0:
                p = (1 - lam) * p + lam * min(1.0, full[hf] / ctx[hc])
            out[t] = -math.log(p)
            counts[prev, y] += 1
            full[hf] += 1
            ctx[hc] += 1
        return out

    return score


def future_peek(vocab: int, boost: float = 3.0, alpha: float = 0.5) -> ScoreFn:
    def score(tokens: np.ndarray) -> np.ndarray:
        counts = np.zeros((vocab, vocab))
        out = np.zeros(tokens.size)
        for t in range(1, tokens.size):
            prev, y = int(tokens[t - 1]), int(tokens[t])
            logits = np.log(_bigram_probs(counts, prev, alpha))
            if t + 1 < tokens.size:
                nxt = int(tokens[t + 1])  # looks at the next token: boosts it, and its value sets a temperature
                logits[nxt] += boost
                logits = logits / (1.0 + 0.05 * (nxt % 7))
            logp = logits - np.logaddexp.reduce(logits)
            out[t] = -logp[y]
            counts[prev, y] += 1
        return out

    return score


def target_peek(vocab: int, boost: float = 2.0, alpha: float = 0.5) -> ScoreFn:
    def score(tokens: np.ndarray) -> np.ndarray:
        counts = np.zeros((vocab, vocab))
        out = np.zeros(tokens.size)
        for t in range(1, tokens.size):
            prev, y = int(tokens[t - 1]), int(tokens[t])
            logits = np.log(_bigram_probs(counts, prev, alpha))
            logits[y] += boost  # looks at the target, then renormalizes: every row sums to 1
            logp = logits - np.logaddexp.reduce(logits)
            out[t] = -logp[y]
            counts[prev, y] += 1
        return out

    return score


def _phases(tokens: np.ndarray, docs_per_phase: int) -> np.ndarray:
    """Per position p >= 1 (the score of token p from token p-1), the phase that scores it: documents
    (BOS-delimited, position p goes with the document holding p-1) sorted longest first, then by place,
    taken docs_per_phase at a time. Entry 0 is unused (-1)."""
    starts = np.flatnonzero(tokens == 1).tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    bounds = starts + [int(tokens.size)]
    docs = [(bounds[k], bounds[k + 1]) for k in range(len(starts))]
    ranked = sorted(range(len(docs)), key=lambda k: (-(docs[k][1] - docs[k][0]), k))
    phase_of_doc = {k: i // max(1, docs_per_phase) for i, k in enumerate(ranked)}
    out = np.full(tokens.size, -1, dtype=np.int64)
    for k, (a, b) in enumerate(docs):
        out[a + 1:b + 1] = phase_of_doc[k]  # positions whose previous token lies in [a, b)
    out[0] = -1
    return out[:tokens.size]


def phased_cache(vocab: int, docs_per_phase: int = 2, alpha: float = 0.5, peek_next_phase: bool = False) -> ScoreFn:
    def score(tokens: np.ndarray) -> np.ndarray:
        phase = _phases(tokens, docs_per_phase)
        out = np.zeros(tokens.size)
        counts = np.zeros((vocab, vocab))

        def add(ph: int, into: np.ndarray) -> None:
            for t in np.flatnonzero(phase == ph).tolist():
                into[int(tokens[t - 1]), int(tokens[t])] += 1

        for ph in range(int(phase.max()) + 1 if tokens.size > 1 else 0):
            seen = counts.copy()
            if peek_next_phase:
                add(ph + 1, seen)  # trains on documents it has not scored yet
            for t in np.flatnonzero(phase == ph).tolist():
                out[t] = -math.log(_bigram_probs(seen, int(tokens[t - 1]), alpha)[int(tokens[t])])
            add(ph, counts)  # after scoring the phase
        return out

    score.score_order = lambda tokens: _phases(tokens, docs_per_phase)  # type: ignore[attr-defined]
    return score


STANDINS: dict[str, tuple[Callable[[int], ScoreFn], dict[str, str]]] = {
    "legal_cache": (legal_cache, {"C1": "PASS", "C2": "PASS"}),
    "fixed_bigram": (fixed_bigram, {"C1": "PASS", "C2": "PASS"}),
    "fixed_target_peek": (lambda v: fixed_bigram(v, boost_target=1.0), {"C2": "FAIL"}),
    "hashed_target_blend": (hashed_target_blend, {"C2": "FAIL"}),
    "future_peek": (future_peek, {"C1": "FAIL"}),
    # looking at the target is a C1 matter too, but only C2's probes (substitution, canary) can see it
    "target_peek": (target_peek, {"C2": "FAIL"}),
}
