"""Configuration inference: the environment a record was run with, read from its folder.

    infer_configuration(folder) -> Configuration

Sources, strongest first (precedence stated in every report):
  1. the hyperparameter dumps of the claimed runs' logs (`key: value`, `key=value`, `Hyperparameters(...)`,
     printed args), mapped back to the environment names the script reads (a field fed from
     `os.environ.get("TTT_ENABLED")` named `ttt_enabled` is TTT_ENABLED);
  2. the README's run commands (`VAR=val torchrun ...`, `export VAR=val`, multi-line with backslashes);
  3. the folder's shell scripts (run.sh, setup.sh, ...);
  4. the script's own defaults (AST of the unwrapped source: os.environ.get / os.getenv / os.environ[...]).
Each value keeps its source (file:line); disagreements between sources are listed as conflicts.

Never applied: data and output paths (the harness serves its own data), values with unexpanded $VARS,
launcher/library variables (NCCL_*, PYTORCH_*, CUDA_*, OMP_*), and what the harness owns (SEED, RUN_ID,
VOCAB_SIZE: decided by the tokenizer, ranks).

Also read here: the entry script a command names (when the folder has no train_gpt.py), the record's
tokenizer / vocabulary, the log tag of the claimed score line, and README commands that alias validation
shards as training data (a D1 FAIL with the line as evidence).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.check.run_commands import find_entry_script, logical_lines, parse_commands, read_capped

PRECEDENCE = ("log", "readme", "folder-script", "script-default")
PRECEDENCE_TEXT = "log of a claimed run > README command > folder run script > script default; --env overrides all"

HARNESS_OWNED = frozenset({"SEED", "RUN_ID", "VOCAB_SIZE", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                           "MASTER_ADDR", "MASTER_PORT", "DATA_PATH", "DATA_DIR", "TOKENIZER_PATH"})
_LAUNCHER_PREFIXES = ("NCCL_", "PYTORCH_", "CUDA_", "OMP_", "MKL_", "TORCH_", "TORCHINDUCTOR_", "TRITON_",
                      "HF_", "WANDB_", "PYTHON", "NVIDIA_", "GLOO_", "TOKENIZERS_")
_PATH_SUFFIXES = ("_DIR", "_PATH", "_FILE", "_FILES", "_ROOT", "_PREFIX_PATH")
_SWITCH_NAME = re.compile(
    r"(^|_)(ENABLED?|USE|CACHE|MODE|ONLY)($|_)|^(TTT|NGRAM|SLOT|LORA|PREQUANT|PHASED|CASEOPS|EVAL_ONLY)", re.I)
_BOOLISH = {"0", "1", "true", "false", "yes", "no", "on", "off"}
_VOCAB_NAME = re.compile(r"(?:^|[^a-z0-9])sp[_-]?(1024|2048|4096|8192|16384)(?![0-9])", re.I)
_ALIAS_CMD = re.compile(r"^\s*(?:sudo\s+)?(ln|cp|mv|rsync)\b(.*)$")


# a dataset folder or tokenizer file written out in the script: 'fineweb10B_sp10240_casefold',
# "fineweb_10240_casefold_bpe.model" (no format fields: those follow VOCAB_SIZE and are served already)
_DATA_NAME = re.compile(r"""['"]((?:fineweb10B_[A-Za-z0-9_]+)|(?:fineweb_[A-Za-z0-9_]+\.model))['"]""")


@dataclass
class EnvRead:
    """One environment variable the script reads."""

    name: str
    default: str | None  # the literal default, as text (None: no default / not a literal)
    where: str  # file:line
    fields: list[str] = field(default_factory=list)  # names it feeds (Hyperparameters fields, locals)
    simple: bool = True  # the value is the env string through int/float/bool/str only (a dump maps back)


@dataclass
class Value:
    name: str
    value: str
    source: str  # one of PRECEDENCE
    where: str  # file:line


