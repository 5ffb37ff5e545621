"""C1-C4 over the reported pass (RULES.md "Legality of evaluation", DESIGN.md "The ledger")."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.data.shards import BOS_ID

from harness.results import Evidence, Finding, RuleResult, Status
from harness.verdict.analysis import Analysis
from harness.verdict.passes import last_consume_before_print

SHOW = 10  # offending positions listed per finding


def _where(ev: Mapping[str, Any]) -> str | None:
    return ev.get("site")


def _t(ev: Mapping[str, Any]) -> float | None:
    t = ev.get("t")
    return float(t) if isinstance(t, (int, float)) else None


def _at(ev: Mapping[str, Any]) -> str:
    site = ev.get("site") or "an unknown site"
    t = _t(ev)
    return f"{site} (t={t:.2f}s)" if t is not None else site


def _rank_note(ev: Mapping[str, Any], an: Analysis) -> str:
    return f"rank {ev.get('rank', 0)}" if an.multi_rank else ""


def _ints(a: np.ndarray | Sequence[int]) -> list[int]:
    return [int(x) for x in list(a)[:SHOW]]


def blocker(an: Analysis) -> tuple[Status, str, str] | None:
    """(status, code, summary) when the trace cannot speak about the reported pass, else None."""
    if an.traced is False:
        return Status.NOT_RUN, "untraced", "run without the token-access tracer"
    why = an.part_failed("tracer")
    if why is not None:
        if why.startswith("incomplete:"):
            return (Status.INCONCLUSIVE, "no_tracer",
                    f"the token-access tracer ran but its trace is incomplete ({why[len('incomplete:'):].strip()})")
        return Status.INCONCLUSIVE, "no_tracer", f"the token-access tracer did not start ({why})"
    if not any(True for _ in an.ledger.of("read")):
        return (Status.INCONCLUSIVE, "no_reads", "validation never observed: no read event (the script read it "
                "by a path the harness does not see)")
    if an.tables.n == 0:
        return (Status.INCONCLUSIVE, "no_scores",
                "no per-token scores recorded: the tracer saw no NLL computed on validation")
    if an.printed is None:
        return (Status.INCONCLUSIVE, "no_printed",
                "the script printed no final val_loss / val_bpb line: no reported pass to check")
    if an.search is None or an.search.match is None:
        why = "no pass matches the printed score: the reported pass could not be identified"
        if an.stats.escapes or an.stats.imprecise_targets:
            why += f" ({an.stats.line()}: the reported value may have left the trace)"
        return Status.INCONCLUSIVE, "no_match", why
    return None


def precondition(an: Analysis, rule_id: str) -> RuleResult | None:
    b = blocker(an)
    return RuleResult(rule_id, "", b[0], b[2], checker="trace") if b else None


def _pass_desc(an: Analysis) -> str:
    m = an.search.match  # type: ignore[union-attr]
    return f"pass: {m.rows.size} scores from {m.cand.label}"


def check_c1(an: Analysis) -> RuleResult:
    pre = precondition(an, "C1")
    if pre is not None:
        return pre
    tb = an.tables
    rows = an.pass_rows
    assert rows is not None
    pos, dep = tb.pos[rows], tb.dep[rows]
    bad = rows[(dep >= 0) & (dep >= pos)]
    untraced = rows[(dep < 0) & (pos >= 1)]
    findings: list[Finding] = []
    proven = an.dependence_proven(bad)
    bad, hull_only = bad[proven], bad[~proven]
    hull_only, replayed, boundary, rproven = _replay_split(an, hull_only, "c1")
    if replayed.size or boundary.size:
        findings.append(_replay_finding(an, "C1", replayed, boundary, rows.size))
    if rproven.size:
        findings.append(_replay_fail(an, "C1", rproven, rows.size))
    if hull_only.size:
        r0 = int(hull_only[np.argmin(tb.pos[hull_only])])
        e = an.event(int(tb.order[r0]))
        p, d = int(tb.pos[r0]), int(tb.dep[r0])
        findings.append(Finding(
            "C1", Status.INCONCLUSIVE,
            f"position {p} was scored from a value that depends on positions up to {d}, which the reported pass "
            f"had already scored (state trained on scored documents from later in the stream); whether it also "
            f"depends on unscored positions between {p} and {d} is not decided, as provenance keeps one interval "
            f"per value ({hull_only.size} of {rows.size} scores).",
            [Evidence(where=_where(e), positions=_ints(np.sort(tb.pos[hull_only])), events=[int(e.get("seq", 0))],
                      time_s=_t(e), detail=f"dep {d} (scored before this score)")]))
    if bad.size:
        by_event: dict[int, list[int]] = {}
        for r in bad[np.argsort(tb.pos[bad], kind="stable")]:
            by_event.setdefault(int(tb.order[r]), []).append(int(r))
        first_r = int(bad[np.argmin(tb.pos[bad])])
        ev = an.event(int(tb.order[first_r]))
        p, d = int(tb.pos[first_r]), int(tb.dep[first_r])
        what = "the target itself" if d == p else f"a later position ({d})"
        msg = (f"position {p} was scored from a value that depends on {what}, beyond selecting its "
               f"probability, at {_at(ev)}: the distribution looked at the target or the future "
               f"({bad.size} of {rows.size} scores).")
        evidence = []
        for order, rs in list(by_event.items())[:3]:
            e = an.event(order)
            evidence.append(Evidence(
                where=_where(e), positions=_ints(tb.pos[rs]), events=[int(e.get("seq", 0))], time_s=_t(e),
                detail="; ".join(x for x in (f"dep {', '.join(str(int(tb.dep[r])) for r in rs[:5])}",
                                             f"op {e.get('op')}" if e.get("op") else "",
                                             _rank_note(e, an)) if x)))
        findings.append(Finding("C1", Status.FAIL, msg, evidence))
    if untraced.size:
        r0 = int(untraced[0])
        e = an.event(int(tb.order[r0]))
        findings.append(Finding(
            "C1", Status.INCONCLUSIVE,
            f"{untraced.size} scores of the reported pass carry no dependence (their inputs were not traced), "
            f"so what they looked at is unknown.",
            [Evidence(where=_where(e), positions=_ints(np.sort(tb.pos[untraced])), events=[int(e.get("seq", 0))],
                      time_s=_t(e))]))
    findings.sort(key=lambda f: f.status is not Status.FAIL)  # the proven violation first
    if bad.size or rproven.size:
        status, summary = Status.FAIL, (f"{bad.size + rproven.size} scores depend on their target or later tokens"
                                        f"{' (score-order replay)' if rproven.size else ''}; {_pass_desc(an)}")
    elif untraced.size:
        status, summary = Status.INCONCLUSIVE, f"{untraced.size} of {rows.size} scores untraced; {_pass_desc(an)}"
    elif hull_only.size:
        status = Status.INCONCLUSIVE
        summary = (f"{hull_only.size} scores depend on later positions already scored; whether on unscored ones "
                   f"between is undecided; {_pass_desc(an)}")
    elif boundary.size:
        status = Status.WARN
        summary = (f"every score depends only on earlier positions or on positions scored before it, "
                   f"{boundary.size} through a later document's opening BOS (score-order replay); {_pass_desc(an)}")
    else:
        status = Status.PASS
        summary = "every score depends only on earlier positions" + (
            f" or on positions scored before it ({replayed.size} decided by the score-order replay)"
            if replayed.size else "") + f"; {_pass_desc(an)}"
    return RuleResult("C1", "", status, summary + f"; {an.stats.line()}", findings, checker="trace")


def _replay_split(an: Analysis, hull_only: np.ndarray, which: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(still undecided, cleared, cleared at the document level, proven) rows of `hull_only` by the
    score-order replay (harness.verdict.relabel); it decides only what this run left undecided."""
    rp = an.replay
    if rp is None or not rp.used or not hull_only.size:
        return hull_only, hull_only[:0], hull_only[:0], hull_only[:0]
    pos = an.tables.pos[hull_only]
    proven = np.isin(pos, np.fromiter(getattr(rp, f"{which}_proven"), np.int64))
    clear = np.isin(pos, np.fromiter(getattr(rp, f"{which}_clear"), np.int64)) & ~proven
    bound = np.isin(pos, np.fromiter(getattr(rp, f"{which}_boundary"), np.int64)) & ~clear & ~proven
    return hull_only[~clear & ~bound & ~proven], hull_only[clear], hull_only[bound], hull_only[proven]


