"""B1 code bytes as records count them: the self-extracting compressed form of a readable script.

Since April many records ship a readable ``train_gpt.py`` but count its code as the form they would
ship: the source minified with python-minifier (records pass ``--no-rename-locals
--no-hoist-literals``, often ``--remove-literal-statements``), compressed with lzma (xz or raw) or
brotli, encoded with base85 (or base64), in a one-line wrapper::

    import lzma as L,base64 as B
    exec(L.decompress(B.b85decode("...")))

``compressed_code`` builds every such form the harness can reproduce itself (each one decoded again
and compared with its input before it is counted) and keeps the smallest. A source this Python cannot
parse (PEP 701 f-strings under 3.11) is first respelled into an equivalent 3.11 spelling
(harness.run.py312); when minifying still fails, the plain source is compressed and the figure says so.
The source is minified once (about 5 s for 120 KB): the second option set only when the first fails.
Nothing of the submission is executed.
"""

from __future__ import annotations

import base64
import lzma
from dataclasses import dataclass, field
from typing import Callable

# python-minifier options records pass (pyminify flags), tried in turn
MINIFY_VARIANTS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("--no-rename-locals --no-hoist-literals --remove-literal-statements",
     {"rename_locals": False, "hoist_literals": False, "remove_literal_statements": True}),
    ("--no-rename-locals --no-hoist-literals",
     {"rename_locals": False, "hoist_literals": False, "remove_literal_statements": False}),
)

_RAW_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


@dataclass
class CompressedCode:
    """The smallest self-extracting form the harness reproduced, and how."""

    bytes: int  # UTF-8 bytes of the wrapper file
    recipe: str  # e.g. "pyminify --no-rename-locals ... | lzma raw | base85"
    source_bytes: int  # bytes of the source that was compressed (after minifying)
    minified: bool
    notes: list[str] = field(default_factory=list)  # e.g. why minifying was skipped
    tried: int = 0  # forms built and verified

    def to_dict(self) -> dict:
        return {"bytes": self.bytes, "recipe": self.recipe, "source_bytes": self.source_bytes,
                "minified": self.minified, "notes": list(self.notes), "tried": self.tried}


def _compressors() -> list[tuple[str, str, Callable[[bytes], bytes], Callable[[bytes], bytes], str]]:
    """(name, import line, compress, decompress, decompress-call template with {blob})."""
    out = [
        ("lzma xz -9e", "import lzma as L", lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME),
         lzma.decompress, "L.decompress({blob})"),
        ("lzma raw -9e", "import lzma as L",
         lambda b: lzma.compress(b, format=lzma.FORMAT_RAW, filters=_RAW_FILTERS),
         lambda b: lzma.decompress(b, format=lzma.FORMAT_RAW, filters=_RAW_FILTERS),
         "L.decompress({blob},format=L.FORMAT_RAW,filters=[{{'id':L.FILTER_LZMA2}}])"),
    ]
    try:
        import brotli  # optional dependency (harness[brotli])
    except ImportError:
        return out
    out.append(("brotli -q 11", "import brotli as L", lambda b: brotli.compress(b, quality=11),
                brotli.decompress, "L.decompress({blob})"))
    return out


_ENCODINGS: tuple[tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes], str], ...] = (
    ("base85", base64.b85encode, base64.b85decode, "b85decode"),
    ("base64", base64.b64encode, base64.b64decode, "b64decode"),
)


def _minified(source: str) -> tuple[list[tuple[str, str]], list[str]]:
    """[(flags, minified source)] for each variant python-minifier could produce, and notes."""
    notes: list[str] = []
    try:
        import python_minifier
    except ImportError:
        return [], ["python-minifier is not installed: the plain source was compressed"]
    text = source
    try:
        compile(text, "<train_gpt.py>", "exec", dont_inherit=True)
    except SyntaxError:
        try:
            from harness.run.py312 import rewrite_source

            text, _ = rewrite_source(source)
            notes.append("the source needs Python 3.12 syntax: minified its equivalent 3.11 spelling")
        except Exception as e:  # noqa: BLE001 - any refusal means: no minified form
            return [], [f"python-minifier cannot parse the source ({type(e).__name__}): "
                        "the plain source was compressed"]
    out: list[tuple[str, str]] = []
    for flags, kw in MINIFY_VARIANTS:  # the next variant only when one fails (each takes seconds)
        try:
            m = python_minifier.minify(text, **kw)
            compile(m, "<minified>", "exec", dont_inherit=True)
        except Exception as e:  # noqa: BLE001 - a minifier failure falls back to the plain bytes
            notes.append(f"pyminify {flags} failed ({type(e).__name__}: {str(e)[:80]})")
            continue
        out.append((flags, m))
        break
    if not out:
        notes.append("minifying failed: the plain source was compressed")
    return out, notes


_CACHE: dict[tuple[str, bool], CompressedCode] = {}


def compressed_code(source: str, *, minify: bool = True) -> CompressedCode:
    """The smallest verified self-extracting form of `source` (see the module docstring)."""
    import copy
    import hashlib

    key = (hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest(), minify)
    if key not in _CACHE:
        _CACHE[key] = _compressed_code(source, minify)
    return copy.deepcopy(_CACHE[key])


def _compressed_code(source: str, minify: bool) -> CompressedCode:
    notes: list[str] = []
    mins: list[tuple[str, str]] = []
    if minify:
        mins, notes = _minified(source)
    # the plain source only when nothing was minified: a minified form is always the smaller one
    candidates = mins or [("", source)]
    best: CompressedCode | None = None
    tried = 0
    for flags, text in candidates:
        raw = text.encode("utf-8")
        for cname, imp, comp, decomp, call in _compressors():
            packed = comp(raw)
            for ename, enc, dec, fn in _ENCODINGS:
                blob = enc(packed).decode("ascii")
                if decomp(dec(blob.encode("ascii"))) != raw:  # verify: the wrapper gives back the source
                    continue
                tried += 1
                wrapper = f'{imp},base64 as B\nexec({call.format(blob=f"B.{fn}({blob!r})")})\n'
                n = len(wrapper.encode("utf-8"))
                if best is None or n < best.bytes:
                    recipe = " | ".join(p for p in ((f"pyminify {flags}" if flags else "no minify"), cname,
                                                    ename, "exec wrapper"))
                    best = CompressedCode(n, recipe, len(raw), bool(flags))
    assert best is not None  # lzma is always there
    best.notes, best.tried = notes, tried
    return best
