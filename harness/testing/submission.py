"""Import a record's train_gpt.py as a module without running its training, so a test calls the very
function the record submits (its eval_val / eval_val_ttt), not a copy.

    mod = load_submission_module("records/.../train_gpt.py", env={"VOCAB_SIZE": "64"})
    with traced(tokens, code=mod) as t:
        ...mod.eval_val_sliding(...)

How the source becomes a module, each step the one a real run takes:
- an exec'd compressed wrapper is unwrapped statically (harness.check.unwrap; nothing is executed);
- Python 3.12 syntax on an older host is rewritten line for line (harness.run.py312; refused when it
  cannot be proven equivalent: NeedsPython312);
- the module is imported under its own name, not "__main__", so `if __name__ == "__main__": main()`
  does not run;
- a script that starts its training unguarded (a top-level `main()`, `sys.exit(main())`, any top-level
  expression statement calling a function the script itself defines) would train on import: such
  statements are replaced by `pass` on the same line, and listed in `LoadInfo.skipped`. Everything
  else at top level runs (imports, constants, classes, hyperparameters read from the environment), so
  what the function under test sees is what the record defines. Nothing is skipped silently;
- the compiled code keeps the file's own path, so the tracer cites `train_gpt.py:LINE` (of the
  unwrapped source when the record ships a wrapper, as `harness check` does).

The CPU shim (harness.runtime.shim: CUDA devices on the CPU, bf16 as fp32, torch.compile as identity,
flash-attn through SDPA) is installed into this process first when `shim=True`. The shim has no
uninstall: it stays for the rest of the process (run such tests in their own pytest process or
xdist worker when other tests need an unpatched torch).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from harness.pyast import parse_source


@dataclass
class LoadInfo:
    """How the module was made (module.__harness_load__)."""

    path: str
    unwrapped: bool = False  # the file was an exec'd compressed wrapper
    rewritten_lines: list[int] = field(default_factory=list)  # f-strings rewritten from 3.12 syntax
    skipped: list[str] = field(default_factory=list)  # "LINE: code" of each unguarded top-level call not run
    shim: bool = False




def _defined_names(tree: ast.Module) -> set[str]:
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _calls_own(node: ast.AST, own: set[str]) -> bool:
    return any(isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id in own for c in ast.walk(node))


def strip_unguarded_calls(tree: ast.Module, source: str) -> list[str]:
    """Replace, in place, top-level expression statements that call a function the module defines (the
    unguarded `main()`) with `pass` on the same line; returns "LINE: code" for each."""
    own = _defined_names(tree)
    skipped = []
    for i, stmt in enumerate(tree.body):
        if isinstance(stmt, ast.Expr) and _calls_own(stmt.value, own):
            seg = (ast.get_source_segment(source, stmt) or "").splitlines()[0][:80]
            skipped.append(f"{stmt.lineno}: {seg}")
            tree.body[i] = ast.copy_location(ast.Pass(), stmt)
    return skipped


def _source(path: Path, info: LoadInfo) -> str:
    from harness.check.unwrap import unwrap_source
    from harness.errors import BadInput
    from harness.run.py312 import compiles, rewrite_source

    text = path.read_bytes().decode("utf-8-sig")
    if "exec" in text and compiles(text, str(path)) is None:
        try:
            u = unwrap_source(text)
        except BadInput:
            u = None
        if u is not None and u.wrapped:
            text, info.unwrapped = u.source, True
    if compiles(text, str(path)) is not None:
        text, info.rewritten_lines = rewrite_source(text, str(path))
    return text


@contextmanager
def _environ(env: Mapping[str, str] | None) -> Iterator[None]:
    if not env:
        yield
        return
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def install_shim() -> None:
    """The CPU shim in this process (idempotent, permanent)."""
    from harness.runtime import context, shim
    from harness.runtime.context import RuntimeSettings

    if shim.installed():
        return
    ctx = context.get()
    if ctx is None:
        import tempfile

        ctx = context.init(RuntimeSettings(ledger_dir=tempfile.mkdtemp(prefix="harness-shim-"), t0=time.time(),
                                           device="cpu"))
    shim.install(ctx)


def load_submission_module(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
    shim: bool = True,
) -> ModuleType:
    """Import a record's script as a module (its training is not run; see the module docstring).

    env: environment variables set while the module body runs (records read hyperparameters then) and
    restored afterwards. name: the module name (default `submission_<folder>`). The script's folder is
    put on sys.path (its own helper modules import) and the module is registered in sys.modules.
    """
    p = Path(path).resolve()
    if p.is_dir():
        p = p / "train_gpt.py"
    if not p.is_file():
        raise FileNotFoundError(f"no such script: {p}")
    info = LoadInfo(str(p))
    source = _source(p, info)
    tree = parse_source(source, str(p))
    info.skipped = strip_unguarded_calls(tree, source)
    code = compile(tree, str(p), "exec")
    if shim:
        install_shim()
        info.shim = True
    mod_name = name or "submission_" + "".join(c if c.isalnum() else "_" for c in p.parent.name)
    spec = importlib.util.spec_from_loader(mod_name, loader=None, origin=str(p))
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    mod.__file__ = str(p)
    mod.__harness_load__ = info  # type: ignore[attr-defined]
    if str(p.parent) not in sys.path:
        sys.path.insert(0, str(p.parent))
    sys.modules[mod_name] = mod
    try:
        with _environ(env):
            exec(code, mod.__dict__)  # noqa: S102 - the user's own record, as `python train_gpt.py` would
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return mod
