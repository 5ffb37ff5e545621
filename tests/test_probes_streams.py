"""Variant streams: lengths, what changes and what must not."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import BadInput
from harness.probes.c1_future import c1_sites, plan_c1
from harness.probes.c2_normalization import plan_c2, seen_continuations
from harness.probes.streams import (
    BOS_ID,
    base_stream,
    canary_stream,
    ordinary_ids,
    perturb_after,
    pick_alphabet,
    sample_candidates,
    stream_length,
    with_token,
)


def _val(n=3000, V=256, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.integers(4, V, size=n).astype(np.uint16)
    v[::97] = BOS_ID
    v[0] = 7  # does not start at a document
    return v


def test_stream_length_and_base():
    assert stream_length(64, 4) == 257
    with pytest.raises(BadInput):
        stream_length(0, 4)
    b = base_stream(_val(), 257)
    assert b.size == 257 and b[0] == BOS_ID and b.dtype == np.uint16
    # the last position's context (8 tokens) was seen earlier, followed by the same token
    t = 256
    ctx = b[t - 8:t]
    hits = [p for p in range(8, t) if np.array_equal(b[p - 8:p], ctx) and b[p] == b[t]]
    assert hits
    # a short validation split is tiled, never padded with zeros
    short = base_stream(np.array([1, 5, 6, 7], dtype=np.uint16), 50)
    assert short.size == 50 and not np.any(short == 0)


@given(st.integers(min_value=1, max_value=250), st.integers(min_value=0, max_value=2**31))
@settings(max_examples=40, deadline=None)
def test_perturb_after_keeps_prefix_and_changes_every_later_token_but_bos(t, seed):
    b = base_stream(_val(), 257)
    ids = ordinary_ids(256)
    p = perturb_after(b, t, np.random.default_rng(seed), ids)
    assert p.size == b.size
    assert np.array_equal(p[:t + 1], b[:t + 1])
    bos = b[t + 1:] == BOS_ID
    # documents keep their places (a length-ordered TTT schedule stays the same); every other token changes
    assert np.array_equal(p[t + 1:][bos], b[t + 1:][bos])
    assert np.all(p[t + 1:][~bos] != b[t + 1:][~bos])
    assert np.all(np.isin(p[t + 1:][~bos], ids))


def test_with_token_and_candidates():
    b = base_stream(_val(), 65)
    v = with_token(b, 64, 3)
    assert v[64] == 3 and np.array_equal(v[:64], b[:64]) and v is not b
    rng = np.random.default_rng(1)
    c = sample_candidates(100, [5, 9, 5], 10, rng)
    assert c[:2] == [5, 9] and len(c) == 12 and len(set(c)) == 12
    assert sorted(sample_candidates(20, [3], 1000, rng)) == list(range(20))


def test_canary_structure():
    rng = np.random.default_rng(3)
    alpha = pick_alphabet(ordinary_ids(64), 4, rng)
    cs = canary_stream(129, alpha, doc_len=16, copies=1, rng=rng)
    assert cs.tokens.size == 129
    # documents open with BOS, except at the last token: a stream of whole sequences plus one would end in a
    # one-token document, which real streams never do and document-splitting scripts reject
    assert np.all(cs.tokens[:128:16] == BOS_ID) and cs.tokens[128] != BOS_ID
    non_bos = np.ones(129, bool)
    non_bos[:128:16] = False
    assert np.array_equal(cs.random_mask, non_bos)
    assert np.all(np.isin(cs.tokens[non_bos], alpha))
    assert cs.n_random == 129 - 8 and cs.n_targets == 128
    echo = canary_stream(129, alpha, doc_len=16, copies=3, rng=rng)
    assert echo.tokens[128] != BOS_ID and echo.random_mask[128]
    starts = echo.random_positions()
    for s in starts:
        run = echo.tokens[s:min(s + 3, (s // 16 + 1) * 16)]
        assert np.all(run == run[0])
    assert echo.n_random == 1 + sum(1 for p in range(1, 129) if p % 16 and (p % 16 - 1) % 3 == 0)
    with pytest.raises(BadInput):
        canary_stream(20, np.array([1, 5]), 8, 1, rng)  # BOS in the alphabet


def test_ordinary_ids_avoid_specials():
    ids = ordinary_ids(300)
    assert ids.min() >= 4 and ids.max() < 300


def test_seen_continuations_and_c2_plan():
    s = np.array([1, 5, 6, 7, 5, 6, 8, 9, 5, 6, 7], dtype=np.uint16)
    # context (5, 6) at t=10 was followed by 7 and 8 earlier
    assert set(seen_continuations(s, 10)) >= {7, 8}
    plan, variants = plan_c2(s, vocab=12, budget=0, rng=np.random.default_rng(0))
    assert plan.site == 10 and plan.base_token == 7 and plan.forced[0] == 7
    assert len(variants) == 11  # every other token of the vocabulary
    assert all(v.tokens[10] != 7 and np.array_equal(v.tokens[:10], s[:10]) for v in variants)
    plan2, variants2 = plan_c2(s, vocab=12, budget=4, rng=np.random.default_rng(0))
    assert len(plan2.forced) + len(plan2.sampled) == 4 and len(variants2) == 3
    # a budget smaller than the forced set (true token, continuations seen after the context) bounds it too:
    # the cheap default's C2 time budget is a cap on runs, the true token and the likeliest leak site first
    plan3, variants3 = plan_c2(s, vocab=12, budget=2, rng=np.random.default_rng(0))
    assert plan3.forced == [7, plan.forced[1]] and not plan3.sampled and len(variants3) == 1


def test_c1_sites_and_plan():
    sites = c1_sites(257, 64, 2)
    assert len(sites) == 2 and all(1 < t < 256 for t in sites)
    b = base_stream(_val(), 257)
    plan, variants = plan_c1(b, 64, 3, np.random.default_rng(0), ordinary_ids(256))
    assert len(variants) == 3 and len(plan.sites) == 3
    for t in plan.sites:
        v = next(x for x in variants if x.name == plan.names[t])
        assert np.array_equal(v.tokens[:t + 1], b[:t + 1]) and v.tokens[t + 1] != b[t + 1]


def test_batched_sites_layout():
    from harness.probes.streams import batched_sites

    L = 8
    ctx = np.arange(10, 10 + L, dtype=np.uint16)
    fill = np.arange(30, 30 + L, dtype=np.uint16)
    b = batched_sites(ctx, fill, [5, 6, 7], controls=[9, 4])
    assert b.tokens.size == 2 * L * 7 + 1 and b.tokens[0] == BOS_ID
    assert b.candidates == [9, 4, 5, 6, 7, 9, 4] and b.controls == [(0, 5), (1, 6)]
    assert [b.candidates[i] for i in b.measured] == [5, 6, 7]
    for p, v in zip(b.sites, b.candidates):
        assert p % (2 * L) == 0 and b.tokens[p] == v
        assert np.array_equal(b.tokens[p - L:p], ctx)  # the sequence that predicts the site is the context
        # and a sequence-aligned evaluation (stream length k*L + 1) keeps every site
        assert p <= ((b.tokens.size - 1) // L) * L


def test_block_length_and_chunk_aware_blocks():
    from harness.probes.session import block_length, blocks_for

    assert block_length({"TRAIN_SEQ_LEN": "64", "EVAL_SEQ_LEN": "96", "X": "7"}) == 192
    assert block_length({}, default=2048) == 2048
    # a 512-token TTT chunk needs a stream spanning two chunks and a sequence
    assert blocks_for({"TTT_CHUNK_TOKENS": "512"}, 64, 4) == 17
    assert blocks_for({}, 64, 4) == 4 and blocks_for({"TTT_CHUNK_TOKENS": "x"}, 64, 20) == 20
