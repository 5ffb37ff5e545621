"""Running a probe's variant streams through the real script, and reading back what each printed.

A probe session is a list of Variants (streams of one length). An Executor runs them and returns one
VariantRun each: the printed val_loss / val_bpb (the tracer-free evidence) and, when the run's
ledger reproduces the printed number, the reported pass's per-position scores.

HarnessExecutor uses harness.run.run_submission. With the fork server (harness.runtime.forkserver)
one run serves variant 0 and forks a child per other variant at the first validation read; without
it (bootstrap did not install it, or fork=False) every variant is a run of its own.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness import progress
from harness.probes.stats import printed_half_ulp


@dataclass
class Variant:
    name: str  # unique, filesystem-safe
    tokens: np.ndarray
    purpose: str  # base | replay | c2 | c1 | canary | echo


@dataclass
class VariantRun:
    name: str
    purpose: str
    n_targets: int
    ok: bool
    reason: str = ""
    val_loss: float | None = None
    val_bpb: float | None = None
    line: str = ""
    wall_s: float | None = None
    scores: dict[int, float] | None = None  # the reported pass, position -> NLL (None: not trusted)
    # position -> rank of the event that first scored it in the reported pass (equal ranks: one event);
    # None: the scores came from one simultaneous evaluation (a stand-in), nothing scored before anything
    orders: dict[int, int] | None = None
    # the reported pass when it scores some position more than once (a sliding window's overlapping last
    # window): position -> its values in event order; scores stays None then (one value per position is
    # what C2 and the canary need), C1 compares these
    score_lists: dict[int, tuple[float, ...]] | None = None
    score_note: str = ""  # why scores is None, or where they came from
    how: str = ""  # "run" (a run of its own) | "main run" (the main run) | "fork" (a fork-server child) | "model"

    @property
    def per_position(self) -> dict[int, tuple[float, ...]] | None:
        """Every reported value of each position, in event order (None: no trusted scores)."""
        if self.score_lists is not None:
            return self.score_lists
        if self.scores is not None:
            return {p: (v,) for p, v in self.scores.items()}
        return None

    def scored_otherwise(self, other: "VariantRun") -> bool:
        """Both runs know their score order and it differs: a score that moved between them may have moved
        because the schedule did (it read the changed tokens), so it is not attributable."""
        return self.orders is not None and other.orders is not None and self.orders != other.orders

    def take(self, ps: "PassScores") -> None:
        self.scores, self.orders, self.score_lists, self.score_note = ps.scores, ps.orders, ps.lists, ps.note

    @property
    def total_nll(self) -> float | None:
        if self.val_loss is None or not math.isfinite(self.val_loss):
            return None
        return self.val_loss * self.n_targets

    @property
    def total_slack(self) -> float:
        """Rounding of the printed val_loss, scaled to the total."""
        return printed_half_ulp(self.line) * self.n_targets

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "purpose": self.purpose, "ok": self.ok, "reason": self.reason,
                "val_loss": self.val_loss, "val_bpb": self.val_bpb, "wall_s": self.wall_s, "how": self.how,
                "per_position_scores": self.scores is not None, "score_note": self.score_note}


class Executor(Protocol):
    description: str

    def run(self, variants: Sequence[Variant]) -> list[VariantRun]: ...


@dataclass
class SessionCost:
    """What a probe session cost, for the report (and bench/probes.py)."""

    variants: int = 0
    runs: int = 0  # processes started from scratch
    forks: int = 0  # fork-server children
    wall_s: float = 0.0
    fork_at_s: float | None = None  # harness clock of the fork: the work each child reused
    run_wall_s: float | None = None  # wall time of the run that served variant 0
    variant_s: list[float] = field(default_factory=list)  # wall time of each extra variant (child or run)
    notes: list[str] = field(default_factory=list)

    def per_variant_s(self) -> float | None:
        """Median cost of one more variant, as measured so far."""
        xs = sorted(x for x in self.variant_s if x is not None)
        if not xs:
            return self.run_wall_s
        return xs[len(xs) // 2]

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "variant_s"}
        xs = sorted(x for x in self.variant_s if x is not None)
        d["variant_s"] = {"n": len(xs), "median": xs[len(xs) // 2] if xs else None, "max": xs[-1] if xs else None,
                          "sum": round(sum(xs), 3)}
        return d


# ---------------------------------------------------------------- reading one run's ledger


def c4_tolerances(cfg: Any) -> tuple[float, float]:
    """C4's |printed - recomputed| tolerances (val_loss, val_bpb): from cfg (rules + harness.toml), or the
    rules alone when cfg is None."""
    if cfg is not None and hasattr(cfg, "rule_params"):
        c4 = cfg.rule_params("C4")
    else:
        from harness.rules import load_rules

        c4 = load_rules()["C4"].params()
    return float(c4["val_loss_abs_tolerance"]), float(c4["val_bpb_abs_tolerance"])


@dataclass
class PassScores:
    """The reported pass of one run as the probes read it (all None, with why in note, when untrusted)."""

    scores: dict[int, float] | None  # position -> NLL, one value per position
    orders: dict[int, int] | None  # position -> dense rank of the event that first scored it
    lists: dict[int, tuple[float, ...]] | None  # every value per position in event order, when one repeats
    note: str


def reported_scores(ledger_dir: str | os.PathLike[str] | None, printed: tuple[str, float, float, str] | None,
                    tokens: np.ndarray, pos_bytes: np.ndarray | None,
                    tol_loss: float | None = None, tol_bpb: float | None = None) -> PassScores:
    """The reported pass's scores, when the ledger reproduces the printed number.

    Uses the verdict's own search for the reported pass (harness.verdict), so a ledger the script
    fooled (scores that do not add up to what it printed) is never trusted here either."""
    if ledger_dir is None or printed is None:
        return PassScores(None, None, None, "no printed score" if printed is None else "no ledger")
    d = Path(ledger_dir)
    if not d.exists() or not any(d.glob("ledger*.jsonl")):
        return PassScores(None, None, None, "no ledger")
    from harness.ledger import read_ledger
    from harness.verdict.analysis import analyze
    from harness.verdict.passes import Printed

    led = read_ledger(d)
    if not any(True for _ in led.of("score")):
        return PassScores(None, None, None, "no per-position scores in the ledger (untraced run, or the tracer saw no NLL)")
    if tol_loss is None or tol_bpb is None:
        dl, db = c4_tolerances(None)
        tol_loss, tol_bpb = (dl if tol_loss is None else tol_loss), (db if tol_bpb is None else tol_bpb)
    an = analyze(led, Printed(*printed), tokens, pos_bytes, tol_loss, tol_bpb)
    if an.search is None or an.search.match is None:
        return PassScores(None, None, None, "the ledger's scores do not reproduce the printed score")
    m = an.search.match
    rows = m.rows
    pos, nll, order = an.tables.pos[rows], an.tables.nll[rows], an.tables.order[rows]
    orders = _first_ranks(pos, order)
    sel = m.cand.selection
    if sel != "all":
        # the printed number is a selection per position over several passes (a C4 matter for the trace):
        # the values it used are what the probes compare
        return PassScores(_select(pos, nll, sel), orders, None,
                          f"reported: the {sel} per position over several passes ({m.cand.label})")
    if np.unique(pos).size != pos.size:
        lists: dict[int, list[float]] = {}
        for i in np.lexsort((np.arange(pos.size), order, pos)).tolist():
            lists.setdefault(int(pos[i]), []).append(float(nll[i]))
        return PassScores(None, orders, {p: tuple(v) for p, v in lists.items()},
                          f"the reported pass scores a position twice ({m.cand.label})")
    return PassScores({int(p): float(v) for p, v in zip(pos.tolist(), nll.tolist())}, orders, None,
                      f"reported pass: {m.cand.label}")


def _first_ranks(pos: np.ndarray, order: np.ndarray) -> dict[int, int]:
    """position -> dense rank of its first scoring event (ranks, not event numbers, so runs compare)."""
    srt = np.lexsort((order, pos))
    upos, first = np.unique(pos[srt], return_index=True)
    ev = order[srt][first]
    rank = np.searchsorted(np.unique(ev), ev)
    return dict(zip(upos.tolist(), rank.tolist()))


def _select(pos: np.ndarray, nll: np.ndarray, how: str) -> dict[int, float]:
    """One value per position (min, max, mean, first or last over the recorded order)."""
    vals: dict[int, list[float]] = {}
    for p, v in zip(pos.tolist(), nll.tolist()):
        vals.setdefault(int(p), []).append(float(v))
    pick = {"min": min, "max": max, "mean": lambda xs: sum(xs) / len(xs), "first": lambda xs: xs[0],
            "last": lambda xs: xs[-1]}.get(how)
    if pick is None:
        raise ValueError(f"unknown selection {how!r}")
    return {p: pick(xs) for p, xs in vals.items()}


# ---------------------------------------------------------------- the real runner


def printed_tuple(rep: Any) -> tuple[str, float, float, str] | None:
    if rep is None:
        return None
    try:
        return (str(getattr(rep, "tag", "") or ""), float(rep.val_loss), float(rep.val_bpb),
                str(getattr(rep, "line", "") or ""))
    except (TypeError, ValueError, AttributeError):
        return None


class MainServed:
    """The main run's served stream, and its reported pass read from its ledger on first use."""

    def __init__(self, result: Any, tokens: np.ndarray, pos_bytes_of: Callable[[np.ndarray], np.ndarray | None],
                 tol: tuple[float, float]) -> None:
        self.result, self.tokens = result, tokens
        self._pos_bytes_of, self._tol = pos_bytes_of, tol
        self._scores: PassScores | None = None

    def scores(self) -> PassScores:
        if self._scores is None:
            self._scores = reported_scores(getattr(self.result, "ledger_dir", None),
                                           printed_tuple(getattr(self.result, "reported", None)), self.tokens,
                                           self._pos_bytes_of(self.tokens), *self._tol)
        return self._scores


