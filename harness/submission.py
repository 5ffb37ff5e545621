"""The submission folder model: which files a records/<track>/<name>/ folder holds, and its claims.

Pure data gathering (no verdicts): check.py turns this into rule results.
"""

from __future__ import annotations

import ast
import json
import math
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


def parse_claims(path: Path) -> Claims:
    """Read submission.json; malformed JSON or a non-object is BadInput (one line)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    if size > MAX_CLAIMS_BYTES:
        raise BadInput(f"{path}: {size} bytes is too large for a submission.json")
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: expected a JSON object, found {type(raw).__name__}")
    c = Claims(raw=raw)
    c.val_bpb = _num(raw.get("val_bpb", raw.get("mean_val_bpb")))
    c.val_loss = _num(raw.get("val_loss", raw.get("mean_val_loss")))
    c.bytes_total = _int(raw.get("bytes_total", raw.get("artifact_bytes", raw.get("total_bytes"))))
    c.bytes_code = _int(raw.get("bytes_code", raw.get("code_bytes")))
    hw = raw.get("hardware", raw.get("gpu"))
    c.hardware = str(hw) if hw is not None else None
    seeds = raw.get("seeds")
    if isinstance(seeds, list):
        c.seeds = [s for s in (_int(x) for x in seeds) if s is not None]
    per = raw.get("seed_results", raw.get("per_seed", raw.get("seed_scores")))
    if isinstance(per, dict):
        items = per.items()
    elif isinstance(per, list):
        items = ((e.get("seed"), e) for e in per if isinstance(e, dict))
    else:
        items = ()
    for k, v in items:
        seed = _int(k)
        if seed is None:
            continue
        entry: dict[str, float] = {}
        if isinstance(v, dict):
            for key in ("val_bpb", "val_loss", "artifact_bytes", "bytes_total"):
                val = _num(v.get(key))
                if val is not None:
                    entry[key] = val
        elif _num(v) is not None:  # {"1337": 1.2345} = val_bpb per seed
            entry["val_bpb"] = _num(v)  # type: ignore[assignment]
        c.per_seed[seed] = entry
    if not c.seeds and c.per_seed:
        c.seeds = sorted(c.per_seed)
    return c


def _local_imports(source: str, folder: Path) -> list[Path]:
    """Local modules (folder/X.py or folder/X/) that the source imports."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
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
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args:
            a0 = node.args[0]
            if isinstance(a0, ast.Constant) and isinstance(a0.value, str):
                names.add(a0.value.split(".")[0])
    out = []
    for n in sorted(names):
        if (folder / f"{n}.py").is_file():
            out.append(folder / f"{n}.py")
        elif (folder / n).is_dir():
            out.extend(sorted(p for p in (folder / n).rglob("*") if p.is_file() and p.suffix in CODE_SUFFIXES))
    return out


def _loaded_files(source: str, folder: Path) -> list[Path]:
    """Files of the folder named in string literals of the source (kernels, tokenizers, helpers)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
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
                    todo.append((mod, mod.read_text(encoding="utf-8", errors="replace")))
        for f in _loaded_files(src, folder):
            if f not in files:
                files[f] = CodeFile(f, f.stat().st_size, f"loaded by {path.name}")
                if f.suffix == ".py":
                    todo.append((f, f.read_text(encoding="utf-8", errors="replace")))
    return list(files.values())


def load_submission(path: str | Path, artifact: str | Path | None = None) -> Submission:
    from harness.artifact import find_artifact
    from harness.logs import find_logs

    folder = Path(path)
    if not folder.exists():
        raise BadInput(f"{folder}: no such folder")
    if not folder.is_dir():
        raise BadInput(f"{folder}: not a folder (give the submission folder, records/<track>/<name>/)")
    script = next((folder / n for n in SCRIPT_NAMES if (folder / n).is_file()), None)
    readme = folder / "README.md" if (folder / "README.md").is_file() else None
    claims_path = folder / "submission.json" if (folder / "submission.json").is_file() else None
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
        art = find_artifact(folder)
    sub = Submission(
        path=folder, script=script, readme=readme, claims_path=claims_path, claims=claims,
        claims_error=claims_error, logs=find_logs(folder), artifact=art,
    )
    for name, present in (
        ("train_gpt.py", script), ("README.md", readme), ("submission.json", claims_path),
    ):
        if present is None:
            sub.missing.append(name)
    if not sub.logs:
        sub.missing.append("a train log")
    return sub