def _replay_fail(an: Analysis, rule: str, proven: np.ndarray, n_rows: int) -> Finding:
    """A violation the score-order replay proved through a hull's end (a label the value surely used)."""
    tb = an.tables
    pos = np.sort(tb.pos[proven])
    detail = getattr(an.replay, f"{rule.lower()}_proven")
    first = detail.get(int(pos[0]), "")
    r0 = int(proven[np.argmin(tb.pos[proven])])
    e = an.event(int(tb.order[r0]))
    what = "a score depends on a later position not scored before it" if rule == "C1" else \
        "an update used a position before it was scored"
    return Finding(rule, Status.FAIL,
                   f"{what} ({proven.size} of {n_rows} positions), shown by a second run with positions relabeled "
                   f"in the order the pass scored them ({an.replay.why}): {first}.",
                   [Evidence(where=_where(e), positions=_ints(pos), events=[int(e.get("seq", 0))], time_s=_t(e),
                             detail="score-order replay")])


def _replay_finding(an: Analysis, rule: str, cleared: np.ndarray, boundary: np.ndarray, n_rows: int) -> Finding:
    """What the score-order replay decided: cleared rows (PASS), document-boundary rows (WARN)."""
    tb = an.tables
    what = ("depends on no position at or after it that was not scored before it" if rule == "C1" else
            "was touched by no update before its score")
    msg = (f"{cleared.size + boundary.size} of {n_rows} positions that one interval per value left undecided were "
           f"decided by a second run with positions relabeled in the order the pass scored them ({an.replay.why}): "
           f"{cleared.size} {what}")
    if boundary.size:
        msg += (f"; {boundary.size} only through a document's opening BOS (a separator read as that document's "
                f"first input) after that document began to be scored, as phased TTT does (accepted)")
    ev = [Evidence(positions=_ints(np.sort(tb.pos[x])), detail=d)
          for x, d in ((cleared, "decided by the replay"), (boundary, "document boundary")) if x.size]
    return Finding(rule, Status.WARN if boundary.size else Status.PASS, msg, ev)


