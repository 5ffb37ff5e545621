"""Python 3.12 syntax on an older host: a syntax-only rewrite of the run's working copy.

Many records use PEP 701 f-strings (a replacement field reusing the enclosing quote, a backslash
inside a field, fields nested more deeply than 3.11 allows) and fail to compile under Python 3.11:
`SyntaxError: f-string: expecting '}'`. When the child runs this host's Python and it is older than
3.12, every Python file of the working copy that does not compile is rewritten into an equivalent
3.11 spelling, on the same lines:

- the quotes of strings nested inside an f-string's fields are changed (`f"{d["k"]}"` ->
  `f"{d['k']}"`; an outer f-string may become triple-quoted when nesting needs a fourth quote);
- a nested plain string holding a backslash escape becomes a `%c` expression with the same value
  (`"\\n".join(x)` inside a field -> `('%c'%10).join(x)`), since 3.11 forbids backslashes there.

Nothing else changes: no line is added, removed or split, so every line number the tracer, the
hints and tracebacks cite is the original's. Each rewritten f-string is proven equivalent before it
is used: the original is parsed with libcst's 3.12 grammar, the rewrite with CPython's own parser
(3.11) and with libcst, and their trees are compared after a normalisation under which only quote
style and the `%c` spelling of constant strings differ. What cannot be proven is refused
(NeedsPython312, one line: the run ends `needs_python`, exit 4).

A script shipped as an exec'd compressed blob (`exec(L.decompress(B.b85decode("...")))`) is
unwrapped (harness.check.unwrap, never executing it); when its inner source needs the rewrite, the
rewritten inner source replaces the wrapper in the working copy as plain source. Its lines are then
the unwrapped source's lines, the ones the exec'd code reported as `<string>:N` and the ones
`harness check` hints cite (`train_gpt.py:N` = line N of the unwrapped source). The wrapper's own
statements outside the exec (imports, `__wrapper_size__=...`) are not run, and the script's own
`len(open(__file__).read())` code-size figure then counts the plain source; the harness measures
code bytes on the submission as shipped, never on the working copy.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.pyast import parse_source

MAX_FILE_BYTES = 4 * 1024 * 1024  # bigger .py files in a submission are left alone
_QUOTES = ('"', "'", '"""', "'''")
_PCT_C = re.compile(r"^(?:[^%]|%%|%c)*$", re.S)
# fields that carry only layout (whitespace, parentheses, commas), never meaning
_LAYOUT_FIELDS = frozenset({"lpar", "rpar", "comma", "semicolon", "leading_lines", "lines_after_decorators",
                            "header", "footer", "newline", "indent", "trailing_whitespace", "empty_lines"})


class NeedsPython312(Exception):
    """The source uses Python 3.12 syntax this module cannot provably rewrite (one line)."""


@dataclass
class FileRewrite:
    path: str  # relative to the working copy
    lines: list[int]  # start line of each rewritten f-string
    unwrapped: bool = False  # the file was an exec wrapper, now plain source
    layers: list[str] = field(default_factory=list)  # the wrapper's decoders, when unwrapped

    def describe(self) -> str:
        uniq = sorted(set(self.lines))
        shown = ", ".join(str(n) for n in uniq[:20]) + (" ..." if len(uniq) > 20 else "")
        s = f"source rewritten for Python 3.11: {len(self.lines)} f-strings at lines {shown} of {self.path}"
        if self.unwrapped:
            s += (f" (unwrapped from its {'+'.join(self.layers) or 'exec'} wrapper and run as plain source; "
                  f"its line numbers are the unwrapped source's)")
        return s


@dataclass
class SourceRewrite:
    files: list[FileRewrite] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(f.lines) for f in self.files)

    def notes(self) -> list[str]:
        return [f.describe() for f in self.files]

    def to_dict(self) -> dict[str, Any]:
        return {"python": "3.11-rewrite", "count": self.count, "files": [dataclasses.asdict(f) for f in self.files]}


# ------------------------------------------------------------------ deciding

def host_needs_rewrite(exe: str, version: str) -> bool:
    """The child runs this host's own interpreter and it is older than 3.12 (`--python` picking
    another interpreter, or a 3.12+ host: nothing is rewritten)."""
    try:
        same = Path(exe).resolve() == Path(sys.executable).resolve()
    except OSError:
        same = False
    major, minor = (int(x) for x in version.split(".")[:2])
    return same and (major, minor) < (3, 12) and sys.version_info < (3, 12)


