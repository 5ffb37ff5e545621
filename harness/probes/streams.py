"""Validation streams the probes serve instead of the real one.

Every stream of one probe session has the same length N = blocks * L + 1 (L = the evaluation
sequence length), because the scripts truncate validation to a multiple of L plus one token and
because a fork server hands each variant to a process that has already sized its buffers. Keeping
the length also keeps chunk and window layouts identical between a base stream and its variants,
which is what makes a position-by-position comparison fair for sliding windows and score-first TTT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.errors import BadInput

BOS_ID = 1
FIRST_ORDINARY_ID = 4  # pad, bos, eos, unk come first in the challenge's SentencePiece models


def stream_length(block: int, blocks: int) -> int:
    if block < 1 or blocks < 1:
        raise BadInput(f"probe streams need a positive sequence length and block count (got {block}, {blocks})")
    return block * blocks + 1


def ordinary_ids(vocab: int, tables=None) -> np.ndarray:  # tables: harness.bpb.ByteTables | None
    """Token ids a probe may write into a stream: not control/unknown, at least one byte (so val_bpb
    stays finite), and not a byte-fallback piece when the tokenizer is known."""
    ids = np.arange(FIRST_ORDINARY_ID, vocab, dtype=np.int64)
    if tables is not None:
        n = min(vocab, int(tables.vocab_size))
        ids = ids[ids < n]
        ok = (~tables.is_boundary[ids]) & (tables.base_bytes[ids] >= 1)
        # byte-fallback pieces are exactly 1 byte and have no leading space; pieces of 2+ bytes are
        # surely not byte tokens. Prefer those, fall back to any non-boundary id.
        strong = ok & (tables.base_bytes[ids] >= 2)
        ids = ids[strong] if strong.sum() >= 16 else ids[ok]
    if ids.size < 2:
        raise BadInput(f"a vocabulary of {vocab} ids has too few ordinary tokens for the probes")
    return ids


def base_stream(val_tokens: np.ndarray, length: int, echo: int = 8) -> np.ndarray:
    """The first `length` tokens of the real validation split (starting at a BOS), with the last
    `echo` + 1 tokens copied from an earlier stretch of the same stream, so the context of the final
    position (the C2 probe site) has been seen before: caches then hold entries for it, which is where
    target-keyed blends leak."""
    v = np.asarray(val_tokens)
    if v.ndim != 1 or v.size == 0:
        raise BadInput("validation tokens must be a non-empty 1-D array")
    starts = np.flatnonzero(v == BOS_ID)
    first = int(starts[0]) if starts.size else 0
    src = v[first:]
    if src.size < length:
        reps = -(-length // max(1, src.size))
        src = np.tile(src, reps)
    out = np.array(src[:length], dtype=np.uint16)
    if out[0] != BOS_ID:
        out[0] = BOS_ID
    from harness.run.serve import with_seen_tail

    return with_seen_tail(out, echo, BOS_ID)


def with_token(stream: np.ndarray, position: int, token: int) -> np.ndarray:
    out = np.array(stream, copy=True)
    out[position] = token
    return out


def perturb_after(stream: np.ndarray, t: int, rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
    """Tokens after t replaced by random ordinary tokens, every one different from the original (so a
    predictor that peeks at any later offset sees a change). Length, tokens <= t and every BOS stay.

    BOS tokens stay where they were so documents keep their places and lengths: an evaluation that
    batches or orders documents by length (phased or per-document TTT) then runs the same schedule on
    both streams, and a score can be compared with its counterpart. Reading a later BOS is left to the
    trace, which sees every read."""
    out = np.array(stream, copy=True)
    n = out.size - (t + 1)
    if n <= 0:
        raise BadInput(f"no tokens after position {t} to perturb in a stream of {out.size}")
    tail = out[t + 1:]
    change = tail != BOS_ID
    if not change.any():
        raise BadInput(f"only BOS tokens after position {t}: nothing to perturb")
    old = tail[change]
    new = rng.choice(ids, size=old.size)
    same = new == old
    while np.any(same):
        new[same] = rng.choice(ids, size=int(same.sum()))
        same = new == old
    tail[change] = new
    return out


@dataclass
class CanaryStream:
    """A stream of canary documents: each starts with BOS, then runs of `copies` identical tokens whose
    first token is drawn uniformly from `alphabet`. q_t = 1/k at a run's first token, 1 elsewhere."""

    tokens: np.ndarray
    alphabet: np.ndarray
    doc_len: int
    copies: int
    random_mask: np.ndarray = field(repr=False)  # per position: drawn uniformly (a target of entropy log k)

    @property
    def n_targets(self) -> int:
        return int(self.tokens.size - 1)

    @property
    def n_random(self) -> int:
        return int(self.random_mask[1:].sum())

    def random_positions(self) -> np.ndarray:
        return np.flatnonzero(self.random_mask)


