"""User settings from harness.toml (paths, thresholds, which rules run).

Layers, lowest first: the default settings (the harness.toml shipped with the package: harness/shipped/ in
an installed wheel, the repository's harness.toml in a checkout), then the user's file (an explicit path, else
./harness.toml). A rule's parameters come from rules/*.toml only, overridden by [rules.<ID>] tables.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BadInput
from harness.rules import SHIPPED, Rule, RuleParams, load_rules

_REPO_DEFAULT = Path(__file__).resolve().parent.parent / "harness.toml"
# the packaged copy first: beside an installed package lies site-packages, not this project
_DEFAULT_CANDIDATES = (SHIPPED / "harness.toml", _REPO_DEFAULT)


def default_settings_path() -> Path | None:
    """The harness.toml that ships with the package (None: neither a packaged copy nor a checkout's)."""
    return next((p for p in _DEFAULT_CANDIDATES if p.is_file()), None)


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

    def overrides(self, rule_id: str) -> dict[str, Any]:
        """[rules.<ID>] from harness.toml; BadInput for a parameter the rule does not define (a typo would
        otherwise silently change nothing)."""
        table = self.raw.get("rules", {}).get(rule_id, {})
        if not table:
            return {}
        where = f"{self.path or 'harness.toml'} [rules.{rule_id}]"
        if not isinstance(table, dict):
            raise BadInput(f"{where}: expected a table of parameters")
        rule = self.rules.get(rule_id)
        if rule is None:
            raise BadInput(f"{where}: no rule {rule_id} in the rules")
        unknown = sorted(set(table) - set(rule.parameters))
        if unknown:
            known = ", ".join(sorted(rule.parameters)) or "none"
            raise BadInput(f"{where}: {rule_id} has no parameter {', '.join(unknown)} (its parameters: {known})")
        return dict(table)

    def rule_params(self, rule_id: str) -> RuleParams:
        """A rule's parameters from rules/, overridden by [rules.<ID>] in harness.toml. A strict mapping:
        reading a parameter the rules lack raises BadInput naming the rule and the parameter."""
        rule = self.rules.get(rule_id)
        base = dict(rule.parameters) if rule is not None else {}
        base.update(self.overrides(rule_id))
        return RuleParams(rule_id, base)

    def validate(self) -> None:
        """Check every [rules.<ID>] table against the rules (called on load)."""
        rules = self.raw.get("rules", {})
        if not isinstance(rules, dict):
            raise BadInput(f"{self.path or 'harness.toml'}: [rules] must hold one table per rule id")
        for rid in rules:
            self.overrides(rid)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read(p: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{p}: not valid TOML ({e})") from None


def load_config(path: str | Path | None = None) -> Config:
    """The default settings, overlaid with an explicit path, else ./harness.toml (tables merge key by key)."""
    default = default_settings_path()
    raw = _read(default) if default is not None else {}
    if path:
        user: Path | None = Path(path)
        if not user.is_file():
            raise BadInput(f"config file not found: {user}")
    else:
        user = Path.cwd() / "harness.toml"
        if not user.is_file():
            user = None
    if user is not None and (default is None or user.resolve() != default.resolve()):
        raw = _merge(raw, _read(user))
    cfg = Config(raw, user or default)
    cfg.validate()
    return cfg
