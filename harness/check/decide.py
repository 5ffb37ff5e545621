"""The folder rules: S1-S3, B1, B2/B3 as the logs state them, B5; each from what collect() gathered.

Only the claimed runs (harness.check.claimed) decide B1, S2, B2, B3 and B5; the logs set aside are listed
in the report's claimed_runs section. Unstated times are WARN ("not stated"), never INCONCLUSIVE.

Every row is made by harness.results.rule_row with checker "check".
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from harness.check.collect import CheckState
from harness.check.options import CheckOptions
from harness.config import Config
from harness.results import Evidence, Finding, RuleResult, Status, rule_row

_row = partial(rule_row, checker="check")


def rule_s1(cfg: Config, st: CheckState) -> RuleResult:
    """Paperwork: the files a submission folder holds (a missing one is a FAIL of the paperwork part only)."""
    sub = st.sub
    problems = [f"missing {m}" for m in sub.missing]
    if sub.claims_error:
        problems.append(sub.claims_error)
    problems += [f"unreadable log {u}" for u in st.unreadable_logs]
    if problems:
        f = Finding("S1", Status.FAIL, "The submission folder is incomplete or unreadable.",
                    [Evidence(detail=p) for p in problems])
        return _row(cfg, "S1", Status.FAIL, "; ".join(problems), [f])
    n = len(sub.logs)
    script = sub.script.name if sub.script is not None else "train_gpt.py"
    return _row(cfg, "S1", Status.PASS, f"{script}, README.md, submission.json, {n} log(s)")


def rule_s3(cfg: Config, st: CheckState) -> RuleResult:
    art = st.artifact
    if art is None:
        return _row(cfg, "S3", Status.NOT_RUN, "no artifact in the folder (give one with --artifact)")
    if art.problem == "not_a_model":
        f = Finding("S3", Status.INCONCLUSIVE, f"Artifact decompressed but holds no tensors: {art.message}",
                    [Evidence(where=Path(art.path).name, detail=art.message)])
        return _row(cfg, "S3", Status.INCONCLUSIVE, f"not a torch model: {art.message}", [f])
    if art.problem:
        ev = Evidence(where=Path(art.path).name, detail=art.message)
        if art.unsafe_globals:
            ev.detail += f" (wants {', '.join(art.unsafe_globals[:5])})"
        f = Finding("S3", Status.FAIL, f"Artifact {art.problem}: {art.message}", [ev])
        return _row(cfg, "S3", Status.FAIL, f"{art.problem}: {art.message}", [f])
    layers = " > ".join(art.layers) if art.layers else art.container
    q = f", {art.quant_format}" if art.quant_format else ""
    return _row(cfg, "S3", Status.PASS,
                f"{layers}: {art.tensor_count} tensors, {art.parameters:,} parameters{q}")


def _name(p: str) -> str:
    return Path(p).name


def _seed(s: int | None) -> str:
    return "?" if s is None else str(s)


def rule_b1(cfg: Config, st: CheckState) -> RuleResult:
    """B1 on the harness's code figure plus each claimed run's model bytes; the strict total a WARN."""
    t = st.totals
    params = cfg.rule_params("B1")
    if t is None:
        return _row(cfg, "B1", Status.INCONCLUSIVE, "no train_gpt.py to count")
    code = t.decided_code if t.decided_code is not None else t.practised_code
    figures = (f"code as is {t.practised_code:,} B, harness compressed "
               + (f"{t.harness_code:,} B" if t.harness_code is not None else "not built")
               + ", logs state " + (", ".join(f"{c:,}" for c in t.stated_code) + " B" if t.stated_code
                                    else "nothing"))
    if t.model_bytes is None:
        f = Finding("B1", Status.INCONCLUSIVE,
                    "Compressed model bytes unknown: no artifact in the folder and no claimed run's log states them.",
                    [Evidence(detail=figures)])
        return _row(cfg, "B1", Status.INCONCLUSIVE, "model bytes unknown (no artifact, no size line)", [f])
    cap = t.cap
    decide = params["decide_on"]
    stt = t.strict_total or 0
    worst = max(t.runs, key=lambda r: r["total"]) if t.runs else None
    dt = worst["total"] if worst else (t.decided_total or 0)
    who = (f"seed {_seed(worst['seed'])}, " if worst and worst["seed"] is not None else "") + \
        (worst["what"] if worst else t.model_source)
    summary = (f"{dt:,} B ({'over' if dt > cap else 'under'}) = code {code:,} ({t.counted_as.split(':')[0]}) + "
               f"model {dt - code:,} ({who}); strict {stt:,} B ({'over' if stt > cap else 'under'}); cap {cap:,}")
    findings: list[Finding] = []
    if decide == "strict" and stt > cap:
        findings.append(Finding("B1", Status.FAIL, f"The strict total {stt:,} B exceeds {cap:,} B.",
                                [Evidence(where=_name(str(st.sub.script)), detail=figures)]))
        return _row(cfg, "B1", Status.FAIL, summary, findings)
    over = [r for r in t.runs if r["total"] > cap]
    if over:
        ev = [Evidence(where=r["what"].removeprefix("log ").split(" ")[0],
                       detail=f"seed {_seed(r['seed'])}: code {code:,} + model {r['model_bytes']:,} = "
                              f"{r['total']:,} B") for r in sorted(over, key=lambda r: -r["total"])]
        findings.append(Finding("B1", Status.FAIL,
                                f"{len(over)} claimed run(s) over the cap; the worst is {who} at {dt:,} B "
                                f"(> {cap:,} B; code counted {t.counted_as}).", ev + [Evidence(detail=figures)]))
        return _row(cfg, "B1", Status.FAIL, summary, findings)
    best = min(x for x in (t.practised_code, t.harness_code) if x is not None)
    small = [c for c in t.stated_code if c < 0.99 * best]
    if small:
        findings.append(Finding(
            "B1", Status.WARN,
            f"A log states a code size of {min(small):,} B, {best - min(small):,} B "
            f"({100 * (best - min(small)) / best:.1f} %) smaller than the smallest form the harness reproduces "
            f"({best:,} B: {t.harness_recipe or 'the file as it is'}).", [Evidence(detail=figures)]))
    if t.harness_notes:
        findings.append(Finding("B1", Status.WARN, "The harness's compressed form: " + "; ".join(t.harness_notes)
                                + ".", [Evidence(detail=figures)]))
    u = st.unaccounted
    if u is not None and (u.missing_modules or (u.unreferenced and stt + u.unreferenced_bytes > cap)):
        parts = []
        if u.missing_modules:
            parts.append(f"the code imports {', '.join(u.missing_modules)}, found neither in the folder nor "
                         "installed, so strict is a lower bound")
        if u.unreferenced:
            files = ", ".join(f"{f.path.name} ({f.bytes:,} B)" for f in u.unreferenced[:8])
            parts.append(f"code files in the folder that no scanned code names: {files}; counting them gives "
                         f"{stt + u.unreferenced_bytes:,} B")
        findings.append(Finding("B1", Status.WARN, "Strict total may be incomplete: " + "; ".join(parts) + ".",
                                [Evidence(where="train_gpt.py", detail=p) for p in parts]))
    if stt > cap:
        extra = ", ".join(f"{c['file']} ({c['bytes']:,} B)" for c in t.code_files)
        findings.append(Finding("B1", Status.WARN,
                                f"Over the cap when every needed code file counts (strict {stt:,} B: the "
                                f"script as counted, the other files as they are): "
                                f"{extra}.", [Evidence(detail=extra)]))
    if findings:
        return _row(cfg, "B1", Status.WARN, summary, findings)
    return _row(cfg, "B1", Status.PASS, summary)


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol + 1e-12


def rule_s2(cfg: Config, st: CheckState) -> RuleResult:
    """S2, plus a finding per claim that is present but no usable number (NaN, infinite, a string, a list):
    such a claim is never "in agreement". A non-finite score or size FAILs (nothing can support it), another
    type WARNs."""
    row = _rule_s2_compare(cfg, st)
    claims = st.sub.claims
    if claims is None or not claims.invalid:
        return row
    bad = [Finding("S2", Status.FAIL if "finite" in why or "usable" in why else Status.WARN,
                   f"submission.json {name}: {why}.", [Evidence(where="submission.json", detail=name)])
           for name, why in claims.invalid.items()]
    names = ", ".join(claims.invalid)
    status = Status.FAIL if any(f.status is Status.FAIL for f in bad) or row.status is Status.FAIL else Status.WARN
    summary = f"unusable claim(s): {names[:200]}" + ("" if row.status is Status.PASS else f"; {row.summary}")
    return _row(cfg, "S2", status, summary, bad + list(row.findings))


def _rule_s2_compare(cfg: Config, st: CheckState) -> RuleResult:
    """Claims against the claimed runs, by consequence: FAIL when a claim is better than the logs support
    (a lower val_bpb / val_loss, bytes under the cap while a claimed run is over), WARN otherwise."""
    claims = st.sub.claims
    params = cfg.rule_params("S2")
    tol = float(params["val_bpb_abs_tolerance"])
    btol = int(params["bytes_abs_tolerance"])
    if claims is None:
        why = "submission.json unreadable" if st.sub.claims_error else "no submission.json"
        f = Finding("S2", Status.WARN, f"No claim compared: {why} (S1).", [])
        return _row(cfg, "S2", Status.WARN, f"no claims to compare ({why})", [f])
    if claims.empty:
        f = Finding("S2", Status.WARN, "submission.json claims no score, size or seed under any name the harness "
                    "reads (val_bpb, mean_val_bpb, results.*, seed_results ...): nothing was compared.",
                    [Evidence(where="submission.json", detail=", ".join(sorted(claims.raw))[:200])])
        return _row(cfg, "S2", Status.WARN, "no claim found in submission.json", [f])
    runs = [r for r in st.claimed_runs if r.final is not None]
    if not runs:
        f = Finding("S2", Status.WARN, "No claimed run states a score: the claims could not be compared.", [])
        return _row(cfg, "S2", Status.WARN, "no claimed run states a score", [f])
    findings: list[Finding] = []

    def say(status: Status, msg: str, where: str | None = None, detail: str = "") -> None:
        findings.append(Finding("S2", status, msg, [Evidence(where=where, detail=detail)]))

    def field_name(attr: str) -> str:
        return claims.fields.get(attr, attr)

    per = ", ".join(f"seed {_seed(r.seed)}={r.final.val_bpb:.6f}" for r in runs)
    mean_bpb = statistics.fmean(r.final.val_bpb for r in runs)
    if claims.val_bpb is not None and not _close(claims.val_bpb, mean_bpb, tol):
        better = claims.val_bpb < mean_bpb
        say(Status.FAIL if better else Status.WARN,
            f"submission.json {field_name('val_bpb')} {claims.val_bpb:.6f} is "
            f"{'lower (better) than' if better else 'higher than'} the claimed runs' mean {mean_bpb:.6f}.",
            "submission.json", per)
    losses = [r.final.val_loss for r in runs if r.final.val_loss is not None]
    if claims.val_loss is not None and losses and len(losses) == len(runs):
        mean_loss = statistics.fmean(losses)
        if not _close(claims.val_loss, mean_loss, tol * 2):
            better = claims.val_loss < mean_loss
            say(Status.FAIL if better else Status.WARN,
                f"submission.json {field_name('val_loss')} {claims.val_loss:.6f} is "
                f"{'lower (better) than' if better else 'higher than'} the claimed runs' mean {mean_loss:.6f}.",
                "submission.json")
    cl = st.claimed
    if cl is not None and cl.missing_seeds:
        say(Status.WARN, f"Seed(s) {', '.join(map(str, cl.missing_seeds))} claimed ({cl.seed_source}) but no log "
            "reports them.", "submission.json")
    t = st.totals
    cap = t.cap if t is not None else int(cfg.rule_params("B1")["max_bytes"])
    run_total = {}
    if t is not None:
        for m in t.runs:
            if m["seed"] is not None:
                run_total[m["seed"]] = m["total"]
    by_seed = {r.seed: r for r in runs if r.seed is not None}
    for seed, entry in claims.per_seed.items():
        r = by_seed.get(seed)
        if r is None:
            continue
        if "val_bpb" in entry and not _close(entry["val_bpb"], r.final.val_bpb, tol):
            better = entry["val_bpb"] < r.final.val_bpb
            say(Status.FAIL if better else Status.WARN,
                f"Seed {seed}: claimed val_bpb {entry['val_bpb']:.6f}, its log states {r.final.val_bpb:.6f}.",
                f"{_name(r.path)}:{r.final.line_no}", r.final.text.strip()[:160])
        ab = entry.get("artifact_bytes")
        if ab is None:
            continue
        ab = int(ab)
        decided = run_total.get(seed)
        if ab <= cap and decided is not None and decided > cap:
            say(Status.FAIL, f"Seed {seed}: claimed {ab:,} bytes (under the cap) but the run totals "
                f"{decided:,} B (over {cap:,}).", _name(r.path))
            continue
        ok = [x for x in (r.total_bytes, r.model_bytes, decided) if x is not None]
        if ok and all(abs(ab - x) > btol for x in ok):
            say(Status.WARN, f"Seed {seed}: claimed {ab:,} bytes; its log states "
                + (f"a total of {r.total_bytes:,}" if r.total_bytes is not None else "no total")
                + (f", model {r.model_bytes:,}" if r.model_bytes is not None else "")
                + (f"; the harness counts {decided:,}" if decided is not None else "") + ".", _name(r.path))
    totals = [x["total"] for x in (t.runs if t is not None else [])]
    if claims.bytes_total is not None and totals:
        bt = claims.bytes_total
        stated = [r.total_bytes for r in runs if r.total_bytes is not None]
        if bt <= cap and max(totals) > cap:
            say(Status.FAIL, f"{field_name('bytes_total')} {bt:,} is under the cap but a claimed run totals "
                f"{max(totals):,} B (over {cap:,}).", "submission.json", ", ".join(f"{x:,}" for x in totals))
        else:
            cands = stated + totals + [x["model_bytes"] for x in t.runs] if t is not None else stated
            models = [x["model_bytes"] for x in t.runs] if t is not None else []
            means = [statistics.fmean(v) for v in (stated, totals, models) if v]
            if all(abs(bt - x) > btol for x in cands) and all(abs(bt - m) >= 1 for m in means):
                say(Status.WARN, f"{field_name('bytes_total')} {bt:,} matches no claimed run's total "
                    f"({', '.join(f'{x:,}' for x in stated or totals)}) nor their mean.", "submission.json")
    if claims.bytes_code is not None and t is not None:
        ok = {t.practised_code, *t.stated_code}
        if t.harness_code is not None:
            ok.add(t.harness_code)
        if st.unwrapped is not None:
            ok.add(st.unwrapped.source_bytes)
        if all(abs(claims.bytes_code - x) > btol for x in ok):
            say(Status.WARN, f"{field_name('bytes_code')} {claims.bytes_code:,} is neither the script's "
                f"{t.practised_code:,} B, the harness's compressed {t.harness_code or 0:,} B, nor a code size the "
                "logs state.", "submission.json")
    hw_logs = {r.hardware for r in runs if r.hardware}
    if claims.hardware and hw_logs:
        norm = lambda s: "".join(ch for ch in s.lower().replace("×", "x") if ch.isalnum())  # noqa: E731
        if not any(norm(h) in norm(claims.hardware) or norm(claims.hardware) in norm(h) for h in hw_logs):
            say(Status.WARN, f"Hardware claimed '{claims.hardware}' but the claimed runs' logs state "
                f"{sorted(hw_logs)}.", "submission.json")
    n = len(runs)
    fails = [f for f in findings if f.status is Status.FAIL]
    if fails:
        return _row(cfg, "S2", Status.FAIL, f"{len(fails)} claim(s) better than the {n} claimed run(s) support"
                    + (f", {len(findings) - len(fails)} other disagreement(s)" if len(findings) > len(fails) else ""),
                    findings)
    if findings:
        return _row(cfg, "S2", Status.WARN, f"{len(findings)} disagreement(s) between submission.json and the {n} "
                    "claimed run(s), none in the submission's favour", findings)
    return _row(cfg, "S2", Status.PASS, f"claims agree with {n} claimed run(s): mean val_bpb {mean_bpb:.6f}")


def _budget_limit(cfg: Config, rid: str) -> float:
    p = cfg.rule_params(rid)
    return float(p["max_seconds"]) + float(p["grace_seconds"])


def _not_stated(cfg: Config, rid: str, what: str, n: int) -> RuleResult:
    msg = (f"{what} time not stated by the {n} claimed run(s)' logs; measured only at full scale "
           "(--run --scale full)")
    return _row(cfg, rid, Status.WARN, f"{what} time not stated", [Finding(rid, Status.WARN, msg, [])])


def rule_b2_logs(cfg: Config, st: CheckState) -> RuleResult:
    runs = st.claimed_runs
    times = [(r.train_time_ms / 1000.0, r) for r in runs if r.train_time_ms is not None]
    if not times:
        return _not_stated(cfg, "B2", "training", len(runs))
    limit = _budget_limit(cfg, "B2")
    over = [(t, r) for t, r in times if t > limit]
    worst_t = max(t for t, _ in times)
    if over:
        fs = [Finding("B2", Status.FAIL, f"{_name(r.logs[0].path)} (seed {_seed(r.seed)}) states {t:.1f} s of "
                      f"training (> {limit:.0f} s).", [Evidence(where=_name(r.logs[0].path), time_s=t)])
              for t, r in over]
        return _row(cfg, "B2", Status.FAIL, f"training {worst_t:.1f} s stated (limit {limit:.0f} s)", fs)
    return _row(cfg, "B2", Status.PASS, f"claimed runs' logs state at most {worst_t:.1f} s of training "
                "(self-reported; measured with --run --scale full)")


@dataclass
class _B3Run:
    """One claimed run's stated evaluation: the reported pass plus adaptation stated before the artifact."""

    run: Any  # logs.SeedRun
    log: Any  # logs.LogSummary of the reported score
    pass_s: float | None  # the reported pass's stated eval time; None when unstated
    adapt_log: Any  # logs.LogSummary stating adaptation before its artifact, or None
    adapt_s: float

    @property
    def total_s(self) -> float | None:
        """Adaptation plus the reported pass; a stated total_eval_time may already hold the adaptation, so
        the larger of the two then (a lower bound). With the pass unstated, the adaptation alone (a lower bound)."""
        if self.pass_s is None:
            return self.adapt_s if self.adapt_log is not None else None
        if _stated_total(self.log):
            return max(self.pass_s, self.adapt_s)
        return self.pass_s + self.adapt_s


