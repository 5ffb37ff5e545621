"""The claimed runs: which logs of a folder are the seeds the submission claims, and which are not.

Records keep more logs than the runs they claim: ablations, variants with other settings, exploratory
runs on other hardware (2xH100 with a 4x wall clock), a copy of a seed's log under another name, a
first attempt of a seed. Only the claimed runs decide B1 (each seed's own total), S2, B2 and B3; the
others are listed with why they were set aside.

The claim is, in this order: the seeds of submission.json (``seeds``, the keys of ``seed_results`` ...),
the seed column of the README's results table, else every run the logs show. A run is set aside when
- its seed is not a claimed seed;
- its file name says it is not a claimed run (ablation, variant, sweep, debug, test, other hardware);
- it ran on other hardware or with another budget than the others: another world size (or another
  than the claimed hardware's GPU count), a max_wallclock_seconds above the training budget while
  the others' is not, a step time more than twice the others' median;
- it is another log of a claimed seed that already has one: the run kept is the one whose score
  matches the claim (per seed, else the claimed mean), else the one named after the seed.
A claimed seed's only run is never set aside (it is noted instead), and when every run would be set
aside by the hardware tests, none is: they are then what the submission claims.
"""

from __future__ import annotations

import itertools
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.check.logs import LogSummary, SeedRun, seed_label, seed_runs

_VARIANT_NAME = re.compile(
    r"(?:^|[_\-./ ])(ablations?|abl|variants?|sweep|debug|tests?|explor\w*|prelim\w*|draft|trial|old|"
    r"scratch|smoke|[1-4]x\s?h100|[1-4]gpus?|single[_-]?gpu)(?=$|[_\-./ \d])", re.I)
_SEED_NAME = re.compile(r"^(?:train[_-]?)?(?:log[_-]?)?seed[_-]?\d+$", re.I)
_PLAIN_NAME = re.compile(r"^(?:train|log)\d*$", re.I)
_GPU_COUNT = re.compile(r"(\d+)\s*[x×]", re.I)


@dataclass
class SetAside:
    path: str  # the log (relative to the folder when it can be)
    seed: int | None
    why: str

    def to_dict(self) -> dict:
        return {"log": self.path, "seed": self.seed, "why": self.why}


@dataclass
class ClaimedRuns:
    runs: list[SeedRun]  # the claimed runs, one per claimed seed found
    set_aside: list[SetAside] = field(default_factory=list)
    claimed_seeds: list[int] = field(default_factory=list)  # as the claim names them ([] when it names none)
    seed_source: str = ""  # where the claimed seeds come from
    missing_seeds: list[int] = field(default_factory=list)  # claimed, with no log
    notes: list[str] = field(default_factory=list)

    def to_dict(self, root: Path | None = None) -> dict:
        def rel(p: str) -> str:
            return _rel(p, root)

        return {
            "claimed_seeds": self.claimed_seeds,
            "seed_source": self.seed_source,
            "runs": [{"seed": r.seed, "logs": [rel(lg.path) for lg in r.logs], "score_log": rel(r.path),
                      "val_bpb": r.final.val_bpb if r.final else None,
                      "eval_time_ms": r.eval_time_ms, "train_time_ms": r.train_time_ms,
                      "model_bytes": r.model_bytes, "total_bytes": r.total_bytes, "code_bytes": r.code_bytes}
                     for r in self.runs],
            "set_aside": [dict(s.to_dict(), log=rel(s.path)) for s in self.set_aside],
            "missing_seeds": self.missing_seeds,
            "notes": self.notes,
        }


def _rel(p: str, root: Path | None) -> str:
    if root is None:
        return Path(p).name
    try:
        return str(Path(p).relative_to(root))
    except ValueError:
        return Path(p).name


