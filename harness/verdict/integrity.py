"""Whether the trace can be trusted as evidence: the ledger channel, the runtime's tamper checks, the OS
witness. A problem found here turns the rules that rest on the trace from PASS (or WARN) into
INCONCLUSIVE with the reason; a FAIL stands (evidence of a violation is not weakened by tampering).

    channel  (parent)  gaps, a missing end-of-stream, events after it, forged frames, dropped score
                       events (fewer received than the tracer says it sent)          -> C1, C3, C4
    tamper   (child)   the script called the tracer's switches, left the dispatch mode, replaced the
                       ledger writer                                                  -> C1, C3, C4
    witness  (parent)  an open of a served validation file with no `read` event of that file near
                       it (read around the hooks: os.open, mmap, a link)              -> C1, C3, D1

Pure on a Ledger, so `harness verdict OUT_DIR` re-judges a saved run the same way. A saved run without
channel / witness events (an older run) is judged as before, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from harness.ledger import Ledger
from harness.results import Evidence, Finding, RuleResult, Status

TRACE_RULES = ("C1", "C3", "C4")
WITNESS_RULES = ("C1", "C3", "D1")
# an open is a hooked read's own when a `read` event of that file follows it within OPEN_BEFORE_READ_S (the
# read event is written once the tokens are read and tagged) or precedes it by at most OPEN_AFTER_READ_S. The
# parent knows an open only between `t_lo` (its watcher last saw no event waiting) and `t` (the watcher woke
# and read it): a loaded machine wakes the watcher late, so the whole interval is matched, its width capped
# at OPEN_LATENCY_MAX_S. A read around the hooks next to a hooked read of the same file is not told apart:
# a stated limit of the witness.
OPEN_BEFORE_READ_S = 2.0
OPEN_AFTER_READ_S = 0.5
OPEN_LATENCY_MAX_S = 5.0


@dataclass
class Integrity:
    problems: dict[str, list[Finding]] = field(default_factory=dict)  # rule id -> why not trusted
    notes: list[str] = field(default_factory=list)

    def add(self, rules: tuple[str, ...], message: str, ev: Evidence | None = None) -> None:
        for rid in rules:
            self.problems.setdefault(rid, []).append(
                Finding(rid, Status.INCONCLUSIVE, message, [ev] if ev is not None else []))


def check_integrity(ledger: Ledger) -> Integrity:
    out = Integrity()
    _channel(ledger, out)
    _tamper(ledger, out)
    _witness(ledger, out)
    return out


def _channel(ledger: Ledger, out: Integrity) -> None:
    evs = [e for e in ledger.of("channel") if e.get("rank", -1) == -1]
    if not evs:
        out.notes.append("protections: no ledger-channel record (a run from before the channel, or written by "
                         "hand): the ledger files are taken as they are")
        return
    ch = evs[-1]
    problems = [str(p) for p in ch.get("problems") or []]
    streams = ch.get("streams") or {}
    if problems:
        out.add(TRACE_RULES, f"the ledger channel is not whole: {problems[0]}"
                + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
                + "; the trace cannot be trusted as evidence",
                Evidence(time_s=ch.get("t"), detail="; ".join(problems[:5])))
    out.notes.extend(f"ledger channel: {n}" for n in (ch.get("notes") or [])[:5])
    n = sum(int(s.get("events", 0)) for s in streams.values() if isinstance(s, dict))
    out.notes.append(f"protections: ledger channel on ({len(streams)} process stream(s), {n} events"
                     + (", whole)" if not problems else f", {len(problems)} problem(s))"))


def _tamper(ledger: Ledger, out: Integrity) -> None:
    seen = set()
    for e in ledger.of("tamper"):
        key = (e.get("what"), e.get("detail"), e.get("site"))
        if key in seen:
            continue
        seen.add(key)
        out.add(TRACE_RULES, f"the script reached for the harness's own controls: {e.get('detail')}"
                + (f" at {e['site']}" if e.get("site") else "") + "; the trace cannot be trusted as evidence",
                Evidence(where=e.get("site") or None, events=[int(e.get("seq", -1))], time_s=e.get("t"),
                         detail=str(e.get("what"))))


def _witness(ledger: Ledger, out: Integrity) -> None:
    evs = list(ledger.of("witness"))
    if not evs:
        out.notes.append("protections: OS witness not recorded (a run from before it)")
        return
    w = evs[-1]
    if not w.get("active"):
        out.notes.append(f"protections: OS witness off: {w.get('note') or 'inotify unavailable'}")
        return
    reads: dict[str, list[float]] = {}
    for e in ledger.of("read"):
        if e.get("rank", 0) >= 0:
            reads.setdefault(str(e.get("file", "")), []).append(float(e.get("t", 0.0)))
    unmatched = [o for o in (w.get("opens") or []) if not _matched(o, reads)]
    n = int(w.get("n_opens", len(w.get("opens") or [])))
    kept = len(w.get("opens") or [])
    if unmatched:
        first = unmatched[0]
        out.add(WITNESS_RULES, f"{len(unmatched)} open(s) of the served validation file {first.get('file')} with no "
                f"validation read recorded near them, the first at t={float(first.get('t', 0)):.2f}s: the script "
                "read validation around the harness's hooks (os.open, mmap, a link), which the trace cannot see",
                Evidence(time_s=first.get("t"), detail=f"{len(unmatched)} of {n} opens unmatched"))
    elif n > kept:
        out.add(WITNESS_RULES, f"{n} opens of the served validation files, more than the {kept} the witness kept "
                "times for: not all could be matched with recorded reads")
    out.notes.append(f"protections: OS witness on ({n} open(s) of the served validation files, "
                     + (f"{len(unmatched)} unmatched)" if unmatched else "all matched with recorded reads)"))


def _matched(op: dict[str, Any], reads: dict[str, list[float]]) -> bool:
    t = float(op.get("t", 0.0))
    lo = float(op.get("t_lo", t))  # runs from before t_lo was kept: the wake-up time alone
    lo = min(t, max(lo, t - OPEN_LATENCY_MAX_S))
    return any(lo - OPEN_AFTER_READ_S <= r <= t + OPEN_BEFORE_READ_S for r in reads.get(str(op.get("file")), ()))


def apply(results: list[RuleResult], integ: Integrity) -> list[RuleResult]:
    """PASS / WARN rows whose evidence is not trusted become INCONCLUSIVE, with why first."""
    out = []
    for r in results:
        why = integ.problems.get(r.rule_id)
        if why and r.status in (Status.PASS, Status.WARN):
            r = replace(r, status=Status.INCONCLUSIVE, summary=f"{why[0].message.split(';')[0]}; was: {r.summary}",
                        findings=list(why) + list(r.findings))
        out.append(r)
    return out


__all__ = ["Integrity", "apply", "check_integrity"]