def _stated_total(lg: Any) -> bool:
    """The log's eval time is a stated total_eval_time (every pass), not one score line's."""
    return (lg.eval_time_source or "").startswith("total_eval_time")


def _b3_runs(runs: list[Any]) -> list[_B3Run]:
    out = []
    for r in runs:
        lg = r.final_summary
        if lg is None:
            continue
        pass_s = lg.eval_time_ms / 1000.0 if lg.eval_time_ms is not None else None
        ad = r.adaptation_log
        out.append(_B3Run(r, lg, pass_s, ad, ad.adaptation_ms / 1000.0 if ad is not None else 0.0))
    return out


def _b3_over(b: _B3Run, limit: float) -> Finding:
    lg, r = b.log, b.run
    if b.adapt_log is None:
        return Finding("B3", Status.FAIL, f"{_name(lg.path)} (seed {_seed(r.seed)}) states {b.pass_s:.1f} s of "
                       f"evaluation (> {limit:.0f} s), from {lg.eval_time_source}.",
                       [Evidence(where=_name(lg.path), time_s=b.pass_s, detail=lg.eval_time_source or "")])
    ad = b.adapt_log
    phases = " + ".join(f"{a.ms / 1000.0:.1f} s ({a.tag}, line {a.lines[-1]})" for a in ad.adaptation)
    ev = [Evidence(where=f"{_name(ad.path)}:{a.lines[-1]}", time_s=a.ms / 1000.0,
                   detail=f"{a.tag}: {a.how}, stated before the artifact (size line {a.artifact_line})")
          for a in ad.adaptation]
    if b.pass_s is None:
        msg = (f"{_name(ad.path)} (seed {_seed(r.seed)}) states {b.adapt_s:.1f} s of adaptation before the artifact "
               f"({phases}): over {limit:.0f} s before the reported pass, whose time is not stated.")
    else:
        final = r.final.line_no if r.final is not None else None
        ev.append(Evidence(where=_name(lg.path) + (f":{final}" if final else ""), time_s=b.pass_s,
                           detail=f"the reported pass, from {lg.eval_time_source}"))
        how = "the larger of the two: the stated total may hold the adaptation" if _stated_total(lg) else ""
        msg = (f"{_name(ad.path)} (seed {_seed(r.seed)}): adaptation before the artifact {phases} + the reported "
               f"pass {b.pass_s:.1f} s ({lg.eval_time_source}"
               + (f", in {_name(lg.path)}" if lg is not ad else "") + f") = {b.total_s:.1f} s of evaluation"
               + (f" ({how})" if how else "") + f" (> {limit:.0f} s).")
    return Finding("B3", Status.FAIL, msg, ev)


