"""The child's Python: this one, or another (`--python python3.12` for PEP 701 f-strings).

Resolved to an absolute executable in the parent, because the child's scrubbed environment (HOME
moved to the working copy) breaks launchers such as pyenv shims.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from functools import lru_cache

from harness.errors import BadInput

MIN_VERSION = (3, 10)
_PROBE = "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])"


def _probe(exe: str) -> tuple[str, tuple[int, int]] | None:
    try:
        r = subprocess.run([exe, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = r.stdout.split()
    if r.returncode != 0 or len(lines) < 2:
        return None
    major, minor = (int(x) for x in lines[1].split("."))
    return os.path.realpath(lines[0]), (major, minor)


@lru_cache(maxsize=16)
def resolve_python(spec: str | None) -> tuple[str, str]:
    """(absolute executable, 'X.Y') for `spec` (a name on PATH or a path); None: this Python."""
    if not spec:
        return sys.executable, "%d.%d" % sys.version_info[:2]
    candidates = []
    first = spec if os.sep in spec else shutil.which(spec)
    if first:
        candidates.append(first)
    # pyenv keeps versions it does not activate; a shim then refuses to run them
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(root, "versions", "*", "bin", os.path.basename(spec))))
    for c in candidates:
        got = _probe(c)
        if got is None:
            continue
        exe, ver = got
        if ver < MIN_VERSION:
            raise BadInput(f"--python {spec}: Python {ver[0]}.{ver[1]} is too old (the runtime needs 3.10+)")
        return exe, f"{ver[0]}.{ver[1]}"
    raise BadInput(f"--python {spec}: no working interpreter of that name")
