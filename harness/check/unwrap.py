"""Code wrappers: recover the real source of a train_gpt.py shipped as an exec'd, compressed blob.

Many records ship ``import lzma as L,base64 as B;exec(L.decompress(B.b85decode("..."),...))``
(zlib, bz2, brotli, gzip, zstd; b85/b64/a85/b32/hex; codecs.decode; __import__; compile; nested).
This module finds exec/eval calls with ``ast`` and evaluates their argument itself, allowing only a
whitelist of pure decode/decompress functions applied to literals (or to names bound once to such
expressions). Nothing from the submission is ever exec'd, eval'd or compiled; decompression is
capped, so a bomb is refused (BadInput) without being expanded.

The returned ``source`` is exactly the text the exec would compile, so line numbers in it are the
line numbers Python reports for the running code (and the ones hints cite).
"""

from __future__ import annotations

import ast
import base64
import binascii
import builtins
import codecs
import lzma
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.check.containers import StreamError, decompress_all_capped, decompress_capped
from harness.errors import BadInput
from harness.pyast import parse_source


@dataclass
class Unwrapped:
    source: str  # the real source text (innermost)
    layers: list[str]  # decoders applied, in application order, across all levels
    wrapped: bool
    wrapper_bytes: int  # bytes of the file as shipped
    source_bytes: int  # UTF-8 bytes of the unwrapped source
    note: str = ""  # why something was not unwrapped, or what else the wrapper does
    depth: int = 0  # exec levels peeled
    shells: list[str] = field(default_factory=list)  # the wrapper texts peeled, outermost first


class _Unresolvable(Exception):
    """The exec argument is not a composition of whitelisted pure calls on literals."""


class _Bomb(Exception):
    pass


@dataclass(frozen=True)
class _Ref:
    """A module, function or constructed decoder object named by the code (never imported)."""

    name: str


@dataclass(frozen=True)
class _Method:
    value: str | bytes
    name: str


@dataclass(frozen=True)
class _Code:
    """What compile() would return: we keep the source it was given."""

    source: str | bytes


_MODULE_CONSTANTS = {"lzma": lzma, "zlib": zlib}  # integer constants (FORMAT_RAW, MAX_WBITS, ...)


def _text_or_bytes(x: Any, what: str) -> str | bytes:
    if isinstance(x, bytearray):
        return bytes(x)
    if not isinstance(x, (str, bytes)):
        raise _Unresolvable(f"{what} expects a literal string or bytes, got {type(x).__name__}")
    return x


def _as_bytes(x: Any, what: str) -> bytes:
    x = _text_or_bytes(x, what)
    if isinstance(x, str):
        try:
            return x.encode("ascii")
        except UnicodeEncodeError:
            raise _Unresolvable(f"{what}: non-ASCII text argument") from None
    return x


def _simple(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, str, bytes))


