"""harness.check.unwrap: exec wrappers peeled without executing anything; line numbers preserved."""

from __future__ import annotations

import base64
import bz2
import codecs
import gzip
import lzma
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import BadInput, Exit
from harness.check.unwrap import unwrap_file, unwrap_source

brotli = pytest.importorskip("brotli")
zstandard = pytest.importorskip("zstandard")

# A source with a hint-relevant line at a known place (line 6) and Python 3.12-only syntax nowhere.
SRC = (
    "import os\n"
    "import math\n"
    "\n"
    "def train(model, opt):\n"
    "    loss = model()\n"
    "    opt.step()  # HINT-LINE\n"
    "    return loss\n"
    "\n"
    "x = [math.sqrt(i) for i in range(10)]\n"
    "print(f\"done {len(x)}\")\n"
)
HINT_LINE = 6

# ---------------------------------------------------------------- fixture builders

# compressor name -> (compress bytes, decompress expression over a placeholder {d}, import line, layer)
COMPRESSORS = {
    "lzma": (lambda b: lzma.compress(b), "L.decompress({d})", "import lzma as L", "lzma.decompress"),
    "lzma_raw": (
        lambda b: lzma.compress(b, format=lzma.FORMAT_RAW,
                                filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]),
        'L.decompress({d},format=L.FORMAT_RAW,filters=[{{"id":L.FILTER_LZMA2}}])',
        "import lzma as L", "lzma.decompress",
    ),
    "zlib": (lambda b: zlib.compress(b, 9), "zlib.decompress({d})", "import zlib", "zlib.decompress"),
    "zlib_raw": (
        lambda b: (lambda c: c.compress(b) + c.flush())(zlib.compressobj(9, zlib.DEFLATED, -15)),
        "zlib.decompress({d}, -zlib.MAX_WBITS)", "import zlib", "zlib.decompress",
    ),
    "bz2": (lambda b: bz2.compress(b), "bz2.decompress({d})", "import bz2", "bz2.decompress"),
    "gzip": (lambda b: gzip.compress(b), "gzip.decompress({d})", "import gzip", "gzip.decompress"),
    "brotli": (lambda b: brotli.compress(b), "brotli.decompress({d})", "import brotli", "brotli.decompress"),
    "zstd": (lambda b: zstandard.ZstdCompressor(level=19).compress(b),
             "zstandard.ZstdDecompressor().decompress({d})", "import zstandard", "zstd.decompress"),
    "codecs_zlib": (lambda b: zlib.compress(b), "codecs.decode({d}, 'zlib')", "import codecs",
                    "codecs.decode(zlib)"),
}

# encoding name -> (encode bytes -> literal text, decode expression over {s}, import line, layer)
ENCODINGS = {
    "b85": (lambda b: repr(base64.b85encode(b).decode()), "base64.b85decode({s})", "import base64",
            "base64.b85decode"),
    "b85_bytes": (lambda b: repr(base64.b85encode(b)), "base64.b85decode({s})", "import base64",
                  "base64.b85decode"),
    "b64": (lambda b: repr(base64.b64encode(b).decode()), "base64.b64decode({s})", "import base64",
            "base64.b64decode"),
    "a85": (lambda b: repr(base64.a85encode(b).decode()), "base64.a85decode({s})", "import base64",
            "base64.a85decode"),
    "b32": (lambda b: repr(base64.b32encode(b).decode()), "base64.b32decode({s})", "import base64",
            "base64.b32decode"),
    "hex": (lambda b: repr(b.hex()), "bytes.fromhex({s})", "", "bytes.fromhex"),
    "b16": (lambda b: repr(b.hex().upper()), "base64.b16decode({s})", "import base64", "base64.b16decode"),
    "codecs_b64": (lambda b: repr(base64.b64encode(b)), "codecs.decode({s}, 'base64')", "import codecs",
                   "codecs.decode(base64)"),
    "binascii_hex": (lambda b: repr(b.hex()), "binascii.unhexlify({s})", "import binascii",
                     "binascii.unhexlify"),
}


def wrap(src: str, comp: str = "lzma", enc: str = "b85", decode_call: str = ".decode()") -> str:
    """A one-level wrapper: imports, then exec(decompress(decode(literal)))."""
    c_fn, c_expr, c_imp, _ = COMPRESSORS[comp]
    e_fn, e_expr, e_imp, _ = ENCODINGS[enc]
    literal = e_fn(c_fn(src.encode("utf-8")))
    expr = c_expr.format(d=e_expr.format(s=literal))
    imports = "\n".join(sorted({i for i in (c_imp, e_imp) if i}))
    return f"{imports}\nexec({expr}{decode_call})\n"


