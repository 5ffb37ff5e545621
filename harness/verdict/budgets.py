"""B2 / B3: training and evaluation wall clock (rules/budgets.toml).

At tiny scale (CPU, shrunk model) the times say nothing about 8xH100: the result is informational.
At full scale the budgets decide: the runner's budget kill, or phases longer than the allowance.
Phase marks come from the ledger's `phase` events (train_start, train_end, eval_start, eval_end),
or from the run result's `phases`; missing marks fall back to the run's own landmarks: run_start,
the first artifact_write (the end of training), the reported line or run_end (the end of evaluation).

Late training reads (any scale): training-data reads after the script's own training clock stopped (its
last printed train_time / wall-clock-cap line, a `train_clock` phase event) and before the artifact is
written are training time the script's log does not count (GPTQ / Hessian calibration after the loop).
With a claimed run (the folder's logs: `claimed_training`, passed in by the command layer) that states
training at or near the cap, they FAIL B2; when the log states a reserve the loop left for them, or
the stated time leaves room, B2 PASSes and says why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.ledger import Ledger
from harness.results import Evidence, Finding, RuleResult, Status

_DURATION_KEYS = {"train": ("train_s", "train", "train_seconds"), "eval": ("eval_s", "eval", "eval_seconds")}


@dataclass
class Timing:
    train_s: float | None
    eval_s: float | None
    last_train_read_s: float | None  # seconds after the training start
    source: str


def _marks_from(phases: Any) -> tuple[dict[str, float], dict[str, float]]:
    """(marks name -> t, durations kind -> seconds) from a run result's phases, whatever its shape."""
    marks: dict[str, float] = {}
    durations: dict[str, float] = {}
    if isinstance(phases, Mapping):
        for k, v in phases.items():
            if not isinstance(v, (int, float)):
                continue
            key = str(k)
            for kind, names in _DURATION_KEYS.items():
                if key in names:
                    durations[kind] = float(v)
            if key.endswith(("_start", "_end")):
                marks[key] = float(v)
    elif isinstance(phases, (list, tuple)):
        for item in phases:
            if isinstance(item, Mapping) and isinstance(item.get("t"), (int, float)):
                marks[str(item.get("name"))] = float(item["t"])
            elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], (int, float)):
                marks[str(item[0])] = float(item[1])
    return marks, durations


def timing(ledger: Ledger, phases: Any = None) -> Timing:
    marks, durations = _marks_from(phases)
    for ev in ledger.of("phase"):
        if isinstance(ev.get("t"), (int, float)) and ev.get("name"):
            marks.setdefault(str(ev["name"]), float(ev["t"]))

    def t_of(kind: str, last: bool = False) -> float | None:
        evs = [e for e in ledger.of(kind) if isinstance(e.get("t"), (int, float))]
        if not evs:
            return None
        return float((evs[-1] if last else evs[0])["t"])

    start = marks.get("train_start", t_of("run_start") or 0.0)
    train_end = marks.get("train_end", t_of("artifact_write"))
    eval_start = marks.get("eval_start", train_end)
    eval_end = marks.get("eval_end", t_of("reported", last=True) or t_of("run_end"))
    train_s = durations.get("train", (train_end - start) if train_end is not None else None)
    eval_s = durations.get("eval", (eval_end - eval_start) if eval_end is not None and eval_start is not None
                           else None)
    reads = [float(e["t"]) for e in ledger.of("train_read") if isinstance(e.get("t"), (int, float))]
    last_read = (max(reads) - start) if reads else None
    src = "phase marks" if marks or durations else "run landmarks"
    return Timing(train_s, eval_s, last_read, src)


# ------------------------------------------------------------------ the claimed run's stated clock

PIPE_LAG_S = 0.05  # stdout pipe delay allowed between the script printing its clock line and the parent
_TRAIN_TIME = re.compile(r"train_time\s*[:=]\s*([\d.]+)\s*(ms|s)\b")
_RESERVE = re.compile(r"reserv\w*\D{0,40}?([\d.]+)\s*(ms|s|sec|seconds)\b", re.I)
_TOOK = re.compile(r"(?:calibrat|hessian|gptq)\w*.*?\bin\s+([\d.]+)\s*(ms|s)\b", re.I)