def check_c3(an: Analysis) -> RuleResult:
    pre = precondition(an, "C3")
    if pre is not None:
        return pre
    tb = an.tables
    rows = an.pass_rows
    assert rows is not None
    bad = an.updated_before_scored()
    findings: list[Finding] = []
    bad, boundary = _split_boundary(an, bad)
    # proven: inside the range of an update one of whose ends the pass scored only after it; the rest lie
    # only inside ranges whose ends were scored first (undecided)
    proven = np.isin(bad, an.updated_before_scored_surely())
    bad, hull_only = bad[proven], bad[~proven]
    hull_only, replayed, rboundary, rproven = _replay_split(an, hull_only, "c3")
    if replayed.size or rboundary.size:
        findings.append(_replay_finding(an, "C3", replayed, rboundary, rows.size))
    if rproven.size:
        findings.append(_replay_fail(an, "C3", rproven, rows.size))
    if boundary.size:
        p0 = int(tb.pos[boundary[0]])
        e0 = an.event(int(tb.order[boundary[0]]))
        findings.append(Finding(
            "C3", Status.WARN,
            f"{boundary.size} document-boundary (BOS) position(s), first {p0}, were used as the first input of "
            f"the next document's update before being scored as the previous document's last target, but "
            f"their scores do not depend on that update (dep < position): separate per-document state, no "
            f"look at the target.",
            [Evidence(where=_where(e0), positions=_ints(np.sort(tb.pos[boundary])),
                      events=[int(e0.get("seq", 0))], time_s=_t(e0))]))
    if bad.size:
        # group offending rows by the earliest update that touched their position
        row_index = {int(r): i for i, r in enumerate(rows.tolist())}
        by_update: dict[int, list[int]] = {}
        for r in bad[np.argsort(tb.pos[bad], kind="stable")].tolist():
            by_update.setdefault(int(an.first_update[row_index[r]]), []).append(r)
        first_r = int(bad[np.argmin(tb.pos[bad])])
        sev = an.event(int(tb.order[first_r]))
        p = int(tb.pos[first_r])
        u, end = an.proof_of(p, int(tb.order[first_r]))
        sure = "" if end == p else (f" (it surely used position {end}, an end of its range {u.lo}..{u.hi}, "
                                    f"before {end} was scored)")
        msg = (f"position {p} was used in {u.what()} at {u.site or 'an unknown site'} (t={u.t:.2f}s) before it "
               f"was scored at {_at(sev)}{sure}; {bad.size} of {rows.size} scored positions were touched by "
               f"{len(by_update)} earlier update(s).")
        evidence = []
        for ui, rs in sorted(by_update.items(), key=lambda kv: int(tb.pos[kv[1][0]]))[:3]:
            up = tb.updates[ui]
            score_ev = an.event(int(tb.order[rs[0]]))
            evidence.append(Evidence(
                where=up.site, positions=_ints(tb.pos[rs]), events=[up.seq, int(score_ev.get("seq", 0))],
                time_s=up.t,
                detail="; ".join(x for x in (
                    f"update {up.target or '?'} op {up.op or '?'} over positions {up.lo}..{up.hi}",
                    f"scored at {_at(score_ev)}",
                    f"rank {up.rank}" if an.multi_rank else "") if x)))
        findings.append(Finding("C3", Status.FAIL, msg, evidence))
        status = Status.FAIL
        summary = f"{bad.size} scored positions were updated on before being scored; {_pass_desc(an)}"
    elif rproven.size:
        status = Status.FAIL
        summary = (f"{rproven.size} scored positions were updated on before being scored (score-order replay); "
                   f"{_pass_desc(an)}")
    else:
        dep = tb.dep[rows]
        untraced = int(((dep < 0) & (tb.pos[rows] >= 1)).sum())
        if hull_only.size:
            status = Status.INCONCLUSIVE
            findings.append(_hull_only_c3(an, hull_only, rows.size))
            summary = (f"{hull_only.size} scored positions lie strictly inside the ranges of earlier updates "
                       f"whose ends were scored first; whether an update used them is undecided; {_pass_desc(an)}")
        elif untraced:
            status = Status.INCONCLUSIVE
            summary = (f"{untraced} scores carry no traced inputs, so updates from the same tokens may be "
                       f"untraced too; {_pass_desc(an)}")
            findings.append(Finding("C3", Status.INCONCLUSIVE, summary))
        elif boundary.size or rboundary.size:
            status = Status.WARN
            summary = (f"only {boundary.size + rboundary.size} document-boundary position(s) were used by a "
                       f"document's update before their score as the previous document's last target; "
                       f"{_pass_desc(an)}")
        else:
            n_upd = len(tb.updates)
            status = Status.PASS
            summary = ("no state change on validation positions" if n_upd == 0 else
                       f"no update touched a position before its score ({n_upd} updates on validation"
                       + (f"; {replayed.size} positions decided by the score-order replay" if replayed.size else "")
                       + ")")
            summary += f"; {_pass_desc(an)}"
    freed = _freed_state(an, rows)
    if freed is not None:
        findings.append(freed)
        n_freed = len(an.doubtful or an.discarded)
        summary += (f"; {n_freed} update(s) of state unread once the pass began "
                    + ("undecided" if an.doubtful else "not counted"))
        if freed.status.rank > status.rank:
            status = freed.status
            summary = f"{freed.message}; {_pass_desc(an)}"
    return RuleResult("C3", "", status, summary + f"; {an.stats.line()}", findings, checker="trace")


def _freed_state(an: Analysis, rows: np.ndarray) -> Finding | None:
    """Updates set aside because the script never read what they wrote once the pass began (analysis:
    _set_aside_unread_state). Clean ones are stated, never hidden; with values that left torch meanwhile,
    C3 cannot pass on them."""
    ups = an.doubtful or an.discarded
    if not ups:
        return None
    tb = an.tables
    first = an.event(int(tb.order[rows].min()))
    u = ups[0]
    lo, hi = min(x.lo for x in ups), max(x.hi for x in ups)
    sites = sorted({x.site or "?" for x in ups})
    last = max(tb.released[(u.rank, st)][1] for st in u.states)
    where = (f"{len(ups)} update(s) at {', '.join(sites[:3])} on positions {lo}..{hi} wrote only state the script "
             f"never read again once the reported pass began (its first score at {_at(first)})")
    ev = [Evidence(where=u.site, positions=[lo, hi], events=[u.seq, int(first.get("seq", 0))], time_s=u.t,
                   detail=f"update {u.target} op {u.op} over positions {u.lo}..{u.hi}; last read before event "
                          f"#{last}")]
    if an.doubtful:
        # per block, not per update: updates of one block share its count (the most that left while any lived)
        n = max(tb.released[(x.rank, st)][2] for x in an.doubtful for st in x.states)
        return Finding("C3", Status.INCONCLUSIVE,
                       f"{where}: a throwaway copy trained on validation, but at least {n} value(s) left torch as "
                       f"Python numbers meanwhile, where provenance ends: whether a score used them is undecided.", ev)
    return Finding("C3", Status.PASS,
                   f"{where}: not counted: a throwaway copy trained on validation (e.g. a compile warmup); "
                   f"nothing computed from it left torch meanwhile, so a score could use it only through "
                   f"traced values, which C1 checks.", ev)


def _hull_only_c3(an: Analysis, hull_only: np.ndarray, n_rows: int) -> Finding:
    """Positions inside, never at an end of, the interval of an update written before their score: phased
    or document-batched TTT trains on scored documents scattered over the stream, and one interval per
    element spans the unscored ones between them."""
    tb = an.tables
    r0 = int(hull_only[np.argmin(tb.pos[hull_only])])
    rows = an.pass_rows
    assert rows is not None
    ui = int(an.first_update[int(np.nonzero(rows == r0)[0][0])])
    up, sev = tb.updates[ui], an.event(int(tb.order[r0]))
    ends = ("both ends of that range were scored first" if up.lo in an.proof_ends(up) else
            f"its end at {up.lo} is a document's opening BOS, which per-document training reads only as that "
            f"document's first input (no proof of a use), the other end was scored first")
    return Finding(
        "C3", Status.INCONCLUSIVE,
        f"position {int(tb.pos[r0])} lies inside positions {up.lo}..{up.hi} of {up.what()} at "
        f"{up.site or 'an unknown site'} (t={up.t:.2f}s), written before it was scored at {_at(sev)}; {ends} "
        f"and provenance keeps one interval per value, so whether the update used the unscored positions "
        f"between them is undecided ({hull_only.size} of {n_rows} positions).",
        [Evidence(where=up.site, positions=_ints(np.sort(tb.pos[hull_only])),
                  events=[up.seq, int(sev.get("seq", 0))], time_s=up.t,
                  detail=f"update {up.target or '?'} op {up.op or '?'} over positions {up.lo}..{up.hi}")])


