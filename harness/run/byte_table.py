"""The record's own byte table, executed: what its bits-per-byte counts for each token.

val_bpb divides the NLL by the bytes of the scored text; records compute those bytes from tables their
own code builds from the tokenizer (the baseline's `build_sentencepiece_luts`: bytes of each piece, whether
it starts with a space, whether it is a boundary). Several records were rejected for a wrong table: the
leading space counted in the piece's bytes and again by the evaluation, byte-fallback pieces `<0xAB>`
counted as 6 bytes instead of 1. The traced run sees such a table through the printed val_bpb; when the run
cannot reach its score (a kernel package missing, a crash), this module still decides it:

1. find (statically, in every .py of the folder, wrappers peeled) a function that builds a table from a
   SentencePiece processor (it calls ``.id_to_piece``) and that the folder's code calls;
2. run that function alone, in the sandbox like any run (harness.run.runner), on the served tokenizer:
   a generated script holds the folder's imports (each may fail), its module-level constants, the function
   and the module functions it calls, and prints the tables it returns;
3. compare with the harness's tables (harness.data.bpb): per token, the bytes the baseline formula
   (``base[y] + has_leading_space[y] and not boundary[x]``) gives with the record's tables against the
   UTF-8 bytes of the text, by class (leading-space pieces, byte-fallback pieces, control tokens).

The formula is the record's only when its code adds the has-space table (a subscript of the second table's
name, or a name with "space" in it, added to a byte count): otherwise a mismatch is reported, not decided.
"""

from __future__ import annotations

import ast
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.pyast import parse_source

MARK = "HARNESS_BYTE_TABLE "
_MAX_FILE = 2_000_000


@dataclass
class TableBuilder:
    """A table-building function found in the folder, and what it needs to run alone."""

    file: str  # path relative to the folder
    name: str
    line: int
    params: list[str]
    source: str  # generated module text: imports, constants, helpers, the function
    called_at: list[str] = field(default_factory=list)  # "file:line" of calls to it
    adds_space_table: str | None = None  # "file:line" where the has-space table is added to a byte count


def _module_text(path: Path) -> str | None:
    from harness.check.unwrap import unwrap_source
    from harness.run.py312 import rewrite_source

    try:
        raw = path.read_bytes()
        if len(raw) > _MAX_FILE:
            return None
        text = unwrap_source(raw.decode("utf-8-sig")).source
    except Exception:  # noqa: BLE001 - an unreadable file holds no builder we can run
        return None
    try:
        parse_source(text)
        return text
    except SyntaxError:
        pass
    try:
        return rewrite_source(text, path.name)[0]  # Python 3.12 f-strings spelled for this interpreter
    except Exception:  # noqa: BLE001
        return None


def _calls(node: ast.AST) -> set[str]:
    return {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _is_builder(fn: ast.FunctionDef) -> bool:
    """Builds a table from a SentencePiece processor: calls .id_to_piece and returns a tuple of tables."""
    pieces = any(isinstance(n, ast.Attribute) and n.attr == "id_to_piece" for n in ast.walk(fn))
    returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return) and isinstance(n.value, ast.Tuple)]
    return pieces and any(len(r.value.elts) >= 3 for r in returns)


def _adds_space_table(tree: ast.AST, rel: str) -> str | None:
    """Where the code adds a has-leading-space table (a subscript of a name with "space" in it) to a count."""
    def spacey(e: ast.AST) -> bool:
        return any(isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and "space" in n.value.id.lower()
                   for n in ast.walk(e))

    for n in ast.walk(tree):
        if isinstance(n, ast.AugAssign) and isinstance(n.op, ast.Add) and spacey(n.value):
            return f"{rel}:{n.lineno}"
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add) and (spacey(n.left) or spacey(n.right)):
            return f"{rel}:{n.lineno}"
    return None


def find_builders(folder: str | Path) -> list[TableBuilder]:
    """Table builders the folder's code defines and calls (see the module docstring)."""
    root = Path(folder)
    files = sorted(p for p in root.glob("*.py") if p.is_file() and not p.is_symlink())
    parsed: list[tuple[str, str, ast.Module]] = []
    for p in files:
        text = _module_text(p)
        if text is None:
            continue
        try:
            parsed.append((p.name, text, parse_source(text)))
        except SyntaxError:
            continue
    calls: dict[str, list[str]] = {}
    space_add = None
    for rel, _, tree in parsed:
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
                calls.setdefault(n.func.id, []).append(f"{rel}:{n.lineno}")
        space_add = space_add or _adds_space_table(tree, rel)
    out = []
    for rel, text, tree in parsed:
        defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        for fn in defs.values():
            if not _is_builder(fn) or not calls.get(fn.name):
                continue
            out.append(TableBuilder(rel, fn.name, fn.lineno, [a.arg for a in fn.args.args],
                                    _standalone(text, tree, fn, defs), calls[fn.name], space_add))
    return out