def traceback_line(script_text: str, tmp_path: Path) -> int:
    """Run OUR fixture wrapper (never the harness's input) and return the line Python reports for
    the exception raised inside the exec'd source."""
    f = tmp_path / "fixture_run.py"
    f.write_text(script_text, encoding="utf-8")
    r = subprocess.run([sys.executable, str(f)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    lines = re.findall(r'File "<string>", line (\d+)', r.stderr)
    assert lines, r.stderr
    return int(lines[-1])


# ---------------------------------------------------------------- every compression x encoding

@pytest.mark.parametrize("comp", sorted(COMPRESSORS))
@pytest.mark.parametrize("enc", sorted(ENCODINGS))
def test_each_compression_and_encoding(comp: str, enc: str) -> None:
    w = wrap(SRC, comp, enc)
    u = unwrap_source(w)
    assert u.wrapped
    assert u.source == SRC
    assert u.layers == [ENCODINGS[enc][3], COMPRESSORS[comp][3]]
    assert u.wrapper_bytes == len(w.encode())
    assert u.source_bytes == len(SRC.encode())
    assert u.depth == 1 and u.shells == [w]
    assert u.note == ""


def test_real_record_shape_raw_lzma2_with_filters() -> None:
    # The shape many April records ship: two lines, raw LZMA2, b85, keyword format/filters.
    c = lzma.compress(SRC.encode(), format=lzma.FORMAT_RAW,
                      filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])
    w = ('import lzma as L,base64 as B\n'
         f'exec(L.decompress(B.b85decode("{base64.b85encode(c).decode()}"),format=L.FORMAT_RAW,'
         'filters=[{"id":L.FILTER_LZMA2}]))\n')
    u = unwrap_source(w)
    assert (u.wrapped, u.source, u.layers) == (True, SRC, ["base64.b85decode", "lzma.decompress"])


# ---------------------------------------------------------------- shapes of the call

def _blob(src: str = SRC) -> str:
    return base64.b64encode(zlib.compress(src.encode())).decode()


@pytest.mark.parametrize("text", [
    # __import__ instead of import statements
    "exec(__import__('zlib').decompress(__import__('base64').b64decode('{b}')))",
    # from-imports with aliases
    "from zlib import decompress as D\nfrom base64 import b64decode as E\nexec(D(E('{b}')).decode('utf-8'))",
    # exec(compile(...)) and eval(compile(...))
    "import zlib,base64\nexec(compile(zlib.decompress(base64.b64decode('{b}')),'<x>','exec'))",
    "import zlib,base64\neval(compile(zlib.decompress(base64.b64decode('{b}')).decode(),'<x>','exec'))",
    # the blob held in a name bound once, the exec given extra globals
    "import zlib as Z, base64 as B64\nBLOB = '{b}'\nexec(Z.decompress(B64.b64decode(BLOB)), globals())",
    # a literal split and concatenated, bytes.decode as a function, str() with encoding
    "import zlib,base64\nexec(str(zlib.decompress(base64.b64decode('{b1}' + '{b2}')), 'utf-8'))",
    # importlib.import_module and builtins.exec
    "import importlib, builtins\nbuiltins.exec(importlib.import_module('zlib').decompress("
    "importlib.import_module('base64').b64decode('{b}')))",
    # a few normal lines around it (inside a main guard)
    "#!/usr/bin/env python3\n\"\"\"doc\"\"\"\nimport zlib, base64\nif __name__ == '__main__':\n"
    "    exec(zlib.decompress(base64.b64decode('{b}')))\n",
])
def test_call_shapes(text: str) -> None:
    b = _blob()
    w = text.format(b=b, b1=b[:10], b2=b[10:])
    u = unwrap_source(w)
    assert u.wrapped, u.note
    assert u.source == SRC
    assert u.layers == ["base64.b64decode", "zlib.decompress"]


def test_reversed_literal_and_rot13() -> None:
    b = base64.b64encode(zlib.compress(SRC.encode())).decode()[::-1]
    u = unwrap_source(f"import zlib,base64\nexec(zlib.decompress(base64.b64decode('{b}'[::-1])))")
    assert u.source == SRC and u.layers == ["reverse", "base64.b64decode", "zlib.decompress"]
    r = codecs.encode(SRC, "rot13")
    u = unwrap_source(f"import codecs\nexec(codecs.decode({r!r}, 'rot13'))")
    assert u.source == SRC and u.layers == ["codecs.decode(rot-13)"]


def test_wrapper_with_side_statements_is_unwrapped_with_note() -> None:
    w = "import os, zlib, base64\nos.environ.setdefault('X', '1')\n" + \
        f"exec(zlib.decompress(base64.b64decode('{_blob()}')))\n"
    u = unwrap_source(w)
    assert u.wrapped and u.source == SRC
    assert "1 statement(s) outside the exec'd source (line(s) 2)" in u.note


# ---------------------------------------------------------------- nesting

def test_nested_three_levels_layers_in_order() -> None:
    level1 = wrap(SRC, "zstd", "b64")
    level2 = wrap(level1, "brotli", "a85")
    level3 = wrap(level2, "lzma", "b85")
    u = unwrap_source(level3)
    assert u.wrapped and u.depth == 3
    assert u.source == SRC
    assert u.layers == ["base64.b85decode", "lzma.decompress", "base64.a85decode", "brotli.decompress",
                        "base64.b64decode", "zstd.decompress"]
    assert u.shells == [level3, level2, level1]
    assert u.wrapper_bytes == len(level3.encode())


def test_max_depth_stops_and_says_so() -> None:
    text = SRC
    for _ in range(4):
        text = wrap(text, "zlib", "b64")
    u = unwrap_source(text, max_depth=2)
    assert u.depth == 2 and u.source != SRC
    assert "stopped after 2 nested wrappers" in u.note
    assert unwrap_source(text, max_depth=4).source == SRC


# ---------------------------------------------------------------- not unwrapped

@pytest.mark.parametrize("text, fragment", [
    ("import sys\nexec(open(sys.argv[1]).read())\n", "exec at line 2 runs a non-literal"),
    ("import zlib\ndata = input()\nexec(zlib.decompress(data))\n", "call to builtins.input"),
    ("import mylib\nexec(mylib.unpack('abc'))\n", "call to mylib.unpack"),
    ("import marshal,zlib,base64\nexec(marshal.loads(zlib.decompress(base64.b64decode('eJwDAAAAAAE='))))",
     "marshal.loads"),
    ("import zlib\nexec(zlib.decompress(b'x\\x9c+'))\n", "zlib stream ends before its end marker"),
    ("exec(f'print({1})')\n", "JoinedStr"),
    ("import lzma\nexec(lzma.decompress(b'\\x00', format=lzma.FORMAT_RAW))\n", "FORMAT_RAW without filters"),
])
def test_non_literal_exec_is_left_as_is_with_note(text: str, fragment: str) -> None:
    u = unwrap_source(text)
    assert not u.wrapped
    assert u.source == text and u.layers == [] and u.shells == []
    assert u.source_bytes == u.wrapper_bytes == len(text.encode())
    assert fragment in u.note


def test_rebound_alias_is_not_trusted() -> None:
    # `zlib` is rebound: the decoder the exec calls is not provably zlib.decompress.
    w = f"import zlib, base64\nzlib = base64\nexec(zlib.decompress(base64.b64decode('{_blob()}')))"
    u = unwrap_source(w)
    assert not u.wrapped and "bound more than once" in u.note


def test_shadowed_exec_is_not_a_wrapper() -> None:
    w = f"import zlib, base64\ndef exec(x):\n    pass\nexec(zlib.decompress(base64.b64decode('{_blob()}')))"
    u = unwrap_source(w)
    assert not u.wrapped and u.source == w


def test_plain_script_untouched() -> None:
    u = unwrap_source(SRC)
    assert (u.wrapped, u.source, u.layers, u.note, u.depth) == (False, SRC, [], "", 0)


def test_small_embedded_exec_in_real_code_is_not_a_wrapper() -> None:
    body = "".join(f"def f{i}(x):\n    return x * {i} + len(str(x))\n\n" for i in range(40))
    w = f"import zlib, base64\n{body}exec(zlib.decompress(base64.b64decode('{_blob('y = 1')}')))\n"
    u = unwrap_source(w)
    assert not u.wrapped and u.source == w
    assert "dominates" in u.note


def test_python312_inner_source_is_still_unwrapped() -> None:
    # PEP 701 f-string: does not parse under 3.11, but the wrapper does; the source comes back intact.
    inner = 'names = ["a", "b"]\nprint(f"{", ".join([f"{n}" for n in names])}")\n'
    u = unwrap_source(wrap(inner, "lzma", "b85"))
    assert u.wrapped and u.source == inner


def test_unparseable_file_notes_only_when_it_calls_exec() -> None:
    broken = "def f(:\n    model.eval()\n"
    u = unwrap_source(broken)
    assert (u.wrapped, u.source, u.note) == (False, broken, "")
    u = unwrap_source("exec(zlib.decompress(b'')\n")
    assert not u.wrapped and "does not parse under Python" in u.note


def test_nothing_is_executed(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    payload = f"open({str(marker)!r}, 'w').write('x')\n" + "# the payload's real code\n" * 20
    w = f"import os\nos.system('touch {marker}')\n" + wrap(payload, "zlib", "b64")
    w += f"exec(__import__('os').system('touch {marker}'))\n"
    u = unwrap_source(w)
    assert u.wrapped and u.source == payload
    assert "call to os.system" in u.note
    assert not marker.exists()


# ---------------------------------------------------------------- bombs and bad input

@pytest.mark.parametrize("comp", ["zlib", "lzma", "bz2", "zstd", "brotli"])
def test_decompression_bomb_refused(comp: str) -> None:
    big = b"\0" * 4_000_000
    w = wrap(big.decode(), comp, "b64", decode_call="")
    with pytest.raises(BadInput) as ei:
        unwrap_source(w, max_bytes=1_000_000)
    msg = str(ei.value)
    assert "\n" not in msg and "bomb" in msg
    assert ei.value.exit_code == Exit.BAD_INPUT


def test_non_utf8_file_is_bad_input(tmp_path: Path) -> None:
    f = tmp_path / "train_gpt.py"
    f.write_bytes(b"print('hi')\n# caf\xe9\n")
    with pytest.raises(BadInput) as ei:
        unwrap_file(f)
    assert "not UTF-8" in str(ei.value) and "0xe9" in str(ei.value) and "\n" not in str(ei.value)


def test_missing_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        unwrap_file(tmp_path / "nope.py")


def test_unwrap_file_counts_shipped_bytes(tmp_path: Path) -> None:
    w = wrap(SRC, "lzma_raw", "b85")
    f = tmp_path / "train_gpt.py"
    f.write_bytes(w.encode())
    u = unwrap_file(f)
    assert u.wrapped and u.source == SRC
    assert u.wrapper_bytes == f.stat().st_size and u.source_bytes == len(SRC.encode())


# ---------------------------------------------------------------- line numbers

@pytest.mark.parametrize("comp, enc", [("lzma_raw", "b85"), ("zlib", "b64")])
def test_line_numbers_match_what_python_reports(tmp_path: Path, comp: str, enc: str) -> None:
    inner = SRC + "train(lambda: 1.0, None)\n"  # None.step() raises on the hint line
    w = "import os\n\n# leading lines shift nothing inside the exec\n" + wrap(inner, comp, enc)
    u = unwrap_source(wrap(w, "zstd", "a85"))  # nested once more for good measure
    assert u.depth == 2
    reported = traceback_line(wrap(w, "zstd", "a85"), tmp_path)
    assert reported == HINT_LINE
    assert "HINT-LINE" in u.source.splitlines()[reported - 1]
    assert u.source.splitlines()[HINT_LINE - 1] == SRC.splitlines()[HINT_LINE - 1]


# ---------------------------------------------------------------- property

_codec_names = sorted(COMPRESSORS)
_enc_names = sorted(ENCODINGS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.text(st.characters(blacklist_categories=("Cs",)), max_size=300),
    chain=st.lists(st.tuples(st.sampled_from(_codec_names), st.sampled_from(_enc_names)),
                   min_size=1, max_size=3),
)
def test_property_any_chain_round_trips(body: str, chain: list[tuple[str, str]]) -> None:
    src = f"s = {body!r}\n"
    text = src
    for comp, enc in chain:
        text = wrap(text, comp, enc)
    u = unwrap_source(text)
    assert u.source == src
    assert u.depth == len(chain)
    expected = [lab for comp, enc in reversed(chain) for lab in (ENCODINGS[enc][3], COMPRESSORS[comp][3])]
    assert u.layers == expected


def test_compile_with_a_filename_expression_unwraps_the_source_alone():
    """exec(compile(S, __file__ + "...", "exec")): the filename is not a literal, and need not be."""
    payload = "".join(f"x{i} = {i} * 2  # a line of the decoded script\n" for i in range(200))
    blob = base64.b85encode(lzma.compress(payload.encode())).decode()
    wrapper = ("import lzma as L, base64 as B\n"
               f'S = L.decompress(B.b85decode("{blob}")).decode()\n'
               'exec(compile(S, __file__ + "::decoded", "exec"))\n')
    u = unwrap_source(wrapper)
    assert u.wrapped and u.source == payload
