"""Build the reference submissions' train_gpt.py files, and the `harness check` reference folders, from one base.

Run from anywhere (the repository's venv, torch is needed for the check_* artifacts):

    python submissions/_build/build.py            # (re)write them in submissions/
    python submissions/_build/build.py --check    # write nothing; exit 1 listing every file that differs
    python submissions/_build/build.py --out DIR  # write everything it builds under DIR/<folder>/ instead

Every folder's train_gpt.py is a complete, standalone script (the harness runs it unmodified, like a
record): the builder pastes text, and nothing imports base.py at run time.

base.py is the shared script. It is legal_sliding_window's train_gpt.py and runs as is, plus named
insertion points: `# @build: slot NAME` lines, which are dropped from every output.
variants/<folder>.py holds only what differs for that folder, as blocks, each opened by a directive line:

    # @build: replace docstring    the block (a string literal) replaces base's module docstring
    # @build: replace NAME         the block (one top-level def or class NAME) replaces base's NAME
    # @build: insert SLOT          the block is pasted at `# @build: slot SLOT`

A block runs up to the next directive line. A replace block's trailing blank lines are dropped (the base
keeps its own spacing around what it replaces); an insert block is pasted exactly, blank lines included.
Lines before the first directive are notes for the reader (comments only) and are not copied.

To change the shared model, training or evaluation: edit base.py, run build.py, commit the regenerated
scripts. tests/test_refsubs_built.py fails (naming the file) when a committed file differs from what this
writes.

Built here:
  * TRACED: legal_sliding_window (base.py alone) and one folder per variants/{legal,illegal}_*.py: only
    train_gpt.py (README.md and expected.toml there are written by hand).
  * the `harness check` references check_*: every file in those folders (check_refs.py), from base.py,
    or variants/check_over_cap_strict.py; check_wrapped_code is the compliant script lzma-wrapped.
Not built: adversarial_tracer_evasion (a different, hand-written script).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUBMISSIONS = HERE.parent
BASE = HERE / "base.py"
VARIANTS = HERE / "variants"

DIRECTIVE = re.compile(r"^# @build: (replace|insert) ([A-Za-z_]\w*)[ \t]*$")
SLOT = re.compile(r"^# @build: slot ([A-Za-z_]\w*)[ \t]*$")


class BuildError(Exception):
    pass


def parse_variant(text: str, where: str) -> list[tuple[str, str, list[str]]]:
    """The blocks of a variant file: (kind, name, lines)."""
    blocks: list[tuple[str, str, list[str]]] = []
    for i, line in enumerate(text.splitlines(keepends=True), 1):
        m = DIRECTIVE.match(line)
        if m:
            blocks.append((m[1], m[2], []))
        elif line.startswith("# @build:"):
            raise BuildError(f"{where}:{i}: unknown directive {line.strip()!r}")
        elif blocks:
            blocks[-1][2].append(line if line.endswith("\n") else line + "\n")
        elif line.strip() and not line.lstrip().startswith("#"):
            raise BuildError(f"{where}:{i}: only comments may come before the first `# @build:` directive")
    return blocks


def _spans(tree: ast.Module) -> dict[str, tuple[int, int]]:
    """0-based [start, end) line spans of base's module docstring and top-level defs and classes."""
    out: dict[str, tuple[int, int]] = {}
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        out["docstring"] = (body[0].lineno - 1, body[0].end_lineno)
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            out[node.name] = (start - 1, node.end_lineno)
    return out


def _check_replacement(name: str, lines: list[str], where: str) -> None:
    try:
        body = ast.parse("".join(lines)).body
    except SyntaxError as e:
        raise BuildError(f"{where}: the block replacing {name} does not parse: {e}") from None
    if name == "docstring":
        ok = len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str)
    else:
        ok = len(body) == 1 and getattr(body[0], "name", None) == name
    if not ok:
        raise BuildError(f"{where}: the block replacing {name} must be exactly one "
                         + ("string literal" if name == "docstring" else f"definition of {name}"))