def readme_seeds(text: str) -> list[int]:
    """Seeds in the README's results table: the integer cells of a column headed 'seed'."""
    seeds: list[int] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            continue
        cells = [c.strip().strip("*` ").lower() for c in line.strip().strip("|").split("|")]
        col = next((j for j, c in enumerate(cells) if c in ("seed", "seeds", "seed #", "rng seed")), None)
        if col is None:
            continue
        for row in lines[i + 1:]:
            if not row.lstrip().startswith("|"):
                break
            rc = [c.strip().strip("*` ") for c in row.strip().strip("|").split("|")]
            if col < len(rc) and re.fullmatch(r"\d{1,10}", rc[col].replace(",", "")):
                seeds.append(int(rc[col].replace(",", "")))
        if seeds:
            break
    return list(dict.fromkeys(seeds))


def _claimed_hw_gpus(claims: Any) -> int | None:
    hw = getattr(claims, "hardware", None) if claims is not None else None
    m = _GPU_COUNT.search(hw or "")
    return int(m.group(1)) if m else None


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol + 1e-12


def find_claimed_runs(logs: list[LogSummary], claims: Any = None, readme_text: str | None = None, *,
                      root: Path | None = None, train_budget_s: float = 600.0,
                      tol: float = 1e-4) -> ClaimedRuns:
    """Split the logs into claimed runs and the rest (see the module docstring)."""
    out = ClaimedRuns(runs=[])
    for lg in logs:
        if lg.final is None:
            out.set_aside.append(SetAside(lg.path, lg.seed, "states no score (no val_bpb or BPB line)"))
    runs = seed_runs(logs)
    claimed = list(getattr(claims, "seeds", None) or []) if claims is not None else []
    if claimed:
        out.seed_source = "submission.json"
    elif readme_text:
        claimed = readme_seeds(readme_text)
        if claimed:
            out.seed_source = "README results table"
    if not claimed:
        out.seed_source = "the logs (the claim names no seeds)"
    out.claimed_seeds = claimed

    def drop(run: SeedRun, why: str) -> None:
        for lg in run.logs:
            out.set_aside.append(SetAside(lg.path, run.seed, why))

    keep: list[SeedRun] = []
    for run in runs:
        if claimed and run.seed is not None and run.seed not in claimed:
            drop(run, f"seed {run.seed} is not a claimed seed ({out.seed_source}: "
                      f"{', '.join(map(str, claimed))})")
            continue
        name = _rel(run.logs[0].path, root)
        m = _VARIANT_NAME.search(name)
        if m and not _is_only_run(run, runs):
            drop(run, f"the file name says '{m.group(1)}': not a claimed run")
            continue
        keep.append(run)

    keep = _hardware_outliers(keep, claims, train_budget_s, drop, out)
    keep = _one_per_seed(keep, claims, tol, drop, root)
    out.runs = keep
    have = {r.seed for r in keep}
    out.missing_seeds = [s for s in claimed if s not in have]
    return out


def _is_only_run(run: SeedRun, runs: list[SeedRun]) -> bool:
    return run.seed is not None and sum(1 for r in runs if r.seed == run.seed) == 1 and len(runs) == 1


def _hardware_outliers(runs: list[SeedRun], claims: Any, budget_s: float, drop: Any,
                       out: ClaimedRuns) -> list[SeedRun]:
    if len(runs) < 2:
        return runs
    why: dict[int, str] = {}
    gpus = _claimed_hw_gpus(claims)
    worlds = [r.logs[0].world_size for r in runs if r.logs[0].world_size]
    expect = gpus or (statistics.mode(worlds) if worlds else None)
    for i, r in enumerate(runs):
        ws = r.logs[0].world_size
        if expect and ws and ws != expect:
            src = f"the claimed hardware {claims.hardware}" if gpus else f"the other runs' {expect}"
            why[i] = f"world_size {ws} ({src}): a run on other hardware"
    walls = [r.logs[0].max_wallclock_s for r in runs]
    for i, r in enumerate(runs):
        w = walls[i]
        others = [x for j, x in enumerate(walls) if j != i and x is not None]
        if w is not None and w > budget_s and others and all(x <= budget_s for x in others):
            why.setdefault(i, f"max_wallclock_seconds {w:g} (the others: {max(others):g}): a run with "
                              "another training budget")
    steps = [r.logs[0].step_avg_ms for r in runs]
    for i, r in enumerate(runs):
        s = steps[i]
        others = [x for j, x in enumerate(steps) if j != i and x is not None]
        if s is not None and len(others) >= 1 and s > 2 * statistics.median(others):
            why.setdefault(i, f"step_avg {s:g} ms, more than twice the others' {statistics.median(others):g} ms: "
                              "a run on other hardware")
    if not why or len(why) == len(runs):
        if why:
            out.notes.append("every run looks like another hardware or budget than expected; all are kept as "
                             "the claimed runs")
        return runs
    kept = []
    for i, r in enumerate(runs):
        if i in why and not _sole_of_claimed_seed(r, runs, out):
            drop(r, why[i])
        else:
            if i in why:
                out.notes.append(f"seed {seed_label(r.seed)}: {why[i]}; kept, as the claimed seed's only run")
            kept.append(r)
    return kept