class HarnessExecutor:
    """Variants through harness.run.run_submission (fork server when available)."""

    def __init__(self, path: str | os.PathLike[str], cfg: Any, run_kwargs: Mapping[str, Any], session_dir: Path,
                 *, fork: bool = True, jobs: int = 1, variant_timeout_s: float = 300.0,
                 pos_bytes_of: Callable[[np.ndarray], np.ndarray | None] | None = None,
                 tol_loss: float | None = None, tol_bpb: float | None = None,
                 runner: Callable[..., Any] | None = None) -> None:
        self.path = path
        self.cfg = cfg
        self.kw = dict(run_kwargs)
        self.session = Path(session_dir)
        self.fork = fork
        self.jobs = max(1, jobs)
        self._lock = threading.Lock()
        self.variant_timeout_s = variant_timeout_s
        self.pos_bytes_of = pos_bytes_of or (lambda t: None)
        # None: C4's tolerances from cfg (rules/*.toml and harness.toml's [rules.C4])
        dl, db = c4_tolerances(cfg) if tol_loss is None or tol_bpb is None else (tol_loss, tol_bpb)
        self.tol = (dl if tol_loss is None else tol_loss, db if tol_bpb is None else tol_bpb)
        self._runner = runner
        self.cost = SessionCost()
        self._sessions = 0
        # the score line every variant reports: the main run's (set by the caller), else variant 0's
        self.score_tag: str | None = None
        self.base_result: Any = None  # the RunResult of the run that served variant 0
        self._base_name: str | None = None
        # the main run of this script under the same options (check --run): when it served the first session's
        # base stream exactly, it stands as that variant's run (_same_as_main)
        self.main_run: Any = None
        self._main_view: tuple[Any, MainServed | None] | None = None  # (main_run it was read from, its view)
        self.description = "harness run" + (" + fork server" if fork else ", one run per variant")

    def _run_submission(self, **kw: Any) -> Any:
        if self._runner is not None:
            return self._runner(self.path, self.cfg, **kw)
        from harness.run.runner import run_submission

        return run_submission(self.path, self.cfg, **kw)

    def _kwargs(self, out_dir: Path, tokens: np.ndarray, env_extra: Mapping[str, str] | None,
                timeout: float | None) -> dict[str, Any]:
        kw = dict(self.kw)
        env = dict(kw.pop("env", None) or {})
        env.setdefault("OMP_NUM_THREADS", "1")  # fork safety and fair sharing of the cores
        env.update(env_extra or {})
        kw.update(env=env, out_dir=str(out_dir), val_override=np.asarray(tokens, dtype=np.uint16),
                  val_tokens=int(np.asarray(tokens).size))
        if timeout is not None:
            kw["timeout"] = timeout
        if self.score_tag is not None and "score_tag" not in kw:
            kw["score_tag"] = self.score_tag
        return kw

    def _from_result(self, v: Variant, res: Any, how: str, scores: PassScores | None = None) -> VariantRun:
        """scores: the reported pass when already read (the main run's, MainServed)."""
        printed = printed_tuple(getattr(res, "reported", None))
        run = VariantRun(v.name, v.purpose, int(v.tokens.size) - 1, ok=bool(getattr(res, "ok", False)),
                         reason=str(getattr(res, "reason", "")), wall_s=getattr(res, "wall_s", None), how=how)
        if printed is not None:
            run.val_loss, run.val_bpb, run.line = printed[1], printed[2], printed[3]
        if run.ok:
            run.take(scores if scores is not None else reported_scores(
                getattr(res, "ledger_dir", None), printed, v.tokens, self.pos_bytes_of(v.tokens), *self.tol))
        return run

    def run(self, variants: Sequence[Variant]) -> list[VariantRun]:
        if not variants:
            return []
        n = variants[0].tokens.size
        if any(v.tokens.size != n for v in variants):
            raise ValueError("every variant of a session must have the same length")
        t0 = time.time()
        if self._base_name is None:
            self._base_name = variants[0].name  # the first session's variant 0: what the others are read against
        self.cost.variants += len(variants)
        progress.show("probes", f"probes: {len(variants)} variant stream(s) ({self.cost.variants} in all)")
        out: list[VariantRun | None] = [None] * len(variants)
        rest = list(range(1, len(variants)))
        first = variants[0].name == self._base_name and self.base_result is None
        if first and not self.fork and self._same_as_main(variants[0]):
            out[0] = self._take_main(variants[0])
        elif self.fork and len(variants) > 1:
            runs, rest = self._fork_session(variants)
            for i, r in runs.items():
                out[i] = r
        elif self.score_tag is None and first:
            # first and alone: the score line it reports names the line every other variant must report
            out[0] = self._single(variants[0])
        else:
            rest = list(range(len(variants)))  # the line is known (the main run's or the base's): all in the pool
        if self.jobs > 1 and len(rest) > 1:
            # each variant is a process of its own (one thread each at tiny scale): run `jobs` at a time
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                for i, r in zip(rest, pool.map(lambda k: self._single(variants[k]), rest)):
                    out[i] = r
        else:
            for i in rest:
                out[i] = self._single(variants[i])
        self.cost.wall_s += time.time() - t0
        progress.done("probes")
        return [r for r in out if r is not None]

    def main_served(self) -> MainServed | None:
        """The main run's served stream and reported pass, read once for every caller (the session plan's
        MainRun facts and the base variant's run): None when it failed, printed no score or its stream is
        unreadable."""
        res = self.main_run
        if self._main_view is not None and self._main_view[0] is res:
            return self._main_view[1]
        view = None
        if res is not None and not getattr(res, "failed", True) and getattr(res, "reported", None) is not None:
            path = (getattr(res, "served", None) or {}).get("val_tokens_path")
            try:
                tokens = np.load(str(path), allow_pickle=False) if path else None
            except (OSError, ValueError):
                tokens = None
            if tokens is not None:
                view = MainServed(res, tokens, self.pos_bytes_of, self.tol)
        self._main_view = (res, view)
        return view

    def _same_as_main(self, v: Variant) -> bool:
        """The main run (main_run, set by the caller: the same script under the same options) served exactly
        this stream and printed its score: it is this variant's run, already made."""
        view = self.main_served()
        return view is not None and bool(getattr(view.result, "ok", False)) \
            and view.tokens.shape == v.tokens.shape and bool(np.array_equal(view.tokens, v.tokens))

    def _take_main(self, v: Variant) -> VariantRun:
        view = self.main_served()
        assert view is not None  # _same_as_main held
        res = view.result
        self.base_result = res
        self.cost.run_wall_s = getattr(res, "wall_s", None)
        rep = getattr(res, "reported", None)
        if rep is not None and self.score_tag is None:
            self.score_tag = str(getattr(rep, "tag", "") or "") or None
        self.cost.notes.append("the base variant is the main run: it served the same stream under the same options")
        return self._from_result(v, res, "main run", scores=view.scores())

    def _single(self, v: Variant) -> VariantRun:
        d = self.session / "runs" / v.name
        res = self._run_submission(**self._kwargs(d, v.tokens, None, None))
        with self._lock:  # variants may run in threads (jobs > 1)
            self.cost.runs += 1
            self.cost.variant_s.append(getattr(res, "wall_s", None))
            if self.base_result is None and (self._base_name is None or v.name == self._base_name):
                self.base_result = res
                self.cost.run_wall_s = getattr(res, "wall_s", None)
                rep = getattr(res, "reported", None)
                if rep is not None and self.score_tag is None:
                    self.score_tag = str(getattr(rep, "tag", "") or "") or None
        return self._from_result(v, res, "run")

    def _fork_session(self, variants: Sequence[Variant]) -> tuple[dict[int, VariantRun], list[int]]:
        from harness.check.score_lines import choose_reported, parse_line
        from harness.runtime.forkserver import ENV, SERVER_FILE

        self._sessions += 1
        d = self.session / f"fork{self._sessions}"
        if d.exists():  # a previous session's files must never be read as this one's
            shutil.rmtree(d)
        vdir = d / "variants"
        vdir.mkdir(parents=True, exist_ok=True)
        npy = d / "streams.npy"
        np.save(npy, np.stack([np.asarray(v.tokens, dtype=np.uint16) for v in variants]))
        plan = {"variants": str(npy), "names": [v.name for v in variants], "out": str(vdir), "jobs": self.jobs,
                "timeout_s": self.variant_timeout_s}
        # the run's own cap (the user's --timeout, else [run] wall_clock_limit_s) for variant 0, plus each
        # child's cap while the parent waits for them
        base_cap = self.kw.get("timeout")
        if base_cap is None:
            base_cap = float((self.cfg.section("run") if self.cfg is not None else {}).get("wall_clock_limit_s", 300))
        timeout = float(base_cap) + self.variant_timeout_s * (len(variants) - 1)
        res = self._run_submission(**self._kwargs(d / "run", variants[0].tokens, {ENV: json.dumps(plan)},
                                                  float(timeout)))
        self.cost.runs += 1
        if self.base_result is None:
            self.base_result = res
            self.cost.run_wall_s = getattr(res, "wall_s", None)
        rep = getattr(res, "reported", None)
        if rep is not None and self.score_tag is None:
            self.score_tag = str(getattr(rep, "tag", "") or "") or None
        runs = {0: self._from_result(variants[0], res, "run")}
        info_path = vdir / SERVER_FILE
        if not info_path.is_file():
            self.cost.notes.append("the fork server did not run (not installed by the runtime, or the script read "
                                   "no validation through a tagged path): one run per variant")
            return runs, list(range(1, len(variants)))
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("refused"):
            self.cost.notes.append(f"fork server refused: {info['refused']}; one run per variant")
            return runs, list(range(1, len(variants)))
        phases = getattr(res, "phases", {}) or {}
        if self.cost.fork_at_s is None:
            self.cost.fork_at_s = phases.get("first_val_read")
        children = info.get("children", {})
        parent_reads = _read_events(Path(getattr(res, "ledger_dir", "") or d / "run" / "ledger"))
        for i in range(1, len(variants)):
            v = variants[i]
            cd = vdir / v.name
            rec = children.get(str(i), {})
            self.cost.forks += 1
            self.cost.variant_s.append(rec.get("wall_s"))
            run = VariantRun(v.name, v.purpose, int(v.tokens.size) - 1, ok=False, how="fork",
                             wall_s=rec.get("wall_s"))
            child = _read_json(cd / "child.json")
            text = _read_text(cd / "stdout.txt")
            lines = [s for s in (parse_line(x) for x in text.splitlines()) if s is not None]
            chosen = choose_reported(lines, self.score_tag or "")
            if rec.get("timed_out"):
                run.reason = "timeout"
            elif rec.get("rc") not in (0, None):
                run.reason = f"crash (rc {rec.get('rc')})"
            elif child is None or not child.get("substituted_reads"):
                run.reason = "variant not served (the child swapped no validation read)"
            elif child.get("unsupported"):
                run.reason = f"variant partly served ({child['unsupported'][0]})"
            elif (why := _unswapped_read(parent_reads, cd)) is not None:
                run.reason = f"variant partly served ({why})"
            elif chosen is None:
                run.reason = "no_score"
            else:
                run.ok, run.reason = True, "ok"
            if chosen is not None:
                run.val_loss, run.val_bpb, run.line = chosen.val_loss, chosen.val_bpb, chosen.line
            if run.ok:
                printed = (chosen.tag, chosen.val_loss, chosen.val_bpb, chosen.line)
                run.take(reported_scores(cd, printed, v.tokens, self.pos_bytes_of(v.tokens), *self.tol))
            runs[i] = run
        unserved = [i for i, r in runs.items() if i and r.reason.startswith("variant ")]
        if unserved:
            # the script read validation by a path the fork server cannot swap: serve those streams as files
            self.cost.notes.append(f"{len(unserved)} fork variant(s) not served through a tagged validation read; "
                                   "ran them as runs of their own")
            for i in unserved:
                del runs[i]
        return runs, unserved


