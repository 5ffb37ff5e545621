"""Rules as data: load rules/*.toml into Rule objects (id, title, text, parameters, sources)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.errors import BadInput

# The rules folder ships at the repository root; an installed package falls back to its own copy.
_CANDIDATES = (
    Path(__file__).resolve().parent.parent / "rules",
    Path(__file__).resolve().parent / "rules_data",
)


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    text: str
    severity: str = "error"
    sources: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str, override: dict[str, Any] | None = None) -> Any:
        if override and name in override:
            return override[name]
        return self.parameters[name]


def default_rules_dir() -> Path:
    for c in _CANDIDATES:
        if c.is_dir():
            return c
    raise BadInput("rules folder not found (expected rules/ beside the harness package)")


@lru_cache(maxsize=8)
def load_rules(rules_dir: str | None = None) -> dict[str, Rule]:
    folder = Path(rules_dir) if rules_dir else default_rules_dir()
    out: dict[str, Rule] = {}
    for f in sorted(folder.glob("*.toml")):
        try:
            data = tomllib.loads(f.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise BadInput(f"{f}: not valid TOML ({e})") from None
        for raw in data.get("rule", []):
            missing = [k for k in ("id", "title", "text") if k not in raw]
            if missing:
                raise BadInput(f"{f}: a rule lacks {', '.join(missing)}")
            if raw["id"] in out:
                raise BadInput(f"{f}: rule {raw['id']} defined twice")
            out[raw["id"]] = Rule(
                id=raw["id"],
                title=raw["title"],
                text=" ".join(raw["text"].split()),
                severity=raw.get("severity", "error"),
                sources=tuple(raw.get("sources", ())),
                parameters=dict(raw.get("parameters", {})),
            )
    if not out:
        raise BadInput(f"{folder}: no rules found")
    return out


def rule_order(rule_id: str) -> tuple[int, str]:
    """Report order: structure, budgets, conditions, data access."""
    prefix = {"S": 0, "B": 1, "C": 2, "D": 3}.get(rule_id[:1], 9)
    return (prefix, rule_id)
