"""The built-in data: a SentencePiece BPE tokenizer and token shards made from English text that
every Python installation ships (the documentation topics behind `help()`, standard-library module
docstrings, built-in docstrings, the Zen of Python). No download.

Built once per vocabulary size under `<cache_dir>/vocab{N}/`, deterministically (same Python
standard library -> byte-identical files) and atomically (built in a temporary folder that is then
renamed into place, so a crash or a concurrent builder never leaves half a cache). The layout and
the tokenizer's conventions follow the challenge's: pad=0, BOS=1, EOS=2, unk=3, byte fallback
pieces <0x..>, nmt_nfkc normalization, no dummy prefix, split digits; every document starts with
BOS, no EOS; the validation split is the first documents, training the rest.
"""

from __future__ import annotations

import ast
import codecs
import hashlib
import io
import json
import operator
import os
import random
import re
import shutil
import sys
import sysconfig
import tempfile
import time
import tokenize
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import progress
from harness.errors import BadInput, HarnessError
from harness.data.shards import BOS_ID, doc_starts, read_header, read_shard, write_shard
from harness.pyast import parse_source

FORMAT = 1  # bump when the build changes, so stale caches are rebuilt
DEFAULT_VOCAB = 1024
DEFAULT_CACHE_DIR = "~/.cache/pgolf-harness"
VAL_MIN_TOKENS = 20_000  # the validation split: first documents until this many tokens
TRAIN_MIN_TOKENS = 100_000
MAX_DOC_CHARS = 3_000  # long help topics are cut at paragraph breaks into documents of this size
MIN_DOC_CHARS = 60
SHUFFLE_SEED = 20240520
SP_SEED = 1337
MANIFEST = "manifest.json"
TRAIN_NAME = "fineweb_train_000000.bin"
VAL_NAME = "fineweb_val_000000.bin"

# The challenge's tokenizer settings (data/download_hf_docs_and_tokenize.py in openai/parameter-golf),
# plus what makes the build reproducible: one thread, no input sampling or shuffling, exact vocab.
SP_OPTIONS: dict[str, Any] = {
    "model_type": "bpe",
    "character_coverage": 0.999,
    "byte_fallback": True,
    "split_digits": True,
    "normalization_rule_name": "nmt_nfkc",
    "add_dummy_prefix": False,
    "pad_id": 0,
    "bos_id": 1,
    "eos_id": 2,
    "unk_id": 3,
    "hard_vocab_limit": True,  # scripts check sp.vocab_size() == VOCAB_SIZE: exactly N or a clear error
    "num_threads": 1,
    "input_sentence_size": 0,
    "shuffle_input_sentence": False,
    "minloglevel": 2,
}

_EXCLUDED_DIRS = {"site-packages", "dist-packages", "idlelib", "lib2to3", "turtledemo", "__pycache__"}


@dataclass
class DataPaths:
    data_dir: Path
    tokenizer: Path
    vocab_size: int
    train_files: list[Path]
    val_files: list[Path]
    val_tokens: int
    train_tokens: int
    build_seconds: float | None = None  # None when served from the cache
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)

    def read_val(self) -> np.ndarray:
        """The whole validation stream (uint16), shards in name order."""
        return np.concatenate([read_shard(p) for p in sorted(self.val_files)])


# ---------------------------------------------------------------- text from the standard library


def _split_document(text: str, max_chars: int = MAX_DOC_CHARS) -> list[str]:
    """Cut a long text at blank lines into pieces of at most ~max_chars (a paragraph is never cut)."""
    text = text.replace("\x00", " ").strip()
    if len(text) <= max_chars:
        return [text] if text else []
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for para in re.split(r"\n\s*\n", text):
        if cur and size + len(para) > max_chars:
            out.append("\n\n".join(cur))
            cur, size = [], 0
        cur.append(para)
        size += len(para) + 2
    if cur:
        out.append("\n\n".join(cur))
    return [d.strip() for d in out if d.strip()]


