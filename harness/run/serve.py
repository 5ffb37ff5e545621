"""The data a run is served: training shards (links) and a validation stream the harness chooses.

The served validation stream is what the verdict recomputes bytes per token over: positions in the
ledger are indexes into it. It is written as one shard in the challenge's format (harness.data.shards)
for the child, and kept by the parent in memory (`Served.stream`, with its sha256): the parent writes
`val_tokens.npy` into the out folder only after the child and its tree are gone (`save_tokens`), so a
script that overwrites files it can reach never changes what the recomputation uses; `harness verdict`
checks the saved copy against the hash in run.json.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import BadInput
from harness.data.shards import read_header, read_shard, write_shard

BOS_ID = 1
TRAIN_GLOB = "fineweb_train_*.bin"
VAL_GLOB = "fineweb_val_*.bin"
VAL_SHARD_NAME = "fineweb_val_000000.bin"
MAX_SAVED_STREAM = 16_000_000  # a longer, untruncated stream is referenced, not copied


@dataclass
class Served:
    data_dir: str  # DATA_PATH: the shards
    tokenizer: str | None  # the source SentencePiece model (outlives the run)
    vocab_size: int | None
    val_tokens: int  # length of the served validation stream
    val_tokens_path: str | None  # val_tokens.npy in the out folder (None: see val_files)
    val_files: list[str] = field(default_factory=list)  # the served validation shard(s)
    train_files: list[str] = field(default_factory=list)
    source: str = ""  # where the stream came from: a data folder, "override"
    truncated: bool = False
    data_root: str = ""  # DATA_DIR: the challenge repo's layout, datasets/ and tokenizers/ under it
    tokenizer_link: str | None = None  # TOKENIZER_PATH: the model under data_root/tokenizers/
    byte_sidecar: str | None = None  # fineweb_val_bytes_000000.bin, for scripts that read one
    val_sha256: str | None = None  # of the kept stream's uint16 bytes
    tokenizer_sha256: str | None = None  # the byte table's source, as served (checked again by the verdict)
    # the parent's copy of the served stream (never serialized); None when too long to keep
    stream: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "stream"}

    def keep(self, stream: np.ndarray) -> None:
        self.stream = np.array(stream, dtype="<u2", copy=True)
        self.stream.setflags(write=False)
        self.val_sha256 = tokens_sha256(self.stream)

    def save_tokens(self) -> None:
        """Write the parent's copy to val_tokens.npy (after the child is gone: replaces whatever is there)."""
        if self.stream is None or not self.val_tokens_path:
            return
        path = Path(self.val_tokens_path)
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, self.stream)
        os.replace(tmp, path)


def file_sha256(path: str | os.PathLike[str] | None) -> str | None:
    if not path:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def tokens_sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr, dtype="<u2").tobytes()).hexdigest()


def val_shards(data_dir: Path) -> list[Path]:
    # byte sidecars (fineweb_val_bytes_*.bin) match the glob too; they are not token shards
    return sorted(p for p in data_dir.glob(VAL_GLOB) if "_bytes_" not in p.name)


def cut_whole_documents(stream: np.ndarray, cap: int, bos: int = BOS_ID) -> np.ndarray:
    """At most `cap` tokens from the start, ending where a document ends when one ends in the
    second half (documents start with BOS); otherwise exactly `cap` tokens."""
    if cap <= 0:
        raise BadInput(f"val_tokens must be positive, got {cap}")
    if stream.size <= cap:
        return stream
    starts = np.flatnonzero(stream[: cap + 1] == bos)
    starts = starts[starts > 0]
    if starts.size and starts[-1] >= cap // 2:
        return stream[: int(starts[-1])]
    return stream[:cap]