def _read_events(ledger_dir: Path) -> list[dict[str, Any]]:
    """`read` events of the rank-0 process ledger (validation entering the process)."""
    out = []
    for f in sorted(ledger_dir.glob("ledger.rank*.jsonl")):
        for line in _read_text(f).splitlines():
            if '"kind":"read"' in line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    return out


def _unswapped_read(parent_reads: list[dict[str, Any]], child_dir: Path) -> str | None:
    """A validation read the child's tokens cannot have come through: an untagged read (bytes, a path
    no hook tags) not followed in the same process lineage by a tagged read covering it. The lineage is
    the parent's reads before the fork, then the child's own."""
    child = _read_events(child_dir)
    t_fork = min((float(e.get("t", 0.0)) for e in child), default=None)
    before = [e for e in parent_reads if t_fork is None or float(e.get("t", 0.0)) < t_fork]
    seq = before + child
    for i, e in enumerate(seq):
        if e.get("tagged"):
            continue
        lo, hi = int(e.get("lo", 0)), int(e.get("hi", 0))
        later = sorted((int(x.get("lo", 0)), int(x.get("hi", 0))) for x in seq[i + 1:] if x.get("tagged"))
        cur = lo
        for a, b in later:
            if a <= cur < b:
                cur = b
        if cur < hi:
            return f"an untagged read of positions {lo}..{hi} via {e.get('how', '?')} at {e.get('site', '?')}"
    return None