def _secs(v: str, unit: str) -> float:
    x = float(v)
    return x / 1000.0 if unit.lower() == "ms" else x


@dataclass
class ClaimedTraining:
    """What a claimed run's log states about its training clock (the worst log: the latest stop)."""

    train_s: float  # the stated train_time where the loop stopped
    log: str  # the log's file name
    line_no: int | None = None
    line: str = ""  # the log line that states it
    reserve_s: float | None = None  # a reserve the script says it kept for work after the loop
    reserve_line: str = ""
    after_s: float | None = None  # how long the log says the post-loop calibration took
    after_line: str = ""

    def where(self) -> str:
        return f"{self.log}:{self.line_no}" if self.line_no else self.log


def _scan_log(path: str, train_ms: float) -> dict[str, Any]:
    """The line stating train_ms (the last such), and any reserve / calibration-duration lines."""
    out: dict[str, Any] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for no, raw in enumerate(f, 1):
                line = raw.strip()
                if len(line) > 2000:
                    continue
                m = _TRAIN_TIME.search(line)
                if m and abs(_secs(m.group(1), m.group(2)) * 1000.0 - train_ms) < 1.0:
                    out["line_no"], out["line"] = no, line
                if "reserv" in line.lower() and (r := _RESERVE.search(line)):
                    out["reserve_s"] = _secs(r.group(1), "ms" if r.group(2).lower() == "ms" else "s")
                    out["reserve_line"] = f"{Path(path).name}:{no}: {line}"
                if "train_time" not in line and (c := _TOOK.search(line)):
                    out["after_s"], out["after_line"] = _secs(c.group(1), c.group(2)), f"{Path(path).name}:{no}: {line}"
    except OSError:
        pass
    return out


def claimed_training(logs: Iterable[Any] | None) -> ClaimedTraining | None:
    """The claimed runs' stated training clock, from the check stage's parsed logs (LogSummary objects or
    their report dicts: path, train_time_ms). None when no log states a training time."""
    best: tuple[float, str] | None = None
    for lg in logs or ():
        ms = lg.get("train_time_ms") if isinstance(lg, Mapping) else getattr(lg, "train_time_ms", None)
        path = lg.get("path") if isinstance(lg, Mapping) else getattr(lg, "path", None)
        if isinstance(ms, (int, float)) and path and (best is None or ms > best[0]):
            best = (float(ms), str(path))
    if best is None:
        return None
    ms, path = best
    info = _scan_log(path, ms)
    return ClaimedTraining(ms / 1000.0, os.path.basename(path), info.get("line_no"), info.get("line", ""),
                           info.get("reserve_s"), info.get("reserve_line", ""), info.get("after_s"),
                           info.get("after_line", ""))


# ------------------------------------------------------------------ reads after the script's clock stopped


@dataclass
class LateReads:
    clock_t: float  # harness time of the script's last training-clock line
    clock_line: str
    artifact_t: float
    reads: list[dict[str, Any]] = field(default_factory=list)  # train_read events between the two

    @property
    def count(self) -> int:
        return sum(int(e.get("coalesced") or 1) for e in self.reads)

    def by_site(self) -> list[tuple[str, int, str]]:
        """(file:line, reads, shard files) per site, most reads first."""
        sites: dict[str, list[Any]] = {}
        for e in self.reads:
            s = sites.setdefault(str(e.get("site") or "?"), [0, []])
            s[0] += int(e.get("coalesced") or 1)
            f = os.path.basename(str(e.get("file", "")))
            if f and f not in s[1]:
                s[1].append(f)
        return sorted(((k, v[0], ", ".join(v[1][:3])) for k, v in sites.items()), key=lambda x: -x[1])

    def describe(self) -> str:
        parts = [f"{site} x{n} ({files})" for site, n, files in self.by_site()[:3]]
        t0 = min(float(e["t"]) for e in self.reads)
        t1 = max(float(e["t"]) for e in self.reads)
        return (f"{self.count} training-data reads at {'; '.join(parts)} between t={t0:.2f}s and t={t1:.2f}s, "
                f"after the script's training clock stopped (t={self.clock_t:.2f}s: \"{self.clock_line[:120]}\") "
                f"and before the artifact was written (t={self.artifact_t:.2f}s)")


