"""A tiny 2-layer transformer end to end: causal eval, score-first vs train-first TTT, per-doc LoRA."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from test_tracer_util import V, Trace, scores, trace  # noqa: F401


class Attn(nn.Module):
    def __init__(self, d: int, h: int, manual: bool) -> None:
        super().__init__()
        self.h, self.manual = h, manual
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.register_buffer("mask", torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = (z.view(B, T, self.h, -1).transpose(1, 2) for z in self.qkv(x).split(D, dim=2))
        if self.manual:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
            att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf")).softmax(-1)
            y = att @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).contiguous().view(B, T, D))


class GPT(nn.Module):
    def __init__(self, manual: bool = False, d: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.attn = nn.ModuleList([Attn(d, 2, manual) for _ in range(layers)])
        self.mlp = nn.ModuleList([nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
                                  for _ in range(layers)])
        self.head = nn.Linear(d, V, bias=False)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x)
        for a, m in zip(self.attn, self.mlp):
            h = h + a(F.rms_norm(h, (h.size(-1),)))
            h = h + m(h)
        return h

    def forward(self, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        logits = self.head(self.hidden(x)).float()
        return F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), reduction=reduction)


@pytest.mark.parametrize("manual", [False, True])
def test_eval_is_causal_and_the_consumed_mean_is_the_printed_loss(trace: Trace, manual: bool) -> None:
    torch.manual_seed(0)
    model = GPT(manual).eval()
    t = trace.ttokens(129)
    total = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for i in range(0, 128, 64):
            total += model(t[i : i + 64].view(2, 32), t[i + 1 : i + 65].view(2, 32), reduction="sum").double()
    val_loss = (total / 128).item()
    ev = trace.close()
    sc = scores(ev)
    assert sorted(s["pos"] for s in sc.values()) == list(range(1, 129))
    # each target depends on exactly its own window's earlier tokens: dep = pos - 1
    assert all(s["dep"] == s["pos"] - 1 for s in sc.values())
    (c,) = [e for e in ev if e["kind"] == "consume"]
    assert np.mean([sc[s]["nll"] for s in c["sids"]]) == pytest.approx(val_loss, rel=1e-5)
    st = [e for e in ev if e["kind"] == "stats"][-1]
    assert st["unruled_ops"] == {}


@pytest.mark.parametrize("mode", ["score_first", "train_first"])
def test_ttt_order_shows_in_dep_and_updates(trace: Trace, mode: str) -> None:
    torch.manual_seed(0)
    model = GPT()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t = trace.ttokens(97)
    chunks = [(t[i : i + 32].view(1, 32), t[i + 1 : i + 33].view(1, 32)) for i in range(0, 96, 32)]

    def train(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    if mode == "train_first":
        for x, y in chunks:
            train(x, y)
    for x, y in chunks:
        with torch.no_grad():
            model(x, y, reduction="sum")
        if mode == "score_first":
            train(x, y)
    ev = trace.close()
    evals = scores(ev, grad=False)
    assert len(evals) == 96
    if mode == "score_first":
        assert all(s["dep"] < s["pos"] for s in evals.values())
        scored: set[int] = set()
        for e in ev:
            if e["kind"] == "score" and not e["grad"]:
                scored.update(e["pos"])
            elif e["kind"] == "update":
                assert set(range(max(e["lo"], 1), e["hi"] + 1)) <= scored
    else:
        assert all(s["dep"] >= 96 for s in evals.values())
    assert {e["target"] for e in ev if e["kind"] == "update"} == {"param", "optimizer_state"}


def test_per_document_lora_keeps_documents_apart(trace: Trace) -> None:
    torch.manual_seed(0)
    model = GPT()
    for p in model.parameters():
        p.requires_grad_(False)
    t = trace.ttokens(400)
    starts = [0, 200]
    A = nn.Parameter(torch.zeros(2, 32, 4))
    B = nn.Parameter(torch.randn(2, 4, V) * 0.01)
    opt = torch.optim.Adam([A, B], lr=1e-2)

    def logits(x: torch.Tensor) -> torch.Tensor:
        h = model.hidden(x)
        return model.head(h) + torch.bmm(torch.bmm(h, A), B)

    for c in range(3):
        x = torch.stack([t[s + 16 * c : s + 16 * c + 16] for s in starts])
        y = torch.stack([t[s + 16 * c + 1 : s + 16 * c + 17] for s in starts])
        with torch.no_grad():
            F.cross_entropy(logits(x).reshape(-1, V), y.reshape(-1), reduction="none")
        loss = F.cross_entropy(logits(x).reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    ev = trace.close()
    for u in (e for e in ev if e["kind"] == "update"):
        # one document's state never depends on the other document's positions
        assert u["hi"] < 200 or u["lo"] >= 200, u
    assert all(s["dep"] < s["pos"] for s in scores(ev, grad=False).values())
