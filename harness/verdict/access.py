"""D1-D3 and B4: when each data source was read, and no outside data (rules/data_access.toml).

The line between training and evaluation is the first `artifact_write`: the artifact is what
training produced, everything after it is evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from harness.results import Evidence, Finding, RuleResult, Status
from harness.verdict.analysis import Analysis

# Subprocesses that fetch data: a download is outside data even when the socket hook missed it.
_FETCHERS = {"curl", "wget", "aria2c", "scp", "rsync", "ssh", "huggingface-cli", "hf", "gsutil", "aws"}
_FETCH_ARGS = {("git", "clone"), ("git", "fetch"), ("git", "pull"), ("pip", "install"), ("pip3", "install")}


def _first_index(an: Analysis, kind: str) -> int | None:
    return next((i for i, e in enumerate(an.ledger.events) if e["kind"] == kind), None)


def _t(ev: Mapping[str, Any]) -> float | None:
    t = ev.get("t")
    return float(t) if isinstance(t, (int, float)) else None


def _artifact_line(an: Analysis) -> tuple[int, dict[str, Any]] | None:
    i = _first_index(an, "artifact_write")
    return (i, an.ledger.events[i]) if i is not None else None


def _hooks_missing(an: Analysis, rule_id: str) -> RuleResult | None:
    why = an.part_failed("io_hooks")
    if why is None:
        return None
    return RuleResult(rule_id, "", Status.INCONCLUSIVE, f"the I/O hooks did not start ({why}): data access unobserved",
                      checker="run")


def check_d1(an: Analysis, params: Mapping[str, Any]) -> RuleResult:
    if (miss := _hooks_missing(an, "D1")) is not None:
        return miss
    reads = [(i, e) for i, e in enumerate(an.ledger.events) if e["kind"] == "read"]
    if not reads:
        return RuleResult("D1", "", Status.INCONCLUSIVE,
                          "validation never observed: no read event", checker="run")
    art = _artifact_line(an)
    if art is None:
        return RuleResult("D1", "", Status.INCONCLUSIVE,
                          "no artifact was written, so validation reads cannot be placed before or after it",
                          checker="run")
    ai, aev = art
    at = _t(aev) or 0.0
    findings: list[Finding] = []
    # 1. the artifact itself depends on validation positions (a tracer that tags saved tensors)
    for i, e in enumerate(an.ledger.events):
        if e["kind"] == "artifact_write" and isinstance(e.get("lo"), int) and isinstance(e.get("hi"), int):
            findings.append(Finding("D1", Status.FAIL,
                                    f"the artifact written at {e.get('site') or '?'} (t={_t(e) or 0:.2f}s) depends on "
                                    f"validation positions {e['lo']}..{e['hi']}: validation shaped the model.",
                                    [Evidence(where=e.get("site"), positions=[e["lo"]], events=[e.get("seq", 0)],
                                              time_s=_t(e), detail=f"{e.get('path', '')}")]))
            break
    # 2. a state change from validation positions before the artifact: training or calibrating on it
    early = [u for u in an.all_updates if u.order < ai]
    if early:
        u = early[0]
        lo = min(x.lo for x in early)
        hi = max(x.hi for x in early)
        findings.append(Finding(
            "D1", Status.FAIL,
            f"validation positions {u.lo}..{u.hi} were used in {u.what()} at {u.site or '?'} (t={u.t:.2f}s) before "
            f"the artifact was written (t={at:.2f}s): training or calibrating on validation "
            f"({len(early)} such updates, positions {lo}..{hi}).",
            [Evidence(where=x.site, positions=[x.lo], events=[x.seq], time_s=x.t,
                      detail=f"{x.target} {x.op} over {x.lo}..{x.hi}") for x in early[:3]]))
    early_reads = [(i, e) for i, e in reads if i < ai]
    if not findings and early_reads:
        i0, e0 = early_reads[0]
        span = f"positions {e0.get('lo')}..{e0.get('hi')}" if "lo" in e0 else "tokens"
        policy = str(params["early_read"]).lower()
        if policy == "fail":
            status = Status.FAIL
            tail = "the rule requires every validation read after the artifact."
        elif an.tracing:
            status = Status.WARN
            tail = ("no traced state change used it before the artifact (an early load or a diagnostic eval is "
                    "legal; calibrating on it is not).")
        else:
            status = Status.INCONCLUSIVE
            tail = "the run was not traced (or the tracer did not start), so whether it shaped the artifact is unknown."
        findings.append(Finding(
            "D1", status,
            f"validation ({span} of {os.path.basename(str(e0.get('file', '?')))}) was read at {e0.get('site') or '?'} "
            f"(t={_t(e0) or 0:.2f}s) before the artifact was written (t={at:.2f}s); {tail}",
            [Evidence(where=e.get("site"), events=[e.get("seq", 0)], time_s=_t(e),
                      detail=f"{e.get('file', '')} [{e.get('lo')}, {e.get('hi')})") for _, e in early_reads[:3]]))
    if not findings:
        return RuleResult("D1", "", Status.PASS,
                          f"all {len(reads)} validation reads after the artifact (t={at:.2f}s)"
                          + ("; no update on validation before it" if an.tracing else ""), checker="run")
    status = max((f.status for f in findings), key=lambda s: s.rank)
    return RuleResult("D1", "", status, findings[0].message.split(": ")[0], findings, checker="run")


def check_d2(an: Analysis) -> RuleResult:
    if (miss := _hooks_missing(an, "D2")) is not None:
        return miss
    train = [(i, e) for i, e in enumerate(an.ledger.events) if e["kind"] == "train_read"]
    if not train:
        return RuleResult("D2", "", Status.INCONCLUSIVE,
                          "no training-data read observed (the script read it by a path the harness does not see)",
                          checker="run")
    art = _artifact_line(an)
    if art is None:
        return RuleResult("D2", "", Status.INCONCLUSIVE,
                          "no artifact was written, so training reads cannot be placed before or after it",
                          checker="run")
    ai, aev = art
    late = [(i, e) for i, e in train if i > ai]
    if not late:
        return RuleResult("D2", "", Status.PASS,
                          f"all {len(train)} training reads before the artifact (t={_t(aev) or 0:.2f}s)", checker="run")
    _, e0 = late[0]
    msg = (f"training data ({os.path.basename(str(e0.get('file', '?')))}) was read at {e0.get('site') or '?'} "
           f"(t={_t(e0) or 0:.2f}s) after the artifact was written (t={_t(aev) or 0:.2f}s): training data at "
           f"evaluation time ({len(late)} reads).")
    return RuleResult("D2", "", Status.FAIL, f"{len(late)} training reads after the artifact",
                      [Finding("D2", Status.FAIL, msg,
                               [Evidence(where=e.get("site"), events=[e.get("seq", 0)], time_s=_t(e),
                                         detail=str(e.get("file", ""))) for _, e in late[:3]])], checker="run")


def _is_fetch(argv: Any) -> bool:
    if not isinstance(argv, list) or not argv:
        return False
    words = [os.path.basename(str(a)) for a in argv]
    if words[0] in _FETCHERS:
        return True
    if len(words) > 1 and (words[0], words[1]) in _FETCH_ARGS:
        return True
    # python -m pip install ...
    return len(words) > 3 and words[0].startswith("python") and words[1:4] == ["-m", "pip", "install"]


def check_d3(an: Analysis) -> RuleResult:
    if (miss := _hooks_missing(an, "D3")) is not None:
        return miss
    nets = [e for e in an.ledger.of("net")]
    fetch = [e for e in an.ledger.of("subprocess") if _is_fetch(e.get("argv"))]
    if nets or fetch:
        findings = []
        if nets:
            e = nets[0]
            findings.append(Finding(
                "D3", Status.FAIL,
                f"a network connection to {e.get('host', '?')}:{e.get('port', '?')} was attempted at "
                f"{e.get('site') or '?'} (t={_t(e) or 0:.2f}s){' and blocked' if e.get('blocked', True) else ''}: "
                f"no network or download is allowed ({len(nets)} attempts).",
                [Evidence(where=x.get("site"), events=[x.get("seq", 0)], time_s=_t(x),
                          detail=f"{x.get('host')}:{x.get('port')}") for x in nets[:3]]))
        if fetch:
            e = fetch[0]
            findings.append(Finding(
                "D3", Status.FAIL,
                f"a download command ({' '.join(map(str, e.get('argv', [])[:4]))}) was started at "
                f"{e.get('site') or '?'} (t={_t(e) or 0:.2f}s): no downloads are allowed.",
                [Evidence(where=x.get("site"), events=[x.get("seq", 0)], time_s=_t(x),
                          detail=" ".join(map(str, x.get("argv", [])[:6]))) for x in fetch[:3]]))
        return RuleResult("D3", "", Status.FAIL, f"{len(nets)} network attempts, {len(fetch)} download commands",
                          findings, checker="run")
    if an.ledger.first("run_start") is None:
        return RuleResult("D3", "", Status.INCONCLUSIVE, "the run's I/O hooks left no record (no run_start)",
                          checker="run")
    return RuleResult("D3", "", Status.PASS, "no network attempt, no download command", checker="run")


def check_b4(d2: RuleResult, d3: RuleResult) -> RuleResult:
    parts = {"D2": d2, "D3": d3}
    failed = [k for k, r in parts.items() if r.status is Status.FAIL]
    if failed:
        findings = [Finding("B4", Status.FAIL, f.message, f.evidence) for k in failed for f in parts[k].findings
                    if f.status is Status.FAIL]
        return RuleResult("B4", "", Status.FAIL, "outside data at evaluation: " + "; ".join(
            f"{k} {parts[k].summary}" for k in failed), findings, checker="run")
    unsure = [k for k, r in parts.items() if r.status in (Status.INCONCLUSIVE, Status.NOT_RUN)]
    if unsure:
        return RuleResult("B4", "", Status.INCONCLUSIVE, "; ".join(f"{k}: {parts[k].summary}" for k in unsure),
                          checker="run")
    return RuleResult("B4", "", Status.PASS, "no training-data read after the artifact, no network", checker="run")