def rule_b3_logs(cfg: Config, st: CheckState) -> RuleResult:
    """B3 from the claimed runs: the evaluation the log of the claimed score states (an evaluation-only
    rerun of a seed replaces the training log's evaluation; never added to it), plus evaluation-time
    adaptation a log states before its artifact (pre-quant TTT). Score-first TTT after the artifact is in
    the reported pass's eval_time already."""
    runs = st.claimed_runs
    limit = _budget_limit(cfg, "B3")
    b3 = _b3_runs(runs)
    timed = [b for b in b3 if b.pass_s is not None]
    over = [b for b in b3 if b.total_s is not None and b.total_s > limit]
    if over:
        worst_t = max(b.total_s or 0.0 for b in over)
        adapted = " incl. adaptation before the artifact" if any(b.adapt_log is not None for b in over) else ""
        return _row(cfg, "B3", Status.FAIL, f"evaluation {worst_t:.1f} s stated{adapted} (limit {limit:.0f} s)",
                    [_b3_over(b, limit) for b in over])
    if not timed:
        return _not_stated(cfg, "B3", "evaluation", len(runs))
    worst_t = max(b.total_s or 0.0 for b in timed)
    unstated = [r for r in runs if r.final_summary is None or r.final_summary.eval_time_ms is None]
    note = (f"; not stated for seed(s) {', '.join(_seed(r.seed) for r in unstated)}" if unstated else "")
    adapt_s = max((b.adapt_s for b in b3), default=0.0)
    if adapt_s:
        note += f"; incl. up to {adapt_s:.1f} s of adaptation stated before the artifact"
    # every post-training evaluation one log states, not only the reported pass: may include diagnostics
    sums = [((b.run.eval_time_sum_ms or 0.0) / 1000.0 + b.adapt_s, b.run) for b in b3
            if b.run.eval_time_sum_ms or b.adapt_s]
    over_sum = [(t, r) for t, r in sums if t > limit]
    if over_sum:
        fs = [Finding("B3", Status.WARN, f"{_name(r.path)}: the evaluations it states"
                      + (" and the adaptation before the artifact" if r.adaptation_log is not None else "")
                      + f" add up to {t:.1f} s (> {limit:.0f} s), though the reported pass alone is within budget.",
                      [Evidence(where=_name(r.path), time_s=t)]) for t, r in over_sum]
        return _row(cfg, "B3", Status.WARN, f"reported pass {worst_t:.1f} s; all stated evaluations of one run "
                    f"{max(t for t, _ in over_sum):.1f} s (limit {limit:.0f} s){note}", fs)
    return _row(cfg, "B3", Status.PASS, f"claimed runs' logs state at most {worst_t:.1f} s of evaluation "
                f"(self-reported){note}")


