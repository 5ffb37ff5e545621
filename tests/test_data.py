"""The built-in data: deterministic, cached, atomic, challenge-shaped; serve_val; `harness data`."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
import sentencepiece as spm

from harness.data import builtin as D
from harness.cli import main
from harness.errors import BadInput
from harness.data.shards import doc_starts, read_shard, write_shard

FILES = ["fineweb_1024_bpe.model", "fineweb_1024_bpe.vocab", "fineweb_train_000000.bin", "fineweb_val_000000.bin", "manifest.json"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    t0 = time.perf_counter()
    paths = D.ensure_data(1024, cache)
    return paths, time.perf_counter() - t0


def test_layout_and_sizes(built):
    paths, seconds = built
    assert seconds < 30 and paths.build_seconds is not None
    assert sorted(os.listdir(paths.data_dir)) == sorted(FILES)
    assert paths.data_dir.name == "vocab1024" and paths.vocab_size == 1024
    assert paths.tokenizer == paths.data_dir / "fineweb_1024_bpe.model"
    assert [p.name for p in paths.train_files] == ["fineweb_train_000000.bin"]
    assert [p.name for p in paths.val_files] == ["fineweb_val_000000.bin"]
    assert paths.train_tokens >= 100_000 and paths.val_tokens >= 16_000
    # nothing else (temporary build folders) left in the cache root
    assert os.listdir(paths.data_dir.parent) == ["vocab1024"]


def test_tokenizer_matches_challenge_conventions(built):
    paths, _ = built
    sp = spm.SentencePieceProcessor(model_file=str(paths.tokenizer))
    assert sp.vocab_size() == 1024
    assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)
    assert [sp.id_to_piece(i) for i in range(4, 7)] == ["<0x00>", "<0x01>", "<0x02>"]
    assert all(sp.is_byte(i) for i in range(4, 260))
    assert sp.encode_as_pieces("€") == ["<0xE2>", "<0x82>", "<0xAC>"]  # byte fallback
    assert sp.encode("2024") == [sp.piece_to_id(c) for c in "2024"]  # digits split
    assert sp.encode_as_pieces("hello")[0][0] != "▁"  # no dummy prefix
    vocab_lines = paths.tokenizer.with_suffix(".vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab_lines) == 1024 and vocab_lines[1].split("\t")[0] == "<s>"


def test_shards_are_bos_documents(built):
    paths, _ = built
    for f, n in [(paths.val_files[0], paths.val_tokens), (paths.train_files[0], paths.train_tokens)]:
        toks = read_shard(f)
        assert toks.size == n and toks[0] == 1
        assert not np.isin(toks, [0, 2, 3]).any()  # no pad, no EOS, no unknown
        assert int(toks.max()) < 1024
        starts = doc_starts(toks)
        assert (np.diff([*starts, toks.size]) > 1).all()  # no empty document
    manifest = json.loads((paths.data_dir / "manifest.json").read_text())
    assert manifest["val_docs"] == doc_starts(read_shard(paths.val_files[0])).size
    assert manifest["train_docs"] == doc_starts(read_shard(paths.train_files[0])).size


def test_validation_is_the_first_documents(built):
    """val = the first documents of the fixed order, train = the rest, nothing dropped or repeated."""
    paths, _ = built
    sp = spm.SentencePieceProcessor(model_file=str(paths.tokenizer))
    docs = D.corpus_documents()
    val, train = read_shard(paths.val_files[0]), read_shard(paths.train_files[0])
    n_val = doc_starts(val).size
    assert n_val + doc_starts(train).size == len(docs)
    first_val = val[1 : doc_starts(val)[1]].tolist()
    assert first_val == sp.encode(docs[0])
    first_train = train[1 : doc_starts(train)[1]].tolist()
    assert first_train == sp.encode(docs[n_val])


def test_deterministic_rebuild_is_byte_identical(built, tmp_path):
    paths, _ = built
    again = D.ensure_data(1024, tmp_path)
    for name in FILES:
        assert (again.data_dir / name).read_bytes() == (paths.data_dir / name).read_bytes(), name


def test_cache_is_reused_then_forced(built, tmp_path):
    paths, _ = built
    cache = tmp_path / "c"
    shutil.copytree(paths.data_dir, cache / "vocab1024")
    shard = cache / "vocab1024" / "fineweb_val_000000.bin"
    before = shard.stat().st_mtime_ns
    cached = D.ensure_data(1024, cache)
    assert cached.build_seconds is None and shard.stat().st_mtime_ns == before
    assert cached.val_tokens == paths.val_tokens and cached.read_val().size == paths.val_tokens
    forced = D.ensure_data(1024, cache, force=True)
    assert forced.build_seconds is not None
    assert shard.read_bytes() == (paths.data_dir / shard.name).read_bytes()
    assert sorted(os.listdir(cache)) == ["vocab1024"]


def test_damaged_cache_is_rebuilt(built, tmp_path):
    paths, _ = built
    shutil.copytree(paths.data_dir, tmp_path / "vocab1024")
    shard = tmp_path / "vocab1024" / "fineweb_train_000000.bin"
    shard.write_bytes(shard.read_bytes()[:-100])  # as if a copy was cut short
    rebuilt = D.ensure_data(1024, tmp_path)
    assert rebuilt.build_seconds is not None
    assert shard.read_bytes() == (paths.data_dir / shard.name).read_bytes()


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def boom(vocab_size, out_dir):
        (out_dir / "fineweb_val_000000.bin").write_bytes(b"half")
        raise RuntimeError("crash mid-build")

    monkeypatch.setattr(D, "build_data", boom)
    with pytest.raises(RuntimeError):
        D.ensure_data(1024, tmp_path)
    assert os.listdir(tmp_path) == []


def test_publish_keeps_a_concurrent_winner(built, tmp_path):
    """Two builders finishing at once: the second sees a valid cache and discards its own build
    (force replaces it instead); the final folder is always complete."""
    paths, _ = built
    final = tmp_path / "vocab1024"
    shutil.copytree(paths.data_dir, final)
    (final / "winner").write_text("first")
    ours = tmp_path / ".vocab1024.build-x"
    shutil.copytree(paths.data_dir, ours)
    D._publish(ours, final, 1024, force=False)
    assert (final / "winner").exists()
    D._publish(ours, final, 1024, force=True)
    assert not (final / "winner").exists() and not ours.exists()
    assert D._load_cached(final, 1024) is not None
    assert sorted(os.listdir(tmp_path)) == ["vocab1024"]


def test_vocab_8192_builds(tmp_path):
    paths = D.ensure_data(8192, tmp_path)
    assert spm.SentencePieceProcessor(model_file=str(paths.tokenizer)).vocab_size() == 8192
    assert paths.tokenizer.name == "fineweb_8192_bpe.model"
    assert paths.train_tokens >= 100_000 and paths.val_tokens >= 16_000


@pytest.mark.parametrize("vocab, needle", [(100, "out of range"), (70000, "out of range"), (True, "integer"), ("1024", "integer"), (1024.0, "integer")])
def test_bad_vocab_sizes(tmp_path, vocab, needle):
    with pytest.raises(BadInput, match=needle):
        D.ensure_data(vocab, tmp_path)


def test_tokenizer_too_small_or_too_large_for_text(tmp_path):
    text = ["a small text about a cat and a mat, nothing else at all"] * 5
    with pytest.raises(BadInput, match="too small: the text needs at least"):
        D.train_tokenizer(text, 270, tmp_path / "a.model")
    with pytest.raises(BadInput, match="too large for the built-in text"):
        D.train_tokenizer(text, 5000, tmp_path / "b.model")


def test_corpus_is_fixed_english_text():
    docs = D.corpus_documents()
    assert docs == D.corpus_documents()
    assert len(docs) > 300
    assert all(D.MIN_DOC_CHARS <= len(d) and "\x00" not in d for d in docs)
    assert max(len(d) for d in docs) < 3 * D.MAX_DOC_CHARS
    assert sum(" the " in d for d in docs) > len(docs) // 2


def test_default_cache_dir_from_harness_toml(built, tmp_path, monkeypatch):
    paths, _ = built
    shutil.copytree(paths.data_dir, tmp_path / "home" / "cc" / "vocab1024")
    (tmp_path / "harness.toml").write_text('[run]\ncache_dir = "~/cc"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    got = D.ensure_data(1024)
    assert got.data_dir == (tmp_path / "home" / "cc" / "vocab1024").resolve()
    assert got.build_seconds is None


# ------------------------------------------------------------------------ serve_val


def _stream():
    # documents of lengths 3, 5, 2, 4 (each BOS-prefixed)
    return np.array([1, 7, 8, 1, 9, 9, 9, 9, 1, 5, 1, 6, 6, 6], dtype=np.uint16)


@pytest.mark.parametrize("n, end", [(1, 3), (3, 3), (4, 8), (8, 8), (9, 10), (11, 14), (14, 14)])
def test_serve_val_whole_documents(tmp_path, n, end):
    out = D.serve_val(_stream(), tmp_path / "run", n)
    assert out == tmp_path / "run" / "fineweb_val_000000.bin"
    np.testing.assert_array_equal(read_shard(out), _stream()[:end])


def test_serve_val_refusals(tmp_path):
    with pytest.raises(BadInput, match="fewer than"):
        D.serve_val(_stream(), tmp_path, 15)
    with pytest.raises(BadInput):
        D.serve_val(_stream(), tmp_path, 0)
    write_shard(tmp_path / "fineweb_val_000001.bin", _stream())
    with pytest.raises(BadInput, match="other validation shards"):
        D.serve_val(_stream(), tmp_path, 4)


def test_serve_val_on_builtin(built, tmp_path):
    paths, _ = built
    val = paths.read_val()
    out = D.serve_val(val, tmp_path, 64 * 10 + 1)
    served = read_shard(out)
    assert 641 <= served.size < val.size and served[0] == 1
    assert val[served.size] == 1  # cut right before a document start
    np.testing.assert_array_equal(served, val[: served.size])


# ------------------------------------------------------------------------ CLI


def test_cli_data_prints_paths(built, tmp_path, capsys):
    paths, _ = built
    shutil.copytree(paths.data_dir, tmp_path / "vocab1024")
    assert main(["data", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "cached" in out and f"{paths.val_tokens:,}" in out
    assert f"--data-path {tmp_path / 'vocab1024'}" in out


def test_cli_data_bad_vocab_is_one_line(tmp_path, capsys):
    assert main(["data", "--vocab-size", "50", "--cache-dir", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vocab size 50" in err