def _standalone(text: str, tree: ast.Module, fn: ast.FunctionDef, defs: dict[str, ast.FunctionDef]) -> str:
    """The module's imports (each may fail), simple constants, the function and the module functions it
    calls (transitively), at their original line numbers' order."""
    need = {fn.name}
    todo = [fn]
    while todo:
        for name in _calls(todo.pop()):
            if name in defs and name not in need:
                need.add(name)
                todo.append(defs[name])
    parts: list[str] = []
    for node in tree.body:
        seg = ast.get_source_segment(text, node) or ""
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            parts.append("try:\n" + _indent(seg) + "\nexcept Exception:\n    pass")
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets) and _literal(node.value):
            parts.append(seg)
        elif isinstance(node, ast.FunctionDef) and node.name in need:
            deco = "".join("@" + (ast.get_source_segment(text, d) or "") + "\n" for d in node.decorator_list)
            parts.append(deco + seg)
    return "\n\n".join(parts) + "\n"


def _literal(v: ast.AST) -> bool:
    try:
        ast.literal_eval(v)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _indent(s: str) -> str:
    return "\n".join("    " + ln for ln in s.splitlines())


_ARG_FOR = (
    (re.compile(r"^(sp|tok|tokenizer|processor|spm|sp_model|model)$", re.I), "sp"),
    (re.compile(r"vocab", re.I), "vocab_size"),
    (re.compile(r"device", re.I), "'cpu'"),
)


def driver(b: TableBuilder) -> str | None:
    """The generated script: run the builder on the served tokenizer, print its first three tables."""
    args = []
    for p in b.params:
        val = next((v for rx, v in _ARG_FOR if rx.search(p)), None)
        if val is None:
            return None  # a parameter we cannot supply: not run
        args.append(val)
    return (
        b.source
        + "\n\nimport json as _json, os as _os\nimport numpy as _np\nimport sentencepiece as _spm\n"
        + "sp = _spm.SentencePieceProcessor(model_file=_os.environ['TOKENIZER_PATH'])\n"
        + "vocab_size = int(_os.environ.get('VOCAB_SIZE') or sp.vocab_size())\n"
        + f"_out = {b.name}({', '.join(args)})\n"
        + "def _arr(x):\n"
        + "    if hasattr(x, 'detach'):\n        x = x.detach().cpu().numpy()\n"
        + "    return _np.asarray(x).astype(_np.float64).ravel().tolist()\n"
        + f"print({MARK!r} + _json.dumps([_arr(x) for x in _out[:3]]), flush=True)\n"
    )


@dataclass
class TableVerdict:
    """The record's table against the text's bytes, per class of token."""

    builder: TableBuilder
    classes: list[dict[str, Any]]  # {name, count, example, record_bytes, text_bytes}
    formula_seen: bool
    error: str | None = None

    @property
    def wrong(self) -> bool:
        return bool(self.classes)


def compare(b: TableBuilder, tables: list[list[float]], tokenizer: str, vocab_size: int | None) -> TableVerdict:
    """Classes of tokens whose bytes by the record's tables differ from the text's (baseline formula)."""
    from harness.data.bpb import byte_tables, token_classes
    from harness.data.shards import BOS_ID

    ref = byte_tables(tokenizer, vocab_size)
    cls = token_classes(tokenizer, vocab_size)
    n = min(ref.vocab_size, *(len(t) for t in tables))
    base, space, boundary = (np.asarray(t[:n], dtype=np.float64) for t in tables)
    rec = base + (space > 0)  # after a non-boundary token
    txt = ref.base_bytes[:n].astype(np.float64) + ref.has_leading_space[:n]
    rows = []
    for name, mask in (("leading-space pieces", cls.leading_space[:n]), ("byte-fallback pieces", cls.byte_fallback[:n]),
                       ("control / unknown tokens", cls.control[:n] & (np.arange(n) < len(cls.pieces))),
                       ("other pieces", ~(cls.leading_space[:n] | cls.byte_fallback[:n] | cls.control[:n]))):
        bad = np.flatnonzero(mask & (np.abs(rec - txt) > 1e-9))
        if bad.size:
            # the example a reader recognises: BOS, which every document of the stream starts with
            i = BOS_ID if name.startswith("control") and BOS_ID in bad else int(bad[0])
            rows.append({"name": name, "count": int(bad.size), "example": i, "piece": cls.pieces[i],
                         "record_bytes": float(rec[i]), "text_bytes": float(txt[i])})
    del boundary
    return TableVerdict(b, rows, b.adds_space_table is not None)


