"""The harness's own bytes-per-token accounting and val_loss / val_bpb recomputation.

The rule (RULES.md "How val_bpb is computed", the baseline script's convention): the target token y
at stream position p is predicted after x = val_tokens[p-1] and stands for

    bytes(y | x) = base_bytes[y] + (has_leading_space[y] and not is_boundary[x])

where control / unknown / unused ids are boundary tokens with 0 bytes, byte-fallback pieces
(<0x..>) are 1 byte, and any other piece is the UTF-8 length of the piece without its leading "▁"
(that "▁" is the space, counted only when the previous token is not a boundary).
val_loss = mean NLL in nats; val_bpb = (sum NLL / ln 2) / sum bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from harness.errors import BadInput

SPACE_MARK = "\u2581"  # SentencePiece's visible space "▁"


@dataclass(frozen=True)
class ByteTables:
    base_bytes: np.ndarray  # int16 [vocab]: bytes of the piece without its leading "▁"
    has_leading_space: np.ndarray  # bool [vocab]: the piece starts with "▁"
    is_boundary: np.ndarray  # bool [vocab]: control / unknown / unused / ids past the model
    vocab_size: int  # table size = max(model size, requested vocab size)


def load_sentencepiece(tokenizer_path: str | os.PathLike[str]):  # -> spm.SentencePieceProcessor
    """Load a SentencePiece model, turning every failure into one BadInput line."""
    import sentencepiece as spm

    p = Path(tokenizer_path)
    if not p.is_file():
        raise BadInput(f"tokenizer not found: {p}")
    try:
        return spm.SentencePieceProcessor(model_file=str(p))
    except (RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInput(f"{p}: not a SentencePiece model ({first})") from None


def tables_from_processor(sp, vocab_size: int | None = None) -> ByteTables:  # sp: SentencePieceProcessor
    """Byte tables from a loaded SentencePiece processor (see the module docstring)."""
    n = int(sp.vocab_size())
    size = max(n, int(vocab_size or 0))
    base = np.zeros(size, dtype=np.int16)
    lead = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)  # ids past the model's vocab stay boundary, 0 bytes
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith(SPACE_MARK):
            lead[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    for arr in (base, lead, boundary):
        arr.setflags(write=False)  # shared through the cache below
    return ByteTables(base, lead, boundary, size)


@lru_cache(maxsize=8)
def _cached_tables(path: str, mtime_ns: int, file_size: int, vocab_size: int | None) -> ByteTables:
    del mtime_ns, file_size  # cache keys only: a rewritten model file gets new tables
    return tables_from_processor(load_sentencepiece(path), vocab_size)


def byte_tables(tokenizer_path: str | os.PathLike[str], vocab_size: int | None = None) -> ByteTables:
    """Byte tables of a SentencePiece .model; vocab_size pads the tables like the scripts do
    (table size = max(model vocab, VOCAB_SIZE), extra ids are boundary tokens of 0 bytes)."""
    p = Path(tokenizer_path).resolve()
    try:
        st = p.stat()
    except OSError:
        raise BadInput(f"tokenizer not found: {tokenizer_path}") from None
    return _cached_tables(str(p), st.st_mtime_ns, st.st_size, vocab_size)


def _check_ids(tables: ByteTables, arr: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.size == 0:
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        raise BadInput(f"{what} must be integer token ids, got {a.dtype}")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= tables.vocab_size:
        bad = lo if lo < 0 else hi
        raise BadInput(f"{what} holds token id {bad}, outside the tokenizer's {tables.vocab_size} ids")
    return a.astype(np.int64, copy=False)


def token_bytes(tables: ByteTables, prev_tokens: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """bytes(y | x) for each target y in `tokens` after the matching x in `prev_tokens` (int64)."""
    y = _check_ids(tables, tokens, "tokens")
    x = _check_ids(tables, prev_tokens, "prev_tokens")
    if x.shape != y.shape:
        raise BadInput(f"prev_tokens shape {x.shape} differs from tokens shape {y.shape}")
    space = tables.has_leading_space[y] & ~tables.is_boundary[x]
    return tables.base_bytes[y].astype(np.int64) + space.astype(np.int64)


def stream_bytes(tables: ByteTables, val_tokens: np.ndarray) -> np.ndarray:
    """Bytes of every target position of a stream: out[p] = bytes(val_tokens[p] | val_tokens[p-1]);
    out[0] = 0 since position 0 is never a target."""
    v = np.asarray(val_tokens)
    out = np.zeros(v.shape[0], dtype=np.int64)
    if v.shape[0] > 1:
        out[1:] = token_bytes(tables, v[:-1], v[1:])
    return out


class Recomputed(NamedTuple):
    val_loss: float  # mean NLL, nats
    val_bpb: float  # bits per byte; nan when the scored targets hold no bytes
    n_tokens: int
    n_bytes: int


def _as_arrays(nll_by_pos) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(nll_by_pos, Mapping):
        pos = np.fromiter((int(k) for k in nll_by_pos.keys()), dtype=np.int64, count=len(nll_by_pos))
        nll = np.fromiter((float(v) for v in nll_by_pos.values()), dtype=np.float64, count=len(nll_by_pos))
        return pos, nll
    try:
        positions, nlls = nll_by_pos
    except (TypeError, ValueError):
        raise BadInput("scores must be a {position: nll} mapping or a (positions, nlls) pair") from None
    pos = np.asarray(positions)
    nll = np.asarray(nlls, dtype=np.float64)
    if pos.ndim != 1 or nll.ndim != 1 or pos.shape != nll.shape:
        raise BadInput(f"positions {pos.shape} and nlls {nll.shape} must be 1-D arrays of one length")
    if pos.size and not np.issubdtype(pos.dtype, np.integer):
        raise BadInput(f"positions must be integers, got {pos.dtype}")
    return pos.astype(np.int64, copy=False), nll


def recompute(
    nll_by_pos: Mapping[int, float] | tuple[np.ndarray, np.ndarray],
    val_tokens: np.ndarray,
    tables: ByteTables,
) -> Recomputed:
    """val_loss / val_bpb from per-position NLLs (nats) the harness recorded.

    Position p scores val_tokens[p] after val_tokens[p-1], so p must be in [1, len(val_tokens)).
    Each position must appear once: a repeated position is a second score of the same token
    (a C4 matter for the caller), not something to average silently.
    """
    pos, nll = _as_arrays(nll_by_pos)
    if pos.size == 0:
        raise BadInput("no scored positions to recompute val_loss / val_bpb from")
    v = np.asarray(val_tokens)
    n = int(v.shape[0]) if v.ndim == 1 else -1
    if n < 0:
        raise BadInput(f"val_tokens must be a 1-D token stream, got shape {v.shape}")
    lo, hi = int(pos.min()), int(pos.max())
    if lo < 1 or hi >= n:
        bad = lo if lo < 1 else hi
        raise BadInput(f"scored position {bad} outside the targets 1..{n - 1} of a {n}-token stream")
    order = np.argsort(pos, kind="stable")  # sum in position order: independent of input order
    pos, nll = pos[order], nll[order]
    dup = np.flatnonzero(pos[1:] == pos[:-1])
    if dup.size:
        raise BadInput(f"position {int(pos[dup[0]])} is scored more than once ({dup.size} repeats)")
    nbytes = int(token_bytes(tables, v[pos - 1], v[pos]).sum())
    total = float(np.sum(nll))
    val_loss = total / pos.size
    val_bpb = (total / math.log(2.0)) / nbytes if nbytes > 0 else float("nan")
    return Recomputed(val_loss, val_bpb, int(pos.size), nbytes)


# ------------------------------------------------------------------ token classes and the table's validation


@dataclass(frozen=True)
class TokenClasses:
    """The token classes byte-counting bugs live in (C4: which class a printed val_bpb miscounts)."""

    leading_space: np.ndarray  # bool [vocab]: an ordinary piece starting with "▁"
    byte_fallback: np.ndarray  # bool [vocab]: <0x..> pieces (1 byte each)
    control: np.ndarray  # bool [vocab]: control / unknown / unused / ids past the model (0 bytes)
    pieces: tuple[str, ...]  # the piece of each id ("" past the model)


def token_classes(tokenizer_path: str | os.PathLike[str], vocab_size: int | None = None) -> TokenClasses:
    sp = load_sentencepiece(tokenizer_path)
    t = byte_tables(tokenizer_path, vocab_size)
    n = int(sp.vocab_size())
    fb = np.zeros(t.vocab_size, dtype=np.bool_)
    fb[:n] = [bool(sp.is_byte(i)) for i in range(n)]
    pieces = tuple(sp.id_to_piece(i) for i in range(n)) + ("",) * (t.vocab_size - n)
    return TokenClasses(t.has_leading_space & ~t.is_boundary, fb, t.is_boundary.copy(), pieces)


class TableCheck(NamedTuple):
    ok: bool
    documents: int
    table_bytes: int
    text_bytes: int
    first_bad: int | None  # the first document (its BOS position) whose sums differ

    def line(self) -> str:
        if self.ok:
            return (f"harness byte table validated on the served stream: {self.documents} documents, "
                    f"{self.table_bytes} bytes by the table = {self.text_bytes} bytes of decoded UTF-8 text")
        return (f"harness byte table does NOT match the decoded text: {self.table_bytes} bytes by the table vs "
                f"{self.text_bytes} decoded ({self.documents} documents, first mismatch at position {self.first_bad})")


def validate_tables(tokenizer_path: str | os.PathLike[str], val_tokens: np.ndarray, pos_bytes: np.ndarray,
                    bos_id: int = 1, max_tokens: int = 2_000_000) -> TableCheck:
    """Byte sums of the table against the decoded text, document by document (split at BOS): the table's
    bytes of a document's targets must equal the UTF-8 length of the document's decoded text."""
    sp = load_sentencepiece(tokenizer_path)
    v = np.asarray(val_tokens)[:max_tokens]
    b = np.asarray(pos_bytes)[: v.shape[0]]
    starts = np.flatnonzero(v == bos_id).tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    ends = starts[1:] + [int(v.shape[0])]
    docs = tb = tx = 0
    first_bad = None
    pairs = list(zip(starts, ends))
    if len(pairs) > 2:
        pairs = pairs[:-1]  # the last document may be cut mid-character by the stream's end
    for s, e in pairs:
        ids = v[s:e]
        body = ids[1:] if ids.size and int(ids[0]) == bos_id else ids
        if body.size == 0:
            continue
        lo = s + (1 if int(ids[0]) == bos_id else 0)
        table = int(b[lo:e].sum())
        text = len(sp.decode([int(x) for x in body]).encode("utf-8"))
        if lo == 0:  # the stream's first token is never a target: its own bytes are not in pos_bytes
            continue
        docs += 1
        tb += table
        tx += text
        if table != text and first_bad is None:
            first_bad = int(s)
    return TableCheck(first_bad is None, docs, tb, tx, first_bad)
