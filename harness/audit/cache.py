"""The audit's result cache: one JSON file per (folder content, harness, rules, options), written atomically
the moment a folder's check finishes, so an interrupted audit keeps what it finished.

The key hashes every file of the folder (relative path + content; `__pycache__` and `.git` skipped), the
harness version, the ruleset version, the effective settings (harness.toml layered over the shipped
defaults) and the check's flags. What the key does not see: files outside the folder that a flag names
(--data-path shards, --tokenizer: by path only) and harness code changed without a version bump; use
--no-cache after either.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.fsutil import atomic_write_text

CACHE_FORMAT = 1  # bump when an entry's layout changes: old entries are then never read
DEFAULT_DIR = ".harness-audit-cache"
_SKIP_DIRS = {"__pycache__", ".git"}
_CHUNK = 1 << 20


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except OSError as e:  # unreadable: its error is part of the key (stable until it changes)
        h.update(f"unreadable: {e.strerror}".encode())
    return h.digest()


def folder_digest(folder: Path) -> str:
    """sha256 over the folder's files: relative path and content, in sorted order."""
    h = hashlib.sha256()
    entries: list[tuple[str, Path]] = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in files:
            p = Path(here) / name
            entries.append((p.relative_to(folder).as_posix(), p))
    for rel, p in sorted(entries):
        h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        h.update(_file_digest(p))
    return h.hexdigest()


def cache_key(content: str, harness_version: str, ruleset: str, settings: Mapping[str, Any],
              flags: Sequence[str]) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, "content": content, "harness": harness_version,
                       "ruleset": ruleset, "settings": settings, "flags": list(flags)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResultCache:
    """`<root>/results/<key[:2]>/<key>.json`; a `.gitignore` keeps the folder out of a repository."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / "results" / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or entry.get("key") != key:
            return None
        return entry

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        ignore = self.root / ".gitignore"
        if not ignore.exists():
            atomic_write_text(ignore, "# harness audit result cache\n*\n")
        atomic_write_text(self.path(key), json.dumps({**entry, "format": CACHE_FORMAT, "key": key}))