@dataclass
class Configuration:
    folder: str
    reads: dict[str, EnvRead] = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)  # chosen per name (precedence), log/readme/sh only
    candidates: dict[str, list[Value]] = field(default_factory=dict)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # found but never applied, with why
    claimed_seeds: list[int] = field(default_factory=list)
    claimed_logs: list[str] = field(default_factory=list)
    entry_script: str | None = None  # relative to the folder
    entry_where: str | None = None
    tokenizer: str | None = None  # a .model shipped in the folder (absolute)
    vocab_size: int | None = None
    vocab_where: str | None = None
    score_tag: str | None = None
    score_tag_where: str | None = None
    needs_byte_sidecar: bool = False
    # dataset folders / tokenizer files the script names literally (fineweb10B_sp10240_casefold): served too
    data_names: list[str] = field(default_factory=list)
    aliasing: list[dict[str, str]] = field(default_factory=list)  # D1 evidence: {where, line}
    notes: list[str] = field(default_factory=list)

    # -------------------------------------------------------------- what a run applies

    def applied(self) -> dict[str, Value]:
        """The inferred values a run applies (paths, harness-owned, launcher variables left out)."""
        return {k: v for k, v in self.values.items() if not_applied_reason(k, v.value) is None}

    def applied_env(self) -> dict[str, str]:
        return {k: v.value for k, v in self.applied().items()}

    def defaults(self) -> dict[str, str]:
        return {k: r.default for k, r in self.reads.items() if r.default is not None}

    def switches(self) -> dict[str, str]:
        """Applied values that select the method (TTT_ENABLED, NGRAM_*, SLOT_*, *_ENABLED, ...)."""
        return {k: v for k, v in self.applied_env().items() if is_switch(k, v)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "precedence": PRECEDENCE_TEXT,
            "applied": {k: asdict(v) for k, v in sorted(self.applied().items())},
            "switches": self.switches(),
            "conflicts": self.conflicts,
            "skipped": self.skipped,
            "claimed_seeds": self.claimed_seeds,
            "claimed_logs": self.claimed_logs,
            "entry_script": self.entry_script,
            "entry_where": self.entry_where,
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size,
            "vocab_where": self.vocab_where,
            "score_tag": self.score_tag,
            "score_tag_where": self.score_tag_where,
            "needs_byte_sidecar": self.needs_byte_sidecar,
            "data_names": self.data_names,
            "aliasing": self.aliasing,
            "script_reads": {k: {"default": r.default, "where": r.where} for k, r in sorted(self.reads.items())},
            "notes": self.notes,
        }

    def summary_lines(self, limit: int = 12) -> list[str]:
        """A short block for console and markdown reports."""
        out = [f"precedence: {PRECEDENCE_TEXT}"]
        if self.entry_script:
            out.append(f"entry script: {self.entry_script} ({self.entry_where})")
        if self.vocab_size or self.tokenizer:
            tok = Path(self.tokenizer).name if self.tokenizer else "built-in"
            out.append(f"tokenizer: {tok}, vocab {self.vocab_size or '?'} ({self.vocab_where or '-'})")
        if self.score_tag:
            out.append(f"claimed score line: {self.score_tag} ({self.score_tag_where})")
        app = self.applied()
        sw = self.switches()
        keys = sorted(app, key=lambda k: (k not in sw, k))
        for k in keys[:limit]:
            v = app[k]
            out.append(f"{k}={v.value}  [{v.source} {v.where}]")
        if len(keys) > limit:
            out.append(f"... {len(keys) - limit} more applied value(s) (JSON report: configuration.applied)")
        if not app:
            out.append("no values inferred: the script's defaults apply")
        for c in self.conflicts[:5]:
            others = ", ".join(f"{o['value']} ({o['where']})" for o in c["others"])
            out.append(f"conflict {c['name']}: {c['value']} ({c['where']}) over {others}")
        for a in self.aliasing[:3]:
            out.append(f"validation aliased as training data: {a['where']}: {a['line']}")
        return out


# ------------------------------------------------------------------ classification


def is_switch(name: str, value: str | None = None) -> bool:
    """A variable that selects the method (never shrunk by tiny scale)."""
    n = name.upper()
    if _SWITCH_NAME.search(n) and not re.search(r"(EPOCHS|STEPS|LR|SIZE|TOKENS|DOCS|CHUNK|DIM|RANK|SEQS|BATCH|"
                                                r"ORDER|PHASES|DECAY|MOMENTUM|CLIP|RATIO|BUCKETS|ALPHA|BETA|"
                                                r"TEMP|FREEZE|WD|EPS|STD|SCALE|INIT|MIN|MAX|LAYERS|BITS|LEN|SECONDS|LIMIT|EVERY|_AT$)", n):
        return True
    return value is not None and value.strip().lower() in {"true", "false"}