def rule_b5(cfg: Config, st: CheckState, opts: CheckOptions) -> tuple[RuleResult, Any]:
    """B5 and the significance test behind it (None when not run)."""
    from harness.check.significance import one_sided_improvement_test

    p = cfg.rule_params("B5")
    ref = opts.reference_val_loss
    if ref is None:
        ref = cfg.get("check", "reference_val_loss")
    runs = getattr(st, "claimed_runs", None)
    runs = st.runs if runs is None else runs
    losses = [r.final.val_loss for r in runs if r.final is not None and r.final.val_loss is not None]
    if ref is None:
        return _row(cfg, "B5", Status.NOT_RUN, "no reference score (give --reference-val-loss)"), None
    if len(losses) < int(p["min_seeds"]):
        return _row(cfg, "B5", Status.INCONCLUSIVE, f"{len(losses)} seed(s) with val_loss; need "
                    f"{p['min_seeds']}"), None
    alpha = opts.p_value if opts.p_value is not None else float(p["p_value"])
    res = one_sided_improvement_test(losses, float(ref), margin=float(p["min_improvement_nats"]), alpha=alpha)
    # beside the strict level, the level the leaderboard practised (B5 practice_p_value)
    practice = float(p["practice_p_value"])
    if res.p_value is not None:
        res.message += (f"; at the practised p<{practice:g}: "
                        f"{'significant' if res.p_value < practice else 'not significant'}")
    if res.significant:
        return _row(cfg, "B5", Status.PASS, res.message), res
    f = Finding("B5", Status.WARN, res.message, [Evidence(detail=f"per-seed val_loss {losses}")])
    return _row(cfg, "B5", Status.WARN, res.message, [f]), res