def run_builders(folder: str | Path, cfg: Any, run_kwargs: dict[str, Any], tokenizer: str,
                 vocab_size: int | None) -> list[TableVerdict]:
    """Run each builder in the sandbox (a generated script, no trace) and compare its tables."""
    from harness.run.runner import run_submission

    out: list[TableVerdict] = []
    for b in find_builders(folder):
        src = driver(b)
        if src is None:
            continue
        with tempfile.TemporaryDirectory(prefix="pgh-bytes-") as d:
            sub = Path(d) / "sub"
            sub.mkdir()
            (sub / "train_gpt.py").write_text(src)
            kw = dict(run_kwargs, trace=False, timeout=120, infer_env=False, env={}, score_tag=None,
                      out_dir=str(Path(d) / "out"), tokenizer=tokenizer, vocab_size=vocab_size, keep_workdir=False)
            kw["device"], kw["nproc"] = "cpu", 1
            r = run_submission(sub, cfg, **kw)
            text = ""
            try:
                text = Path(r.stdout_path).read_text(errors="replace") if r.stdout_path else ""
            except OSError:
                pass
        line = next((ln for ln in text.splitlines() if ln.startswith(MARK)), None)
        if line is None:
            out.append(TableVerdict(b, [], False, error=f"{r.reason}: {r.message}"[:300]))
            continue
        try:
            tables = json.loads(line[len(MARK):])
        except ValueError:
            out.append(TableVerdict(b, [], False, error="unreadable tables"))
            continue
        out.append(compare(b, tables, tokenizer, vocab_size))
    return out


def byte_table_row(verdicts: list[TableVerdict], cfg: Any) -> Any:
    """The C4 row: FAIL when a table the folder's code calls counts some class of tokens wrong and its code adds
    the has-space table as the baseline formula does; INCONCLUSIVE when the formula was not seen; None when no
    table was run or every table run is right (the trace's row stands alone)."""
    from harness.results import Evidence, Finding, Status, rule_row

    wrong = [v for v in verdicts if v.wrong]
    if not wrong:
        return None
    findings = []
    for v in wrong:
        b = v.builder
        for c in v.classes:
            what = {"leading-space pieces": "the leading space counted twice (in the piece's bytes and again by the "
                                            "has-space table)" if c["record_bytes"] > c["text_bytes"] else
                    "the leading space not counted",
                    "byte-fallback pieces": "a byte-fallback piece is one byte of text",
                    "control / unknown tokens": "control and unknown tokens stand for no text"}.get(c["name"], "")
            findings.append(Finding("C4", Status.FAIL if v.formula_seen else Status.INCONCLUSIVE, (
                f"{b.name}() at {b.file}:{b.line} (called at {', '.join(b.called_at[:2])}) gives {c['count']} "
                f"{c['name']} the wrong byte count: token {c['example']} {c['piece']!r} counts "
                f"{c['record_bytes']:g} byte(s) where its text has {c['text_bytes']:g}"
                + (f" ({what})" if what else "") + "; val_bpb divides by these bytes"
                + (f", added as the baseline formula does at {b.adds_space_table}." if v.formula_seen else
                   "; the code's byte formula was not found, so whether the printed val_bpb uses it is undecided.")),
                [Evidence(where=f"{b.file}:{b.line}", detail=f"token {c['example']}: {c['record_bytes']:g} vs "
                          f"{c['text_bytes']:g} bytes ({c['count']} {c['name']})")]))
    status = Status.FAIL if any(f.status is Status.FAIL for f in findings) else Status.INCONCLUSIVE
    names = sorted({c["name"] for v in wrong for c in v.classes})
    return rule_row(cfg, "C4", status, f"the record's byte table miscounts {', '.join(names)} (run on the served "
                    f"tokenizer)", findings, checker="byte table")
