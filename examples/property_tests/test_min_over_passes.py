"""A min-over-passes bug, found by a property test. This evaluation is score-first TTT, but when the stream
ends in a partial chunk it scores that chunk again after adapting and keeps the better loss per token:
a selection after seeing the targets (C4). Hypothesis finds a stream that ends in a partial chunk and
shrinks it to a few chunks; the failure names C4 and the positions.

In your own suite the property alone is the test (it fails). Here it must pass in CI, so the test runs
the property and checks the failure hypothesis reports.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import Phase, given, settings

from harness.testing import RuleAssertion, traced
from harness.testing import strategies as hst

V = 32


def bigram() -> torch.nn.Module:  # stands in for your model: token t's logits from token t-1
    torch.manual_seed(0)
    return torch.nn.Embedding(V, V)


def eval_ttt_best_tail(model: torch.nn.Module, tokens: torch.Tensor, chunk: int) -> torch.Tensor:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for lo in range(0, tokens.numel() - 1, chunk):
        y = tokens[lo + 1: lo + chunk + 1]
        x = tokens[lo: lo + y.numel()]
        with torch.no_grad():
            nll = F.cross_entropy(model(x), y, reduction="none")
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if y.numel() < chunk:  # the bug: a short last chunk is scored again and the better pass kept
            with torch.no_grad():
                nll = torch.minimum(nll, F.cross_entropy(model(x), y, reduction="none"))
        losses.append(nll)
    return torch.cat(losses).double().mean()


def test_min_over_passes_is_found_and_shrunk():
    seen = {}

    # no 'explain' phase: it replays the shrunk example under a line tracer (slow, adds nothing here)
    @settings(max_examples=10, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(tokens=hst.token_streams(V, max_len=16), chunk=hst.chunk_sizes(4, 6))
    def eval_is_legal(tokens, chunk):
        seen.update(n=tokens.size, chunk=chunk)  # the last call is hypothesis's replay of the shrunk example
        with traced(tokens, vocab_size=V) as t:
            t.report(eval_ttt_best_tail(bigram(), t.stream, chunk))
        t.assert_legal()

    with pytest.raises(RuleAssertion) as failure:
        eval_is_legal()
    message = str(failure.value)
    assert "C4 FAIL" in message and "min" in message and "positions" in message
    assert failure.value.outcome.first_positions("C4")  # the report's first offending positions
    assert (seen["n"] - 1) % seen["chunk"] and (seen["n"] - 1) // seen["chunk"] <= 4, seen  # a few chunks