def late_train_reads(ledger: Ledger) -> LateReads | None:
    """Training reads after the script's last training-clock line and before the first artifact write."""
    clocks = [(float(e["t"]), str(e.get("line", ""))) for e in ledger.events
              if isinstance(e.get("t"), (int, float)) and (
                  (e["kind"] == "phase" and e.get("name") == "train_clock")
                  or (e["kind"] == "stdout" and _TRAIN_TIME.search(str(e.get("line", "")))))]
    arts = [float(e["t"]) for e in ledger.of("artifact_write") if isinstance(e.get("t"), (int, float))]
    if not clocks or not arts:
        return None
    art = min(arts)
    before = [c for c in clocks if c[0] <= art]
    if not before:
        return None
    ct, cl = max(before)
    # the clock line is stamped when the parent receives it through the pipe, a few ms after the child printed
    # it; a read in that lag already follows the print (a training step's compute separates its reads from it)
    reads = [e for e in ledger.of("train_read")
             if isinstance(e.get("t"), (int, float)) and ct - PIPE_LAG_S < float(e["t"]) <= art]
    return LateReads(ct, cl, art, reads)


def _late_reads_row(rule_id: str, late: LateReads | None, claimed: ClaimedTraining | None,
                    params: Mapping[str, Any]) -> RuleResult | None:
    """B2 decided by the late reads and the claimed run's clock; None when there is nothing to say."""
    if late is None:
        return None
    if not late.reads:
        said = (f"no training-data read between the script's training clock stop (t={late.clock_t:.2f}s) and the "
                f"artifact (t={late.artifact_t:.2f}s)")
        if claimed is not None and claimed.reserve_s:
            said += f"; the log reserves {claimed.reserve_s:.1f} s after the loop (\"{claimed.reserve_line[:100]}\")"
        return RuleResult(rule_id, "", Status.PASS, said, [], checker="run")
    limit = float(params["max_seconds"])
    grace = float(params["grace_seconds"])
    near = float(params["near_cap_seconds"])
    ev = [Evidence(where=site, time_s=None, detail=f"{n} training reads ({files}) after the training clock stopped")
          for site, n, files in late.by_site()[:3]]
    what = late.describe()
    if claimed is None:
        return RuleResult(rule_id, "", Status.WARN, f"{late.count} training reads after the script's training "
                          "clock stopped, before the artifact: training time its log does not count (no claimed "
                          "run's log to size them)", [Finding(rule_id, Status.WARN, what + ".", ev)], checker="run",
                          severity="info")
    stated = f"{claimed.where()} states train_time {claimed.train_s:.1f} s" + (
        f" (\"{claimed.line[:140]}\")" if claimed.line else "")
    ev.append(Evidence(where=claimed.where(), time_s=claimed.train_s, detail=claimed.line[:200] or "stated train time"))
    room = limit - claimed.train_s
    extra = ""
    if claimed.after_s is not None:
        ev.append(Evidence(detail=claimed.after_line[:200], time_s=claimed.after_s))
        extra = f"; the log says the work after the loop took {claimed.after_s:.1f} s"
    over = claimed.after_s is not None and claimed.train_s + claimed.after_s > limit + grace
    if claimed.reserve_s is not None and claimed.reserve_s > 0 and room >= 0 and not over:
        ev.append(Evidence(detail=claimed.reserve_line[:200], time_s=claimed.reserve_s))
        msg = (f"inside a reserved budget: the loop stopped at {claimed.train_s:.1f} s, leaving {room:.1f} s of the "
               f"{limit:.0f} s for the {late.count} training reads after it (the log states a {claimed.reserve_s:.1f} s "
               f"reserve: \"{claimed.reserve_line[:120]}\"){extra}")
        return RuleResult(rule_id, "", Status.PASS, msg, [Finding(rule_id, Status.PASS, what + "; " + msg, ev)],
                          checker="run")
    if over or room <= near:
        why = (f"the {late.count} reads after it are training time the log does not count, past the {limit:.0f} s "
               f"budget" + (f" ({claimed.train_s:.1f} + {claimed.after_s:.1f} s)" if over else
                             f" (the stated clock is within {near:.0f} s of the cap, no reserve stated)"))
        msg = f"training data read after the training clock stopped at the cap: {stated}; {why}"
        return RuleResult(rule_id, "", Status.FAIL, msg, [Finding(rule_id, Status.FAIL, what + f"; {stated}: {why}.",
                                                                  ev)], checker="run")
    msg = (f"the {late.count} training reads after the loop fit: {stated}, {room:.1f} s before the {limit:.0f} s "
           f"cap{extra}")
    return RuleResult(rule_id, "", Status.PASS, msg, [Finding(rule_id, Status.PASS, what + "; " + msg, ev)],
                      checker="run")