def not_applied_reason(name: str, value: str) -> str | None:
    """Why an inferred value is never applied to a run (None: it is applied)."""
    n = name.upper()
    if n in HARNESS_OWNED:
        return "the harness sets it (served data, seed, run id, ranks)"
    if n.startswith(_LAUNCHER_PREFIXES):
        return "launcher / library variable"
    if n.endswith(_PATH_SUFFIXES) or n in ("LOGFILE", "LOG_FILE", "OUT", "OUTPUT"):
        return "a data or output path: the harness serves its own data"
    if re.search(r"EVAL_ONLY|SKIP_TRAIN|^LOAD_|_ONLY$", n) and value.strip().lower() not in ("0", "false", ""):
        return "an evaluation-only rerun of a saved model: the harness runs training too"
    if "$" in value or "`" in value:
        return "unexpanded shell variable"
    v = value.strip()
    if "/" in v and not re.fullmatch(r"[\d./eE+-]+", v):
        return "looks like a file path"
    if re.search(r"\.(pt|pth|bin|model|npy|npz|ptz|json|txt|log)$", v, re.I):
        return "looks like a file path"
    return None


def _norm(v: str) -> str:
    s = v.strip()
    try:
        f = float(s)
        return repr(f)
    except ValueError:
        return s.lower()


# ------------------------------------------------------------------ the script's reads (AST)


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or \
        (isinstance(node, ast.Name) and node.id == "environ")


def _env_call(node: ast.AST) -> tuple[ast.AST, ast.AST | None] | None:
    """(name node, default node) when `node` reads the environment."""
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "get" and _is_environ(f.value) and node.args:
            return node.args[0], node.args[1] if len(node.args) > 1 else _kw(node, "default")
        if ((isinstance(f, ast.Attribute) and f.attr == "getenv") or (isinstance(f, ast.Name) and f.id == "getenv")) \
                and node.args:
            return node.args[0], node.args[1] if len(node.args) > 1 else _kw(node, "default")
    if isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
        return node.slice, None
    return None


def _kw(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _literal_text(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool)):
        v = node.value
        if isinstance(v, bool):
            return "1" if v else "0"
        return str(v)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        t = _literal_text(node.operand)
        return f"-{t}" if t is not None else None
    return None