def compiles(source: str, filename: str = "<source>") -> SyntaxError | None:
    """None when this host's parser accepts `source`; else its SyntaxError."""
    try:
        parse_source(source, filename)
    except SyntaxError as e:
        return e
    except (ValueError, RecursionError, MemoryError) as e:
        return SyntaxError(f"{type(e).__name__}: {e}")
    return None


# ------------------------------------------------------------------ the workdir

def rewrite_workdir(work: Path, script: Path) -> SourceRewrite:
    """Rewrite, in place, the Python files of the working copy that need it. NeedsPython312 when one
    cannot be rewritten provably."""
    out = SourceRewrite()
    files = [script] + sorted(p for p in work.rglob("*.py") if p != script and p.is_file()
                              and not p.is_symlink() and "tmp" not in p.relative_to(work).parts[:1])
    for p in files:
        try:
            if p.stat().st_size > MAX_FILE_BYTES:
                continue
            raw = p.read_bytes()
            text = raw.decode("utf-8-sig")
        except (OSError, UnicodeDecodeError):
            continue
        rel = str(p.relative_to(work))
        fr = _rewrite_file(text, rel, is_script=p == script)
        if fr is None:
            continue
        new_text, info = fr
        p.write_text(new_text, encoding="utf-8")
        out.files.append(info)
    return out


def _rewrite_file(text: str, rel: str, *, is_script: bool) -> tuple[str, FileRewrite] | None:
    err = compiles(text, rel)
    if err is None:
        if not is_script or "exec" not in text:
            return None
        from harness.check.unwrap import unwrap_source
        from harness.errors import BadInput

        try:
            u = unwrap_source(text)
        except BadInput:
            return None
        if not u.wrapped or compiles(u.source, rel) is None:
            return None
        new, lines = rewrite_source(u.source, rel)
        return new, FileRewrite(rel, lines, unwrapped=True, layers=list(u.layers))
    new, lines = rewrite_source(text, rel)
    return new, FileRewrite(rel, lines)


# ------------------------------------------------------------------ one source

