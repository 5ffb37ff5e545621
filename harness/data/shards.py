"""The challenge's token shard format: a 256 x int32 little-endian header, then uint16 tokens.

Header: [0] magic 20240520, [1] version 1, [2] token count, the rest zero. Every document in a
shard starts with BOS (id 1) and has no EOS; a shard is one flat stream of documents.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from harness.errors import BadInput
from harness.fsutil import atomic_write_bytes

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAGIC = 20240520
VERSION = 1
BOS_ID = 1


def encode_shard(tokens: np.ndarray) -> bytes:
    """The shard file's bytes for a 1-D token array (ids must fit in uint16)."""
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise BadInput(f"shard tokens must be one-dimensional, got shape {arr.shape}")
    if arr.size and arr.dtype != np.uint16:
        if not np.issubdtype(arr.dtype, np.integer):
            raise BadInput(f"shard tokens must be integers, got {arr.dtype}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 0xFFFF:
            raise BadInput(f"token id {lo if lo < 0 else hi} does not fit in uint16")
    if arr.size >= 2**31:
        raise BadInput(f"too many tokens for one shard ({arr.size})")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, VERSION, arr.size
    return header.tobytes() + arr.astype("<u2", copy=False).tobytes()


def write_shard(path: str | os.PathLike[str], tokens: np.ndarray) -> Path:
    """Write a shard atomically (a reader never sees half a file); returns the path."""
    target = Path(path)
    atomic_write_bytes(target, encode_shard(tokens))
    return target


def read_header(path: str | os.PathLike[str]) -> int:
    """Validate the header and the file size; return the token count."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            raw = fh.read(HEADER_BYTES)
    except FileNotFoundError:
        raise BadInput(f"{p}: shard not found") from None
    except IsADirectoryError:
        raise BadInput(f"{p}: is a folder, not a shard") from None
    except OSError as e:
        raise BadInput(f"{p}: cannot read shard ({e.strerror or e})") from None
    if len(raw) < HEADER_BYTES:
        raise BadInput(f"{p}: truncated shard header ({len(raw)} of {HEADER_BYTES} bytes)")
    header = np.frombuffer(raw, dtype="<i4")
    if int(header[0]) != MAGIC:
        raise BadInput(f"{p}: not a token shard (magic {int(header[0])}, expected {MAGIC})")
    if int(header[1]) != VERSION:
        raise BadInput(f"{p}: unsupported shard version {int(header[1])} (expected {VERSION})")
    count = int(header[2])
    if count < 0:
        raise BadInput(f"{p}: negative token count {count} in shard header")
    expected = HEADER_BYTES + 2 * count
    if size < expected:
        raise BadInput(f"{p}: truncated shard ({size} bytes, header promises {count} tokens = {expected} bytes)")
    if size > expected:
        # The real loaders check size == header + 2*count and refuse the file; so do we.
        raise BadInput(f"{p}: {size - expected} trailing bytes after {count} tokens")
    return count


def read_shard(path: str | os.PathLike[str]) -> np.ndarray:
    """All tokens of a shard as a uint16 array (native byte order)."""
    count = read_header(path)
    with open(path, "rb") as fh:
        fh.seek(HEADER_BYTES)
        data = fh.read(2 * count)
    if len(data) != 2 * count:  # the file shrank between stat and read
        raise BadInput(f"{path}: truncated shard while reading")
    return np.frombuffer(data, dtype="<u2").astype(np.uint16)


def doc_starts(tokens: np.ndarray, bos_id: int = BOS_ID) -> np.ndarray:
    """Indices where a document starts (its BOS), ascending."""
    return np.flatnonzero(np.asarray(tokens) == bos_id)