def _helpers(tree: ast.AST) -> dict[str, tuple[int, int | None]]:
    """Local functions that read the environment with one of their parameters as the name:
    {function name: (index of the name parameter, index of the default parameter or None)}."""
    out: dict[str, tuple[int, int | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            params = [a.arg for a in node.args.args]
            body = node.body if isinstance(node, ast.FunctionDef) else [node.body]
            for sub in (n for b in body for n in ast.walk(b)):
                hit = _env_call(sub)
                if hit and isinstance(hit[0], ast.Name) and hit[0].id in params:
                    di = params.index(hit[1].id) if isinstance(hit[1], ast.Name) and hit[1].id in params else None
                    name = node.name if isinstance(node, ast.FunctionDef) else None
                    if name:
                        out[name] = (params.index(hit[0].id), di)
                    break
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            lam = node.value
            params = [a.arg for a in lam.args.args]
            for sub in ast.walk(lam.body):
                hit = _env_call(sub)
                if hit and isinstance(hit[0], ast.Name) and hit[0].id in params:
                    di = params.index(hit[1].id) if isinstance(hit[1], ast.Name) and hit[1].id in params else None
                    out[node.targets[0].id] = (params.index(hit[0].id), di)
                    break
    return out


def _reads_in(node: ast.AST, helpers: dict[str, tuple[int, int | None]]) -> list[tuple[str, str | None, ast.AST]]:
    """(name, default text, the read node) for every environment read with a literal name under node."""
    found = []
    for sub in ast.walk(node):
        hit = _env_call(sub)
        if hit is None and isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in helpers:
            i, di = helpers[sub.func.id]
            if len(sub.args) > i:
                hit = (sub.args[i], sub.args[di] if di is not None and len(sub.args) > di else None)
        if hit is None:
            continue
        name_node, default = hit
        if isinstance(name_node, ast.Constant) and isinstance(name_node.value, str) and name_node.value:
            found.append((name_node.value, _literal_text(default), sub))
    return found


_CASTS = {"int", "float", "bool", "str"}


def _simple_value(value: ast.AST, read: ast.AST) -> bool:
    """The assigned value is the environment string through casts / a truth test only."""
    inner = {id(n) for n in ast.walk(read)}
    for n in ast.walk(value):
        if id(n) in inner:
            continue
        if isinstance(n, ast.Call):
            f = n.func
            if isinstance(f, ast.Name) and f.id in _CASTS:
                continue
            if isinstance(f, ast.Attribute) and f.attr in ("lower", "strip", "upper"):
                continue
            return False
        if isinstance(n, ast.Name):
            if n.id in _CASTS:
                continue
            return False
        if isinstance(n, (ast.Attribute, ast.Compare, ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Load,
                          ast.cmpop, ast.expr_context)):
            continue
        return False
    return True


def script_reads(source: str, filename: str) -> dict[str, EnvRead]:
    """Every environment variable the source reads, its literal default and the names it feeds."""
    from harness.check.hints import parse_lenient

    tree = parse_lenient(source)
    if tree is None:
        return _regex_reads(source, filename)
    helpers = _helpers(tree)
    reads: dict[str, EnvRead] = {}

    def add(name: str, default: str | None, line: int, target: str | None, simple: bool) -> None:
        r = reads.get(name)
        if r is None:
            r = reads[name] = EnvRead(name, default, f"{filename}:{line}")
        elif r.default is None and default is not None:
            r.default = default
        if target and target not in r.fields:
            r.fields.append(target)
            r.simple = r.simple and simple

    for node in ast.walk(tree):
        targets: list[tuple[str, ast.AST]] = []
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    targets.append((t.id, node.value))
                elif isinstance(t, ast.Attribute):
                    targets.append((t.attr, node.value))
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            t = node.target
            nm = t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else None
            if nm:
                targets.append((nm, node.value))
        elif isinstance(node, ast.keyword) and node.arg:
            targets.append((node.arg, node.value))
        for nm, value in targets:
            for name, default, read in _reads_in(value, helpers):
                add(name, default, getattr(read, "lineno", 0), nm, _simple_value(value, read))
    for name, default, read in _reads_in(tree, helpers):  # reads not assigned to a name
        add(name, default, getattr(read, "lineno", 0), None, True)
    return reads


def _regex_reads(source: str, filename: str) -> dict[str, EnvRead]:
    reads: dict[str, EnvRead] = {}
    pat = re.compile(r"""(?:environ\.get|getenv)\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s*(?:,\s*['"]?([^'"),]*))?""")
    for i, line in enumerate(source.splitlines(), 1):
        for m in pat.finditer(line):
            reads.setdefault(m.group(1), EnvRead(m.group(1), m.group(2), f"{filename}:{i}"))
    return reads


# ------------------------------------------------------------------ claims and logs


def _claims(folder: Path) -> tuple[list[int], dict[int, float], float | None, float | None]:
    """(claimed seeds, claimed val_bpb per seed, claimed mean val_bpb, claimed mean val_loss) from
    submission*.json."""
    from harness.check.submission import parse_claims

    files = sorted(folder.glob("submission*.json"), key=lambda p: (p.name != "submission.json", p.name))
    for p in files:
        try:
            c = parse_claims(p)
        except Exception:  # noqa: BLE001 - malformed claims are S1's business
            continue
        per = {s: float(e["val_bpb"]) for s, e in c.per_seed.items() if "val_bpb" in e}
        seeds = list(c.seeds)
        raw = c.raw
        for key in ("results", "seed_results", "per_seed_results"):
            sub = raw.get(key)
            if isinstance(sub, dict):
                for k, v in sub.items():
                    m = re.search(r"(\d+)", str(k))
                    if m and isinstance(v, dict):
                        s = int(m.group(1))
                        b = v.get("val_bpb", v.get("bpb"))
                        if isinstance(b, (int, float)):
                            per.setdefault(s, float(b))
                        if s not in seeds:
                            seeds.append(s)
        return seeds, per, c.val_bpb, c.val_loss
    return [], {}, None, None


def _log_seed(path: Path, text: str) -> int | None:
    m = re.search(r"(?:^|\n)\s*seed\s*[:=]\s*(\d+)", text[:200_000], re.I)
    if m:
        return int(m.group(1))
    m = re.search(r"seed[_-]?(\d+)|[_-]s(\d+)(?:[_.-]|$)", path.stem, re.I)
    if m:
        return int(m.group(1) or m.group(2))
    return None


def _find_logs(folder: Path) -> list[Path]:
    try:
        from harness.check.logs import find_logs

        return find_logs(folder)
    except Exception:  # noqa: BLE001
        return sorted(p for p in folder.rglob("*.log"))



_PAIR = re.compile(r"""(?:^|[\s,(\[{])([A-Za-z_][A-Za-z0-9_]*)\s*[:=]\s*('[^'\n]*'|"[^"\n]*"|\d+(?:,\d+)+|[^\s,()\[\]{}:=]+)"""
                   r"""(?=$|[\s,;)\]}])""")
_NEXT_OK = re.compile(r"$|[)\]}]|[A-Za-z_][\w.]*\s*[:=]")
_SCORE_LINE = re.compile(r"train_loss|val_loss|val_bpb|step_avg|^\s*step[:\s]\d", re.I)


_TRUE_WORDS = {"true", "enabled", "on"}
_FALSE_WORDS = {"false", "disabled", "off"}


def _numeric(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _dump_values(text: str, code_lines: set[str], names: dict[str, str],
                 defaults: dict[str, str] | None = None) -> list[tuple[str, str, int]]:
    """(env name, value, line number) from a log's hyperparameter dumps. `names`: lower-case key -> env
    name. Lines that repeat the script's source (logs often start with the code) are skipped."""
    defaults = defaults or {}
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or len(s) > 4000 or s in code_lines or _SCORE_LINE.search(s):
            continue
        if re.match(r"(def |class |import |from |if |for |while |return |#|@)", s):
            continue
        for m in _PAIR.finditer(line):
            key, raw = m.group(1), m.group(2)
            env = names.get(key.lower())
            if env is None:
                continue
            if not _NEXT_OK.match(line[m.end():].lstrip(" ,;")):
                continue  # `mixed_quant: 32 int6, 35 int5`: prose after the value, not a dump
            v = raw.strip().strip("'\"").rstrip(".;")
            if v in ("None", "") or "(" in raw:
                continue
            if v.lower() in _TRUE_WORDS or v.lower() in _FALSE_WORDS:
                v = "1" if v.lower() in _TRUE_WORDS else "0"
            d = defaults.get(env)
            if d is not None and _numeric(d) and not _numeric(v):
                continue  # a status word where the script reads a number
            out.append((env, v, i))
    return out


def _score_tag(logs: list[tuple[Path, str]], per_seed: dict[int, float], mean: float | None,
               folder: Path, loss_mean: float | None = None) -> tuple[str | None, str | None]:
    """The tag of the log line whose value is the claimed one (per claimed seed; else the claimed mean)."""
    from harness.check.score_lines import parse_line

    votes: dict[str, list[str]] = {}
    for p, text in logs:
        seed = _log_seed(p, text)
        target = per_seed.get(seed) if seed is not None else None
        targets = [t for t in (target, mean if len(logs) == 1 or not per_seed else None) if t is not None]
        if not targets:
            continue
        hit = None
        for i, line in enumerate(text.splitlines(), 1):
            if "val_bpb" not in line and "bpb" not in line.lower():
                continue
            s = parse_line(line)
            if s is None or not s.tag:
                continue
            for t in targets:
                digits = max(_decimals(t), 4)
                if round(s.val_bpb, digits) == round(t, digits) or abs(s.val_bpb - t) < 0.5 * 10 ** -min(digits, 8):
                    hit = (s.tag, f"{p.relative_to(folder)}:{i}")
        if hit:
            votes.setdefault(hit[0], []).append(hit[1])
    if not votes and logs:
        # only a mean claimed (val_bpb or val_loss): the tag whose mean over the logs is the claim
        claims = [("val_bpb", mean)] + [("val_loss", loss_mean)]
        per_log: list[dict[str, tuple[float, float | None, str]]] = []
        for p, text in logs:
            last: dict[str, tuple[float, float | None, str]] = {}
            for i, line in enumerate(text.splitlines(), 1):
                sc = parse_line(line) if "bpb" in line.lower() else None
                if sc is not None and sc.tag:
                    last[sc.tag] = (sc.val_bpb, sc.val_loss, f"{p.relative_to(folder)}:{i}")
            if last:
                per_log.append(last)
        common = set.intersection(*(set(d) for d in per_log)) if per_log else set()
        order = list(per_log[0]) if per_log else []
        for tag in [t for t in order if t in common]:
            for key, claim in claims:
                if claim is None:
                    continue
                vals = [d[tag][0] if key == "val_bpb" else d[tag][1] for d in per_log]
                if any(v is None for v in vals):
                    continue
                m = sum(vals) / len(vals)  # type: ignore[arg-type]
                if abs(m - claim) <= 0.6 * 10 ** -min(_decimals(claim), 6):
                    votes[tag] = [d[tag][2] for d in per_log]
        if votes:  # several tags at the claimed value: the one printed last
            tag = [t for t in order if t in votes][-1]
            return tag, ", ".join(votes[tag][:3]) + f" (mean of {len(per_log)} log(s) = the claimed {key})"
    if not votes:
        return None, None
    tag = max(votes, key=lambda k: len(votes[k]))
    return tag, ", ".join(votes[tag][:3])


def _decimals(x: float) -> int:
    s = repr(x)
    return len(s.split(".")[1]) if "." in s and "e" not in s else 4


# ------------------------------------------------------------------ commands (README, shell scripts)


_PROSE = re.compile(r"`([^`\n]+)`")
_PROSE_ASSIGN = re.compile(r"(?:^|\s)([A-Z][A-Z0-9_]{2,})=([^\s`]+)")


def _prose_assignments(text: str, command_lines: set[int]) -> list[tuple[str, str, int]]:
    """`VAR=val` written in inline code in the README's prose (e.g. "`TTT_ENABLED=1` with `TTT_EPOCHS=8`")."""
    out = []
    fenced = False
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or i in command_lines:
            continue
        for code in _PROSE.findall(line):
            if re.search(r"\b(torchrun|python)\b", code):
                continue  # an inline command: parse_commands read it
            for m in _PROSE_ASSIGN.finditer(code):
                out.append((m.group(1), m.group(2).rstrip(",.;"), i))
    return out


def _aliasing(text: str, rel: str) -> list[dict[str, str]]:
    """Commands that link or copy validation shards to training shard names."""
    out = []
    for ln, logical in logical_lines(text):
        for part in re.split(r"\s*(?:&&|;)\s*", logical):
            m = _ALIAS_CMD.match(part.strip().strip("`"))
            if not m:
                continue
            args = m.group(2)
            if re.search(r"val", args, re.I) and re.search(r"fineweb_train|train_\d|_train_", args, re.I) \
                    and re.search(r"fineweb_val|val_\d|_val_|\bval\b", args, re.I):
                src_first = args.lower().find("val") < args.lower().find("train")
                if src_first:
                    out.append({"where": f"{rel}:{ln}", "line": part.strip()[:300]})
    return out


# ------------------------------------------------------------------ the inference


def _choose_script(folder: Path) -> Path | None:
    p = folder / "train_gpt.py"
    return p if p.is_file() else None


def infer_configuration(folder: str | Path, script: str | Path | None = None) -> Configuration:
    root = Path(folder).resolve()
    conf = Configuration(folder=str(root))
    readme = root / "README.md"
    readme_text = read_capped(readme) if readme.is_file() else ""
    shells = sorted(p for p in list(root.glob("*.sh")) + list(root.glob("scripts/*.sh")) if p.is_file())
    readme_cmds, readme_exports = parse_commands(readme_text, shell=False) if readme_text else ([], [])
    shell_parsed = [(p, *parse_commands(read_capped(p), shell=True)) for p in shells]

    # entry script
    script_path = Path(script).resolve() if script else _choose_script(root)
    if script_path is None:
        name, where = find_entry_script(root)
        if name:
            script_path = root / name
            conf.entry_script, conf.entry_where = name, where
    else:
        conf.entry_script = script_path.name if script_path.parent == root else str(script_path)
        name, where = find_entry_script(root)
        conf.entry_where = where if name == conf.entry_script else "given"

    # script reads
    source = ""
    if script_path is not None and script_path.is_file():
        name = script_path.name
        try:
            from harness.check.unwrap import unwrap_file

            u = unwrap_file(script_path)
            source = u.source
            if u.wrapped:
                name += " (unwrapped)"
        except Exception:  # noqa: BLE001 - unreadable: S1/B1 say so
            source = read_capped(script_path)
        conf.reads = script_reads(source, name)
        for extra in sorted(root.glob("*.py")):  # helper modules the script imports read env too
            if extra != script_path and not extra.name.startswith("train_gpt"):
                for k, r in script_reads(read_capped(extra), extra.name).items():
                    conf.reads.setdefault(k, r)
    names: dict[str, str] = {}
    for k, r in conf.reads.items():
        if r.simple or k.lower() not in (f.lower() for f in r.fields):  # a transformed field does not map back
            names.setdefault(k.lower(), k)
    for k, r in conf.reads.items():
        for f in r.fields:
            if r.simple:
                names.setdefault(f.lower(), k)
    for k in conf.reads:  # `ttt=True` printed for TTT_ENABLED
        m = re.fullmatch(r"(?:USE_|ENABLE_)?([A-Z0-9_]+?)(?:_ENABLED?|_ON)?", k)
        if m and m.group(1) != k:
            names.setdefault(m.group(1).lower(), k)
    conf.needs_byte_sidecar = bool(re.search(r"val_bytes|_bytes_\*|fineweb_val_bytes", source))
    conf.data_names = sorted(set(_DATA_NAME.findall(source)))

    def add(v: Value) -> None:
        conf.candidates.setdefault(v.name, []).append(v)

    # logs of the claimed runs
    seeds, per_seed, mean, loss_mean = _claims(root)
    conf.claimed_seeds = seeds
    logs = [(p, read_capped(p)) for p in _find_logs(root)]
    claimed = [(p, t) for p, t in logs if seeds and _log_seed(p, t) in seeds]
    if not claimed and logs:
        claimed = logs
        if seeds:
            conf.notes.append("no log names a claimed seed: every log's dump was read")
    if claimed:  # logs in sub-folders (reruns, ablations) only when the folder itself has none
        top = min(len(p.relative_to(root).parts) for p, _ in claimed)
        claimed = [(p, t) for p, t in claimed if len(p.relative_to(root).parts) == top]
    conf.claimed_logs = [str(p.relative_to(root)) for p, _ in claimed]
    code_lines = {ln.strip() for ln in source.splitlines() if ln.strip()}
    for p, text in claimed:
        rel = str(p.relative_to(root))
        seen: set[str] = set()
        for env, v, ln in _dump_values(text, code_lines, names, conf.defaults()):
            if env in seen:
                continue
            seen.add(env)
            add(Value(env, v, "log", f"{rel}:{ln}"))
    # README commands (those that run a script) and exports
    for c in readme_cmds:
        for k, v in c.env:
            add(Value(k, v, "readme", f"README.md:{c.line}"))
    for k, v, ln in readme_exports:
        add(Value(k, v, "readme", f"README.md:{ln}"))
    for k, v, ln in _prose_assignments(readme_text, {c.line for c in readme_cmds}):
        add(Value(k, v, "readme", f"README.md:{ln} (prose)"))
    for p, cmds, exports in shell_parsed:
        for c in cmds:
            for k, v in c.env:
                add(Value(k, v, "folder-script", f"{p.name}:{c.line}"))
        for k, v, ln in exports:
            add(Value(k, v, "folder-script", f"{p.name}:{ln}"))

    _choose(conf)
    _vocab(conf, root, readme_text, source)
    conf.score_tag, conf.score_tag_where = _score_tag(claimed, per_seed, mean, root, loss_mean)
    conf.aliasing = _aliasing(readme_text, "README.md") + [a for p in shells for a in _aliasing(read_capped(p), p.name)]
    return conf


def _choose(conf: Configuration) -> None:
    rank = {s: i for i, s in enumerate(PRECEDENCE)}
    for name, cands in conf.candidates.items():
        # one value per source: the first (logs of several seeds agreeing count once)
        ordered = sorted(cands, key=lambda v: rank[v.source])
        chosen = ordered[0]
        why = not_applied_reason(name, chosen.value)
        if why is not None:
            conf.skipped.append({"name": name, "value": chosen.value, "where": chosen.where, "why": why})
        conf.values[name] = chosen
        others = [v for v in ordered[1:] if _norm(v.value) != _norm(chosen.value)]
        if others and why is None:
            seen = set()
            uniq = []
            for o in others:
                key = (o.value, o.source)
                if key not in seen:
                    seen.add(key)
                    uniq.append({"value": o.value, "source": o.source, "where": o.where})
            conf.conflicts.append({"name": name, "value": chosen.value, "source": chosen.source,
                                   "where": chosen.where, "others": uniq})


def _vocab(conf: Configuration, root: Path, readme_text: str, source: str) -> None:
    models = sorted(p for p in root.rglob("*.model") if p.is_file() and len(p.relative_to(root).parts) <= 4)
    if models:
        pick = models[0]
        if len(models) > 1:
            named = [m for m in models if m.name in source or m.name in readme_text]
            pick = named[0] if named else pick
        conf.tokenizer = str(pick)
        try:
            import sentencepiece as spm

            conf.vocab_size = int(spm.SentencePieceProcessor(model_file=str(pick)).vocab_size())
            conf.vocab_where = f"{pick.relative_to(root)} (shipped tokenizer)"
            return
        except Exception:  # noqa: BLE001 - not a SentencePiece model
            conf.tokenizer = None
            conf.notes.append(f"{pick.relative_to(root)}: not a SentencePiece model; not used")
    for name in ("VOCAB_SIZE",):
        v = conf.values.get(name)
        if v is not None and v.value.strip().isdigit():
            conf.vocab_size, conf.vocab_where = int(v.value), f"{name}={v.value} ({v.where})"
            return
    for k, c in list(conf.values.items()) + []:  # data paths naming a vocabulary
        if k.endswith(("_PATH", "_DIR")) and (m := _VOCAB_NAME.search(c.value)):
            conf.vocab_size, conf.vocab_where = int(m.group(1)), f"{k}={c.value} ({c.where})"
            return
    r = conf.reads.get("VOCAB_SIZE")
    if r is not None and r.default and r.default.isdigit():
        conf.vocab_size, conf.vocab_where = int(r.default), f"VOCAB_SIZE default ({r.where})"
        return
    for k, r in conf.reads.items():
        if r.default and (m := _VOCAB_NAME.search(r.default)):
            conf.vocab_size, conf.vocab_where = int(m.group(1)), f"{k} default {r.default} ({r.where})"
            return
    if m := _VOCAB_NAME.search(root.name):
        conf.vocab_size, conf.vocab_where = int(m.group(1)), "the folder's name"


# ------------------------------------------------------------------ the D1 row of the check stage


def rule_d1_aliasing(cfg: Any, conf: Configuration) -> Any | None:
    """A check-stage D1 FAIL when the README or a run script aliases validation shards as training data."""
    if not conf.aliasing:
        return None
    from harness.results import Evidence, Finding, Status, rule_row

    ev = [Evidence(where=a["where"], detail=a["line"]) for a in conf.aliasing]
    f = Finding("D1", Status.FAIL, "The documented data setup links or copies validation shards as training "
                "shards: the model trains on validation data.", ev)
    return rule_row(cfg, "D1", Status.FAIL, f"validation aliased as training data ({conf.aliasing[0]['where']})",
                    [f], checker="check")


def jsonable(conf: Configuration) -> dict[str, Any]:
    return json.loads(json.dumps(conf.to_dict(), default=str))


def report_lines(sections: dict[str, Any], limit: int = 14) -> list[str]:
    """The short configuration block of console and markdown reports, from a report's sections: the
    environment a run applied (with sources) when there was a run, else what the folder's inference
    would apply."""
    run = sections.get("run") if isinstance(sections.get("run"), dict) else None
    conf = (run or {}).get("configuration") or sections.get("configuration")
    if not isinstance(conf, dict) or not conf:
        return []
    out = [f"precedence: {conf.get('precedence', PRECEDENCE_TEXT)}"]
    if conf.get("entry_script") and conf.get("entry_script") != "train_gpt.py":
        out.append(f"entry script: {conf['entry_script']} ({conf.get('entry_where')})")
    if conf.get("vocab_size"):
        tok = Path(conf["tokenizer"]).name if conf.get("tokenizer") else "built-in tokenizer"
        out.append(f"vocabulary {conf['vocab_size']} ({tok}; {conf.get('vocab_where')})")
    if conf.get("score_tag"):
        out.append(f"claimed score line: {conf['score_tag']} ({conf.get('score_tag_where')})")
    applied = conf.get("applied_env")
    if isinstance(applied, dict):
        shown = {k: v for k, v in applied.items() if v.get("source") != "harness"}
        keys = sorted(shown, key=lambda k: (not is_switch(k, shown[k].get("value")), k))
        out.append(f"applied environment ({len(shown)} value(s) besides the served data):")
        for k in keys[:limit]:
            out.append(f"  {k}={shown[k].get('value')}  [{shown[k].get('source')}]")
    else:
        vals = conf.get("applied") or {}
        keys = sorted(vals, key=lambda k: (not is_switch(k, vals[k].get("value")), k))
        out.append(f"inferred environment ({len(vals)} value(s)):")
        for k in keys[:limit]:
            out.append(f"  {k}={vals[k].get('value')}  [{vals[k].get('source')} {vals[k].get('where')}]")
    if len(keys) > limit:
        out.append(f"  ... {len(keys) - limit} more (JSON report: configuration)")
    for c in (conf.get("conflicts") or [])[:4]:
        others = ", ".join(f"{o['value']} ({o['where']})" for o in c.get("others", []))
        out.append(f"conflict {c['name']}: {c['value']} ({c['where']}) over {others}")
    for a in (conf.get("aliasing") or [])[:2]:
        out.append(f"validation aliased as training data: {a['where']}: {a['line']}")
    return out
