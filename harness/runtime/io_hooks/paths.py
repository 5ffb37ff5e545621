"""What a file is to the harness: a training shard, a validation shard, an artifact, or nothing.

Shards are recognised by name (the settings' globs, any folder) and laid out in the challenge's format:
a header of 256 int32 (magic 20240520, version 1, token count), then uint16 tokens. Validation
positions are indexes into the stream formed by the validation shards of one folder in sorted order.
"""

from __future__ import annotations

import fnmatch
import os
import re
import struct
from dataclasses import dataclass

HEADER_BYTES = 256 * 4
TOKEN_BYTES = 2
MAGIC = 20240520

# Files the script writes or reads that are never the artifact: source, logs, text, tokenizers.
NOT_ARTIFACT_SUFFIXES = frozenset(
    {
        ".py", ".pyc", ".txt", ".log", ".md", ".json", ".jsonl", ".csv", ".tsv", ".yaml", ".yml",
        ".toml", ".sh", ".model", ".vocab", ".cfg", ".ini", ".lock", ".tmp", ".png", ".svg", ".html",
    }
)


# The artifact B1 counts is the compressed / quantized model; a raw torch.save checkpoint written on
# the way (the baseline's final_model.pt, saved before GPTQ calibration) is not the line between
# training and evaluation.
COMPRESSED_SUFFIXES = frozenset(
    {".ptz", ".zst", ".zstd", ".xz", ".lzma", ".br", ".bz2", ".gz", ".zlib", ".brotli", ".npz"}
)
CHECKPOINT_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".safetensors"})
_QUANT = re.compile(r"\.(?:int|q|fp|bf)\d+\w*$")
_RAW_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save zip, pickle


def is_checkpoint(path: str, head: bytes | None) -> bool:
    """A raw (uncompressed, unquantized) model save rather than the submission's artifact."""
    name = os.path.basename(path).lower()
    parts = name.split(".")[1:]
    suffixes = ["." + p for p in parts]
    if any(x in COMPRESSED_SUFFIXES for x in suffixes) or any(_QUANT.match(x) for x in suffixes):
        return False
    if suffixes and suffixes[-1] in CHECKPOINT_SUFFIXES:
        return True
    return head is not None and head.startswith(_RAW_MAGIC)


@dataclass(frozen=True)
class ShardInfo:
    ntokens: int
    offset: int  # stream position of this shard's first token


class Classifier:
    def __init__(
        self,
        train_glob: str,
        val_glob: str,
        workdir: str = "",
        data_dir: str = "",
        real_open=open,
        stream_tokens: int | None = None,
    ) -> None:
        self.train_glob = train_glob
        self.val_glob = val_glob
        self.workdir = os.path.abspath(workdir) + os.sep if workdir else ""
        self.data_dir = os.path.abspath(data_dir) + os.sep if data_dir else ""
        self._open = real_open
        self.stream_tokens = stream_tokens  # length of the served validation stream, when known
        self._shards: dict[str, ShardInfo | None] = {}

    def kind(self, path: str | None) -> str | None:
        """'train' | 'val' | 'artifact' | None."""
        if not path:
            return None
        name = os.path.basename(path)
        if fnmatch.fnmatchcase(name, self.val_glob):
            return "val"
        if fnmatch.fnmatchcase(name, self.train_glob):
            return "train"
        return "artifact" if self.is_artifact(path) else None

    def is_artifact(self, path: str) -> bool:
        if not self.workdir:
            return False
        ap = os.path.abspath(path)
        if not ap.startswith(self.workdir) or (self.data_dir and ap.startswith(self.data_dir)):
            return False
        rel = ap[len(self.workdir):]
        parts = rel.split(os.sep)
        # dot folders (HOME caches), logs/: never the artifact; in tmp/ (TMPDIR) only a file written straight
        # into it (a script that saves its model to tempfile.gettempdir()), never a compiler's cache folder
        if len(parts) > 1 and (parts[0] in ("logs", "__pycache__") or parts[0].startswith(".")):
            return False
        if parts[0] == "tmp" and len(parts) != 2:
            return False
        name = parts[-1]
        if name.startswith("."):
            return False
        return os.path.splitext(name)[1].lower() not in NOT_ARTIFACT_SUFFIXES

    def rel(self, path: str) -> str:
        ap = os.path.abspath(path)
        if self.workdir and ap.startswith(self.workdir):
            return ap[len(self.workdir):]
        return ap

    # -- validation shards -------------------------------------------------------------------

    def _header(self, path: str) -> int | None:
        """Token count from a challenge shard header, or None when the file is not one."""
        try:
            with self._open(path, "rb") as fh:
                head = fh.read(12)
            size = os.path.getsize(path)
        except OSError:
            return None
        if len(head) < 12:
            return None
        magic, version, n = struct.unpack("<3i", head)
        if magic != MAGIC or version != 1 or size != HEADER_BYTES + n * TOKEN_BYTES:
            return None
        return n

    def shard(self, path: str) -> ShardInfo | None:
        ap = os.path.abspath(path)
        if ap in self._shards:
            return self._shards[ap]
        n = self._header(ap)
        if n is None:
            self._shards[ap] = None
            return None
        folder = os.path.dirname(ap)
        offset = 0
        for other in sorted(os.listdir(folder)):
            if not fnmatch.fnmatchcase(other, self.val_glob):
                continue
            op = os.path.join(folder, other)
            if op == ap:
                break
            # a header already read is not opened again: the OS witness would see the hook's own open
            # beside no recorded read of that file
            known = self._shards.get(op)
            on = known.ntokens if known is not None else (None if op in self._shards else self._header(op))
            if on is not None:
                offset += on
        info = ShardInfo(ntokens=n, offset=offset)
        self._shards[ap] = info
        return info

    def val_span(self, path: str, byte_lo: int, byte_hi: int) -> tuple[int, int] | None:
        """Stream positions [lo, hi) touched by bytes [byte_lo, byte_hi) of a validation file.

        None: only header bytes. A file that is not a recognised shard (a byte sidecar) gives the
        whole served stream (conservative), or (0, 2**31 - 1) when its length is unknown.
        """
        info = self.shard(path)
        if info is None:
            return (0, self.stream_tokens if self.stream_tokens else 2**31 - 1)
        t_lo = max(0, (byte_lo - HEADER_BYTES) // TOKEN_BYTES)
        t_hi = min(info.ntokens, -(-(byte_hi - HEADER_BYTES) // TOKEN_BYTES))
        if t_hi <= t_lo:
            return None
        return (info.offset + t_lo, info.offset + t_hi)

    def val_first_position(self, path: str, byte_lo: int, itemsize: int) -> int | None:
        """Stream position of an array's element 0 when its elements are the shard's tokens.

        None when elements are not tokens (another item size, misaligned). May be negative: the
        array starts inside the header (those elements are header words, not tokens).
        """
        info = self.shard(path)
        if info is None or itemsize != TOKEN_BYTES or (byte_lo - HEADER_BYTES) % TOKEN_BYTES:
            return None
        return info.offset + (byte_lo - HEADER_BYTES) // TOKEN_BYTES
