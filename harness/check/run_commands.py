"""The run commands a submission folder documents: README code blocks and prose, `run.sh`-style scripts.

    parse_commands(text, shell) -> (commands, exports)   each command's inline environment and the script it runs
    find_entry_script(folder) -> (name, where)           the .py a folder's commands launch (no train_gpt.py)
    logical_lines(text), read_capped(path)             continuation-joined lines; a text file read with a size cap

Read by check/submission.py (which script is the entry) and check/configuration.py (the environment).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

_COMMAND_WORDS = {"torchrun", "python", "python3", "python3.11", "python3.12", "bash", "sh", "uv", "accelerate",
                  "deepspeed", "srun", "modal", "nohup", "time", "exec"}
_ENV_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
MAX_TEXT = 2_000_000


def read_capped(p: Path) -> str:
    try:
        return p.read_bytes()[:MAX_TEXT].decode("utf-8", errors="replace")
    except OSError:
        return ""



def logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with backslash continuations joined, code fences and prompts stripped; (first line, text)."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        s = line.strip()
        if s.startswith("```"):
            if buf:
                out.append((start, buf))
                buf = ""
            continue
        s = re.sub(r"^(\$|>|#\s*\$)\s+", "", s)
        if not buf:
            start = i
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        out.append((start, buf))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def _split(cmd: str) -> list[str]:
    try:
        return shlex.split(cmd, comments=True)
    except ValueError:
        return cmd.split()


_EXPAND = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _expand(value: str, shell_vars: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name in shell_vars:
            return shell_vars[name]
        if m.group(1) and m.group(2) is not None:
            return m.group(2)
        return m.group(0)

    return _EXPAND.sub(sub, value)


@dataclass
class _Command:
    env: list[tuple[str, str]]
    script: str | None
    line: int
    text: str


def parse_commands(text: str, shell: bool) -> tuple[list[_Command], list[tuple[str, str, int]]]:
    """(commands with their inline environment and the .py they run, exported variables). In a shell
    script (shell=True) plain `VAR=val` lines are shell variables used to expand later ones."""
    commands: list[_Command] = []
    exports: list[tuple[str, str, int]] = []
    shell_vars: dict[str, str] = {}
    for ln, logical in logical_lines(text):
        for part in re.split(r"\s*(?:&&|;|\|\|)\s*|\s\|\s", logical):
            part = part.strip().strip("`").strip()
            if not part:
                continue
            toks = _split(part)
            if not toks:
                continue
            if toks[0] == "export":
                for t in toks[1:]:
                    m = _ENV_ASSIGN.match(t)
                    if m:
                        v = _expand(m.group(2), shell_vars)
                        shell_vars[m.group(1)] = v
                        exports.append((m.group(1), v, ln))
                continue
            if toks[0] in ("env",):
                toks = toks[1:]
            env: list[tuple[str, str]] = []
            i = 0
            while i < len(toks) and (m := _ENV_ASSIGN.match(toks[i])):
                env.append((m.group(1), _expand(m.group(2), shell_vars)))
                i += 1
            rest = toks[i:]
            if not rest:
                if shell:
                    shell_vars.update(env)
                continue
            if rest[0] == "env":
                rest = rest[1:]
                while rest and (m := _ENV_ASSIGN.match(rest[0])):
                    env.append((m.group(1), _expand(m.group(2), shell_vars)))
                    rest = rest[1:]
            if not rest:
                continue
            word = Path(rest[0]).name
            if word not in _COMMAND_WORDS and not word.startswith("python"):
                continue
            script = next((Path(t).name for t in rest if t.endswith(".py")), None)
            sh = next((Path(t).name for t in rest if t.endswith(".sh")), None)
            commands.append(_Command(env, script or sh, ln, part))
    return commands, exports


def find_entry_script(folder: str | Path) -> tuple[str | None, str | None]:
    """(script name relative to the folder, where it was found) for a folder without train_gpt.py: the
    .py a README or run-script command launches (a run script it launches is followed once), else the
    only train_gpt*.py."""
    root = Path(folder)
    if (root / "train_gpt.py").is_file():
        return "train_gpt.py", "train_gpt.py in the folder"
    sources: list[tuple[str, str]] = []
    if (root / "README.md").is_file():
        sources.append(("README.md", read_capped(root / "README.md")))
    for p in sorted(root.glob("*.sh")):
        sources.append((p.name, read_capped(p)))
    for rel, text in sources:
        cmds, _ = parse_commands(text, shell=rel.endswith(".sh"))
        for c in cmds:
            if not c.script:
                continue
            if c.script.endswith(".py") and (root / c.script).is_file():
                return c.script, f"{rel}:{c.line}"
            if c.script.endswith(".sh") and (root / c.script).is_file():
                inner, _ = parse_commands(read_capped(root / c.script), shell=True)
                for ic in inner:
                    if ic.script and ic.script.endswith(".py") and (root / ic.script).is_file():
                        return ic.script, f"{c.script} (run by {rel}:{c.line})"
    cands = sorted(p for p in root.glob("train_gpt*.py") if p.is_file())
    if len(cands) == 1:
        return cands[0].name, "the only train_gpt*.py in the folder"
    return None, None