class _Decoders:
    """The whitelist: qualified name -> pure function. Each returns (value, layer label or None)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        b64 = {
            "base64.b85decode": base64.b85decode, "base64.b64decode": base64.b64decode,
            "base64.standard_b64decode": base64.standard_b64decode,
            "base64.urlsafe_b64decode": base64.urlsafe_b64decode, "base64.a85decode": base64.a85decode,
            "base64.b32decode": base64.b32decode, "base64.b16decode": base64.b16decode,
            "base64.decodebytes": base64.decodebytes, "binascii.a2b_base64": binascii.a2b_base64,
            "binascii.a2b_hex": binascii.a2b_hex, "binascii.unhexlify": binascii.unhexlify,
        }
        if hasattr(base64, "b32hexdecode"):
            b64["base64.b32hexdecode"] = base64.b32hexdecode
        self.table: dict[str, Callable[[list[Any], dict[str, Any]], tuple[Any, str | None]]] = {}
        for name, fn in b64.items():
            self.table[name] = self._text_codec(name, fn)
        for name in ("builtins.bytes.fromhex", "builtins.bytearray.fromhex"):
            self.table[name] = self._fromhex
        self.table.update({
            "zlib.decompress": self._zlib,
            "gzip.decompress": self._simple_codec("gzip", "gzip.decompress"),
            "bz2.decompress": self._simple_codec("bz2", "bz2.decompress"),
            "lzma.decompress": self._lzma,
            "brotli.decompress": self._simple_codec("brotli", "brotli.decompress"),
            "brotlicffi.decompress": self._simple_codec("brotli", "brotli.decompress"),
            "zstandard.decompress": self._simple_codec("zstd", "zstd.decompress"),
            "zstandard.ZstdDecompressor().decompress": self._simple_codec("zstd", "zstd.decompress"),
            "zstd.decompress": self._simple_codec("zstd", "zstd.decompress"),
            "pyzstd.decompress": self._simple_codec("zstd", "zstd.decompress"),
            "compression.zstd.decompress": self._simple_codec("zstd", "zstd.decompress"),
            "codecs.decode": self._codecs_decode,
            "codecs.encode": self._codecs_encode,
            "builtins.bytes": self._bytes,
            "builtins.bytearray": self._bytes,
            "builtins.str": self._str,
            "builtins.compile": self._compile,
            "builtins.bytes.decode": lambda a, k: self.method(_Method(_first(a, "bytes.decode"), "decode"), a[1:], k),
            "builtins.str.encode": lambda a, k: self.method(_Method(_first(a, "str.encode"), "encode"), a[1:], k),
        })

    # -- size guard
    def _check(self, v: Any) -> Any:
        if isinstance(v, (str, bytes)) and len(v) > self.max_bytes:
            raise _Bomb(f"a decoded value passes {self.max_bytes:,} bytes")
        return v

    def _capped(self, codec: str, data: bytes, label: str, **kw: Any) -> tuple[bytes, str]:
        try:
            if codec in ("gzip", "bz2", "xz", "zstd", "lzma-auto"):
                return decompress_all_capped(codec, data, self.max_bytes, **kw), label
            return decompress_capped(codec, data, self.max_bytes, **kw).data, label
        except StreamError as e:
            if e.kind == "bomb":
                raise _Bomb(str(e)) from None
            raise _Unresolvable(f"{label}: {e}") from None

    # -- families
    def _text_codec(self, name: str, fn: Callable[..., bytes]):
        def run(args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, str | None]:
            data = _text_or_bytes(_first(args, name), name)
            rest = args[1:]
            if not all(_simple(v) for v in [*rest, *kwargs.values()]):
                raise _Unresolvable(f"{name}: non-literal options")
            try:
                return fn(data, *rest, **kwargs), name
            except (binascii.Error, ValueError, TypeError) as e:
                raise _Unresolvable(f"{name} failed: {e}") from None
        return run

    def _fromhex(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, str | None]:
        s = _first(args, "bytes.fromhex")
        if not isinstance(s, str) or kwargs:
            raise _Unresolvable("bytes.fromhex expects one literal string")
        try:
            return bytes.fromhex(s), "bytes.fromhex"
        except ValueError as e:
            raise _Unresolvable(f"bytes.fromhex failed: {e}") from None

    def _simple_codec(self, codec: str, label: str):
        def run(args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, str | None]:
            data = _as_bytes(_first(args, label), label)
            return self._capped(codec, data, label)
        return run

    def _zlib(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, str | None]:
        data = _as_bytes(_first(args, "zlib.decompress"), "zlib.decompress")
        wbits = kwargs.get("wbits", args[1] if len(args) > 1 else zlib.MAX_WBITS)
        if not isinstance(wbits, int):
            raise _Unresolvable("zlib.decompress: non-literal wbits")
        return self._capped("zlib", data, "zlib.decompress", wbits=wbits)

    def _lzma(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, str | None]:
        data = _as_bytes(_first(args, "lzma.decompress"), "lzma.decompress")
        names = ["format", "memlimit", "filters"]
        opts = dict(zip(names, args[1:]))
        opts.update(kwargs)
        fmt = opts.get("format", lzma.FORMAT_AUTO)
        fmt = lzma.FORMAT_AUTO if fmt is None else fmt
        codec = {lzma.FORMAT_AUTO: "lzma-auto", lzma.FORMAT_XZ: "xz", lzma.FORMAT_ALONE: "lzma",
                 lzma.FORMAT_RAW: "lzma-raw"}.get(fmt) if isinstance(fmt, int) else None
        if codec is None:
            raise _Unresolvable("lzma.decompress: unknown format argument")
        filters = opts.get("filters")
        if fmt == lzma.FORMAT_RAW and filters is None:  # lzma.decompress itself raises here
            raise _Unresolvable("lzma.decompress: FORMAT_RAW without filters")
        return self._capped(codec, data, "lzma.decompress", lzma_format=fmt, lzma_filters=filters)

    def _codecs_decode(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, str | None]:
        obj = _text_or_bytes(_first(args, "codecs.decode"), "codecs.decode")
        enc = kwargs.get("encoding", args[1] if len(args) > 1 else "utf-8")
        errors = kwargs.get("errors", args[2] if len(args) > 2 else "strict")
        if not isinstance(enc, str) or not isinstance(errors, str):
            raise _Unresolvable("codecs.decode: non-literal encoding")
        try:
            info = codecs.lookup(enc)
        except LookupError:
            raise _Unresolvable(f"codecs.decode: unknown codec {enc!r}") from None
        name = info.name
        if name in ("zlib", "bz2"):
            return self._capped(name, _as_bytes(obj, "codecs.decode"), f"codecs.decode({name})")
        if name in ("base64", "hex", "quopri", "uu", "rot-13") or getattr(info, "_is_text_encoding", False):
            try:
                out = codecs.decode(obj, name, errors)
            except (ValueError, TypeError, binascii.Error) as e:
                raise _Unresolvable(f"codecs.decode({name}) failed: {e}") from None
            text = getattr(info, "_is_text_encoding", False)
            return out, None if text else f"codecs.decode({name})"
        raise _Unresolvable(f"codecs.decode: codec {name!r} is not whitelisted")

    def _codecs_encode(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, str | None]:
        obj = _text_or_bytes(_first(args, "codecs.encode"), "codecs.encode")
        enc = kwargs.get("encoding", args[1] if len(args) > 1 else "utf-8")
        if not isinstance(enc, str):
            raise _Unresolvable("codecs.encode: non-literal encoding")
        try:
            info = codecs.lookup(enc)
        except LookupError:
            raise _Unresolvable(f"codecs.encode: unknown codec {enc!r}") from None
        if info.name == "rot-13" or getattr(info, "_is_text_encoding", False):
            try:
                out = codecs.encode(obj, info.name)
            except (ValueError, TypeError) as e:
                raise _Unresolvable(f"codecs.encode({info.name}) failed: {e}") from None
            return out, "rot13" if info.name == "rot-13" else None
        raise _Unresolvable(f"codecs.encode: codec {info.name!r} is not whitelisted")

    def _bytes(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, str | None]:
        x = _first(args, "bytes")
        if isinstance(x, (bytes, bytearray)) and len(args) == 1:
            return bytes(x), None
        if isinstance(x, str) and len(args) >= 2 and isinstance(args[1], str):
            try:
                return x.encode(args[1], *(a for a in args[2:3] if isinstance(a, str))), None
            except (LookupError, UnicodeError) as e:
                raise _Unresolvable(f"bytes(): {e}") from None
        if isinstance(x, (list, tuple)) and all(isinstance(i, int) and 0 <= i < 256 for i in x):
            return bytes(x), "bytes(list)"
        raise _Unresolvable("bytes() of a non-literal")

    def _str(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, str | None]:
        x = _first(args, "str")
        enc = kwargs.get("encoding", args[1] if len(args) > 1 else None)
        if isinstance(x, (bytes, bytearray)) and isinstance(enc, str):
            try:
                return bytes(x).decode(enc), None
            except (LookupError, UnicodeError) as e:
                raise _Unresolvable(f"str(): {e}") from None
        if isinstance(x, str) and enc is None:
            return x, None
        raise _Unresolvable("str() of a non-literal")

    def _compile(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, str | None]:
        src = _text_or_bytes(_first(args, "compile"), "compile")
        return _Code(src), None

    # -- methods of literal values
    def method(self, m: _Method, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, str | None]:
        v, name = m.value, m.name
        if not all(_simple(a) for a in [*args, *kwargs.values()]):
            if not (name == "join" and len(args) == 1 and isinstance(args[0], (list, tuple))):
                raise _Unresolvable(f".{name}() with non-literal arguments")
        try:
            if name == "decode" and isinstance(v, bytes):
                return v.decode(*args, **kwargs), None
            if name == "encode" and isinstance(v, str):
                return v.encode(*args, **kwargs), None
            if name in ("strip", "lstrip", "rstrip", "replace", "removeprefix", "removesuffix",
                        "upper", "lower", "swapcase"):
                out = getattr(v, name)(*args, **kwargs)
                return self._check(out), None if name.endswith("strip") else f".{name}"
            if name == "join" and len(args) == 1 and isinstance(args[0], (list, tuple)):
                parts = list(args[0])
                if all(type(p) is type(v) for p in parts):
                    if sum(len(p) for p in parts) > self.max_bytes:
                        raise _Bomb("a joined literal passes the size cap")
                    return v.join(parts), None
        except (LookupError, UnicodeError, TypeError, ValueError) as e:
            raise _Unresolvable(f".{name}() failed: {e}") from None
        raise _Unresolvable(f"method .{name}() is not whitelisted")


def _first(args: list[Any], what: str) -> Any:
    if not args:
        raise _Unresolvable(f"{what} called without an argument")
    return args[0]


class _Scope:
    """Who binds which name in a module: imports, single assignments, everything else."""

    def __init__(self, tree: ast.Module) -> None:
        self.bindings: dict[str, int] = {}
        self.imports: dict[str, str] = {}
        self.assigns: dict[str, ast.expr] = {}

        def bind(name: str) -> None:
            self.bindings[name] = self.bindings.get(name, 0) + 1

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    local = a.asname or a.name.split(".")[0]
                    bind(local)
                    self.imports[local] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import: not a stdlib decoder
                    for a in node.names:
                        bind(a.asname or a.name)
                    continue
                for a in node.names:
                    local = a.asname or a.name
                    bind(local)
                    self.imports[local] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                bind(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bind(node.name)
            elif isinstance(node, ast.arg):
                bind(node.arg)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                bind(node.name)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                for n in node.names:
                    bind(n)
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self.assigns[node.targets[0].id] = node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
                self.assigns[node.target.id] = node.value

    def once(self, name: str) -> bool:
        return self.bindings.get(name, 0) == 1


class _Evaluator:
    """Evaluates an expression using only literals and the whitelist; records the decoders used."""

    def __init__(self, scope: _Scope, decoders: _Decoders) -> None:
        self.scope = scope
        self.dec = decoders
        self.layers: list[str] = []
        self._active: set[str] = set()

    def ev(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Attribute):
            base = self.ev(node.value)
            if isinstance(base, _Ref):
                mod = _MODULE_CONSTANTS.get(base.name)
                if mod is not None and node.attr.isupper() and isinstance(getattr(mod, node.attr, None), int):
                    return getattr(mod, node.attr)
                return _Ref(f"{base.name}.{node.attr}")
            if isinstance(base, (str, bytes)):
                return _Method(base, node.attr)
            raise _Unresolvable(f"attribute .{node.attr} of a non-literal")
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Subscript):
            return self._subscript(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Invert)):
            v = self.ev(node.operand)
            if isinstance(v, int) and not isinstance(v, bool):
                return {ast.USub: -v, ast.UAdd: v, ast.Invert: ~v}[type(node.op)]
            raise _Unresolvable("unary operator on a non-integer")
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.ev(e) for e in node.elts] if isinstance(node, ast.List) else tuple(
                self.ev(e) for e in node.elts)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise _Unresolvable("dict unpacking")
            return {self.ev(k): self.ev(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
        raise _Unresolvable(f"{type(node).__name__} expression at line {getattr(node, 'lineno', '?')}")

    def _name(self, name: str) -> Any:
        sc = self.scope
        if name in sc.imports and sc.once(name):
            return _Ref(sc.imports[name])
        if name in sc.assigns and sc.once(name):
            if name in self._active:
                raise _Unresolvable(f"name {name!r} refers to itself")
            self._active.add(name)
            try:
                return self.ev(sc.assigns[name])
            finally:
                self._active.discard(name)
        if name not in sc.bindings and hasattr(builtins, name):
            return _Ref(f"builtins.{name}")  # only whitelisted ones are ever "called" (by us)
        if name in sc.bindings:
            raise _Unresolvable(f"name {name!r} is bound more than once or not to a literal")
        raise _Unresolvable(f"name {name!r} is not defined in the file")

    def _call(self, node: ast.Call) -> Any:
        func = self.ev(node.func)
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise _Unresolvable("call with * or ** arguments")
        if isinstance(func, _Ref) and func.name == "builtins.compile" and node.args:
            # compile(S, F, 'exec'): only the source matters here; the filename and mode may be any
            # expression (`__file__ + ...`) that the static evaluator cannot and need not resolve
            return _Code(_text_or_bytes(self.ev(node.args[0]), "compile"))
        args = [self.ev(a) for a in node.args]
        kwargs = {k.arg: self.ev(k.value) for k in node.keywords if k.arg is not None}
        if isinstance(func, _Method):
            out, label = self.dec.method(func, args, kwargs)
        elif isinstance(func, _Ref):
            name = func.name
            if name in ("builtins.__import__", "importlib.import_module"):
                mod = args[0] if args else None
                if not isinstance(mod, str):
                    raise _Unresolvable(f"{name} of a non-literal")
                # __import__("a.b") returns the top package unless a fromlist is given
                fromlist = kwargs.get("fromlist", args[3] if len(args) > 3 else None)
                return _Ref(mod if name != "builtins.__import__" or fromlist else mod.split(".")[0])
            if name == "zstandard.ZstdDecompressor" and not args and not kwargs:
                return _Ref("zstandard.ZstdDecompressor()")
            if name == "marshal.loads":
                raise _Unresolvable("marshal.loads: the payload is bytecode, its source cannot be recovered")
            fn = self.dec.table.get(name)
            if fn is None:
                raise _Unresolvable(f"call to {name} (not a whitelisted pure decoder)")
            out, label = fn(args, kwargs)
        else:
            raise _Unresolvable("call of a non-literal")
        if label:
            self.layers.append(label)
        return self.dec._check(out)

    def _subscript(self, node: ast.Subscript) -> Any:
        v = self.ev(node.value)
        if not isinstance(v, (str, bytes)):
            raise _Unresolvable("subscript of a non-literal")
        sl = node.slice
        if isinstance(sl, ast.Slice):
            parts = [self.ev(p) if p is not None else None for p in (sl.lower, sl.upper, sl.step)]
            if not all(p is None or (isinstance(p, int) and not isinstance(p, bool)) for p in parts):
                raise _Unresolvable("slice with non-literal bounds")
            out = v[slice(*parts)]
            self.layers.append("reverse" if parts == [None, None, -1] else "slice")
            return out
        raise _Unresolvable("indexing a literal")

    def _binop(self, node: ast.BinOp) -> Any:
        a, b = self.ev(node.left), self.ev(node.right)
        if isinstance(node.op, ast.Add) and type(a) is type(b) and isinstance(a, (str, bytes)):
            if len(a) + len(b) > self.dec.max_bytes:
                raise _Bomb("a concatenated literal passes the size cap")
            return a + b
        ints = all(isinstance(x, int) and not isinstance(x, bool) for x in (a, b))
        if ints and all(abs(x) < 1 << 64 for x in (a, b)):
            ops = {ast.Add: int.__add__, ast.Sub: int.__sub__, ast.BitOr: int.__or__,
                   ast.BitAnd: int.__and__, ast.BitXor: int.__xor__, ast.Mult: int.__mul__}
            op = ops.get(type(node.op))
            if op is not None:
                return op(a, b)
            if isinstance(node.op, ast.LShift) and 0 <= b < 64:
                return a << b
        raise _Unresolvable(f"operator {type(node.op).__name__} on these operands")


# ---------------------------------------------------------------- one level

@dataclass
class _Level:
    source: str | None  # the exec'd text, when this level is a wrapper
    layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _is_exec_call(node: ast.Call, scope: _Scope) -> bool:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id in ("exec", "eval") and f.id not in scope.bindings
    if isinstance(f, ast.Attribute) and f.attr in ("exec", "eval"):
        base = f.value
        if isinstance(base, ast.Name) and base.id == "__builtins__":
            return True
        return isinstance(base, ast.Name) and scope.imports.get(base.id) == "builtins"
    return False


def _payload_text(value: Any) -> str:
    if isinstance(value, _Code):
        value = value.source
    if isinstance(value, bytearray):
        value = bytes(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _Unresolvable("the decoded payload is not UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise _Unresolvable(f"the argument evaluates to {type(value).__name__}, not source text")


_EXEC_CALL = re.compile(r"(?<![\w.])(exec|eval)\s*\(")


def _span(stmt: ast.stmt) -> tuple[int, int]:
    return stmt.lineno, getattr(stmt, "end_lineno", None) or stmt.lineno


def _peel_once(text: str, max_bytes: int, level: int) -> _Level:
    where = "" if level == 0 else f"level {level + 1}: "
    try:
        tree = parse_source(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        note = []
        if _EXEC_CALL.search(text):  # a broken file with no exec/eval call needs no note
            ver = f"{sys.version_info.major}.{sys.version_info.minor}"
            why = f"{e.msg}, line {e.lineno}" if isinstance(e, SyntaxError) else type(e).__name__
            note.append(f"{where}does not parse under Python {ver} ({why}); exec wrappers not looked for")
        return _Level(None, notes=note)
    scope = _Scope(tree)
    decoders = _Decoders(max_bytes)
    found: list[tuple[ast.Call, str, list[str]]] = []
    failed: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _is_exec_call(node, scope)) or not node.args:
            continue
        ev = _Evaluator(scope, decoders)
        try:
            src = _payload_text(ev.ev(node.args[0]))
        except _Unresolvable as e:
            failed.append(f"{where}exec at line {node.lineno} runs a non-literal ({e}); not unwrapped")
            continue
        except _Bomb as e:
            raise BadInput(f"exec payload at line {node.lineno} refused: {e} (decompression bomb?)") from None
        except (TypeError, ValueError, OverflowError, RecursionError) as e:  # odd literals, deep nesting
            failed.append(f"{where}exec at line {node.lineno} could not be evaluated "
                          f"({type(e).__name__}); not unwrapped")
            continue
        found.append((node, src, ev.layers))
    if not found:
        return _Level(None, notes=failed)
    found.sort(key=lambda f: -len(f[1]))
    call, src, layers = found[0]
    notes = list(failed)
    if len(found) > 1:
        others = ", ".join(str(f[0].lineno) for f in found[1:])
        notes.append(f"{where}other decodable exec payloads at line(s) {others} not unwrapped")
    # Is this file a wrapper, or real code that happens to exec a small blob? Count the code
    # outside the exec statement that is more than imports, docstrings and literal assignments.
    lines = text.splitlines()
    other: list[tuple[int, int]] = []
    for stmt in tree.body:
        a, b = _span(stmt)
        if a <= call.lineno <= b:
            continue
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Pass)):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(stmt.value, ast.Constant):
            continue
        other.append((a, b))
    other_bytes = sum(len("\n".join(lines[a - 1:b])) for a, b in other)
    if other_bytes * 2 > len(src):
        notes.append(f"{where}exec at line {call.lineno} decodes {len(src):,} characters but the file's "
                     f"own code ({other_bytes:,}) dominates; treated as plain code, not a wrapper")
        return _Level(None, notes=notes)
    if other:
        shown = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in other[:5])
        notes.append(f"{where}the wrapper also runs {len(other)} statement(s) outside the exec'd source "
                     f"(line(s) {shown})")
    return _Level(src, layers, notes)


# ---------------------------------------------------------------- entry points

def unwrap_source(text: str, *, max_bytes: int = 50_000_000, max_depth: int = 5) -> Unwrapped:
    """Peel exec wrappers off ``text`` (never executing it). Raises BadInput for a bomb."""
    wrapper_bytes = len(text.encode("utf-8", "surrogatepass"))
    cur = text
    layers: list[str] = []
    shells: list[str] = []
    notes: list[str] = []
    depth = 0
    while True:
        if depth >= max_depth:
            probe = _peel_once(cur, max_bytes, depth)
            if probe.source is not None:
                notes.append(f"stopped after {max_depth} nested wrappers; the source shown is still a wrapper")
            break
        lvl = _peel_once(cur, max_bytes, depth)
        notes += lvl.notes
        if lvl.source is None:
            break
        shells.append(cur)
        layers += lvl.layers
        cur = lvl.source
        depth += 1
    return Unwrapped(
        source=cur, layers=layers, wrapped=depth > 0, wrapper_bytes=wrapper_bytes,
        source_bytes=len(cur.encode("utf-8", "surrogatepass")), note="; ".join(notes), depth=depth,
        shells=shells,
    )


def unwrap_file(path: str | Path, *, max_bytes: int = 50_000_000, max_depth: int = 5) -> Unwrapped:
    """Read a script (bytes), require UTF-8, and unwrap it. Bad input -> BadInput (one line)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{p}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{p}: is a folder, not a script") from None
    except OSError as e:
        raise BadInput(f"{p}: cannot read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadInput(f"{p}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                       f"cannot read the code") from None
    out = unwrap_source(text, max_bytes=max_bytes, max_depth=max_depth)
    out.wrapper_bytes = len(raw)
    return out
