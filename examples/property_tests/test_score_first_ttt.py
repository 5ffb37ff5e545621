"""A legal score-first TTT evaluation, property-tested: for any stream, chunk size and number of epochs,
each chunk is scored before the model trains on it, so the harness finds it legal (C1, C3, C4, D2, D3)."""

import torch
import torch.nn.functional as F
from hypothesis import given, settings

from harness.testing import strategies as hst

V = 32  # vocabulary


def bigram() -> torch.nn.Module:  # stands in for your model: token t's logits from token t-1
    torch.manual_seed(0)
    return torch.nn.Embedding(V, V)


def eval_score_first_ttt(model: torch.nn.Module, tokens: torch.Tensor, chunk: int, epochs: int) -> torch.Tensor:
    """Your evaluation: score a chunk, then adapt on it, then move on."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_sum, count = torch.zeros((), dtype=torch.float64), 0
    for lo in range(0, tokens.numel() - 1, chunk):
        y = tokens[lo + 1: lo + chunk + 1]
        x = tokens[lo: lo + y.numel()]
        with torch.no_grad():
            loss_sum += F.cross_entropy(model(x), y, reduction="sum").double()
        count += y.numel()
        for _ in range(epochs):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return loss_sum / count


@settings(max_examples=6, deadline=None)
@given(tokens=hst.token_streams(V, max_len=24), chunk=hst.chunk_sizes(2, 8), epochs=hst.ttt_epochs(2))
def test_score_first_ttt_is_legal(harness_trace, tokens, chunk, epochs):
    with harness_trace(tokens, vocab_size=V) as t:  # the pytest plugin's fixture: traced() + --harness-report
        t.report(eval_score_first_ttt(bigram(), t.stream, chunk, epochs))
    t.assert_legal()