def _help_topics() -> list[str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip it
        return []
    return [topics[k] for k in sorted(topics)]


def _stdlib_module_docstrings() -> list[str]:
    """Module docstrings of the standard library's own .py files, read without importing them."""
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        return []
    files = []
    for p in root.rglob("*.py"):
        parts = p.relative_to(root).parts
        if any(part in _EXCLUDED_DIRS or part.startswith("test") for part in parts):
            continue
        files.append(p)
    docs = []
    for p in sorted(files, key=lambda q: q.relative_to(root).as_posix()):
        doc = _leading_docstring(p)
        if doc:
            docs.append(doc)
    return docs


def _leading_docstring(path: Path) -> str | None:
    # Tokenize only up to the first statement: far cheaper than parsing the whole module.
    try:
        with open(path, "rb") as fh:
            for tok in tokenize.tokenize(fh.readline):
                if tok.type in (tokenize.ENCODING, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
                    continue
                if tok.type == tokenize.STRING:
                    value = ast.literal_eval(tok.string)
                    return value if isinstance(value, str) else None
                return None
    except (OSError, SyntaxError, ValueError, tokenize.TokenError, UnicodeDecodeError):
        return None
    return None


def _builtin_docstrings() -> list[str]:
    import builtins

    seen: set[str] = set()
    docs = []
    for name in sorted(dir(builtins)):
        doc = getattr(getattr(builtins, name), "__doc__", None)
        if isinstance(doc, str) and doc not in seen:
            seen.add(doc)
            docs.append(doc)
    return docs


def _zen_of_python() -> list[str]:
    # `import this` prints; read its rot13 source string instead.
    path = Path(sysconfig.get_paths()["stdlib"]) / "this.py"
    try:
        tree = parse_source(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return []
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "s" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return [codecs.decode(node.value.value, "rot13")]
    return []


def corpus_documents() -> list[str]:
    """The built-in documents, in their fixed (seeded, shuffled) order."""
    texts = _help_topics() + _stdlib_module_docstrings() + _builtin_docstrings() + _zen_of_python()
    docs = [d for t in texts for d in _split_document(t) if len(d) >= MIN_DOC_CHARS]
    # Shuffle so validation (the first documents) mixes every source, like a web sample would.
    random.Random(SHUFFLE_SEED).shuffle(docs)
    return docs


# ---------------------------------------------------------------- tokenizer


def _sp_error(vocab_size: int, err: Exception) -> BadInput:
    msg = str(err)
    m = re.search(r"set it to a value <= (\d+)", msg)
    if m:
        return BadInput(
            f"vocab size {vocab_size} is too large for the built-in text (it supports at most {m.group(1)})"
        )
    m = re.search(r"smaller than required_chars\. \d+ vs (\d+)", msg)
    if m:
        return BadInput(f"vocab size {vocab_size} is too small: the text needs at least {m.group(1)} ids")
    first = msg.strip().splitlines()[0] if msg.strip() else type(err).__name__
    return BadInput(f"cannot train a {vocab_size}-token SentencePiece tokenizer: {first}")


def train_tokenizer(texts: Iterable[str], vocab_size: int, model_path: str | os.PathLike[str]) -> Path:
    """Train the challenge-style BPE tokenizer on `texts`; write `model_path` (.model) and the
    matching .vocab beside it. Deterministic: the same texts give byte-identical files."""
    import sentencepiece as spm

    if not 0 < vocab_size <= 65536:
        raise BadInput(f"vocab size {vocab_size} must be between 1 and 65536 (tokens are stored as uint16)")
    # Feed lines: SentencePiece skips training sentences longer than max_sentence_length (4192 bytes).
    lines = [ln.strip() for t in texts for ln in t.replace("\x00", " ").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise BadInput("no text to train a tokenizer on")
    buf = io.BytesIO()
    spm.set_random_generator_seed(SP_SEED)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab_size, **SP_OPTIONS
        )
    except RuntimeError as e:
        raise _sp_error(vocab_size, e) from None
    model = Path(model_path)
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    vocab = "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.vocab_size()))
    model.with_suffix(".vocab").write_text(vocab, encoding="utf-8")
    return model


def encode_documents(sp, docs: Sequence[str], bos_id: int = BOS_ID) -> list[np.ndarray]:
    """Each document as BOS + its ids (uint16), no EOS, like the challenge's export."""
    ids = sp.encode(list(docs), out_type=int, num_threads=1)
    return [np.asarray([bos_id, *d], dtype=np.uint16) for d in ids]


# ---------------------------------------------------------------- build and cache


def _resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        from harness.config import load_config

        cache_dir = load_config().get("run", "cache_dir") or DEFAULT_CACHE_DIR
    return Path(os.path.expanduser(str(cache_dir))).resolve()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_data(vocab_size: int, out_dir: Path) -> dict[str, Any]:
    """Build tokenizer + shards into out_dir (an empty folder); return the manifest."""
    import sentencepiece as spm

    docs = corpus_documents()
    if not docs:
        raise HarnessError("this Python installation ships no documentation text to build data from")
    model = train_tokenizer(docs, vocab_size, out_dir / f"fineweb_{vocab_size}_bpe.model")
    sp = spm.SentencePieceProcessor(model_file=str(model))
    if int(sp.vocab_size()) != vocab_size or sp.bos_id() != BOS_ID:
        raise HarnessError(f"trained tokenizer has {sp.vocab_size()} ids and BOS {sp.bos_id()}")
    encoded = encode_documents(sp, docs)
    lengths = np.cumsum([len(e) for e in encoded])
    n_val_docs = int(np.searchsorted(lengths, VAL_MIN_TOKENS, side="left")) + 1
    if n_val_docs >= len(encoded):
        raise BadInput(f"the built-in text is too small for vocab size {vocab_size}: no training documents left")
    val = np.concatenate(encoded[:n_val_docs])
    train = np.concatenate(encoded[n_val_docs:])
    if train.size < TRAIN_MIN_TOKENS:
        raise BadInput(
            f"the built-in text gives only {train.size} training tokens at vocab size {vocab_size} "
            f"(need {TRAIN_MIN_TOKENS}); use a smaller vocab size or --data-path"
        )
    write_shard(out_dir / VAL_NAME, val)
    write_shard(out_dir / TRAIN_NAME, train)
    files = [model, model.with_suffix(".vocab"), out_dir / VAL_NAME, out_dir / TRAIN_NAME]
    for p in files:  # temp files and folders are created private; the cache is plain readable data
        p.chmod(0o644)
    out_dir.chmod(0o755)
    manifest = {
        "format": FORMAT,
        "vocab_size": vocab_size,
        "tokenizer": model.name,
        "train_files": [TRAIN_NAME],
        "val_files": [VAL_NAME],
        "train_tokens": int(train.size),
        "val_tokens": int(val.size),
        "train_docs": len(encoded) - n_val_docs,
        "val_docs": n_val_docs,
        "source": {
            "python": ".".join(map(str, sys.version_info[:3])),
            "text_sha256": hashlib.sha256("\x00".join(docs).encode("utf-8")).hexdigest(),
            "what": "pydoc_data.topics + stdlib module docstrings + builtins docstrings + this.py",
        },
        "sha256": {p.name: _sha256(p) for p in files},
        "bytes": {p.name: p.stat().st_size for p in files},
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _load_cached(data_dir: Path, vocab_size: int) -> DataPaths | None:
    """The cached build if it is complete and current, else None."""
    try:
        manifest = json.loads((data_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("vocab_size") != vocab_size:
        return None
    try:
        for name, size in manifest["bytes"].items():
            if (data_dir / name).stat().st_size != size:
                return None
        train = [data_dir / n for n in manifest["train_files"]]
        val = [data_dir / n for n in manifest["val_files"]]
        return DataPaths(
            data_dir=data_dir,
            tokenizer=data_dir / manifest["tokenizer"],
            vocab_size=vocab_size,
            train_files=train,
            val_files=val,
            val_tokens=sum(read_header(p) for p in val),
            train_tokens=sum(read_header(p) for p in train),
            manifest=manifest,
        )
    except (OSError, KeyError, TypeError, AttributeError, BadInput):
        return None


def _publish(tmp: Path, final: Path, vocab_size: int, force: bool) -> None:
    """Rename the finished build into place; a valid build that won a race is kept (unless force)."""
    for _ in range(5):
        try:
            os.rename(tmp, final)
            return
        except OSError:
            if not final.exists():
                continue  # someone moved it away between our calls: try again
        if not force and _load_cached(final, vocab_size) is not None:
            return  # a concurrent builder finished first; ours is discarded
        aside = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(final, aside)
        except FileNotFoundError:
            continue
        shutil.rmtree(aside, ignore_errors=True)
    raise HarnessError(f"could not move the built data into {final} (concurrent builders?)")


def ensure_data(vocab_size: int = DEFAULT_VOCAB, cache_dir: str | Path | None = None, force: bool = False) -> DataPaths:
    """The built-in data for `vocab_size`, built on first use (a second or so) and cached."""
    if isinstance(vocab_size, bool):
        raise BadInput(f"vocab size must be an integer, got {vocab_size!r}")
    try:
        vocab_size = operator.index(vocab_size)  # int, numpy integers
    except TypeError:
        raise BadInput(f"vocab size must be an integer, got {vocab_size!r}") from None
    if not 260 < vocab_size <= 65536:
        raise BadInput(
            f"vocab size {vocab_size} out of range: need more than 260 ids (4 control + 256 byte pieces) "
            "and at most 65536 (uint16 tokens)"
        )
    return _cached_build(_resolve_cache_dir(cache_dir), f"vocab{vocab_size}", vocab_size, force,
                         lambda tmp: build_data(vocab_size, tmp))


def _cached_build(root: Path, name: str, vocab: int, force: bool, build: Callable[[Path], Any]) -> DataPaths:
    """`root/name` as cached, else built by `build(tmp)` in a temporary folder beside it and published
    atomically (concurrent builders: the last one wins, readers never see half a folder)."""
    final = root / name
    if not force:
        cached = _load_cached(final, vocab)
        if cached is not None:
            return cached
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.build-", dir=root))
    except OSError as e:
        raise BadInput(f"cannot create the data cache in {root} ({e.strerror or e})") from None
    t0 = time.perf_counter()
    try:
        with progress.step("data", f"data: building {name} (once; cached afterwards)"):
            build(tmp)
        _publish(tmp, final, vocab, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - t0
    paths = _load_cached(final, vocab)
    for _ in range(3):  # a concurrent --force builder may be swapping the folder right now
        if paths is not None:
            break
        time.sleep(0.2)
        paths = _load_cached(final, vocab)
    if paths is None:
        raise HarnessError(f"the data cache {final} is incomplete right after building it")
    paths.build_seconds = seconds
    return paths


# ---------------------------------------------------------------- serving a short validation stream


def serve_val(
    tokens: np.ndarray, out_dir: str | os.PathLike[str], n_tokens: int, *, bos_id: int = BOS_ID
) -> Path:
    """Write `out_dir/fineweb_val_000000.bin` holding the first whole documents of `tokens` that
    cover at least n_tokens (cut at the next BOS at or after n_tokens; the whole stream if none)."""
    v = np.asarray(tokens)
    if v.ndim != 1:
        raise BadInput(f"validation tokens must be a 1-D stream, got shape {v.shape}")
    if n_tokens < 1:
        raise BadInput(f"cannot serve {n_tokens} validation tokens")
    if n_tokens > v.size:
        raise BadInput(f"the validation stream has {v.size} tokens, fewer than the {n_tokens} asked for")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    others = sorted(p.name for p in out.glob("fineweb_val_*.bin") if p.name != VAL_NAME)
    if others:
        # A script globs fineweb_val_*.bin: another shard here would silently join the stream.
        raise BadInput(f"{out} already holds other validation shards ({', '.join(others[:3])})")
    starts = doc_starts(v, bos_id)
    i = int(np.searchsorted(starts, n_tokens, side="left"))
    end = int(starts[i]) if i < starts.size else int(v.size)
    return write_shard(out / VAL_NAME, v[:end])


# ---------------------------------------------------------------- `harness data`


def _human(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def main_data(opts: Any, cfg: Any) -> int:
    """`harness data`: opts has vocab_size, cache_dir, force (harness.cli.options.DataOptions)."""
    from rich.console import Console
    from rich.table import Table

    from harness.errors import Exit

    cache_dir = opts.cache_dir or cfg.get("run", "cache_dir") or DEFAULT_CACHE_DIR
    paths = ensure_data(int(opts.vocab_size), cache_dir, force=bool(opts.force))
    console = Console()
    how = f"built in {paths.build_seconds:.1f} s" if paths.build_seconds is not None else "cached"
    console.print(f"[bold]built-in data[/bold] vocab {paths.vocab_size} ({how}): {paths.data_dir}")
    table = Table("file", "tokens", "size")
    table.add_row(str(paths.tokenizer), f"{paths.vocab_size} ids", _human(paths.tokenizer.stat().st_size))
    for p in paths.val_files + paths.train_files:
        table.add_row(str(p), f"{read_header(p):,}", _human(p.stat().st_size))
    console.print(table)
    console.print(
        f"validation {paths.val_tokens:,} tokens ({paths.manifest.get('val_docs', '?')} documents), "
        f"training {paths.train_tokens:,} tokens ({paths.manifest.get('train_docs', '?')} documents)"
    )
    console.print(f"use: --data-path {paths.data_dir} --tokenizer {paths.tokenizer}", soft_wrap=True)
    return int(Exit.COMPLIANT)


# ---------------------------------------------------------------- data for a record's own tokenizer


def tokenizer_digest(model_path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(model_path).read_bytes()).hexdigest()


def build_with_tokenizer(model_path: Path, out_dir: Path) -> dict[str, Any]:
    """Encode the built-in text with a record's own SentencePiece model into out_dir (an empty folder):
    the model (copied), a validation and a training shard; return the manifest."""
    import sentencepiece as spm

    data = model_path.read_bytes()
    try:
        sp = spm.SentencePieceProcessor(model_proto=data)
    except Exception as e:  # noqa: BLE001 - not a SentencePiece model
        raise BadInput(f"{model_path}: not a SentencePiece model ({type(e).__name__})") from None
    vocab = int(sp.vocab_size())
    if vocab > 65536:
        raise BadInput(f"{model_path}: {vocab} ids do not fit uint16 tokens")
    docs = corpus_documents()
    if not docs:
        raise HarnessError("this Python installation ships no documentation text to build data from")
    model = out_dir / model_path.name
    model.write_bytes(data)
    bos = sp.bos_id() if sp.bos_id() >= 0 else BOS_ID
    encoded = encode_documents(sp, docs, bos_id=bos)
    lengths = np.cumsum([len(e) for e in encoded])
    n_val_docs = int(np.searchsorted(lengths, VAL_MIN_TOKENS, side="left")) + 1
    if n_val_docs >= len(encoded):
        raise BadInput(f"the built-in text is too small for {model_path.name}: no training documents left")
    val = np.concatenate(encoded[:n_val_docs])
    train = np.concatenate(encoded[n_val_docs:])
    write_shard(out_dir / VAL_NAME, val)
    write_shard(out_dir / TRAIN_NAME, train)
    files = [model, out_dir / VAL_NAME, out_dir / TRAIN_NAME]
    for p in files:
        p.chmod(0o644)
    out_dir.chmod(0o755)
    manifest = {
        "format": FORMAT,
        "vocab_size": vocab,
        "tokenizer": model.name,
        "tokenizer_sha256": hashlib.sha256(data).hexdigest(),
        "bos_id": bos,
        "train_files": [TRAIN_NAME],
        "val_files": [VAL_NAME],
        "train_tokens": int(train.size),
        "val_tokens": int(val.size),
        "train_docs": len(encoded) - n_val_docs,
        "val_docs": n_val_docs,
        "source": {"python": ".".join(map(str, sys.version_info[:3])),
                   "what": "the built-in text encoded with the submission's own tokenizer"},
        "sha256": {p.name: _sha256(p) for p in files},
        "bytes": {p.name: p.stat().st_size for p in files},
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def ensure_tokenizer_data(model_path: str | os.PathLike[str], cache_dir: str | Path | None = None,
                          force: bool = False) -> DataPaths:
    """The built-in text encoded with a submission's own tokenizer (its .model file), built once and
    cached by the model's content hash under `<cache_dir>/tok-<sha256[:16]>/`: bytes per token are the
    record's."""
    src = Path(model_path).expanduser()
    if not src.is_file():
        raise BadInput(f"tokenizer not found: {src}")
    import sentencepiece as spm

    try:
        vocab = int(spm.SentencePieceProcessor(model_file=str(src)).vocab_size())
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"{src}: not a SentencePiece model ({type(e).__name__})") from None
    return _cached_build(_resolve_cache_dir(cache_dir), f"tok-{tokenizer_digest(src)[:16]}", vocab, force,
                         lambda tmp: build_with_tokenizer(src, tmp))


def byte_counts(model_path: str | os.PathLike[str], tokens: np.ndarray) -> np.ndarray:
    """Per-token UTF-8 byte counts of a token stream under a SentencePiece model (a byte sidecar,
    fineweb_val_bytes_*.bin): byte pieces 1, control/unknown pieces 0, others the bytes of the piece with
    its leading-space marker as one space."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    lut = np.zeros(max(int(sp.vocab_size()), 1), dtype=np.int64)
    for i in range(sp.vocab_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        if sp.is_byte(i):
            lut[i] = 1
            continue
        lut[i] = len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
    t = np.asarray(tokens, dtype=np.int64)
    t = np.clip(t, 0, lut.size - 1)
    return lut[t].astype(np.uint16)
