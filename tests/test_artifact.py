"""harness.check.artifact: containers peeled with caps, payload loaded only with weights_only, no code run."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.check.artifact import (
    ArtifactInfo,
    find_artifact,
    inspect_artifact,
    scan_pickle_globals,
)
from harness.check.containers import byte_unshuffle
from harness.errors import BadInput

brotli = pytest.importorskip("brotli")
zstandard = pytest.importorskip("zstandard")

from conftest import ROOT  # noqa: E402

# ---------------------------------------------------------------- fixture builders


def quantized_state(bits: int = 8, rows: int = 48, cols: int = 32) -> dict:
    """A baseline-shaped export: int8 per-row weights + fp16 scales + fp16 passthrough + metadata."""
    g = torch.Generator().manual_seed(0)
    clip = 2 ** (bits - 1) - 1
    quantized, scales = {}, {}
    for name in ("blocks.0.attn.c_q.weight", "blocks.0.mlp.fc.weight"):
        w = torch.randn(rows, cols, generator=g)
        s = (w.abs().amax(dim=1) / clip).clamp_min(1e-8)
        quantized[name] = torch.clamp(torch.round(w / s[:, None]), -clip, clip).to(torch.int8)
        scales[name] = s.to(torch.float16)
    return {
        "__quant_format__": "int8_clean_per_row_v1",
        "quantized": quantized,
        "scales": scales,
        "dtypes": {k: "float32" for k in quantized},
        "passthrough": {"blocks.0.attn_scale": torch.ones(cols, dtype=torch.float16)},
        "qmeta": {k: {"scheme": "per_row", "axis": 0} for k in quantized},
    }


def saved(obj: object, **kw) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


def shuffle(data: bytes, stride: int = 2) -> bytes:
    a = np.frombuffer(data, dtype=np.uint8)
    return b"BSHF" + bytes([stride]) + b"".join(a[p::stride].tobytes() for p in range(stride))


COMPRESS = {
    "zlib": lambda b: zlib.compress(b, 9),
    "zstd": lambda b: zstandard.ZstdCompressor(level=10).compress(b),
    "xz": lambda b: lzma.compress(b, preset=6),
    "lzma": lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE),
    "bz2": lambda b: bz2.compress(b),
    "gzip": lambda b: gzip.compress(b),
    "brotli": lambda b: brotli.compress(b, quality=11),
    "lzma-raw": lambda b: lzma.compress(b, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]),
}
CONTAINER_OF = {"lzma-raw": "lzma"}

STATE = quantized_state()
N_PARAMS = 2 * 48 * 32 + 2 * 48 + 32
DTYPES = {"int8": 2 * 48 * 32, "float16": 2 * 48 + 32}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def zstd_rle_bomb(total: int) -> bytes:
    """A hand-built zstd frame of RLE blocks (4 bytes -> 128 KiB each), no declared content size."""
    blocks = total // 131072
    body = bytearray(b"\x28\xb5\x2f\xfd" + bytes([0x00, 7 << 3]))  # magic, no FCS, 128 KiB window
    for i in range(blocks):
        header = (1 if i == blocks - 1 else 0) | (1 << 1) | (131072 << 3)  # last?, RLE, size
        body += struct.pack("<I", header)[:3] + b"\x00"
    return bytes(body)


# ---------------------------------------------------------------- containers

@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_each_container_loads_and_counts(tmp_path: Path, codec: str) -> None:
    raw = saved(STATE)
    p = write(tmp_path, f"final_model.int8.{codec}", COMPRESS[codec](raw))
    info = inspect_artifact(p)
    assert info.problem is None, info.message
    assert info.container == CONTAINER_OF.get(codec, codec)
    assert info.layers == [codec, "torch-zip"]
    assert info.file_bytes == p.stat().st_size
    assert info.decompressed_bytes == len(raw)
    assert info.tensor_count == 5 and info.parameters == N_PARAMS and info.dtypes == DTYPES
    assert info.quant_format == "int8_clean_per_row_v1: int8 per-row + scales fp16"
    assert "\n" not in info.message and "5 tensors" in info.message
    if codec in ("brotli", "lzma-raw"):
        assert "trial decoding" in info.message  # no magic bytes: the report says how it was found


def test_uncompressed_torch_zip_and_legacy_pickle(tmp_path: Path) -> None:
    info = inspect_artifact(write(tmp_path, "final_model.pt", saved(STATE)))
    assert (info.container, info.layers, info.problem, info.parameters) == \
        ("torch-zip", ["torch-zip"], None, N_PARAMS)
    legacy = saved({"w": torch.zeros(3, 4)}, _use_new_zipfile_serialization=False)
    info = inspect_artifact(write(tmp_path, "legacy.pt", zlib.compress(legacy)))
    assert (info.layers, info.problem, info.parameters, info.dtypes) == \
        (["zlib", "raw-pickle"], None, 12, {"float32": 12})


def test_byte_shuffle_then_brotli_and_double_wrap(tmp_path: Path) -> None:
    raw = saved(STATE)
    info = inspect_artifact(write(tmp_path, "a.ptz", brotli.compress(shuffle(raw))))
    assert info.layers == ["brotli", "byte-shuffle", "torch-zip"] and info.problem is None
    assert info.parameters == N_PARAMS
    info = inspect_artifact(write(tmp_path, "b.ptz", COMPRESS["zstd"](shuffle(COMPRESS["zlib"](raw), 3))))
    assert info.layers == ["zstd", "byte-shuffle", "zlib", "torch-zip"] and info.problem is None


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 1001])
@pytest.mark.parametrize("stride", [2, 3, 4])
def test_byte_unshuffle_inverts_shuffle(n: int, stride: int) -> None:
    data = bytes(range(256)) * 4
    data = data[:n]
    assert byte_unshuffle(shuffle(data, stride)) == data


def test_numpy_arrays_and_nested_containers_counted(tmp_path: Path) -> None:
    obj = {
        "np": {"a": np.zeros((4, 5), dtype=np.int8), "s": np.ones(4, dtype=np.float16)},
        "list": [torch.ones(3, dtype=torch.bfloat16), (torch.zeros(2, 2), [torch.ones(1)])],
        "meta": {"n": 3, "name": "x"},
    }
    info = inspect_artifact(write(tmp_path, "m.ptz", zlib.compress(saved(obj))))
    assert info.problem is None, info.message
    assert info.tensor_count == 5 and info.parameters == 20 + 4 + 3 + 4 + 1
    assert info.dtypes == {"bfloat16": 3, "float16": 4, "float32": 5, "int8": 20}


@pytest.mark.parametrize("bits", [5, 6])
def test_quant_guess_sees_low_bit_ranges(tmp_path: Path, bits: int) -> None:
    info = inspect_artifact(write(tmp_path, "q.ptz", zlib.compress(saved(quantized_state(bits)))))
    assert info.quant_format == f"int8_clean_per_row_v1: int{bits} (in int8) per-row + scales fp16"


def test_quant_guess_other_formats(tmp_path: Path) -> None:
    info = inspect_artifact(write(tmp_path, "h.pt", saved({"w": torch.ones(8, 8, dtype=torch.float16)})))
    assert info.quant_format == "fp16"
    info = inspect_artifact(write(tmp_path, "f.pt", saved({"w": torch.ones(8, 8)})))
    assert info.quant_format == "fp32 (unquantized)"
    packed = {"w.packed": torch.zeros(100, dtype=torch.uint8), "w.scale": torch.ones(4, dtype=torch.float16)}
    info = inspect_artifact(write(tmp_path, "p.pt", saved(packed)))
    assert info.quant_format == "bit-packed uint8 per-row + scales fp16"


# ---------------------------------------------------------------- truncation

@pytest.mark.parametrize("codec", ["zlib", "zstd", "xz", "bz2", "gzip", "lzma", "brotli"])
def test_truncated_stream(tmp_path: Path, codec: str) -> None:
    full = COMPRESS[codec](saved(STATE))
    info = inspect_artifact(write(tmp_path, "t.ptz", full[: len(full) * 2 // 3]))
    assert info.problem == "truncated", info.message
    assert info.layers == [codec]
    assert "\n" not in info.message and info.tensor_count is None


def test_truncated_torch_zip_and_pickle(tmp_path: Path) -> None:
    raw = saved(STATE)
    info = inspect_artifact(write(tmp_path, "t.pt", raw[: len(raw) // 2]))
    assert (info.problem, info.layers) == ("truncated", ["torch-zip"])
    legacy = saved({"w": torch.zeros(3)}, _use_new_zipfile_serialization=False)
    info = inspect_artifact(write(tmp_path, "t2.pt", zlib.compress(legacy[:40])))
    assert (info.problem, info.layers) == ("truncated", ["zlib", "raw-pickle"])


# ---------------------------------------------------------------- bombs

def test_zstd_bomb_stopped_fast_and_small(tmp_path: Path) -> None:
    bomb = zstd_rle_bomb(2 << 30)  # 64 KiB that would expand to 2 GiB
    p = write(tmp_path, "bomb.ptz", bomb)
    # Peak RSS of the fresh child's own memory (VmHWM; ru_maxrss would include pytest's, inherited
    # across fork+exec on Linux).
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to measure peak memory")
    code = (
        "import re, time\n"
        "from harness.check.artifact import inspect_artifact\n"
        "t = time.time()\n"
        f"i = inspect_artifact({str(p)!r})\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
        "print(i.problem, time.time() - t, hwm)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    problem, secs, maxrss_kb = r.stdout.split()
    assert problem == "bomb"
    assert float(secs) < 5
    assert int(maxrss_kb) < 300 * 1024  # never near the 2 GiB it would expand to


def test_bomb_messages_and_nesting(tmp_path: Path) -> None:
    info = inspect_artifact(write(tmp_path, "z.ptz", zlib.compress(b"\0" * 8_000_000, 9)))
    assert info.problem == "bomb" and info.layers == ["zlib"] and "cap" in info.message
    # a bomb inside a legitimate outer layer is still caught
    inner = zstd_rle_bomb(512 << 20)
    info = inspect_artifact(write(tmp_path, "n.ptz", gzip.compress(inner)))
    assert info.problem == "bomb" and info.layers == ["gzip", "zstd"]
    # the cap follows the parameters
    raw = saved(STATE)
    ok = inspect_artifact(write(tmp_path, "ok.ptz", zlib.compress(raw)), max_decompressed_bytes=len(raw))
    assert ok.problem is None
    small = inspect_artifact(write(tmp_path, "ok2.ptz", zlib.compress(raw)), max_decompressed_bytes=len(raw) - 1)
    assert small.problem == "bomb"


def test_zstd_declared_size_over_cap_refused_without_decoding(tmp_path: Path) -> None:
    data = zstandard.ZstdCompressor(write_content_size=True).compress(b"\0" * 3_000_000)
    info = inspect_artifact(write(tmp_path, "d.ptz", data))
    assert info.problem == "bomb" and "declares 3,000,000 bytes" in info.message


def test_deflated_zip_entries_over_cap(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        zf.writestr("archive/data/0", b"\0" * 20_000_000)
    info = inspect_artifact(write(tmp_path, "zipbomb.pt", buf.getvalue()))
    assert info.problem == "bomb" and info.layers == ["torch-zip"]


# ---------------------------------------------------------------- unsafe pickles (never run)

class _Evil:
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch-save", "torch-save-zstd", "pickle-proto2", "pickle-proto5"])
def test_unsafe_reduce_is_reported_and_never_run(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "PWNED"
    evil = _Evil()
    evil.marker = str(marker)
    obj = {"w": torch.ones(2), "x": evil}
    data = {
        "torch-save": lambda: saved(obj),
        "torch-save-zstd": lambda: COMPRESS["zstd"](saved(obj)),
        "pickle-proto2": lambda: zlib.compress(pickle.dumps({"x": evil}, protocol=2)),
        "pickle-proto5": lambda: pickle.dumps({"x": evil}, protocol=5),
    }[how]()
    info = inspect_artifact(write(tmp_path, "evil.pt", data))
    assert info.problem == "unsafe_pickle", info.message
    assert info.unsafe_globals == [f"{os.system.__module__}.system"]
    assert "never loaded" in info.message and "\n" not in info.message
    assert not marker.exists()


def test_whole_module_pickle_is_unsafe(tmp_path: Path) -> None:
    info = inspect_artifact(write(tmp_path, "m.pt", saved(torch.nn.Linear(3, 4))))
    assert info.problem == "unsafe_pickle"
    assert "torch.nn.modules.linear.Linear" in info.unsafe_globals


def test_scan_globals_from_opcodes() -> None:
    # protocol 2: GLOBAL with text; Python 2 names are mapped like the unpickler does
    names, complete = scan_pickle_globals(b"\x80\x02c__builtin__\neval\nq\x00X\x01\x00\x00\x001\x85R.")
    assert (names, complete) == (["builtins.eval"], True)
    # protocol 4: STACK_GLOBAL from memoized strings, re-used through BINGET
    data = pickle.dumps([os.system, os.system, os.path.join], protocol=4)
    names, complete = scan_pickle_globals(data)
    assert complete and names == [f"{os.system.__module__}.system", f"{os.path.join.__module__}.join"]
    names, complete = scan_pickle_globals(data[:-3])
    assert not complete


# ---------------------------------------------------------------- not a model / unknown

def test_not_a_model(tmp_path: Path) -> None:
    info = inspect_artifact(write(tmp_path, "s.pt", saved("just a string")))
    assert info.problem == "not_a_model" and "no tensors" in info.message
    info = inspect_artifact(write(tmp_path, "c.ptz", zlib.compress(b"custom-format" + os.urandom(300))))
    assert info.problem == "not_a_model" and info.layers == ["zlib"]
    assert info.decompressed_bytes == 313


def test_unknown_container(tmp_path: Path) -> None:
    data = b"\x13\x37" + bytes((i * 7919) % 251 for i in range(4000))
    info = inspect_artifact(write(tmp_path, "u.bin", data))
    assert (info.problem, info.container, info.layers) == ("unknown_container", "unknown", [])
    assert "brotli" in info.message and "13 37" in info.message


def test_missing_artifact_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="not found"):
        inspect_artifact(tmp_path / "nope.ptz")
    with pytest.raises(BadInput):
        inspect_artifact(tmp_path)


def test_info_is_plain_data(tmp_path: Path) -> None:
    from dataclasses import asdict
    import json

    info = inspect_artifact(write(tmp_path, "a.ptz", zlib.compress(saved(STATE))))
    assert isinstance(info, ArtifactInfo)
    assert json.loads(json.dumps(asdict(info)))["parameters"] == N_PARAMS


# ---------------------------------------------------------------- find_artifact

def test_find_artifact_prefers_compressed_model(tmp_path: Path) -> None:
    (tmp_path / "train_gpt.py").write_text("print(1)\n")
    (tmp_path / "README.md").write_text("x")
    (tmp_path / "final_model.pt").write_bytes(b"PK\x03\x04")
    shard = struct.pack("<256i", 20240520, 1, 0, *([0] * 253))
    (tmp_path / "tokens.bin").write_bytes(shard)  # a data shard by its header, not a model
    (tmp_path / "fineweb_val_000000.bin").write_bytes(shard)
    assert find_artifact(tmp_path) == tmp_path / "final_model.pt"
    (tmp_path / "model.bin").write_bytes(b"\x00" * 2000)
    assert find_artifact(tmp_path) == tmp_path / "model.bin"
    (tmp_path / "other.int6.ptz").write_bytes(b"x")
    assert find_artifact(tmp_path) == tmp_path / "other.int6.ptz"
    (tmp_path / "final_model.int8.ptz").write_bytes(b"x")
    assert find_artifact(tmp_path) == tmp_path / "final_model.int8.ptz"


def test_find_artifact_none_and_bad_folder(tmp_path: Path) -> None:
    (tmp_path / "train_gpt.py").write_text("print(1)\n")
    (tmp_path / "train.log").write_text("x")
    assert find_artifact(tmp_path) is None
    with pytest.raises(BadInput):
        find_artifact(tmp_path / "missing")


# ---------------------------------------------------------------- property

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(chain=st.lists(st.sampled_from(["zlib", "zstd", "xz", "bz2", "gzip", "brotli", "shuffle2", "shuffle4"]),
                      min_size=0, max_size=3))
def test_property_layer_chains_peel_back(tmp_path: Path, chain: list[str]) -> None:
    data = saved({"a": torch.arange(10, dtype=torch.int8), "b": torch.ones(3, dtype=torch.float16)})
    for step in chain:
        data = shuffle(data, int(step[-1])) if step.startswith("shuffle") else COMPRESS[step](data)
    info = inspect_artifact(write(tmp_path, "chain.ptz", data))
    assert info.problem is None, info.message
    expected = ["byte-shuffle" if s.startswith("shuffle") else s for s in reversed(chain)] + ["torch-zip"]
    assert info.layers == expected
    assert (info.tensor_count, info.parameters) == (2, 13)
