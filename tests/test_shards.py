"""The challenge's shard format: write, read, and refuse malformed files with one clear line."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harness.errors import BadInput
from harness.data.shards import HEADER_BYTES, HEADER_INTS, MAGIC, doc_starts, read_header, read_shard, write_shard


def _challenge_style_load(path):
    """How the real scripts read a shard (np.fromfile, header check, exact size): an independent reader."""
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header.size == 256 and int(header[0]) == 20240520 and int(header[1]) == 1
    n = int(header[2])
    assert path.stat().st_size == 256 * 4 + n * 2
    return np.fromfile(path, dtype="<u2", count=n, offset=256 * 4)


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint16, st.integers(0, 300)))
def test_roundtrip_any_tokens(tmp_path_factory, tokens):
    path = tmp_path_factory.mktemp("s") / "fineweb_val_000000.bin"
    write_shard(path, tokens)
    back = read_shard(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, tokens)
    np.testing.assert_array_equal(_challenge_style_load(path), tokens)
    assert read_header(path) == tokens.size


def test_header_layout(tmp_path):
    path = write_shard(tmp_path / "a.bin", np.array([1, 500, 65535], dtype=np.int64))
    raw = path.read_bytes()
    assert HEADER_INTS == 256 and MAGIC == 20240520
    assert len(raw) == HEADER_BYTES + 6
    header = np.frombuffer(raw[:HEADER_BYTES], dtype="<i4")
    assert header[:3].tolist() == [20240520, 1, 3]
    assert not header[3:].any()
    assert raw[HEADER_BYTES:] == bytes([1, 0, 0xF4, 0x01, 0xFF, 0xFF])  # little-endian uint16


def _one_line_bad_input(path, needle):
    with pytest.raises(BadInput) as e:
        read_shard(path)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg and str(path) in msg


def test_wrong_magic(tmp_path):
    path = write_shard(tmp_path / "a.bin", np.arange(10, dtype=np.uint16))
    raw = bytearray(path.read_bytes())
    raw[0:4] = (12345).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    _one_line_bad_input(path, "magic 12345")


def test_wrong_version(tmp_path):
    path = write_shard(tmp_path / "a.bin", np.arange(10, dtype=np.uint16))
    raw = bytearray(path.read_bytes())
    raw[4:8] = (2).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    _one_line_bad_input(path, "version 2")


def test_truncated_tokens(tmp_path):
    path = write_shard(tmp_path / "a.bin", np.arange(10, dtype=np.uint16))
    path.write_bytes(path.read_bytes()[:-3])
    _one_line_bad_input(path, "truncated")


def test_truncated_header(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"\x00" * 100)
    _one_line_bad_input(path, "truncated shard header")


def test_trailing_bytes(tmp_path):
    path = write_shard(tmp_path / "a.bin", np.arange(10, dtype=np.uint16))
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    _one_line_bad_input(path, "trailing")


def test_missing_and_folder(tmp_path):
    _one_line_bad_input(tmp_path / "nope.bin", "not found")
    _one_line_bad_input(tmp_path, "folder")


@pytest.mark.parametrize("bad", [np.array([70000]), np.array([-1]), np.zeros((2, 2), dtype=np.uint16), np.array([0.5])])
def test_write_rejects_unstorable(tmp_path, bad):
    with pytest.raises(BadInput):
        write_shard(tmp_path / "a.bin", bad)
    assert not (tmp_path / "a.bin").exists()


def test_doc_starts():
    toks = np.array([1, 5, 6, 1, 7, 1, 1, 9], dtype=np.uint16)
    assert doc_starts(toks).tolist() == [0, 3, 5, 6]
    assert doc_starts(toks, bos_id=9).tolist() == [7]
