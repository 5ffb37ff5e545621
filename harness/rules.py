"""Rules as data: load rules/*.toml into Rule objects (id, title, text, parameters, sources).

The TOML files are the only source of the rules' parameters: code reads them through `Rule.param` /
`RuleParams` (harness.config.Config.rule_params adds harness.toml's [rules.<ID>] overrides), which raise
BadInput naming the rule and the parameter when one is missing, never a default written in code.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.errors import BadInput

_PACKAGE = Path(__file__).resolve().parent
# An installed package (wheel) carries its copy of rules/ and harness.toml in harness/shipped/ (setup.py's
# build step copies them there); a source checkout reads rules/ beside the package. The packaged copy comes
# first: beside an installed package lies site-packages, whose rules/ would be someone else's.
SHIPPED = _PACKAGE / "shipped"
_CANDIDATES = (SHIPPED / "rules", _PACKAGE.parent / "rules")


class RuleParams(Mapping[str, Any]):
    """A rule's parameters: a read-only mapping whose missing keys raise BadInput naming rule and parameter.

    Every parameter the rules define is read with `params[name]`; `get` keeps a mapping's ordinary meaning
    (a default for a missing key) for code that reads an optional key."""

    def __init__(self, rule_id: str, values: Mapping[str, Any], source: str = "rules/*.toml") -> None:
        self.rule_id = rule_id
        self._values = dict(values)
        self._source = source

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise BadInput(f"rule {self.rule_id}: parameter {name!r} is not defined in {self._source} "
                           f"(add it under the rule's [rule.parameters])") from None

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"RuleParams({self.rule_id!r}, {self._values!r})"


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    text: str
    severity: str = "error"
    sources: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str, override: Mapping[str, Any] | None = None) -> Any:
        """One parameter: from `override` when it has it, else from the rule; BadInput when neither does."""
        if override and name in override:
            return override[name]
        return self.params()[name]

    def params(self) -> RuleParams:
        return RuleParams(self.id, self.parameters)


def default_rules_dir() -> Path:
    for c in _CANDIDATES:
        if c.is_dir():
            return c
    raise BadInput("rules folder not found (expected rules/ beside the harness package, or harness/shipped/rules "
                   "in an installed package)")


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


@lru_cache(maxsize=8)
def ruleset_version(rules_dir: str | None = None) -> str:
    """The version of the rules (`[ruleset] version` in rules/*.toml, defined in exactly one file)."""
    folder = Path(rules_dir) if rules_dir else default_rules_dir()
    found: list[tuple[Path, Any]] = []
    for f in sorted(folder.glob("*.toml")):
        try:
            data = tomllib.loads(f.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise BadInput(f"{f}: not valid TOML ({e})") from None
        if "ruleset" in data:
            found.append((f, data["ruleset"].get("version") if isinstance(data["ruleset"], dict) else None))
    if len(found) != 1:
        where = ", ".join(str(f) for f, _ in found) or "none"
        raise BadInput(f"{folder}: [ruleset] must be defined in exactly one rules file (found: {where})")
    f, version = found[0]
    if not isinstance(version, str) or not version:
        raise BadInput(f"{f}: [ruleset] lacks a version string")
    return version


def rule_order(rule_id: str) -> tuple[int, str]:
    """Report order: structure, budgets, conditions, data access."""
    prefix = {"S": 0, "B": 1, "C": 2, "D": 3}.get(rule_id[:1], 9)
    return (prefix, rule_id)


# ---------------------------------------------------------------- which stage decides each rule
# check: the submission folder (files, artifact, logs, claims); run: a run of train_gpt.py and its trace
# (harness check --run); probe: the behavioural probes (harness check --run --probes). B2/B3 are stated by
# the logs (check) and measured by a run; C1/C2 are decided by the trace and by the probes.
STAGES: dict[str, tuple[str, ...]] = {
    "S1": ("check",), "S2": ("check",), "S3": ("check",), "B1": ("check",),
    "B2": ("check", "run"), "B3": ("check", "run"), "B4": ("run",), "B5": ("check",),
    "C1": ("run", "probe"), "C2": ("run", "probe"), "C3": ("run",), "C4": ("run",),
    "D1": ("run",), "D2": ("run",), "D3": ("run",),
}
NOT_RUN_TEXT: dict[str, str] = {
    "check": "decided by harness check on the submission folder",
    "run": "needs a run (harness check --run)",
    "probe": "needs the behavioural probes (harness check --run --probes)",
}


def decided_by(stage: str) -> tuple[str, ...]:
    """The rule ids a stage ("check", "run", "probe") decides, in report order."""
    return tuple(sorted((rid for rid, st in STAGES.items() if stage in st), key=rule_order))


def not_run_text(rule_id: str) -> str:
    """The one line a NOT RUN row shows: what would decide the rule."""
    stages = STAGES.get(rule_id, ("run",))
    text = NOT_RUN_TEXT[stages[0]]
    if "probe" in stages[1:]:
        text += "; the probes also decide it (--probes)"
    return text