def rewrite_source(source: str, filename: str = "<source>") -> tuple[str, list[int]]:
    """(3.11 spelling, start lines of the rewritten f-strings). NeedsPython312 when the source needs
    3.12 and the rewrite cannot be proven; a source that no Python parses is returned unchanged."""
    import libcst as cst
    from libcst.metadata import MetadataWrapper, PositionProvider

    err = compiles(source, filename)
    if err is None:
        return source, []
    try:
        mod = cst.parse_module(source, config=cst.PartialParserConfig(python_version="3.12"))
    except Exception:  # noqa: BLE001 - not 3.12 either: the script's own syntax error, left to Python
        return source, []
    wrapper = MetadataWrapper(mod, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    tr = _transformer(positions, filename)
    new_mod = mod.visit(tr)
    if tr.refused:
        raise NeedsPython312(tr.refused)
    new = new_mod.code
    if new.count("\n") != source.count("\n"):
        raise NeedsPython312(f"{filename}: the rewrite would move lines; not used")
    err2 = compiles(new, filename)
    if err2 is not None:
        line = err2.lineno or "?"
        raise NeedsPython312(f"{filename} line {line}: {err2.msg} (Python 3.12 syntax this host cannot "
                             f"run, and no provable 3.11 rewrite)")
    old_lines, new_lines = source.splitlines(), new.splitlines()
    touched = {n for a, b in tr.spans for n in range(a, b + 1)}
    for i, (a, b) in enumerate(zip(old_lines, new_lines), start=1):
        if a != b and i not in touched:
            raise NeedsPython312(f"{filename} line {i}: the rewrite changed a line it should not; not used")
    return new, sorted(a for a, _ in tr.spans)


def _transformer(positions: Any, filename: str) -> Any:
    import libcst as cst

    class Transformer(cst.CSTTransformer):
        """Each outermost f-string that 3.11 cannot parse is re-spelled."""

        def __init__(self) -> None:
            super().__init__()
            self.depth = 0
            self.spans: list[tuple[int, int]] = []
            self.refused = ""

        def visit_FormattedString(self, node: Any) -> bool:
            self.depth += 1
            return True

        def leave_FormattedString(self, original: Any, updated: Any) -> Any:
            self.depth -= 1
            if self.depth or self.refused:
                return updated
            if compiles("(\n" + _code(original) + "\n)") is None:
                return updated
            pos = positions.get(original)
            line = pos.start.line if pos else 0
            new = _respell(original)
            if new is None:
                self.refused = (f"{filename} line {line}: an f-string that Python 3.11 cannot parse and that "
                                f"has no provably equal 3.11 spelling")
                return updated
            self.spans.append((line, pos.end.line if pos else line))
            return new

    return Transformer()


# ------------------------------------------------------------------ re-spelling one f-string

def _code(node: Any) -> str:
    import libcst as cst

    return cst.Module(body=[]).code_for_node(node)


def _respell(node: Any) -> Any | None:
    """A 3.11-parsable FormattedString equal to `node` (canonically), or None."""
    import libcst as cst

    want = _canon(node)
    want_nl = _code(node).count("\n")
    for cand in _solve(node, ()):
        code = _code(cand)
        if code.count("\n") != want_nl or compiles("(" + code + ")") is not None:
            continue
        try:
            again = cst.parse_expression(code)  # libcst, this host's (3.11) grammar
        except Exception:  # noqa: BLE001
            continue
        if _canon(again) == want:
            return cand
    return None


def _quote_ok(q: str, enclosing: tuple[str, ...]) -> bool:
    # 3.11 lexes a whole f-string as one string token: inside an enclosing string quoted Q, neither a
    # nested delimiter nor any nested text may contain Q
    return all(Q not in q for Q in enclosing)


def _text_ok(text: str, q: str, orig_q: str, enclosing: tuple[str, ...]) -> bool:
    """May literal text `text` (of a string now quoted q, first quoted orig_q) stand inside `enclosing`?"""
    if not enclosing and q == orig_q:
        return True  # the outermost string's own text, as the author spelled it
    if "\\" in text or q in text or (len(q) == 1 and "\n" in text):
        return False
    if len(q) == 3 and text.endswith(q[0]):
        return False
    return all(Q not in text for Q in enclosing)


def _candidates(orig: str, enclosing: tuple[str, ...]) -> list[str]:
    order = [orig] + [q for q in _QUOTES if q != orig]
    return [q for q in order if _quote_ok(q, enclosing)]


def _solve(node: Any, enclosing: tuple[str, ...]) -> Iterator[Any]:
    """Spellings of the FormattedString `node` inside strings quoted `enclosing` (outermost first)."""
    for q in _candidates(node.quote, enclosing):
        parts = _respell_parts(node.parts, q, node.quote, enclosing)
        if parts is None:
            continue
        yield node.with_changes(start=node.prefix + q, end=q, parts=parts)
        if enclosing:  # a nested f-string: the first spelling that fits is enough
            return


def _respell_parts(parts: Any, q: str, orig_q: str, enclosing: tuple[str, ...]) -> list[Any] | None:
    import libcst as cst

    inner = enclosing + (q,)
    out = []
    for part in parts:
        if isinstance(part, cst.FormattedStringText):
            if not _text_ok(part.value, q, orig_q, enclosing):
                return None
            out.append(part)
            continue
        expr = _respell_expr(part.expression, inner)
        if expr is None:
            return None
        spec = part.format_spec
        if spec is not None:
            spec = _respell_parts(spec, q, orig_q, enclosing)
            if spec is None:
                return None
        out.append(part.with_changes(expression=expr, format_spec=spec))
    return out


def _respell_expr(expr: Any, inner: tuple[str, ...]) -> Any | None:
    """Re-quote every string inside a replacement field's expression for the enclosing quotes `inner`."""
    import libcst as cst

    failed = []

    class Requote(cst.CSTTransformer):
        def visit_FormattedString(self, node: Any) -> bool:
            return False  # handled whole in leave

        def leave_FormattedString(self, original: Any, updated: Any) -> Any:
            got = next(_solve(original, inner), None)
            if got is None:
                failed.append(original)
                return original
            return got

        def leave_SimpleString(self, original: Any, updated: Any) -> Any:
            got = _respell_simple(original, inner)
            if got is None:
                failed.append(original)
                return original
            return got

    new = expr.visit(Requote())
    return None if failed else new


def _respell_simple(node: Any, inner: tuple[str, ...]) -> Any | None:
    import libcst as cst

    body = node.raw_value
    prefix = node.prefix
    if "\\" not in body:
        for q in _candidates(node.quote, inner):
            if _text_ok(body, q, node.quote, inner):
                return node.with_changes(value=prefix + q + body + q)
        return None
    # a backslash: spell the value with '%c' (a str only; bytes are left to a 3.12 interpreter)
    if "b" in prefix.lower():
        return None
    value = node.evaluated_value
    if not isinstance(value, str):
        return None
    fmt, codes = [], []
    for ch in value:
        if ch == "%":
            fmt.append("%%")
        elif ch == "\\" or ch in "'\"" or not ch.isprintable() or ch == "{" or ch == "}":
            fmt.append("%c")
            codes.append(ord(ch))
        else:
            fmt.append(ch)
    text = "".join(fmt)
    for q in _candidates("'", inner):
        if len(q) == 1 and _text_ok(text, q, "", inner):
            args = str(codes[0]) if len(codes) == 1 else "(" + ",".join(map(str, codes)) + ")"
            return cst.parse_expression(f"{q}{text}{q}%{args}").with_changes(
                lpar=[cst.LeftParen()] + list(node.lpar), rpar=list(node.rpar) + [cst.RightParen()])
    return None


# ------------------------------------------------------------------ the equivalence check

def _canon(node: Any) -> Any:
    """A tree under which two spellings compare equal exactly when they differ only in quote style,
    layout, or the `%c` spelling of a constant str."""
    import libcst as cst

    if isinstance(node, cst.SimpleString):
        try:
            return ("str", node.evaluated_value)
        except Exception:  # noqa: BLE001
            return ("str?", node.value)
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Modulo):
        folded = _fold_pct_c(node)
        if folded is not None:
            return ("str", folded)
    if isinstance(node, cst.FormattedString):
        return ("fstr", node.prefix.lower(), tuple(_canon(p) for p in node.parts))
    if isinstance(node, cst.FormattedStringText):
        return ("text", node.value)
    if isinstance(node, cst.FormattedStringExpression):
        # a self-documenting field (`{x=}`) prints its own source text: it must stay byte for byte
        shown = None
        if node.equal is not None:
            shown = (_code(node.whitespace_before_expression) + _code(node.expression)
                     + _code(node.whitespace_after_expression))
        spec = None if node.format_spec is None else tuple(_canon(p) for p in node.format_spec)
        return ("field", _canon(node.expression), node.conversion, spec, shown)
    if isinstance(node, (cst.BaseParenthesizableWhitespace, cst.TrailingWhitespace, cst.EmptyLine,
                         cst.Newline, cst.Comment)):
        return None
    if isinstance(node, cst.CSTNode):
        items = []
        for f in dataclasses.fields(node):
            if f.name in _LAYOUT_FIELDS or f.name.startswith("whitespace"):
                continue
            items.append((f.name, _canon(getattr(node, f.name))))
        return (type(node).__name__, tuple(items))
    if isinstance(node, (list, tuple)):
        return tuple(_canon(x) for x in node)
    if isinstance(node, cst.MaybeSentinel):
        return "<default>"
    return node


def _fold_pct_c(node: Any) -> str | None:
    """`'%c..' % 10` / `'%c%c' % (1, 2)`: the str it always evaluates to (str % ints is not overridable)."""
    import libcst as cst

    left, right = node.left, node.right
    if not isinstance(left, cst.SimpleString) or "b" in left.prefix.lower():
        return None
    try:
        fmt = left.evaluated_value
    except Exception:  # noqa: BLE001
        return None
    if not isinstance(fmt, str) or not _PCT_C.match(fmt):
        return None
    if isinstance(right, cst.Integer):
        args: tuple[int, ...] = (int(right.evaluated_value),)
    elif isinstance(right, cst.Tuple) and all(isinstance(e.value, cst.Integer) for e in right.elements):
        args = tuple(int(e.value.evaluated_value) for e in right.elements)
    else:
        return None
    try:
        return fmt % args
    except (TypeError, ValueError, OverflowError):
        return None
