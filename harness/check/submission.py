"""The submission folder model: which files a records/<track>/<name>/ folder holds, and its claims.

Pure data gathering (no verdicts): check.py turns this into rule results.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BadInput

SCRIPT_NAMES = ("train_gpt.py",)
# Files that count as code or code-like data the script needs (strict B1 total).
CODE_SUFFIXES = {".py", ".cpp", ".cc", ".c", ".h", ".hpp", ".cu", ".cuh", ".triton", ".model", ".vocab", ".so"}
MAX_CLAIMS_BYTES = 5_000_000


@dataclass
class Claims:
    """What submission.json states, normalised over the field names records use."""

    raw: dict[str, Any]
    val_bpb: float | None = None
    val_loss: float | None = None
    bytes_total: int | None = None
    bytes_code: int | None = None
    hardware: str | None = None
    seeds: list[int] = field(default_factory=list)
    # seed -> {"val_bpb": .., "val_loss": .., "artifact_bytes": ..}
    per_seed: dict[int, dict[str, float]] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # where each claim was read ("results.mean_val_bpb")
    # claims present but unusable: field path -> why ("results.val_bpb": "NaN, not a finite number"); S2 names them
    invalid: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """No score, size or seed claimed anywhere (S2 has nothing to compare)."""
        return (self.val_bpb is None and self.val_loss is None and self.bytes_total is None
                and self.bytes_code is None and not self.seeds and not self.per_seed)


@dataclass
class CodeFile:
    path: Path
    bytes: int
    why: str  # "script", "imported module", "loaded by the script"


@dataclass
class Submission:
    path: Path
    script: Path | None
    readme: Path | None
    claims_path: Path | None
    claims: Claims | None
    claims_error: str | None
    logs: list[Path]
    artifact: Path | None
    code_files: list[CodeFile] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    # files not read: links out of the folder (a log linked to /etc/passwd or /dev/zero), devices, FIFOs
    skipped: list[str] = field(default_factory=list)


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, (int, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, str):
        try:
            v = float(x.replace(",", "").strip())
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    return None


def _int(x: Any) -> int | None:
    v = _num(x)
    return int(v) if v is not None and v == int(v) else None


MAX_INT_DIGITS = 40  # a longer integer literal is no claim anyone means: read as not a finite number
MAX_JSON_DEPTH = 64


class HugeInt(str):
    """An integer literal too long to be a claim (Python refuses to convert past 4,300 digits)."""


def _bounded_int(text: str) -> int | HugeInt:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INT_DIGITS else HugeInt(f"{text[:12]}... ({digits}-digit integer)")


def _depth(text: str) -> int:
    """The deepest [ / { nesting of a JSON text (strings skipped), without recursion."""
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_claims(path: Path) -> Claims:
    """Read submission.json; malformed JSON or a non-object is BadInput (one line)."""
    from harness.fsutil import read_capped, regular_file_inside

    why = regular_file_inside(path, path.parent)
    if why is not None:
        raise BadInput(f"{path}: {why}")
    try:
        data = read_capped(path, MAX_CLAIMS_BYTES)
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > MAX_CLAIMS_BYTES:
        raise BadInput(f"{path}: more than {MAX_CLAIMS_BYTES} bytes is too large for a submission.json")
    try:
        text = data.decode("utf-8")
        if _depth(text) > MAX_JSON_DEPTH:
            raise BadInput(f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
        raw = json.loads(text, parse_int=_bounded_int)
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:  # a number Python refuses to convert; nesting past the stack
        raise BadInput(f"{path}: unreadable JSON ({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: expected a JSON object, found {type(raw).__name__}")
    return claims_from(raw)


# claim fields under the names records use; searched at the top level, then in nested objects
# ("results": {"mean_val_bpb": ..}, "metrics", "summary" ...), the first name found wins
_CLAIM_NAMES: dict[str, tuple[str, ...]] = {
    "val_bpb": ("val_bpb", "mean_val_bpb", "val_bpb_mean", "mean_bpb", "bpb"),
    "val_loss": ("val_loss", "mean_val_loss", "val_loss_mean"),
    "bytes_total": ("bytes_total", "artifact_bytes", "total_bytes", "artifact_bytes_max", "submission_bytes"),
    "bytes_code": ("bytes_code", "code_bytes"),
    "hardware": ("hardware", "gpu"),
}
_PER_SEED_NAMES = ("seed_results", "per_seed", "seed_scores", "seeds", "results_per_seed")
_PER_SEED_KEYS: dict[str, tuple[str, ...]] = {
    "val_bpb": ("val_bpb", "bpb", "final_val_bpb"),
    "val_loss": ("val_loss", "final_val_loss"),
    "artifact_bytes": ("artifact_bytes", "bytes_total", "total_bytes"),
}
_SEED_KEY = re.compile(r"^seed[_-]?(\d+)$", re.I)


def _nested(raw: dict[str, Any], depth: int = 2) -> list[tuple[str, dict[str, Any]]]:
    """(path, object) for raw and the objects nested in it (not per-seed tables), breadth first."""
    out, todo = [], [("", raw, 0)]
    while todo:
        path, d, lvl = todo.pop(0)
        out.append((path, d))
        if lvl >= depth:
            continue
        for k, v in d.items():
            if isinstance(v, dict) and k not in _PER_SEED_NAMES and not _SEED_KEY.match(k) and _int(k) is None:
                todo.append((f"{path}{k}.", v, lvl + 1))
    return out


def _why_invalid(v: Any) -> str:
    """Why a present claim value is no number (for S2's finding)."""
    if isinstance(v, HugeInt):
        return f"{v}, not a usable number"
    if isinstance(v, float) or (isinstance(v, str) and _is_nonfinite_text(v)):
        return f"{str(v)[:40]}, not a finite number"
    return f"{type(v).__name__} {str(v)[:40]!r}, not a number"


def _is_nonfinite_text(v: str) -> bool:
    try:
        return not math.isfinite(float(v.replace(",", "").strip()))
    except ValueError:
        return False


def _seed_entry(v: Any, where: str = "", invalid: dict[str, str] | None = None) -> dict[str, float]:
    entry: dict[str, float] = {}
    if isinstance(v, dict):
        for key, names in _PER_SEED_KEYS.items():
            present = [n for n in names if v.get(n) is not None]
            val = next((x for x in (_num(v.get(n)) for n in present) if x is not None), None)
            if val is not None:
                entry[key] = val
            elif present and invalid is not None:
                invalid[f"{where}.{present[0]}"] = _why_invalid(v[present[0]])
    elif _num(v) is not None:  # {"1337": 1.2345} = val_bpb per seed
        entry["val_bpb"] = _num(v)  # type: ignore[assignment]
    elif v is not None and invalid is not None and not isinstance(v, (list, dict)):
        invalid[where] = _why_invalid(v)
    return entry


def claims_from(raw: dict[str, Any]) -> Claims:
    """The claims of a submission.json object, normalised (see _CLAIM_NAMES); ``fields`` says where each
    was read, e.g. {"val_bpb": "results.mean_val_bpb"}."""
    c = Claims(raw=raw)
    levels = _nested(raw)
    for attr, names in _CLAIM_NAMES.items():
        for path, d in levels:
            name = next((n for n in names if d.get(n) is not None and not isinstance(d.get(n), (dict, list))), None)
            if name is None:
                continue
            v = d[name]
            val: Any = (str(v) if attr == "hardware" else _int(v) if attr.startswith("bytes") else _num(v))
            if val is not None:
                setattr(c, attr, val)
                c.fields[attr] = path + name
                break
            c.invalid.setdefault(path + name, _why_invalid(v) if not (attr.startswith("bytes") and _num(v) is not None)
                                 else f"{v!r:.40}, not a whole number of bytes")
    for path, d in levels:
        seeds = d.get("seeds")
        if isinstance(seeds, list) and not c.seeds:
            c.seeds = [s for s in (_int(x) for x in seeds) if s is not None]
            c.fields.setdefault("seeds", path + "seeds")
        for name in _PER_SEED_NAMES:
            per = d.get(name)
            if isinstance(per, dict):
                items: Any = per.items()
            elif isinstance(per, list) and name != "seeds":
                items = ((e.get("seed"), e) for e in per if isinstance(e, dict))
            else:
                continue
            for k, v in items:
                seed = _int(k)
                if seed is not None and seed not in c.per_seed:
                    c.per_seed[seed] = _seed_entry(v, f"{path}{name}.{seed}", c.invalid)
                    c.fields.setdefault("per_seed", path + name)
        for k, v in d.items():  # "seed_1337": {...}
            m = _SEED_KEY.match(k)
            if m and isinstance(v, dict) and int(m.group(1)) not in c.per_seed:
                c.per_seed[int(m.group(1))] = _seed_entry(v, f"{path}{k}", c.invalid)
                c.fields.setdefault("per_seed", path + "seed_<N>")
        # {"val_bpb_seeds": {"42": 1.02}, "artifact_bytes_seeds": {"42": 15000000}}
        for name, key in (("val_bpb_seeds", "val_bpb"), ("val_loss_seeds", "val_loss"),
                          ("artifact_bytes_seeds", "artifact_bytes")):
            per = d.get(name)
            if isinstance(per, dict):
                for k, v in per.items():
                    seed, val = _int(k), _num(v)
                    if seed is not None and val is not None:
                        c.per_seed.setdefault(seed, {})[key] = val
                        c.fields.setdefault("per_seed", path + name)
                    elif seed is not None and v is not None:
                        c.invalid.setdefault(f"{path}{name}.{k}", _why_invalid(v))
    if not c.seeds and c.per_seed:
        c.seeds = sorted(c.per_seed)
    return c


def _tree(source: str) -> ast.Module | None:
    """AST of a source; sources using newer syntax (3.12 f-strings) still parse, with those f-strings
    blanked, so a script written for a newer Python does not hide its helper files."""
    from harness.check.hints import parse_lenient

    return parse_lenient(source)


def _imported_names(tree: ast.Module) -> set[str]:
    """Top-level module names the tree imports (relative imports give the imported names)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.update(a.name for a in node.names)
            if node.module:
                names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and node.args
              and (getattr(node.func, "id", None) in ("__import__", "import_module")
                   or getattr(node.func, "attr", None) == "import_module")):
            a0 = node.args[0]  # __import__("x"), importlib.import_module("x")
            if isinstance(a0, ast.Constant) and isinstance(a0.value, str):
                names.add(a0.value.split(".")[0])
    names.discard("")
    return names


def _local_imports(source: str, folder: Path) -> list[Path]:
    """Local modules (folder/X.py or folder/X/) that the source imports."""
    tree = _tree(source)
    if tree is None:
        return []
    from harness.fsutil import regular_file_inside

    out = []
    for n in sorted(_imported_names(tree)):
        if (folder / f"{n}.py").is_file():
            out.append(folder / f"{n}.py")
        elif (folder / n).is_dir() and not (folder / n).is_symlink():
            out.extend(sorted(p for p in (folder / n).rglob("*") if p.is_file() and p.suffix in CODE_SUFFIXES))
    return [p for p in out if regular_file_inside(p, folder) is None]  # never a link out of the folder


MAX_SOURCE_BYTES = 50_000_000


def _read_source(p: Path) -> str:
    """A helper module's text, bounded (a huge file is read in part: its imports are near the top)."""
    from harness.fsutil import read_capped

    return read_capped(p, MAX_SOURCE_BYTES)[:MAX_SOURCE_BYTES].decode("utf-8", errors="replace")


def _loaded_files(source: str, folder: Path) -> list[Path]:
    """Files of the folder named in string literals of the source (kernels, tokenizers, helpers)."""
    tree = _tree(source)
    if tree is None:
        return []
    out: set[Path] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and 0 < len(node.value) < 300:
            name = node.value.strip()
            if "\n" in name or name.startswith(("/", "~")):
                continue
            cand = folder / name
            try:
                if cand.is_file() and cand.resolve().is_relative_to(folder.resolve()):
                    if cand.suffix in CODE_SUFFIXES:
                        out.add(cand)
            except (OSError, ValueError):
                continue
    return sorted(out)


def code_files(script: Path, source: str) -> list[CodeFile]:
    """train_gpt.py plus local modules it imports (recursively) and code files it loads by name."""
    folder = script.parent
    files: dict[Path, CodeFile] = {script: CodeFile(script, script.stat().st_size, "script")}
    todo = [(script, source)]
    while todo:
        path, src = todo.pop()
        for mod in _local_imports(src, folder):
            if mod not in files:
                files[mod] = CodeFile(mod, mod.stat().st_size, f"imported by {path.name}")
                if mod.suffix == ".py":
                    todo.append((mod, _read_source(mod)))
        for f in _loaded_files(src, folder):
            if f not in files:
                files[f] = CodeFile(f, f.stat().st_size, f"loaded by {path.name}")
                if f.suffix == ".py":
                    todo.append((f, _read_source(f)))
    return list(files.values())


# Top-level packages that records import from their environment (GPU kernels, compressors, tokenizers):
# never a file the folder has to ship, even when this machine does not have them installed.
KNOWN_PACKAGES = frozenset({
    "torch", "numpy", "sentencepiece", "triton", "flash_attn", "flash_attn_interface", "flash_attn_3",
    "hopper", "brotli", "brotlicffi", "zstandard", "zstd", "pyzstd", "compression", "transformers", "tokenizers",
    "datasets", "huggingface_hub", "einops", "tqdm", "wandb", "mlx", "scipy", "safetensors", "tiktoken", "fla",
    "liger_kernel", "apex", "xformers", "bitsandbytes", "cutlass", "nvidia", "pandas", "psutil", "requests",
    "yaml", "regex", "numba", "jax", "ninja", "setuptools", "pybind11", "nanobind", "torchao", "kernels",
    "transformer_engine", "modal", "matplotlib", "sklearn", "cupy", "pynvml", "packaging", "typing_extensions",
})
_MAX_SCAN_FILES = 2000
_SCRIPT_COPY = re.compile(r"^train_gpt[\w.-]*\.py$", re.I)


@dataclass
class UnaccountedCode:
    """Code the strict total may be missing: evidence that it is a lower bound."""

    missing_modules: list[str] = field(default_factory=list)  # imported, not in the folder, not installed here
    unreferenced: list[CodeFile] = field(default_factory=list)  # code files in the folder nothing scanned names
    # other train_gpt*.py files (train_gpt_human.py, train_gpt_plain.py: readable copies of a wrapped script,
    # or variants): not code the script runs, so not in `unreferenced`; listed for the reader
    script_copies: list[CodeFile] = field(default_factory=list)

    @property
    def unreferenced_bytes(self) -> int:
        return sum(f.bytes for f in self.unreferenced)


def _is_installed(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def unaccounted_code(script: Path, source: str, counted: list[CodeFile]) -> UnaccountedCode:
    """What code_files() could not account for.

    missing_modules: names the scanned sources import that are neither a file of the folder, nor the
    standard library, nor a known environment package, nor installed here (e.g. a helper module the
    copy of the folder lacks: the strict total is then a lower bound). unreferenced: files with a code
    suffix in the folder (depth <= 3) that no scanned source names (a kernel loaded by a missing module,
    a readable copy of a wrapped script); listed so a reader can judge whether strict should count them.
    """
    import sys

    folder = script.parent
    out = UnaccountedCode()
    names: set[str] = set()
    for cf in counted:
        if cf.path.suffix != ".py":
            continue
        text = source if cf.path == script else _read_source(cf.path)
        tree = _tree(text)
        if tree is not None:
            names |= _imported_names(tree)
    std = set(getattr(sys, "stdlib_module_names", ()))
    for n in sorted(names):
        if n in std or n in KNOWN_PACKAGES or n.startswith("_") or n == "__future__":
            continue
        if (folder / f"{n}.py").is_file() or (folder / n).is_dir() or _is_installed(n):
            continue
        out.missing_modules.append(n)
    known = {cf.path.resolve() for cf in counted}
    seen = 0

    def walk(d: Path, depth: int) -> None:
        nonlocal seen
        try:
            entries = sorted(d.iterdir(), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if seen >= _MAX_SCAN_FILES or e.name.startswith(".") or e.name == "__pycache__":
                continue
            if e.is_dir() and not e.is_symlink():
                if depth < 3:
                    walk(e, depth + 1)
            elif e.is_file() and e.suffix in CODE_SUFFIXES:
                seen += 1
                if e.resolve() not in known:
                    rel = e.relative_to(folder)
                    if _SCRIPT_COPY.match(e.name):
                        out.script_copies.append(CodeFile(e, e.stat().st_size, f"another train_gpt script ({rel})"))
                    else:
                        out.unreferenced.append(CodeFile(e, e.stat().st_size, f"in the folder, not named by "
                                                                              f"the scanned code ({rel})"))

    walk(folder, 0)
    return out


def load_submission(path: str | Path, artifact: str | Path | None = None) -> Submission:
    from harness.check.artifact import find_artifact
    from harness.check.logs import find_logs

    folder = Path(path)
    if not folder.exists():
        raise BadInput(f"{folder}: no such folder")
    if not folder.is_dir():
        raise BadInput(f"{folder}: not a folder (give the submission folder, records/<track>/<name>/)")
    from harness.fsutil import regular_file_inside

    skipped: list[str] = []

    def safe(p: Path | None) -> Path | None:
        """p when it is a regular file inside the folder; else None, recorded (never followed out)."""
        if p is None:
            return None
        why = regular_file_inside(p, folder)
        if why is None:
            return p
        skipped.append(f"{p.relative_to(folder) if p.is_relative_to(folder) else p} ({why})")
        return None

    script = next((folder / n for n in SCRIPT_NAMES if (folder / n).is_file() or (folder / n).is_symlink()), None)
    script = safe(script)
    if script is None:  # the script a README / run.sh command launches (train_gpt_cuda_ternary.py)
        from harness.check.run_commands import find_entry_script

        entry, _ = find_entry_script(folder)
        script = safe(folder / entry) if entry else None
    readme = safe(folder / "README.md") if (folder / "README.md").is_file() else None
    claims_path = safe(folder / "submission.json") if (folder / "submission.json").is_file() else None
    # a misnamed claims file (submission_ternary.json) is still the submission's claim: S2 reads it, and S1
    # still reports the missing submission.json
    others = sorted(folder.glob("submission*.json")) if claims_path is None else []
    stand_in = others[0] if len(others) == 1 else None
    claims_path = claims_path or stand_in
    claims, claims_error = None, None
    if claims_path is not None:
        try:
            claims = parse_claims(claims_path)
        except BadInput as e:
            claims_error = str(e)
    if artifact is not None:
        art = Path(artifact)
        if not art.is_file():
            raise BadInput(f"{art}: artifact file not found")
    else:
        art = safe(find_artifact(folder))
    logs = [p for p in find_logs(folder) if safe(p) is not None]
    sub = Submission(
        path=folder, script=script, readme=readme, claims_path=claims_path, claims=claims,
        claims_error=claims_error, logs=logs, artifact=art, skipped=skipped,
    )
    for name, present in (
        ("train_gpt.py", script), ("README.md", readme),
        ("submission.json", None if stand_in else claims_path),
    ):
        if present is None:
            sub.missing.append(name)
    if stand_in is not None:
        sub.missing[sub.missing.index("submission.json")] = f"submission.json (claims read from {stand_in.name})"
    if not sub.logs:
        sub.missing.append("a train log")
    return sub
