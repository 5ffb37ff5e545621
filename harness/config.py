"""User settings from harness.toml (paths, thresholds, which rules run)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BadInput
from harness.rules import Rule, load_rules

_REPO_DEFAULT = Path(__file__).resolve().parent.parent / "harness.toml"


@dataclass
class Config:
    raw: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.raw.get(name, {}))

    def get(self, section: str, key: str, default: Any = None) -> Any:
        return self.raw.get(section, {}).get(key, default)

    @property
    def rules(self) -> dict[str, Rule]:
        return load_rules(self.get("harness", "rules_dir"))

    @property
    def enabled(self) -> set[str]:
        enabled = self.get("harness", "enabled")
        return set(enabled) if enabled else set(self.rules)

    def rule_params(self, rule_id: str) -> dict[str, Any]:
        """A rule's parameters from rules/, overridden by [rules.<ID>] in harness.toml."""
        base = dict(self.rules[rule_id].parameters) if rule_id in self.rules else {}
        base.update(self.raw.get("rules", {}).get(rule_id, {}))
        return base


def load_config(path: str | Path | None = None) -> Config:
    """Explicit path, else ./harness.toml, else the repository's default, else empty settings."""
    candidates = [Path(path)] if path else [Path.cwd() / "harness.toml", _REPO_DEFAULT]
    for p in candidates:
        if p.is_file():
            try:
                return Config(tomllib.loads(p.read_text(encoding="utf-8")), p)
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise BadInput(f"{p}: not valid TOML ({e})") from None
        if path:
            raise BadInput(f"config file not found: {p}")
    return Config()