def _sole_of_claimed_seed(run: SeedRun, runs: list[SeedRun], out: ClaimedRuns) -> bool:
    return (run.seed is not None and run.seed in out.claimed_seeds
            and sum(1 for r in runs if r.seed == run.seed) == 1)


def _one_per_seed(runs: list[SeedRun], claims: Any, tol: float, drop: Any, root: Path | None) -> list[SeedRun]:
    groups: dict[int, list[SeedRun]] = {}
    for r in runs:
        if r.seed is not None:
            groups.setdefault(r.seed, []).append(r)
    dups = {s: g for s, g in groups.items() if len(g) > 1}
    if not dups:
        return runs
    per_seed = getattr(claims, "per_seed", {}) or {}
    chosen: dict[int, SeedRun] = {}
    undecided: dict[int, list[SeedRun]] = {}
    for s, g in dups.items():
        want = per_seed.get(s, {}).get("val_bpb")
        match = [r for r in g if want is not None and r.final is not None and _close(r.final.val_bpb, want, tol)]
        if len(match) >= 1 and len({r.final.val_bpb for r in match}) == 1:
            chosen[s] = _by_name(match, root)
        else:
            undecided[s] = g
    mean = getattr(claims, "val_bpb", None)
    if undecided and mean is not None:
        fixed = [r.final.val_bpb for r in runs if r.final is not None and r.seed not in dups]
        fixed += [chosen[s].final.val_bpb for s in chosen]
        seeds = list(undecided)
        best = None
        for combo in itertools.islice(itertools.product(*(undecided[s] for s in seeds)), 4096):
            vals = fixed + [r.final.val_bpb for r in combo]
            d = abs(statistics.fmean(vals) - mean)
            if best is None or d < best[0] - 1e-12:
                best = (d, combo)
        if best is not None and best[0] <= max(tol, 5e-5) * 10:
            for s, r in zip(seeds, best[1]):
                chosen[s] = r
            undecided = {s: g for s, g in undecided.items() if s not in chosen}
    for s, g in undecided.items():
        chosen[s] = _by_name(g, root)
    kept = []
    for r in runs:
        if r.seed in dups and chosen[r.seed] is not r:
            c = chosen[r.seed]
            same = (r.final is not None and c.final is not None and r.final.val_bpb == c.final.val_bpb
                    and r.model_bytes == c.model_bytes)
            cname = _rel(c.path, root)
            if same:
                drop(r, f"the same run as {cname} (seed {s_of(r)}, same score and sizes)")
            else:
                drop(r, f"another run of seed {s_of(r)} (val_bpb {r.final.val_bpb if r.final else '?'}); "
                        f"{cname} is the one the claim matches")
            continue
        kept.append(r)
    return kept


def s_of(r: SeedRun) -> str:
    return seed_label(r.seed)


def _by_name(g: list[SeedRun], root: Path | None) -> SeedRun:
    """The run whose log is named after its seed (train_seed42.log), else the first."""
    for rx in (_SEED_NAME, _PLAIN_NAME):
        for r in g:
            if rx.match(Path(r.logs[0].path).stem):
                return r
    return g[0]