def _split_boundary(an: Analysis, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(violations, boundary artefacts). A BOS token is the last target of one document and the first input
    of the next: per-document TTT trains the next document's own state on it before the previous
    document's final chunk is scored. That is no look at the target when the score at that position does
    not depend on the update (its dep is below it: the state that scored it never saw the token). Any
    other position, or a boundary whose score does depend on the update, stays a violation."""
    if not bad.size or an.val_tokens is None:
        return bad, bad[:0]
    tb = an.tables
    pos = tb.pos[bad]
    inside = (pos >= 0) & (pos < an.val_tokens.shape[0])
    is_bos = np.zeros(bad.shape, dtype=bool)
    is_bos[inside] = an.val_tokens[pos[inside]] == BOS_ID
    harmless = is_bos & (tb.dep[bad] < pos)
    return bad[~harmless], bad[harmless]


def _explained_tail(n_targets: int, last: int, seq_lens: Sequence[int]) -> int | None:
    """The sequence length whose standard truncation ((N-1)//L*L targets) ends the pass at `last`."""
    for L in sorted({int(x) for x in seq_lens if int(x) > 0}):
        if (n_targets // L) * L == last:
            return L
    return None


def _same_state_tail_rescore(an: Analysis, rows: np.ndarray, uniq: np.ndarray, dup: np.ndarray,
                             allow: int) -> str | None:
    """Why repeated scores are a sliding-window tail artefact, or None when they may be a second look.

    Several accepted records keep every tail window (`ws` up to N - stride) and score each one's last
    `stride` targets, so the final block of the stream is scored again by shorter windows of the same model.
    That weights a few tokens twice (a counting defect the maintainers accepted) but gives no second look:
    accepted as a WARN only when the repeats are the pass's final contiguous positions (chosen by geometry,
    not by their values), add at most `allow` extra scores, and no traced update lies between the first and
    last score of any of them. Anything else repeated in the reported number is a FAIL.
    """
    tb = an.tables
    n_extra = int(rows.size - uniq.size)
    if n_extra > allow or not np.array_equal(dup, uniq[-dup.size:]) or int(dup[-1] - dup[0]) + 1 != dup.size:
        return None
    if _update_between_repeats(an, rows, dup) is not None:
        return None
    return (f"the last {dup.size} positions ({int(dup[0])}..{int(dup[-1])}) are scored again by shorter tail "
            f"windows ({n_extra} extra scores, no update between them): a counting defect, not a second pass; "
            f"counted once each, val_loss would be {_counted_once(an, rows):.6f} instead of "
            f"{float(tb.nll[rows].mean()):.6f}.")


def _update_between_repeats(an: Analysis, rows: np.ndarray, dup: np.ndarray) -> Any:
    """The first traced update between the first and the last score of the repeated positions: the later
    scores then saw state changed after the first (a second look), or None."""
    tb = an.tables
    dup_rows = rows[np.isin(tb.pos[rows], dup)]
    lo, hi = int(tb.order[dup_rows].min()), int(tb.order[dup_rows].max())
    return next((u for u in tb.updates if lo < u.order < hi), None)


def _counted_once(an: Analysis, rows: np.ndarray) -> float:
    """The pass's val_loss with each position counted once (its first score), for the finding."""
    tb = an.tables
    first = rows[np.argsort(tb.order[rows], kind="stable")]
    _, keep = np.unique(tb.pos[first], return_index=True)
    return float(tb.nll[first[keep]].mean())


def _coverage(an: Analysis, rows: np.ndarray, params: Mapping[str, Any], seq_lens: Sequence[int]) -> list[Finding]:
    tb = an.tables
    out: list[Finding] = []
    pos = np.sort(tb.pos[rows])
    uniq, counts = np.unique(pos, return_counts=True)
    dup = uniq[counts > 1]
    allow = _tail_allowance(params, seq_lens)
    if dup.size:
        r = rows[np.isin(tb.pos[rows], dup[:1])]
        evs = [an.event(int(tb.order[x])) for x in r[:2]]
        evidence = [Evidence(where=_where(e), positions=_ints(dup), events=[int(e.get("seq", 0))], time_s=_t(e))
                    for e in evs]
        # A repeated score weights its position twice in the printed number. The one shape the maintainers
        # accepted (a sliding window's shorter tail windows re-scoring the final block from the same state)
        # is a WARN; every other repeat is a FAIL. A diagnostic pass printed separately is not in the reported
        # pass and never gets here.
        tail = _same_state_tail_rescore(an, rows, uniq, dup, allow)
        n_extra = int(rows.size - uniq.size)
        if tail is not None:
            out.append(Finding("C4", Status.WARN, tail, evidence))
        else:
            up = _update_between_repeats(an, rows, dup)
            between = "" if up is None else (
                f"; {up.what()} ({up.target or 'state'}) over positions {up.lo}..{up.hi} at {up.site or '?'} came "
                f"between their scores, so the later score saw state built from the earlier one")
            if up is not None:
                evidence.append(Evidence(where=up.site, positions=[up.lo, up.hi], events=[up.seq], time_s=up.t,
                                         detail=f"update op {up.op or '?'}"))
            out.append(Finding("C4", Status.FAIL,
                               f"position {int(dup[0])} is scored {int(counts[counts > 1][0])} times in the reported "
                               f"pass ({dup.size} positions scored more than once, {n_extra} extra scores, all in "
                               f"the printed number){between}: each token must be scored exactly once; counted once "
                               f"each, val_loss would be {_counted_once(an, rows):.6f} instead of "
                               f"{float(tb.nll[rows].mean()):.6f}.", evidence))
    if an.n_val is None:
        out.append(Finding("C4", Status.INCONCLUSIVE,
                           "the size of the served validation stream is unknown (no val_tokens.npy, no read "
                           "events), so skipped positions cannot be counted."))
        return out
    n_targets = an.n_val - 1  # targets 1..N-1
    outside = uniq[(uniq < 1) | (uniq > n_targets)]
    if outside.size:
        out.append(Finding("C4", Status.INCONCLUSIVE,
                           f"{outside.size} scored positions lie outside the served stream's targets 1..{n_targets}: "
                           f"the trace and the served data disagree.",
                           [Evidence(positions=_ints(outside))]))
    inside = uniq[(uniq >= 1) & (uniq <= n_targets)]
    if inside.size == 0:
        return out
    last = int(inside[-1])
    # holes: at the head (before the first scored target) and between scored targets
    gaps = np.flatnonzero(np.diff(inside) > 1)
    missing = int(inside[0] - 1) + int((np.diff(inside)[gaps] - 1).sum())
    if missing:
        first_missing = [1] if inside[0] > 1 else [int(inside[gaps[0]] + 1)]
        starts = ([1] if inside[0] > 1 else []) + [int(inside[g] + 1) for g in gaps[:SHOW]]
        out.append(Finding("C4", Status.FAIL,
                           f"{missing} target positions inside the evaluated range 1..{last} were never scored "
                           f"(first: {first_missing[0]}): skipping tokens changes the score.",
                           [Evidence(positions=starts[:SHOW],
                                     detail=f"gaps start at {', '.join(map(str, starts[:5]))}")]))
    tail = n_targets - last
    if tail > 0:
        L = _explained_tail(n_targets, last, seq_lens)
        if L is not None:
            pass  # the standard truncation to a multiple of the sequence length (+1), said in the summary
        elif tail <= allow:
            out.append(Finding("C4", Status.WARN,
                               f"the last {tail} target positions ({last + 1}..{n_targets}) were not scored and no "
                               f"known sequence length explains the cut; it is within {allow} tokens.",
                               [Evidence(positions=[last + 1], detail=f"{tail} tokens at the end")]))
        else:
            out.append(Finding("C4", Status.FAIL,
                               f"the last {tail} target positions ({last + 1}..{n_targets}) were never scored: "
                               f"more than a sequence-length truncation ({allow} tokens).",
                               [Evidence(positions=[last + 1], detail=f"{tail} tokens at the end")]))
    return out


def _tail_allowance(params: Mapping[str, Any], seq_lens: Sequence[int]) -> int:
    """Extra scores the accepted tail re-scoring may add; "auto": the largest sequence length the run used."""
    allow = params["tail_allowance_tokens"]
    return max([int(x) for x in seq_lens] or [0]) if allow == "auto" else int(allow)


_ADDITIVE = ("add", "sum", "iadd", "radd", "cat", "stack", "mean")


def _accepted_tail(an: Analysis, rows: np.ndarray, params: Mapping[str, Any], seq_lens: Sequence[int]) -> np.ndarray:
    """The repeated positions of the accepted tail re-scoring (_same_state_tail_rescore), else none."""
    uniq, counts = np.unique(an.tables.pos[rows], return_counts=True)
    dup = uniq[counts > 1]
    if dup.size and _same_state_tail_rescore(an, rows, uniq, dup, _tail_allowance(params, seq_lens)) is not None:
        return dup
    return dup[:0]


def _tail_sum(c: Any, an: Analysis, tail: np.ndarray) -> bool:
    """A combine that only adds the accepted tail's two scores of a position into the total: the counting
    defect the coverage finding already names (a WARN), not a selection over passes."""
    if not tail.size or not c.rows.size:
        return False
    op = (c.op or "").split("(")[0].split(".")[-1].strip("_")
    return op in _ADDITIVE and bool(np.isin(an.tables.pos[c.rows], tail).all())


def _combines_touching(an: Analysis, rows: np.ndarray) -> list:
    return [c for c in an.tables.combines if c.rows.size and np.isin(c.rows, rows).any()]


def _last_consume_before_print(an: Analysis):
    return last_consume_before_print(an.tables, an.ledger)


def _byte_count_finding(an: Analysis, rows: np.ndarray, classes: Any, recomputed: float, d_bpb: float) -> Finding:
    """The printed val_bpb is below the harness's: the script counted more bytes. Which token classes'
    counts explain the difference (leading spaces counted twice, byte-fallback tokens as 3 bytes, control
    tokens given bytes), with one example each."""
    import math

    tb = an.tables
    pr = an.printed
    assert pr is not None and an.val_tokens is not None and an.pos_bytes is not None
    first = rows[np.argsort(tb.order[rows], kind="stable")]
    pos_u, keep = np.unique(tb.pos[first], return_index=True)
    nll_sum = float(tb.nll[first[keep]].sum())
    pos_u = pos_u[(pos_u >= 1) & (pos_u < an.val_tokens.shape[0])]
    y = an.val_tokens[pos_u].astype(np.int64)
    x = an.val_tokens[pos_u - 1].astype(np.int64)
    ours = int(an.pos_bytes[pos_u].sum())
    implied = (nll_sum / math.log(2.0)) / pr.val_bpb if pr.val_bpb > 0 else float("inf")
    extra = implied - ours
    inside = lambda a: (a >= 0) & (a < classes.control.shape[0])  # noqa: E731
    ok = inside(y) & inside(x)
    y, x, pos_u = y[ok], x[ok], pos_u[ok]
    hyps = [
        ("leading-space tokens (the space counted twice)", classes.leading_space[y] & ~classes.control[x], 1),
        ("leading-space tokens after a boundary (the space counted where there is none)",
         classes.leading_space[y] & classes.control[x], 1),
        ("byte-fallback tokens (counted as 3 bytes instead of 1)", classes.byte_fallback[y], 2),
        ("control tokens (given bytes; they have none)", classes.control[y], 1),
    ]
    tol = max(1.0, 0.02 * abs(extra))
    lines, ev, named = [], [], []
    for name, mask, per in hyps:
        n = int(mask.sum())
        if not n:
            continue
        add = n * per
        i = int(np.flatnonzero(mask)[0])
        p, tok = int(pos_u[i]), int(y[i])
        match = abs(add - extra) <= tol or 0 < add <= extra + tol
        lines.append(f"{name}: {n} in the pass, +{add} bytes{' (fits)' if match else ''}")
        if match:
            named.append(name.split(" (")[0])
        r = int(first[keep][np.searchsorted(np.unique(tb.pos[first]), p)]) if p in set(tb.pos[first].tolist()) else None
        e = an.event(int(tb.order[r])) if r is not None else {}
        ev.append(Evidence(where=_where(e) if e else None, positions=[p], events=[int(e.get("seq", 0))] if e else [],
                           detail=f"{name.split(' (')[0]}: e.g. position {p}, token {tok} {classes.pieces[tok]!r} "
                                  f"({int(an.pos_bytes[p])} bytes by the tokenizer); {n} such targets"))
    which = ", ".join(named) if named else "no single token class (" + "; ".join(lines) + ")"
    which = which.replace(": ", " ")
    msg = (f"wrong byte counting ({which}), the printed val_bpb {pr.val_bpb:.6f} below the recomputation "
           f"{recomputed:.6f} from the record's tokenizer: the script counted {implied:.0f} bytes where the "
           f"decoded text has {ours} ({extra:+.0f} bytes, |delta bpb| {d_bpb:.2e}); by class: "
           + "; ".join(lines) + ".")
    return Finding("C4", Status.FAIL, msg, ev or [Evidence(detail="; ".join(lines) or "no class explains it")])


def check_c4(an: Analysis, params: Mapping[str, Any], seq_lens: Sequence[int], classes: Any = None) -> RuleResult:
    b = blocker(an)
    if b is not None and b[1] != "no_match":
        return RuleResult("C4", "", b[0], b[2], checker="trace")
    tb = an.tables
    if b is not None and an.search is not None:
        # No candidate reproduces the printed numbers. A combine that reached the last value consumed
        # before the score line is still a violation on its own.
        last = _last_consume_before_print(an)
        combos = [c for c in tb.combines if last is not None and np.isin(c.rows, last.rows).any()]
        cl = an.search.closest
        close = (f"closest: {cl.cand.label} gives val_loss {cl.val_loss:.6f}"
                 + (f", val_bpb {cl.val_bpb:.6f}" if cl.val_bpb is not None else "")) if cl else "no candidates"
        printed = an.printed
        assert printed is not None
        if combos:
            c = combos[0]
            p = np.unique(tb.pos[c.rows])
            msg = (f"a {c.op or 'combined'} over several scores of position {int(p[0])} at {c.site or '?'} reached the "
                   f"last number consumed before the score line: the printed score picks among passes.")
            return RuleResult("C4", "", Status.FAIL, f"{len(combos)} combine(s) of scores of one position reached "
                              f"the printed number", [Finding("C4", Status.FAIL, msg, [Evidence(
                                  where=c.site, positions=_ints(p), events=[c.seq, last.seq], time_s=c.t,
                                  detail=f"op {c.op}")])], checker="trace")
        msg = (f"no pass matches the printed score: printed val_loss {printed.val_loss:.6f} val_bpb "
               f"{printed.val_bpb:.6f} ({printed.tag}); {an.search.tried} candidate sets tried, {close}.")
        return RuleResult("C4", "", Status.INCONCLUSIVE, "no pass matches the printed score",
                          [Finding("C4", Status.INCONCLUSIVE, msg)], checker="trace")
    m = an.search.match  # type: ignore[union-attr]
    assert m is not None and an.printed is not None
    rows = m.rows
    findings: list[Finding] = []
    if m.by_value:
        findings.append(Finding(
            "C4", Status.INCONCLUSIVE,
            f"the printed val_loss {an.printed.val_loss:.6f} is the value consumed by event "
            f"#{m.cand.consumes[0][1] if m.cand.consumes else '?'}, "
            f"but the recorded per-token NLLs of those scores give {m.val_loss:.6f}: the trace missed part of the "
            f"computation (e.g. a probability above 1), so the score cannot be recomputed.",
            [Evidence(events=[s for _, s in m.cand.consumes[:4]], detail=f"{m.rows.size} scores")]))
    if m.cand.selection != "all":
        findings.append(Finding(
            "C4", Status.FAIL,
            f"the printed score equals the {m.cand.selection} per position over several scores of the same tokens "
            f"({m.cand.label}): a selection after seeing the targets.",
            [Evidence(events=[s for _, s in m.cand.consumes[:4]],
                      detail=f"recomputed val_loss {m.val_loss:.6f} vs printed {an.printed.val_loss:.6f}")]))
    tail = _accepted_tail(an, rows, params, seq_lens)
    for c in [c for c in _combines_touching(an, rows) if not _tail_sum(c, an, tail)][:3]:
        p = np.unique(tb.pos[c.rows])
        findings.append(Finding(
            "C4", Status.FAIL,
            f"a value combining several scores of position {int(p[0])} ({c.op or 'combine'}) at {c.site or '?'} "
            f"(t={c.t:.2f}s) involves the reported pass: no min, best-of or rescoring over passes.",
            [Evidence(where=c.site, positions=_ints(p), events=[c.seq], time_s=c.t, detail=f"op {c.op}")]))
    findings += _coverage(an, rows, params, seq_lens)
    pr = an.printed
    if m.by_value:
        pass  # said above: the recomputation does not hold, bytes included
    elif m.val_bpb is None:
        findings.append(Finding("C4", Status.INCONCLUSIVE,
                                "val_bpb was not recomputed (no served validation tokens or tokenizer): only "
                                f"val_loss was checked ({m.val_loss:.6f} vs printed {pr.val_loss:.6f})."))
    elif not m.bpb_ok and classes is not None and pr.val_bpb < m.val_bpb:
        findings.append(_byte_count_finding(an, rows, classes, m.val_bpb, m.d_bpb))
    elif not m.bpb_ok:
        findings.append(Finding(
            "C4", Status.FAIL,
            f"the printed val_bpb {pr.val_bpb:.6f} differs from the harness's recomputation {m.val_bpb:.6f} "
            f"(from the tokenizer's bytes) for the pass whose val_loss matches: wrong byte counting.",
            [Evidence(detail=f"|delta bpb| {m.d_bpb:.2e} > tolerance; "
                             f"val_loss {m.val_loss:.6f} vs {pr.val_loss:.6f}")]))
    if not m.by_value and m.cand.selection == "all":
        findings += _shading(pr, m, float(params["printed_precision_floor"]),
                             bpb_checked=m.val_bpb is not None and m.bpb_ok)
    status = max([f.status for f in findings], key=lambda s: s.rank, default=Status.PASS)
    nums = (f"recomputed val_loss {m.val_loss:.6f}"
            + (f" val_bpb {m.val_bpb:.6f}" if m.val_bpb is not None else "")
            + f" vs printed {pr.val_loss:.6f} {pr.val_bpb:.6f}")
    n_pos = int(np.unique(tb.pos[rows]).size)
    if status is Status.PASS:
        tail = ""
        if an.n_val is not None:
            last = int(np.max(tb.pos[rows]))
            if an.n_val - 1 > last:
                L = _explained_tail(an.n_val - 1, last, seq_lens)
                tail = f", last {an.n_val - 1 - last} tokens cut by the seq-len {L} truncation" if L else ""
        summary = f"{n_pos} positions scored once, 1..{int(np.max(tb.pos[rows]))}{tail}; {nums}"
    else:
        first = next(f for f in findings if f.status is status)
        summary = f"{first.message.split(': ')[0]}; {nums}"
    if m.cand.inferred:
        summary += " (pass inferred from score order: no consume event carried it)"
    return RuleResult("C4", "", status, summary, findings, checker="trace")


_NUMBER = re.compile(r"[-+]?(?:\d+\.?(\d*)|\.(\d+))(?:[eE]([-+]?\d+))?")


def printed_half_ulp(line: str, key: str) -> float | None:
    """Half a unit in the last digit `key:<number>` was printed with; None when the line does not show it."""
    m = re.search(rf"{re.escape(key)}\s*[:=]\s*", line or "")
    n = _NUMBER.match(line, m.end()) if m else None
    if n is None:
        return None
    decimals = len(n.group(1) or n.group(2) or "")
    return 0.5 * 10.0 ** (int(n.group(3) or 0) - decimals)


def _shading(pr: Any, m: Any, floor: float, bpb_checked: bool) -> list[Finding]:
    """The printed numbers against the recomputation at the precision printed (C4): a number moved by less
    than the search tolerance, but by more than its own rounding, is a FAIL."""
    out = []
    pairs = [("val_loss", pr.val_loss, m.val_loss)] + ([("val_bpb", pr.val_bpb, m.val_bpb)] if bpb_checked else [])
    for key, printed, recomputed in pairs:
        half = printed_half_ulp(pr.line, key)
        tol = max(half if half is not None else 5e-5, floor)  # unknown print: 4 decimals, the coarsest in use
        if abs(printed - recomputed) > tol:
            out.append(Finding("C4", Status.FAIL,
                               f"the printed {key} {printed} is not the recomputation {recomputed:.8f} of the "
                               f"reported pass at the precision printed (|delta| {abs(printed - recomputed):.2e} > "
                               f"{tol:.1e}): a shaded score.",
                               [Evidence(detail=f"printed {key} {printed}, recomputed {recomputed:.10f}")]))
    return out


def check_c2(an: Analysis, params: Mapping[str, Any], premises: Mapping[str, RuleResult] | None = None
             ) -> RuleResult:
    """A negative NLL (a probability above 1), a pick from an unnormalized row, or a score computed from its own
    target beyond the pick (the row chosen after x_t was looked at) is a FAIL. The trace PASSes
    C2 by the rule's own words when every score of the reported pass is -log of the target token's own entry
    (picked by the token itself: Tracer.raw_pick) in a normalized row over the whole vocabulary, and the
    ``premises`` C1, C3, C4 and D1 passed (or WARNed on an accepted shape): the row then depends only on
    positions scored before it and on state no validation token trained before its score, and the printed
    number is the plain sum of these scores. Whatever token stood at t, it would have been scored from the
    same row, which sums to 1. Otherwise the normalization probe decides."""
    rows = an.pass_rows
    if rows is not None and rows.size:
        tol = float(params["normalization_tolerance"])
        nll = an.tables.nll[rows]
        bad = rows[nll < -tol]
        if bad.size:
            r = int(bad[0])
            e = an.event(int(an.tables.order[r]))
            msg = (f"position {int(an.tables.pos[r])} was scored with NLL {float(an.tables.nll[r]):.4f} < 0 at "
                   f"{_at(e)}: a probability above 1, so the distribution is not normalized.")
            return RuleResult("C2", "", Status.FAIL, f"{bad.size} scores with negative NLL (probability > 1)",
                              [Finding("C2", Status.FAIL, msg, [Evidence(where=_where(e), positions=_ints(
                                  an.tables.pos[bad]), events=[int(e.get("seq", 0))], time_s=_t(e))])],
                              checker="trace")
        unnorm = _unnormalized_picks(an, rows, tol)
        if unnorm is not None:
            return unnorm
        looked = _target_looked_at(an, rows)
        if looked is not None:
            return looked
        proof = _normalized_picks(an, rows, premises or {})
        if proof is not None:
            return proof
    return RuleResult("C2", "", Status.NOT_RUN,
                      "decided by the normalization probe (harness probe --probe c2); nothing obvious in the trace",
                      checker="trace")


C2_PREMISES = ("C1", "C3", "C4", "D1")


def c2_premises_hold(premises: Mapping[str, RuleResult] | None) -> bool:
    """Each premise of C2's trace proof PASSed, or WARNed: a WARN of these rules is a shape the maintainers
    accepted (a later document's opening BOS already scored, a sliding window's tail re-scored from the same
    state, the last few targets cut, validation loaded early but used by no update), and none of them changes
    the row a score is picked from."""
    return premises is not None and all(
        premises.get(r) is not None and premises[r].status in (Status.PASS, Status.WARN) for r in C2_PREMISES)


def _normalized_picks(an: Analysis, rows: np.ndarray, premises: Mapping[str, RuleResult]) -> RuleResult | None:
    """C2 PASS from the trace (see check_c2), or None when any premise is missing."""
    if not c2_premises_hold(premises):
        return None
    if precondition(an, "C2") is not None:
        return None
    tb = an.tables
    pos = tb.pos[rows]
    # C1 already holds each row to positions scored before its own (dep < pos, or the score-order replay for
    # phased TTT, whose rows depend on later documents scored first); position 0 has no row before it
    if not (pos >= 1).all():
        return None
    orders = np.unique(tb.order[rows])
    events = [an.event(int(o)) for o in orders.tolist()]
    if not all(e.get("norm") is True for e in events):
        return None
    sites = sorted({str(e.get("site") or "?") for e in events})
    ops = sorted({str(e.get("op") or "?") for e in events})
    e0 = events[0]
    msg = (f"each of the {rows.size} scores of the reported pass is -log of the target token's own entry (picked "
           f"by the token as read, through integer copies only) in a normalized row over the whole vocabulary "
           f"({', '.join(ops)} at {', '.join(sites[:3])}{' ...' if len(sites) > 3 else ''}); that row depends "
           f"only on positions scored before it (C1) and on state no validation token trained before its score "
           f"(C3, D1), and the printed number is the sum of these scores (C4): whatever token stood there, it "
           f"would have been scored from the same row, which sums to 1.")
    warned = [r for r in C2_PREMISES if premises[r].status is Status.WARN]
    if warned:
        msg += (f" {', '.join(warned)} WARN{'s' if len(warned) == 1 else ''} on a shape the maintainers accepted "
                f"(see {'its' if len(warned) == 1 else 'their'} row{'s' if len(warned) > 1 else ''}), which leaves "
                f"each score's row as it is.")
    return _c2_result(Status.PASS, f"every score is a normalized full-vocabulary row's entry for the target token "
                                   f"itself; {_pass_desc(an)}"
                                   + (f"; premises {', '.join(warned)} WARN (accepted)" if warned else ""), msg,
                      Evidence(where=_where(e0), positions=_ints(np.sort(pos)[:5]),
                               events=[int(e.get("seq", 0)) for e in events[:5]], time_s=_t(e0),
                               detail=f"{orders.size} score events, each marked norm"))


def _c2_result(status: Status, summary: str, msg: str, ev: Evidence) -> RuleResult:
    """A C2 row decided by the trace: one finding with its evidence."""
    return RuleResult("C2", "", status, summary, [Finding("C2", status, msg, [ev])], checker="trace")


def _target_looked_at(an: Analysis, rows: np.ndarray) -> RuleResult | None:
    """Scores whose value depends on their own target beyond picking its entry (dep == pos: the hull's end
    is a position the value surely used, as C1 reads it): the probability was computed after x_t was looked
    at (a mixing weight gated on the target, a table keyed on it), so p_t was not one distribution fixed
    before x_t, which C2 requires in its own words. The same evidence as C1's finding on the target, less the
    positions an update touched before their score (there the dependence may run through training: C3's)."""
    tb = an.tables
    pos, dep = tb.pos[rows], tb.dep[rows]
    hit = rows[(dep == pos) & (pos >= 1)]
    if hit.size:
        # a position some update's range held before its score may owe that dependence to the update (a model
        # trained on its target): C3's matter, left to it here
        hit = hit[~np.isin(hit, an.updated_before_scored())]
    if not hit.size:
        return None
    r0 = int(hit[np.argmin(tb.pos[hit])])
    e = an.event(int(tb.order[r0]))
    p = int(tb.pos[r0])
    msg = (f"position {p} was scored from a value that depends on its own target x_{p} beyond picking its "
           f"probability, at {_at(e)}: the distribution was chosen after the target was looked at (a weight or "
           f"table that depends on x_t), not fixed before it ({hit.size} of {rows.size} scores).")
    return _c2_result(Status.FAIL, f"{hit.size} of {rows.size} scores computed from their own target beyond its "
                                   "pick: p_t not fixed before x_t was looked at", msg,
                      Evidence(where=_where(e), positions=_ints(np.sort(tb.pos[hit])), events=[int(e.get("seq", 0))],
                               time_s=_t(e), detail=f"dep {p} = the target's position"
                               + (f"; op {e.get('op')}" if e.get("op") else "")))


def _unnormalized_picks(an: Analysis, rows: np.ndarray, tol: float) -> RuleResult | None:
    """Scores of the reported pass that are -log of a value picked from a full-vocabulary row of
    non-negative values whose sum is not 1 (the tracer records each row's sum): the printed number is made
    of them, so the distribution it scores is not normalized."""
    tb = an.tables
    orders, first = np.unique(tb.order, return_index=True)
    start = dict(zip(orders.tolist(), first.tolist()))
    picks: dict[int, list[tuple[int, float, float]]] = {}  # position -> (order, nll, row sum) of each pick
    for o, r0 in start.items():
        z = an.event(o).get("zsum")
        if not isinstance(z, list):
            continue
        for i, v in enumerate(z):
            r = r0 + i
            if r < tb.n and int(tb.order[r]) == o and isinstance(v, (int, float)):
                picks.setdefault(int(tb.pos[r]), []).append((o, float(tb.nll[r]), float(v)))
    if not picks:
        return None
    bad: list[tuple[int, float]] = []
    for r in rows.tolist():
        # the row's own pick, or the log taken of it afterwards (a new score of the same value)
        o, p, v = int(tb.order[r]), int(tb.pos[r]), float(tb.nll[r])
        z = next((zs for (po, pv, zs) in picks.get(p, ()) if po <= o and abs(pv - v) <= 1e-9 * max(1.0, abs(v))),
                 None)
        if z is not None and abs(z - 1.0) > tol:
            bad.append((r, z))
    if not bad:
        return None
    r0, z0 = min(bad, key=lambda b: int(tb.pos[b[0]]))
    e = an.event(int(tb.order[r0]))
    sums = np.asarray([z for _, z in bad])
    msg = (f"position {int(tb.pos[r0])} was scored as -log of the target's entry in a row of non-negative values "
           f"over the whole vocabulary that sums to {z0:.4f}, not 1, at {_at(e)}; the reported number is made of "
           f"{len(bad)} such scores (row sums {sums.min():.3f}..{sums.max():.3f}): not a normalized distribution.")
    return _c2_result(Status.FAIL, f"{len(bad)} of {rows.size} scores picked from unnormalized vocabulary rows "
                                   f"(sums {sums.min():.3f}..{sums.max():.3f})", msg,
                      Evidence(where=_where(e), positions=_ints(np.sort(tb.pos[[b[0] for b in bad]])),
                               events=[int(e.get("seq", 0))], time_s=_t(e), detail=f"row sum {z0:.4f}"))
