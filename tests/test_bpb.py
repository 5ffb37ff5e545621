"""The harness's own bytes-per-token tables and the val_loss / val_bpb recomputation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.data.bpb import byte_tables, recompute, stream_bytes, token_bytes
from harness.data.builtin import ensure_data, train_tokenizer
from harness.errors import BadInput
from harness.data.shards import doc_starts, read_shard

# Plain ASCII only: "é" and "€" must fall back to byte pieces.
TINY_TEXT = """The cat sat on the mat. The dog ate the hat. A bird sang in the tree, and the sun rose over the hill.
Then the cat and the dog went to the market with the bird; they bought bread, milk and three apples.
Numbers like 2024 and 365 are split into digits. The end of the story is near, but the cat is still on the mat.
"""
TINY_VOCAB = 340


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    path = train_tokenizer([TINY_TEXT] * 3, TINY_VOCAB, tmp_path_factory.mktemp("tok") / "tiny.model")
    return path, spm.SentencePieceProcessor(model_file=str(path))


@pytest.fixture(scope="session")
def builtin(tmp_path_factory):
    return ensure_data(1024, tmp_path_factory.mktemp("cache"))


def test_hand_computed_tables(tiny):
    path, sp = tiny
    t = byte_tables(path)
    assert t.vocab_size == TINY_VOCAB == sp.vocab_size()
    # pad / BOS / EOS / unk: boundary tokens of 0 bytes, no space.
    for i in (0, 1, 2, 3):
        assert t.is_boundary[i] and t.base_bytes[i] == 0 and not t.has_leading_space[i]
    # Byte-fallback pieces <0x00>..<0xFF> sit at ids 4..259: one byte each, never a leading space.
    assert sp.piece_to_id("<0xC3>") == 4 + 0xC3
    assert (t.base_bytes[4:260] == 1).all() and not t.has_leading_space[4:260].any()
    assert not t.is_boundary[4:260].any()
    # "▁the" is 3 bytes plus a space that depends on the previous token; "▁" alone is only the space.
    the, space, he = sp.piece_to_id("▁the"), sp.piece_to_id("▁"), sp.piece_to_id("he")
    assert the != 3 and space != 3 and he != 3  # all are real pieces of this tokenizer
    assert (t.base_bytes[the], t.has_leading_space[the]) == (3, True)
    assert (t.base_bytes[space], t.has_leading_space[space]) == (0, True)
    assert (t.base_bytes[he], t.has_leading_space[he]) == (2, False)


def test_hand_computed_token_bytes(tiny):
    path, sp = tiny
    t = byte_tables(path)
    bos, the, cat, he = 1, sp.piece_to_id("▁the"), sp.piece_to_id("▁cat"), sp.piece_to_id("he")
    e_acute = [sp.piece_to_id("<0xC3>"), sp.piece_to_id("<0xA9>")]
    prev = np.array([bos, cat, bos, the, cat, e_acute[0], e_acute[1]])
    toks = np.array([the, the, he, he, e_acute[0], e_acute[1], cat])
    # BOS->"▁the": no space after a boundary; "▁cat"->"▁the": 1 + 3; bytes are 1 each; after a byte, "▁cat" has its space.
    assert token_bytes(t, prev, toks).tolist() == [3, 4, 2, 2, 1, 1, 4]


@pytest.mark.parametrize("text", ["the cat sat on the mat", "é", "a € b", "2024 apples", "the  cat\tsat\non é€ the mat"])
def test_document_bytes_equal_utf8_length(tiny, text):
    path, sp = tiny
    ids = [1, *sp.encode(text)]
    assert int(stream_bytes(byte_tables(path), np.array(ids)).sum()) == len(sp.decode(ids[1:]).encode("utf-8"))


def test_byte_fallback_pieces(tiny):
    _, sp = tiny
    assert sp.encode_as_pieces("€") == ["<0xE2>", "<0x82>", "<0xAC>"]  # the fixture really falls back


def test_tables_padded_to_script_vocab(tiny):
    path, _ = tiny
    t = byte_tables(path, vocab_size=TINY_VOCAB + 60)
    assert t.vocab_size == TINY_VOCAB + 60
    assert t.is_boundary[TINY_VOCAB:].all() and not t.base_bytes[TINY_VOCAB:].any()
    assert token_bytes(t, np.array([TINY_VOCAB + 5]), np.array([TINY_VOCAB + 59])).tolist() == [0]
    with pytest.raises(BadInput, match="outside"):
        token_bytes(byte_tables(path), np.array([1]), np.array([TINY_VOCAB]))


def test_recompute_hand_example(tiny):
    path, sp = tiny
    t = byte_tables(path)
    the, cat, mat = sp.piece_to_id("▁the"), sp.piece_to_id("▁cat"), sp.piece_to_id("▁mat")
    a = sp.piece_to_id("<0x61>")  # byte "a"
    val = np.array([1, the, cat, a, mat, 1, the])
    nll = {1: 2.0, 2: 1.0, 3: 0.5, 4: 3.0, 5: 4.0, 6: 1.5}
    # bytes: "▁the" after BOS 3, "▁cat" 4, byte 1, "▁mat" after a byte 4, BOS 0, "▁the" after BOS 3 -> 15
    r = recompute(nll, val, t)
    assert (r.n_tokens, r.n_bytes) == (6, 15)
    assert r.val_loss == pytest.approx(12.0 / 6)
    assert r.val_bpb == pytest.approx(12.0 / math.log(2) / 15)
    # the (positions, nlls) form, a subset and any order give the same answer
    r2 = recompute((np.array([4, 2]), np.array([3.0, 1.0])), val, t)
    assert (r2.n_tokens, r2.n_bytes) == (2, 8) and r2.val_loss == pytest.approx(2.0)


def test_recompute_refuses_bad_scores(tiny):
    path, _ = tiny
    t = byte_tables(path)
    val = np.array([1, 300, 301, 302])
    for bad, needle in [
        ({0: 1.0}, "position 0"),
        ({4: 1.0}, "position 4"),
        ({}, "no scored"),
        ((np.array([1, 2, 1]), np.array([1.0, 1.0, 1.0])), "more than once"),
        ((np.array([1, 2]), np.array([1.0])), "one length"),
    ]:
        with pytest.raises(BadInput, match=needle):
            recompute(bad, val, t)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_recompute_order_independent_and_matches_loop(tiny, data):
    path, sp = tiny
    t = byte_tables(path)
    val = np.array([1, *sp.encode(TINY_TEXT)[:60]])
    pos = data.draw(st.lists(st.integers(1, len(val) - 1), min_size=1, max_size=40, unique=True))
    nll = data.draw(st.lists(st.floats(0, 20), min_size=len(pos), max_size=len(pos)))
    r = recompute(dict(zip(pos, nll)), val, t)
    r_rev = recompute((np.array(pos[::-1]), np.array(nll[::-1])), val, t)
    assert r == r_rev  # exactly equal: summed in position order
    # a plain loop over the pieces themselves, not the tables
    nbytes = 0
    for p in pos:
        y, x = int(val[p]), int(val[p - 1])
        piece = sp.id_to_piece(y)
        if sp.is_byte(y):
            nbytes += 1
        elif not (sp.is_control(y) or sp.is_unknown(y)):
            nbytes += len(piece.lstrip("▁").encode()) + (piece.startswith("▁") and not sp.is_control(x))
    assert r.n_bytes == nbytes
    assert r.val_loss == pytest.approx(sum(nll) / len(pos))
    if nbytes:
        assert r.val_bpb == pytest.approx(sum(nll) / math.log(2) / nbytes)


def test_bad_tokenizer_files(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        byte_tables(tmp_path / "missing.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"this is not a sentencepiece model")
    with pytest.raises(BadInput) as e:
        byte_tables(junk)
    assert "\n" not in str(e.value) and "not a SentencePiece model" in str(e.value)


def test_tables_follow_a_rewritten_model(tmp_path):
    path = tmp_path / "m.model"
    train_tokenizer([TINY_TEXT] * 3, 330, path)
    assert byte_tables(path).vocab_size == 330
    train_tokenizer([TINY_TEXT] * 3, 340, path)
    assert byte_tables(path).vocab_size == 340


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_builtin_docs_bytes_equal_decoded_utf8(builtin, data):
    """For random documents of the built-in data: sum of token bytes == UTF-8 length of the decoded
    document. Counting the "▁" inside the piece as well as the space (3 + 1 bytes) breaks this."""
    sp = spm.SentencePieceProcessor(model_file=str(builtin.tokenizer))
    t = byte_tables(builtin.tokenizer)
    split = data.draw(st.sampled_from([builtin.val_files[0], builtin.train_files[0]]))
    toks = read_shard(split)
    starts = [*doc_starts(toks).tolist(), toks.size]
    k = data.draw(st.integers(0, len(starts) - 2))
    doc = toks[starts[k] : starts[k + 1]]
    assert doc[0] == 1 and (doc[1:] != 1).all()
    got = int(stream_bytes(t, doc).sum())
    assert got == len(sp.decode(doc[1:].tolist()).encode("utf-8"))
    assert got > 0


def test_builtin_stream_bytes_whole_split(builtin):
    """All of the validation stream at once, documents glued: each BOS target is 0 bytes."""
    sp = spm.SentencePieceProcessor(model_file=str(builtin.tokenizer))
    toks = read_shard(builtin.val_files[0])
    starts = [*doc_starts(toks).tolist(), toks.size]
    want = sum(len(sp.decode(toks[a + 1 : b].tolist()).encode()) for a, b in zip(starts, starts[1:]))
    assert int(stream_bytes(byte_tables(builtin.tokenizer), toks).sum()) == want
