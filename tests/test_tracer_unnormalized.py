"""A target picked from a full-vocabulary row of non-negative values that is not a distribution (a byte
mixture, raw counts): a score with the row's sum, so the verdict can name an unnormalized C2."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from test_tracer_util import V, Trace, trace  # noqa: F401


def test_a_pick_from_unnormalized_rows_is_a_score_with_its_row_sum(trace: Trace) -> None:
    toks = trace.ttokens(17)
    x, y = toks[:-1], toks[1:]
    torch.manual_seed(0)
    logits = torch.randn(16, V) + x[:, None].float() * 0.01  # depends on the inputs only
    extra = torch.full((V,), 2.0 / V)  # another "distribution" summing to 2: the mixture sums to 1.5
    p_mix = 0.5 * F.softmax(logits, -1) + 0.5 * extra[None, :]
    nll = -torch.log(p_mix.gather(-1, y[:, None]).squeeze(-1))
    nll.mean().item()
    picks = [e for e in trace.events("score") if "zsum" in e]
    assert picks and {e["op"] for e in picks} == {"gather"}
    assert sorted(p for e in picks for p in e["pos"]) == list(range(1, 17))
    assert all(abs(z - 1.5) < 1e-5 for e in picks for z in e["zsum"])
    assert all(d < p for e in picks for p, d in zip(e["pos"], e["dep"]))  # the target only selects


def test_a_normalized_mixture_carries_no_row_sum(trace: Trace) -> None:
    toks = trace.ttokens(17)
    x, y = toks[:-1], toks[1:]
    logits = torch.randn(16, V) + x[:, None].float() * 0.01
    p_mix = 0.5 * F.softmax(logits, -1) + 0.5 / V
    nll = -torch.log(p_mix.gather(-1, y[:, None]).squeeze(-1))
    nll.mean().item()
    ev = trace.events("score")
    assert ev and not any("zsum" in e for e in ev)