def _read_json(p: Path) -> dict[str, Any] | None:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------- stand-ins (tests, bench)


class ModelExecutor:
    """Variants scored by a Python predictor: score_fn(tokens) -> per-position NLL array (index = position,
    entry 0 unused). The printed val_loss is rounded to `decimals` like a score line would be."""

    def __init__(self, score_fn: Callable[[np.ndarray], np.ndarray], decimals: int = 8, trusted_scores: bool = True,
                 description: str = "stand-in model") -> None:
        self.score_fn = score_fn
        self.decimals = decimals
        self.trusted_scores = trusted_scores
        self.description = description
        self.cost = SessionCost()

    def run(self, variants: Sequence[Variant]) -> list[VariantRun]:
        out = []
        for v in variants:
            t0 = time.time()
            nll = np.asarray(self.score_fn(np.asarray(v.tokens)), dtype=np.float64)
            n = v.tokens.size - 1
            loss = round(float(np.sum(nll[1:n + 1]) / n), self.decimals)
            line = f"final_exact val_loss:{loss:.{self.decimals}f} val_bpb:0.0"
            r = VariantRun(v.name, v.purpose, n, ok=True, reason="ok", val_loss=loss, val_bpb=0.0, line=line,
                           wall_s=time.time() - t0, how="model")
            if self.trusted_scores:
                r.scores = {p: float(nll[p]) for p in range(1, n + 1)}
                r.score_note = "stand-in"
                order_fn = getattr(self.score_fn, "score_order", None)  # an out-of-stream-order stand-in
                if order_fn is not None:
                    ranks = np.asarray(order_fn(np.asarray(v.tokens)))
                    r.orders = {p: int(ranks[p]) for p in range(1, n + 1)}
            else:
                r.score_note = "untraced stand-in"
            out.append(r)
            self.cost.variants += 1
        return out