def with_seen_tail(stream: np.ndarray, echo: int = 8, bos: int = BOS_ID) -> np.ndarray:
    """The stream with its last `echo` + 1 tokens copied from an earlier stretch of itself (one document, no
    BOS), so the context of the final position has been seen before: caches then hold entries for it, which
    is where target-keyed blends leak. The probes' C2 site is that last position; a truncated main run serves
    the same shape, so it is the probes' base run too (harness.probes.stage)."""
    out = np.array(stream, copy=True)
    length = int(out.size)
    if echo > 0 and length > 2 * (echo + 2):
        n = echo + 1
        # copy from the middle of the stream, avoiding BOS tokens so the copied context is one document
        lo = max(1, length // 3)
        for s in range(lo, length - 2 * n):
            seg = out[s:s + n]
            if not np.any(seg == bos):
                out[length - n:] = seg
                break
    return out


def block_length(env: Any, default: int = 1) -> int:
    """The stream granularity: the least common multiple of the *SEQ_LEN values of an environment."""
    import math

    out = 0
    for k, v in (env or {}).items():
        if str(k).endswith("SEQ_LEN"):
            try:
                x = int(str(v))
            except ValueError:
                continue
            if x > 0:
                out = x if not out else out * x // math.gcd(out, x)
    return out or default


def load_override(val_override: Any) -> np.ndarray:
    if isinstance(val_override, (str, os.PathLike)):
        p = Path(val_override)
        if not p.is_file():
            raise BadInput(f"validation override not found: {p}")
        if p.suffix == ".npy":
            try:
                arr = np.load(p, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise BadInput(f"{p}: not a .npy array ({e})") from None
        else:
            arr = read_shard(p)
    else:
        arr = np.asarray(val_override)
    if arr.ndim != 1 or arr.size < 2:
        raise BadInput("validation override must be a 1-D token array of at least 2 tokens")
    if not np.issubdtype(arr.dtype, np.integer):
        raise BadInput(f"validation override must hold integer tokens, got {arr.dtype}")
    if arr.min() < 0 or arr.max() > 65535:
        raise BadInput("validation override tokens must fit uint16 (0..65535)")
    return arr.astype("<u2")


def _alias(root: Path, dest: Path, tok_link: Path | None, vocab: int, names: list[str] | tuple[str, ...]) -> None:
    """The dataset folder and tokenizer under the names the script writes out (fineweb10B_sp10240_casefold/,
    fineweb_10240_casefold_bpe.model) when they name the served vocabulary: links to what is served, so the
    script finds its data where its own setup would have put it (and fetches nothing)."""
    for name in names:
        if not re.search(rf"(?<!\d){vocab}(?!\d)", name) or "/" in name or name.startswith("."):
            continue
        if name.endswith(".model"):
            if tok_link is None or (tok_link.parent / name).exists():
                continue
            os.symlink(tok_link.name, tok_link.parent / name)
        elif not (root / "datasets" / name).exists():
            os.symlink(dest.name, root / "datasets" / name, target_is_directory=True)


def serve_data(
    source_dir: str | os.PathLike[str] | None,
    root: Path,
    out_dir: Path,
    *,
    tokenizer: str | None,
    vocab_size: int | None,
    val_tokens: int | None,
    val_override: Any = None,
    byte_sidecar: bool = False,
    align: int = 1,
    names: list[str] | tuple[str, ...] = (),
) -> Served:
    """Lay out `root` as the challenge repo's data folder (scripts read DATA_PATH, or DATA_DIR with
    datasets/fineweb10B_sp<V>/ and tokenizers/fineweb_<V>_bpe.model under it): links to the training
    shards and the tokenizer, and the validation stream to serve."""
    src = Path(source_dir).expanduser().resolve() if source_dir else None
    if src is not None and not src.is_dir():
        raise BadInput(f"data folder not found: {src}")
    train = sorted(src.glob(TRAIN_GLOB)) if src else []
    v = vocab_size or 1024
    dest = root / "datasets" / f"fineweb10B_sp{v}"
    dest.mkdir(parents=True, exist_ok=True)
    link = None
    if tokenizer:
        (root / "tokenizers").mkdir(parents=True, exist_ok=True)
        link = root / "tokenizers" / f"fineweb_{v}_bpe.model"
        os.symlink(Path(tokenizer).resolve(), link)
    extra = {"data_root": str(root), "tokenizer_link": str(link) if link else None,
             "tokenizer_sha256": file_sha256(tokenizer)}
    _alias(root, dest, link, v, names)
    for t in train:
        os.symlink(t.resolve(), dest / t.name)
    served_train = [str(dest / t.name) for t in train]

    out_dir.mkdir(parents=True, exist_ok=True)
    npy = out_dir / "val_tokens.npy"
    if val_override is not None:
        stream = load_override(val_override)
        truncated = val_tokens is not None and stream.size > val_tokens
        if truncated:
            stream = stream[:val_tokens]
        source = "override"
    else:
        if src is None:
            raise BadInput("no data folder to serve validation tokens from (pass --data-path)")
        shards = val_shards(src)
        if not shards:
            raise BadInput(f"{src}: no {VAL_GLOB} shards")
        source = str(src)
        if val_tokens is None:
            # full stream, untouched: link the shards; keep a copy only when it is small
            files = []
            total = 0
            for s in shards:
                os.symlink(s.resolve(), dest / s.name)
                files.append(str(dest / s.name))
                total += read_header(s)
            saved = None
            kept = None
            if total <= MAX_SAVED_STREAM:
                kept = np.concatenate([read_shard(s) for s in shards])
                saved = str(npy)
            sv = Served(str(dest), tokenizer, vocab_size, total, saved, files, served_train, source, **extra)
            if kept is not None:
                sv.keep(kept)
                sv.save_tokens()
            return sv
        pieces, have = [], 0
        for s in shards:
            arr = read_shard(s)
            pieces.append(arr)
            have += arr.size
            if have > val_tokens:
                break
        full = np.concatenate(pieces)
        stream = cut_whole_documents(full, val_tokens)
        if align > 1 and stream.size > align + 1:
            # a multiple of the sequence length plus one: what the scripts score whole, and the length every
            # probe variant gets too (harness.probes), so a variant cannot be told from the main run by it
            stream = stream[: (stream.size - 1) // align * align + 1]
        truncated = stream.size < full.size
        if truncated:
            stream = with_seen_tail(stream)  # the probes' base stream: the main run serves as their base run
    val_path = dest / VAL_SHARD_NAME
    write_shard(val_path, stream)
    sidecar = None
    if byte_sidecar and tokenizer:
        # records that count bytes from a sidecar (CaseOps) read fineweb_val_bytes_*.bin beside the
        # validation shard: per-token byte counts of the served stream under the served tokenizer
        from harness.data.builtin import byte_counts

        sidecar = dest / VAL_SHARD_NAME.replace("fineweb_val_", "fineweb_val_bytes_")
        write_shard(sidecar, byte_counts(tokenizer, stream))
    sv = Served(
        str(dest), tokenizer, vocab_size, int(stream.size), str(npy), [str(val_path)], served_train,
        source, truncated, **extra, byte_sidecar=str(sidecar) if sidecar else None,
    )
    sv.keep(stream)
    sv.save_tokens()  # written again after the run (runner): a copy for a run that never launches
    return sv

