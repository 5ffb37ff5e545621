"""An n-gram cache, two ways. Filled over the whole validation stream before scoring (two passes) it lets
every score see the future: illegal (C1). Filled after each token is scored (one pass) it is legal."""

import numpy as np
import torch
from hypothesis import given, settings

from harness.testing import traced
from harness.testing import strategies as hst

V = 32


def score_with_cache(tokens: np.ndarray, two_pass: bool) -> torch.Tensor:
    """Bigram counts mixed with a uniform model; targets 1..n-1 scored in chunks of 4."""
    counts = np.zeros((V, V))
    if two_pass:  # pass 1: count every bigram of the stream
        np.add.at(counts, (tokens[:-1].astype(np.int64), tokens[1:].astype(np.int64)), 1.0)
    losses = []
    for lo in range(0, tokens.size - 1, 4):
        prev, tgt = tokens[lo: lo + 4].astype(np.int64), tokens[lo + 1: lo + 5].astype(np.int64)
        prev = prev[: tgt.size]
        rows = torch.from_numpy(counts[prev])
        p = 0.5 / V + 0.5 * (rows + 1.0) / (rows.sum(-1, keepdim=True) + V)
        losses.append(-torch.log(p.gather(-1, torch.from_numpy(tgt)[:, None]))[:, 0])
        if not two_pass:  # one pass: add a chunk's bigrams only after scoring it
            np.add.at(counts, (prev, tgt), 1.0)
    return torch.cat(losses).mean()


@settings(max_examples=5, deadline=None)
@given(tokens=hst.token_streams(V, min_len=9, max_len=40))
def test_two_pass_cache_sees_the_future(tokens):
    with traced(tokens, vocab_size=V) as t:
        t.report(score_with_cache(t.tokens, two_pass=True))
    t.assert_violates("C1")


@settings(max_examples=5, deadline=None)
@given(tokens=hst.token_streams(V, min_len=9, max_len=40))
def test_one_pass_cache_is_legal(tokens):
    with traced(tokens, vocab_size=V) as t:
        t.report(score_with_cache(t.tokens, two_pass=False))
    t.assert_legal()
