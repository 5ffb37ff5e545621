"""Compression containers, decoded with caps: the decoders shared by artifact inspection
(harness.check.artifact) and code-wrapper unwrapping (harness.check.unwrap).

zlib / gzip, zstd, xz / lzma (also raw and .lzma-alone), bz2, brotli: every decoder stops with
StreamError('bomb') as soon as its output passes the cap (a bomb is never expanded), and tells a
truncated stream from a corrupt one. ``sniff`` names a container by its magic bytes; the "BSHF"
byte shuffle some records apply before compressing is undone by ``byte_unshuffle``.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable


# zstd's worst case is an RLE block: 4 input bytes -> 128 KiB output. Feeding input in chunks sized
# from this bound keeps any single call's output near the cap, so a bomb is never expanded.
_ZSTD_MAX_EXPANSION = 1 << 16


_CHUNK = 1 << 18  # input bytes per call for decoders that take an output limit


_OUT_STEP = 1 << 23  # output bytes per call


class StreamError(Exception):
    """A compressed stream that cannot be decoded within the rules.

    kind: "truncated" (input ends before the end-of-stream marker), "bomb" (output passed the cap),
    "corrupt" (the decoder rejected the data). produced: output bytes decoded before stopping.
    """

    def __init__(self, kind: str, codec: str, message: str, produced: int = 0, head: bytes = b"") -> None:
        super().__init__(message)
        self.kind = kind
        self.codec = codec
        self.produced = produced
        self.head = head  # first output bytes: tells a real truncated stream from decoded noise


@dataclass
class Decoded:
    data: bytes
    trailing: bytes = b""  # input left after the end of the stream (not part of it)


class _Sink:
    """Collects output and raises StreamError('bomb') as soon as it passes the cap."""

    def __init__(self, codec: str, cap: int) -> None:
        self.codec, self.cap = codec, cap
        self.parts: list[bytes] = []
        self.total = 0
        self.head = b""

    def add(self, out: bytes) -> None:
        if not out:
            return
        if len(self.head) < 16:
            self.head += out[:16 - len(self.head)]
        self.total += len(out)
        if self.total > self.cap:
            self.parts.clear()
            raise StreamError("bomb", self.codec,
                              f"{self.codec} output passed the cap of {self.cap:,} bytes; "
                              f"stopped at {self.total:,} (decompression bomb)", self.total, self.head)
        self.parts.append(out)

    def fail(self, kind: str, message: str) -> StreamError:
        return StreamError(kind, self.codec, message, self.total, self.head)

    def room(self) -> int:
        """Output to ask for in the next call: one byte past the cap so passing it is seen."""
        return max(1, min(_OUT_STEP, self.cap - self.total + 1))

    def value(self) -> bytes:
        return b"".join(self.parts)


def _zlib_like(codec: str, data: bytes, cap: int, wbits: int) -> Decoded:
    sink = _Sink(codec, cap)
    try:
        d = zlib.decompressobj(wbits)
        pos = 0
        while pos < len(data) and not d.eof:
            buf = data[pos:pos + _CHUNK]
            pos += len(buf)
            while True:
                out = d.decompress(buf, sink.room())
                sink.add(out)
                buf = d.unconsumed_tail
                if d.eof or (not out and not buf):
                    break
        while not d.eof:  # output still pending inside the decoder after the last input
            out = d.decompress(b"", sink.room())
            if not out:
                break
            sink.add(out)
    except zlib.error as e:
        raise sink.fail("corrupt", f"{codec} stream is corrupt: {e}") from None
    except ValueError as e:  # bad wbits
        raise sink.fail("corrupt", f"{codec}: {e}") from None
    if not d.eof:
        raise sink.fail("truncated", f"{codec} stream ends before its end marker "
                        f"({len(data):,} input bytes, {sink.total:,} decoded)")
    return Decoded(sink.value(), d.unused_data + data[pos:])


def _lzma_like(codec: str, make: Callable[[], Any], errors: tuple[type[BaseException], ...],
               data: bytes, cap: int) -> Decoded:
    sink = _Sink(codec, cap)
    pos = 0
    try:
        d = make()
        while pos < len(data) and not d.eof:
            chunk = data[pos:pos + _CHUNK]
            pos += len(chunk)
            sink.add(d.decompress(chunk, sink.room()))
            while not d.eof and not d.needs_input:
                sink.add(d.decompress(b"", sink.room()))
    except errors as e:
        raise sink.fail("corrupt", f"{codec} stream is corrupt: {e}") from None
    if not d.eof:
        raise sink.fail("truncated", f"{codec} stream ends before its end marker "
                        f"({len(data):,} input bytes, {sink.total:,} decoded)")
    return Decoded(sink.value(), d.unused_data + data[pos:])


def _zstd(data: bytes, cap: int) -> Decoded:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - zstandard is a hard dependency
        raise StreamError("corrupt", "zstd", "zstd stream but the zstandard module is not installed")
    sink = _Sink("zstd", cap)
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError:
        declared = -1
    if declared > cap:  # the frame says how big it is: refuse without decoding anything
        raise StreamError("bomb", "zstd", f"zstd frame declares {declared:,} bytes, over the cap of "
                          f"{cap:,} (decompression bomb)", 0)
    d = zstandard.ZstdDecompressor().decompressobj()
    pos = 0
    try:
        while pos < len(data) and not d.eof:
            step = max(64, min(_CHUNK, (cap - sink.total) // _ZSTD_MAX_EXPANSION + 1))
            sink.add(d.decompress(data[pos:pos + step]))
            pos += step
    except zstandard.ZstdError as e:
        raise sink.fail("corrupt", f"zstd stream is corrupt: {e}") from None
    if not d.eof:
        raise sink.fail("truncated", f"zstd stream ends before its end of frame "
                        f"({len(data):,} input bytes, {sink.total:,} decoded)")
    trailing = d.unused_data + data[pos:]
    return Decoded(sink.value(), trailing)


def _brotli(data: bytes, cap: int) -> Decoded:
    try:
        import brotli
    except ImportError:
        raise StreamError("corrupt", "brotli", "brotli module not installed") from None
    d = brotli.Decompressor()
    sink = _Sink("brotli", cap)
    limited = True
    try:
        for pos in range(0, len(data), 1 << 16):
            chunk = data[pos:pos + (1 << 16)]
            if limited:
                try:
                    sink.add(d.process(chunk, output_buffer_limit=sink.room()))
                    while not d.can_accept_more_data():
                        sink.add(d.process(b"", output_buffer_limit=sink.room()))
                except TypeError:  # brotli < 1.1: no output limit; small input steps bound output
                    limited = False
            if not limited:
                for i in range(0, len(chunk), 256):
                    sink.add(d.process(chunk[i:i + 256]))
            if d.is_finished():
                break
    except brotli.error as e:
        raise sink.fail("corrupt", f"brotli stream is corrupt: {e}") from None
    if not d.is_finished():
        raise sink.fail("truncated", f"brotli stream ends before its last meta-block "
                        f"({len(data):,} input bytes, {sink.total:,} decoded)")
    return Decoded(sink.value())


def decompress_capped(codec: str, data: bytes, cap: int, *, wbits: int | None = None,
                      lzma_format: int | None = None, lzma_filters: Any = None) -> Decoded:
    """Decode one stream of ``codec`` without ever holding much more than ``cap`` output bytes.

    codec: "zlib" (wbits as zlib.decompress; default 15), "gzip", "bz2", "xz", "lzma" (alone),
    "lzma-raw" (filters needed; default LZMA2), "lzma-auto", "zstd", "brotli".
    Raises StreamError(kind="bomb" | "truncated" | "corrupt").
    """
    if codec == "zlib":
        return _zlib_like("zlib", data, cap, zlib.MAX_WBITS if wbits is None else wbits)
    if codec == "gzip":
        return _zlib_like("gzip", data, cap, 16 + zlib.MAX_WBITS)
    if codec == "bz2":
        return _lzma_like("bz2", bz2.BZ2Decompressor, (OSError, ValueError), data, cap)
    if codec in ("xz", "lzma", "lzma-raw", "lzma-auto"):
        fmt = {"xz": lzma.FORMAT_XZ, "lzma": lzma.FORMAT_ALONE, "lzma-raw": lzma.FORMAT_RAW,
               "lzma-auto": lzma.FORMAT_AUTO}[codec] if lzma_format is None else lzma_format
        filters = lzma_filters
        if fmt == lzma.FORMAT_RAW and filters is None:
            filters = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 26}]
        name = {lzma.FORMAT_XZ: "xz", lzma.FORMAT_ALONE: "lzma", lzma.FORMAT_RAW: "lzma-raw"}.get(fmt, "lzma")

        def make() -> lzma.LZMADecompressor:
            return lzma.LZMADecompressor(format=fmt, filters=filters)

        return _lzma_like(name, make, (lzma.LZMAError, ValueError, TypeError, KeyError), data, cap)
    if codec == "zstd":
        return _zstd(data, cap)
    if codec == "brotli":
        return _brotli(data, cap)
    raise ValueError(f"unknown codec {codec!r}")


def decompress_all_capped(codec: str, data: bytes, cap: int, **kw: Any) -> bytes:
    """Like the library's one-shot decompress: concatenated members/frames/streams are all decoded
    (gzip, bz2, xz and zstd allow several), all together under one cap."""
    out: list[bytes] = []
    total = 0
    rest = data
    while True:
        dec = decompress_capped(codec, rest, cap - total, **kw)
        out.append(dec.data)
        total += len(dec.data)
        rest = dec.trailing
        if not rest or codec not in ("gzip", "bz2", "xz", "zstd", "lzma-auto"):
            break
        if codec in ("gzip", "xz", "lzma-auto") and not rest.strip(b"\0"):
            break  # stream padding
    return b"".join(out)


_BSHF = b"BSHF"


_ZSTD = b"\x28\xb5\x2f\xfd"


_XZ = b"\xfd7zXZ\x00"


def _is_zlib_header(b: bytes) -> bool:
    if len(b) < 2:
        return False
    cmf, flg = b[0], b[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0 and not flg & 0x20


def _is_lzma_alone_header(b: bytes) -> bool:
    if len(b) < 13 or b[0] >= 225:
        return False
    dict_size = struct.unpack_from("<I", b, 1)[0]
    # Encoders write 2^n or 2^n + 2^(n-1); anything else is almost surely not an .lzma header.
    if dict_size < 4096:
        return False
    top = 1 << (dict_size.bit_length() - 1)
    return dict_size in (top, top + (top >> 1))


def sniff(data: bytes) -> str | None:
    """The container the bytes start with, from magic bytes; None when nothing is recognised."""
    if data.startswith(_ZSTD):
        return "zstd"
    if data.startswith(_XZ):
        return "xz"
    if data.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    if data[:3] == b"BZh" and data[3:4].isdigit() and data[3:4] != b"0":
        return "bz2"
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return "torch-zip"
    if data.startswith(_BSHF) and len(data) >= 5:
        return "byte-shuffle"
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return "raw-pickle"
    if _is_zlib_header(data):
        return "zlib"
    if _is_lzma_alone_header(data):
        return "lzma"
    return None


def byte_unshuffle(data: bytes) -> bytes:
    """Undo the "BSHF" + stride byte + transposed bytes layout used by several records."""
    stride = data[4]
    payload = data[5:]
    if stride < 2:
        return payload
    n = len(payload)
    out = bytearray(n)
    off = 0
    for pos in range(stride):
        size = n // stride + (1 if pos < n % stride else 0)
        out[pos::stride] = payload[off:off + size]
        off += size
    return bytes(out)