def canary_stream(length: int, alphabet: np.ndarray, doc_len: int, copies: int,
                  rng: np.random.Generator) -> CanaryStream:
    alphabet = np.asarray(alphabet, dtype=np.int64)
    if alphabet.size < 2:
        raise BadInput("a canary alphabet needs at least 2 tokens")
    if np.any(alphabet == BOS_ID):
        raise BadInput("the canary alphabet must not contain BOS")
    if doc_len < 2 or copies < 1:
        raise BadInput(f"bad canary shape: doc_len {doc_len}, copies {copies}")
    tokens = np.zeros(length, dtype=np.uint16)
    rand = np.zeros(length, dtype=bool)
    run_tok = 0
    for p in range(length):
        k = p % doc_len
        if k == 0 and p < length - 1:
            tokens[p] = BOS_ID
            continue
        # the last token never opens a document: a real stream does not end in a lone BOS, and scripts that
        # split documents at BOS reject a one-token document (04-14's `assert end - start >= 2`)
        if k == 0 or (k - 1) % copies == 0:
            run_tok = int(rng.choice(alphabet))
            rand[p] = True
        tokens[p] = run_tok
    return CanaryStream(tokens, alphabet, doc_len, copies, rand)


def pick_alphabet(ids: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    if k < 2 or k > ids.size:
        raise BadInput(f"canary alphabet size {k} must lie in 2..{ids.size}")
    return np.sort(rng.choice(ids, size=k, replace=False))


def sample_candidates(vocab: int, forced: list[int], n: int, rng: np.random.Generator) -> list[int]:
    """Candidate tokens for a C2 site: `forced` first, then `n` drawn uniformly without replacement from
    the rest of the vocabulary (all of it when n covers it). The draw must be uniform for the sampled
    estimate of Z to be unbiased, so no candidate is skipped for being a control token."""
    forced = list(dict.fromkeys(int(f) for f in forced if 0 <= int(f) < vocab))
    rest = np.setdiff1d(np.arange(vocab, dtype=np.int64), np.asarray(forced, dtype=np.int64))
    if n >= rest.size:
        return forced + rest.tolist()
    return forced + rng.choice(rest, size=n, replace=False).tolist()


@dataclass
class BatchedSites:
    """One stream that scores many candidates after the same context: units of two sequences, the
    second holding the context, the first token of the next unit the candidate. With a block-
    independent evaluation (non-overlapping sequences, or sliding windows whose stride divides L)
    every site is scored from exactly the context block. Control tokens appear twice, once early and
    once late: if every pair scores bitwise the same, the evaluation carried no state between units
    that touched them (an adaptive model, a cache or TTT, moves them)."""

    tokens: np.ndarray
    sites: list[int]  # stream positions of the sites, in order
    candidates: list[int]  # token at each site
    controls: list[tuple[int, int]]  # pairs of indexes into sites holding the same control token
    measured: list[int]  # indexes into sites of the candidates whose probabilities are summed


def batched_sites(context: np.ndarray, filler: np.ndarray, candidates: list[int], controls: list[int]) -> BatchedSites:
    L = int(context.size)
    if L < 2 or filler.size < L:
        raise BadInput("a batched C2 stream needs a context block and a filler of one sequence each")
    controls = list(dict.fromkeys(int(c) for c in controls))
    if not controls:
        raise BadInput("a batched C2 stream needs at least one control token")
    # controls first (early copies), every candidate once, controls again (late copies)
    order = controls + list(candidates) + controls
    k = len(controls)
    units = len(order)
    n = 2 * L * units + 1
    out = np.empty(n, dtype=np.uint16)
    sites = []
    for u in range(units):
        a = 2 * u * L
        out[a:a + L] = filler[:L]
        out[a + L:a + 2 * L] = context
        sites.append(a + 2 * L)
    out[0] = BOS_ID
    for p, v in zip(sites, order):
        out[p] = v  # the site is also the first token of the next unit's filler block
    pairs = [(i, units - k + i) for i in range(k)]
    return BatchedSites(out, sites, order, pairs, list(range(k, units - k)))
