"""Hypothesis strategies for what evaluation code is tested over.

    token_streams(vocab=64, min_len=9, max_len=200, documents=True)   np.uint16 streams (BOS-separated docs)
    chunk_sizes(), strides(seq_len), sequence_lengths(), ttt_epochs()  the knobs of an evaluation loop
    world_sizes(n_tokens)                                            ranks that can split a stream
    rank_spans(n_targets, world_size)                                the contiguous share of each rank
    eval_settings(...)                                               all of them at once, consistent

Small by default: a counterexample shrinks towards short streams, one chunk size, one epoch, one rank.
Streams follow the challenge's shards: ids in [0, vocab), documents start with BOS (id 1,
harness.data.shards.BOS_ID) and hold no other BOS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from harness.data.shards import BOS_ID


@st.composite
def token_streams(draw: st.DrawFn, vocab: int = 64, min_len: int = 9, max_len: int = 200,
                  documents: bool = True) -> np.ndarray:
    """A validation stream of `min_len`..`max_len` tokens over `vocab` ids (uint16). documents: the stream
    is BOS-separated documents (each starts with BOS, lengths drawn); otherwise ids are free."""
    if vocab < 3:
        raise ValueError("token_streams: vocab must be at least 3 (BOS plus two ordinary ids)")
    n = draw(st.integers(min_len, max_len))
    if not documents:
        ids = draw(st.lists(st.integers(0, vocab - 1), min_size=n, max_size=n))
        return np.asarray(ids, dtype=np.uint16)
    body = draw(st.lists(st.integers(2, vocab - 1), min_size=n, max_size=n))
    out = np.asarray(body, dtype=np.uint16)
    # document starts: position 0 always, then a few more, each document at least two tokens long
    starts = [0]
    for s in sorted(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=max(0, n // 4), unique=True))):
        if s - starts[-1] >= 2:
            starts.append(s)
    out[starts] = BOS_ID
    return out


def chunk_sizes(min_size: int = 1, max_size: int = 16) -> st.SearchStrategy[int]:
    """Tokens per TTT / scoring chunk."""
    return st.integers(min_size, max_size)


def sequence_lengths(min_len: int = 2, max_len: int = 32) -> st.SearchStrategy[int]:
    """Model context lengths."""
    return st.integers(min_len, max_len)


def strides(seq_len: int) -> st.SearchStrategy[int]:
    """Sliding-window strides for a context of seq_len: 1..seq_len (a stride of seq_len = no overlap)."""
    return st.integers(1, max(1, seq_len))


def ttt_epochs(max_epochs: int = 3) -> st.SearchStrategy[int]:
    """Test-time-training epochs per chunk (at least one: zero epochs tests nothing)."""
    return st.integers(1, max_epochs)


def world_sizes(n_tokens: int | None = None, max_world: int = 8) -> st.SearchStrategy[int]:
    """World sizes that can split a stream of n_tokens (each rank gets at least one target)."""
    hi = max_world if n_tokens is None else max(1, min(max_world, n_tokens - 1))
    return st.integers(1, hi)


def rank_spans(n_targets: int, world_size: int) -> list[tuple[int, int]]:
    """[lo, hi) target ranges of each rank, contiguous and in order, as the records split work
    (rank r takes targets n*r//W .. n*(r+1)//W)."""
    return [(n_targets * r // world_size, n_targets * (r + 1) // world_size) for r in range(world_size)]


@dataclass(frozen=True)
class EvalSettings:
    tokens: np.ndarray
    seq_len: int
    stride: int
    chunk: int
    epochs: int
    world_size: int


@st.composite
def eval_settings(draw: st.DrawFn, vocab: int = 64, max_len: int = 160, max_seq_len: int = 16,
                  max_epochs: int = 2, max_world: int = 4, documents: bool = True) -> EvalSettings:
    """A stream and the knobs of an evaluation over it, mutually consistent: the stream holds at least one
    full sequence plus its target, the stride fits the sequence, every rank gets a target."""
    seq_len = draw(sequence_lengths(2, max_seq_len))
    tokens = draw(token_streams(vocab, min_len=seq_len + 1, max_len=max(seq_len + 1, max_len), documents=documents))
    return EvalSettings(tokens, seq_len, draw(strides(seq_len)), draw(chunk_sizes(1, max(1, seq_len * 2))),
                        draw(ttt_epochs(max_epochs)), draw(world_sizes(tokens.size, max_world)))


__all__ = ["EvalSettings", "chunk_sizes", "eval_settings", "rank_spans", "sequence_lengths", "strides",
           "token_streams", "ttt_epochs", "world_sizes"]
