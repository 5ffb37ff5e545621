"""Which third-party packages a submission folder declares, and which one a missing import belongs to.

A record that imports a package the run's interpreter lacks (e.g. flash-linear-attention) ends in a
ModuleNotFoundError. The maintainer needs one line that names the package and where the folder asks
for it (requirements.txt, a `pip install` line in the README or a shell script), not a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_MISSING = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")
_PIP = re.compile(r"\bpip3?\s+install\s+(.+)")
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(?:(?:==|>=|<=|~=|!=|>|<)\s*[^\s;#]+)?")
# import name -> distribution names that provide it, where the two are not spelled alike
_PROVIDED_BY = {
    "fla": ("flash-linear-attention", "fla-core"),
    "flash_attn_interface": ("flash-attn-3", "flash_attn_3", "flash-attn"),
    "flash_attn": ("flash-attn",),
    "mamba_ssm": ("mamba-ssm",),
    "causal_conv1d": ("causal-conv1d",),
    "yaml": ("pyyaml",),
    "sklearn": ("scikit-learn",),
    "cv2": ("opencv-python", "opencv-python-headless"),
    "zstd": ("zstd", "zstandard"),
}


@dataclass(frozen=True)
class Requirement:
    spec: str  # as written: "flash-linear-attention==0.4.2"
    name: str  # normalized distribution name
    where: str  # "requirements.txt:6"


def missing_module(stderr: str) -> str | None:
    """The top-level module of the last `ModuleNotFoundError: No module named 'x.y'` in the output."""
    found = _MISSING.findall(stderr)
    return found[-1].split(".")[0] if found else None


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _specs(text: str) -> list[str]:
    out = []
    for tok in text.split():
        if tok.startswith(("#", "&", "|", ";", ">")):  # a comment or the next command
            break
        if tok.startswith(("-", "$")) or "/" in tok or tok.endswith(".txt"):  # options, paths, -r files
            continue
        out.append(tok.strip("'\"`,"))
    return [s for s in out if _REQ.match(s)]


def declared(folder: Path) -> list[Requirement]:
    """The packages the folder asks for: requirements*.txt lines, and `pip install` lines in its
    README/markdown and shell scripts (one level deep, small text files only)."""
    reqs: list[Requirement] = []
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.stat().st_size < 2_000_000)
    except OSError:
        return reqs
    for f in files:
        low = f.name.lower()
        is_req = low.startswith("requirements") and low.endswith(".txt")
        if not (is_req or low.endswith((".md", ".sh", ".txt"))):
            continue
        try:
            lines = f.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for i, line in enumerate(lines, 1):
            if is_req:
                specs = _specs(line.split("#", 1)[0])[:1]
            else:
                m = _PIP.search(line)
                specs = _specs(m.group(1)) if m else []
            for spec in specs:
                m = _REQ.match(spec)
                if m:
                    reqs.append(Requirement(spec, _norm(m.group(1)), f"{f.name}:{i}"))
    return reqs


def providers(module: str, reqs: list[Requirement]) -> list[Requirement]:
    """The declared requirements that provide `module` (by name, or by the known import-name map)."""
    mod = _norm(module)
    names = {mod, *(_norm(n) for n in _PROVIDED_BY.get(module, ()))}
    return [r for r in reqs if r.name in names or r.name.startswith(mod + "-")]


def missing_package_line(stderr: str, folder: Path | None) -> str | None:
    """One line for a run that ended on an import the interpreter cannot satisfy, else None."""
    module = missing_module(stderr)
    if module is None:
        return None
    reqs = declared(folder) if folder is not None else []
    hits = providers(module, reqs)
    if hits:
        seen: dict[str, str] = {}
        for r in hits:
            seen.setdefault(r.spec, r.where)
        asks = "; ".join(f"{spec} ({where})" for spec, where in list(seen.items())[:4])
        return (f"needs package {module!r}, not installed for the run's interpreter; the folder asks for "
                f"{asks}: install it there, or pass --python an interpreter that has it")
    return (f"needs package {module!r}, not installed for the run's interpreter (the folder does not say "
            f"which distribution provides it): install it, or pass --python an interpreter that has it")