def _killed_for(reason: str | None, kind: str) -> bool:
    r = (reason or "").lower()
    if "budget" not in r:
        return False
    other = "eval" if kind == "train" else "train"
    return kind in r or other not in r


def check_budget(
    rule_id: str, kind: str, tm: Timing, params: Mapping[str, Any], scale: str | None, reason: str | None,
    late: LateReads | None = None, claimed: ClaimedTraining | None = None,
) -> RuleResult:
    row = check_time(rule_id, kind, tm, params, scale, reason)
    if kind != "train":
        return row
    lr = _late_reads_row(rule_id, late, claimed, params)
    if lr is None:
        return row
    if row.status is Status.FAIL or (lr.status is Status.WARN and row.status is not Status.PASS):
        return row
    if lr.status is Status.PASS and not lr.findings:  # nothing read after the clock: the reason, said once
        return RuleResult(rule_id, "", row.status, f"{lr.summary}; {row.summary}", row.findings, checker="run",
                          severity=row.severity)
    if lr.status is Status.PASS or lr.status is Status.WARN:
        # the clock's own row stays (informational at tiny scale); the late reads' reason is added
        return RuleResult(rule_id, "", lr.status if lr.status is Status.WARN else row.status,
                          f"{lr.summary}; {row.summary}", lr.findings + row.findings, checker="run",
                          severity=lr.severity if lr.status is Status.WARN else row.severity)
    return lr


def check_time(
    rule_id: str, kind: str, tm: Timing, params: Mapping[str, Any], scale: str | None, reason: str | None
) -> RuleResult:
    seconds = tm.train_s if kind == "train" else tm.eval_s
    limit = float(params["max_seconds"])
    allow = float(params["grace_seconds"])
    if kind == "train":
        allow += float(params["compile_allowance_seconds"])
    fig = f"{kind} {seconds:.1f} s" if seconds is not None else f"{kind} time unknown"
    if scale != "full":
        if seconds is None:
            return RuleResult(rule_id, "", Status.WARN, f"{fig} (no phase marks recorded); tiny-scale run, "
                              f"the {limit:.0f} s budget applies to full-scale 8xH100 runs", checker="run",
                              severity="info")
        return RuleResult(rule_id, "", Status.PASS, f"{fig} at tiny scale ({tm.source}): informational, the "
                          f"{limit:.0f} s budget applies to full-scale 8xH100 runs", checker="run", severity="info")
    findings: list[Finding] = []
    if _killed_for(reason, kind):
        findings.append(Finding(rule_id, Status.FAIL, f"the runner stopped the run for its {kind} budget "
                                f"({reason}).", [Evidence(detail=str(reason))]))
    if seconds is not None and seconds > limit + allow:
        findings.append(Finding(rule_id, Status.FAIL, f"{kind} took {seconds:.1f} s, over the {limit:.0f} s budget "
                                f"(+{allow:.0f} s allowance).", [Evidence(time_s=seconds, detail=tm.source)]))
    if kind == "train" and tm.last_train_read_s is not None and tm.last_train_read_s > limit + allow:
        findings.append(Finding(rule_id, Status.FAIL, f"training data was still read {tm.last_train_read_s:.1f} s "
                                f"after training started: reads of training data must finish inside the budget.",
                                [Evidence(time_s=tm.last_train_read_s)]))
    if findings:
        return RuleResult(rule_id, "", Status.FAIL, findings[0].message, findings, checker="run")
    if seconds is None:
        return RuleResult(rule_id, "", Status.INCONCLUSIVE, f"{fig}: no phase marks to measure it", checker="run")
    return RuleResult(rule_id, "", Status.PASS, f"{fig} within {limit:.0f} s (+{allow:.0f} s) ({tm.source})",
                      checker="run")