def render(variant: Path | None) -> str:
    """base.py with the variant's blocks applied and the slot lines dropped."""
    base = BASE.read_text(encoding="utf-8")
    lines = base.splitlines(keepends=True)
    spans = _spans(ast.parse(base))
    slots = {m[1]: i for i, line in enumerate(lines) if (m := SLOT.match(line))}
    edits: dict[int, tuple[int, list[str]]] = {i: (i + 1, []) for i in slots.values()}
    where = str(variant.relative_to(SUBMISSIONS)) if variant else "base.py"
    seen: set[tuple[str, str]] = set()
    for kind, name, block in parse_variant(variant.read_text(encoding="utf-8"), where) if variant else []:
        if (kind, name) in seen:
            raise BuildError(f"{where}: two blocks `{kind} {name}`")
        seen.add((kind, name))
        if kind == "insert":
            if name not in slots:
                raise BuildError(f"{where}: base.py has no `# @build: slot {name}` (slots: {sorted(slots)})")
            edits[slots[name]] = (slots[name] + 1, block)
        else:
            if name not in spans:
                raise BuildError(f"{where}: base.py has no top-level {name} to replace")
            while block and not block[-1].strip():
                block = block[:-1]
            _check_replacement(name, block, where)
            start, end = spans[name]
            if any(start <= i < end for i in slots.values()):
                raise BuildError(f"{where}: {name} in base.py holds a slot line")
            edits[start] = (end, block)
    for start in sorted(edits, reverse=True):
        end, new = edits[start]
        lines[start:end] = new
    out = "".join(lines)
    compile(out, where, "exec")
    return out


def traced_names() -> list[str]:
    return sorted(["legal_sliding_window"] + [p.stem for p in VARIANTS.glob("*.py")
                                              if p.stem.startswith(("legal_", "illegal_"))])


def script(name: str) -> str:
    """The train_gpt.py of folder `name`: base.py with variants/<name>.py when there is one."""
    v = VARIANTS / f"{name}.py"
    return render(v if v.exists() else None)


def build_all() -> tuple[dict[str, bytes], set[str]]:
    """Every built file, as {path under submissions/: bytes}, and the folders whose every file is built."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from check_refs import build_check_refs

    files = {f"{name}/train_gpt.py": script(name).encode("utf-8") for name in traced_names()}
    check_files = build_check_refs(script("legal_sliding_window"), script("check_over_cap_strict"), SUBMISSIONS)
    files.update(check_files)
    return files, {p.split("/", 1)[0] for p in check_files}


def differences(files: dict[str, bytes], owned: set[str], root: Path) -> list[str]:
    out = []
    for rel, data in sorted(files.items()):
        p = root / rel
        if not p.is_file():
            out.append(f"missing: {rel}")
        elif p.read_bytes() != data:
            out.append(f"differs: {rel}")
    for folder in sorted(owned):
        for p in sorted((root / folder).rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and rel not in files and "__pycache__" not in p.parts:
                out.append(f"not built (stale): {rel}")
    return out


def write(files: dict[str, bytes], owned: set[str], root: Path) -> int:
    changed = 0
    for rel, data in sorted(files.items()):
        p = root / rel
        if p.is_file() and p.read_bytes() == data:
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        changed += 1
    for folder in sorted(owned):
        for p in sorted((root / folder).rglob("*")):
            if p.is_file() and p.relative_to(root).as_posix() not in files and "__pycache__" not in p.parts:
                p.unlink()
                changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 listing the files that differ")
    ap.add_argument("--out", type=Path, help="write under this folder instead of submissions/")
    args = ap.parse_args(argv)
    try:
        files, owned = build_all()
    except BuildError as e:
        print(f"build: {e}", file=sys.stderr)
        return 2
    if args.check:
        diffs = differences(files, owned, args.out or SUBMISSIONS)
        for d in diffs:
            print(d)
        if diffs:
            print(f"{len(diffs)} file(s) differ from what submissions/_build/build.py writes; run it to rebuild.",
                  file=sys.stderr)
            return 1
        print(f"ok: {len(files)} built files match")
        return 0
    root = args.out or SUBMISSIONS
    n = write(files, owned, root)
    print(f"{len(files)} files built, {n} written or removed under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
