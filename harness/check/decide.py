"""The folder rules: S1-S3, B1, B2/B3 as the logs state them, B5; each from what collect() gathered.

Every row is made by harness.results.rule_row with checker "check".
"""

from __future__ import annotations

import statistics
from functools import partial
from pathlib import Path
from typing import Any

from harness.check.collect import CheckState
from harness.check.options import CheckOptions
from harness.config import Config
from harness.results import Evidence, Finding, RuleResult, Status, rule_row

_row = partial(rule_row, checker="check")


def rule_s1(cfg: Config, st: CheckState) -> RuleResult:
    sub = st.sub
    problems = [f"missing {m}" for m in sub.missing]
    if sub.claims_error:
        problems.append(sub.claims_error)
    if problems:
        f = Finding("S1", Status.FAIL, "The submission folder is incomplete or unreadable.",
                    [Evidence(detail=p) for p in problems])
        return _row(cfg, "S1", Status.FAIL, "; ".join(problems), [f])
    n = len(sub.logs)
    return _row(cfg, "S1", Status.PASS, f"train_gpt.py, README.md, submission.json, {n} log(s)")


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


def rule_b1(cfg: Config, st: CheckState) -> RuleResult:
    t = st.totals
    params = cfg.rule_params("B1")
    if t is None:
        return _row(cfg, "B1", Status.INCONCLUSIVE, "no train_gpt.py to count")
    if t.model_bytes is None:
        f = Finding("B1", Status.INCONCLUSIVE,
                    "Compressed model bytes unknown: no artifact in the folder and no log line states them.",
                    [Evidence(detail=f"code: practised {t.practised_code:,} B, strict {t.strict_code:,} B")])
        return _row(cfg, "B1", Status.INCONCLUSIVE, "model bytes unknown (no artifact, no size line)", [f])
    cap = t.cap
    decide = params["decide_on"]
    pt, stt = t.practised_total or 0, t.strict_total or 0
    summary = (f"practised {pt:,} B ({'over' if pt > cap else 'under'}), strict {stt:,} B "
               f"({'over' if stt > cap else 'under'}) vs {cap:,}; model bytes from {t.model_source}")
    findings = []
    decided = stt if decide == "strict" else pt
    if decided > cap:
        findings.append(Finding("B1", Status.FAIL, f"The {decide} total {decided:,} B exceeds {cap:,} B.",
                                [Evidence(where="train_gpt.py", detail=summary)]))
        return _row(cfg, "B1", Status.FAIL, summary, findings)
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
        extra = ", ".join(f"{c['file']} ({c['bytes']:,} B)" for c in t.code_files if c["why"] != "script")
        findings.append(Finding("B1", Status.WARN,
                                f"Over the cap when every needed code file counts (strict {stt:,} B): {extra}.",
                                [Evidence(detail=extra)]))
        return _row(cfg, "B1", Status.WARN, summary, findings)
    if findings:
        return _row(cfg, "B1", Status.WARN, summary, findings)
    return _row(cfg, "B1", Status.PASS, summary)


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol + 1e-12


def rule_s2(cfg: Config, st: CheckState) -> RuleResult:
    claims = st.sub.claims
    params = cfg.rule_params("S2")
    tol = float(params["val_bpb_abs_tolerance"])
    btol = int(params["bytes_abs_tolerance"])
    if claims is None:
        return _row(cfg, "S2", Status.INCONCLUSIVE, "no readable submission.json to compare")
    scored = [r for r in st.runs if r.final is not None]
    if not scored:
        return _row(cfg, "S2", Status.INCONCLUSIVE, "no log states a final score")
    findings: list[Finding] = []

    def bad(msg: str, where: str | None = None, detail: str = "") -> None:
        findings.append(Finding("S2", Status.FAIL, msg, [Evidence(where=where, detail=detail)]))

    bpbs = [lg.final.val_bpb for lg in scored]
    mean_bpb = statistics.fmean(bpbs)
    if claims.val_bpb is not None and not _close(claims.val_bpb, mean_bpb, tol):
        per = ", ".join(f"{Path(lg.path).name}={lg.final.val_bpb:.6f}" for lg in scored)
        bad(f"submission.json val_bpb {claims.val_bpb:.6f} differs from the logs' mean {mean_bpb:.6f}.",
            "submission.json", per)
    losses = [lg.final.val_loss for lg in scored if lg.final.val_loss is not None]
    if claims.val_loss is not None and len(losses) == len(scored):
        mean_loss = statistics.fmean(losses)
        if not _close(claims.val_loss, mean_loss, tol * 2):
            bad(f"submission.json val_loss {claims.val_loss:.6f} differs from the logs' mean {mean_loss:.6f}.",
                "submission.json")
    log_seeds = {lg.seed for lg in scored if lg.seed is not None}
    if claims.seeds and log_seeds and set(claims.seeds) != log_seeds:
        bad(f"Seeds claimed {sorted(claims.seeds)} but the logs are for {sorted(log_seeds)}.", "submission.json")
    by_seed = {lg.seed: lg for lg in scored if lg.seed is not None}
    for seed, entry in claims.per_seed.items():
        lg = by_seed.get(seed)
        if lg is None:
            if log_seeds:
                bad(f"Seed {seed} is claimed but no log reports it.", "submission.json")
            continue
        if "val_bpb" in entry and not _close(entry["val_bpb"], lg.final.val_bpb, tol):
            bad(f"Seed {seed}: claimed val_bpb {entry['val_bpb']:.6f}, log states {lg.final.val_bpb:.6f}.",
                f"{Path(lg.path).name}:{lg.final.line_no}", lg.final.text.strip()[:160])
        ab = entry.get("artifact_bytes", entry.get("bytes_total"))
        if ab is not None and lg.total_bytes is not None and abs(int(ab) - lg.total_bytes) > btol:
            bad(f"Seed {seed}: claimed {int(ab):,} bytes, log states {lg.total_bytes:,}.",
                f"{Path(lg.path).name}")
    totals = [r.total_bytes for r in scored if r.total_bytes is not None]
    if claims.bytes_total is not None and totals and all(abs(claims.bytes_total - t) > btol for t in totals):
        if abs(claims.bytes_total - statistics.fmean(totals)) < 1:
            pass  # the mean over seeds (records' README "Mean" row); B1 still decides on the largest
        elif claims.bytes_total < max(totals) - btol:
            bad(f"bytes_total {claims.bytes_total:,} is below the largest total a log states ({max(totals):,}).",
                "submission.json", ", ".join(f"{t:,}" for t in totals))
        elif abs(claims.bytes_total - max(totals)) > btol:
            bad(f"bytes_total {claims.bytes_total:,} matches no log total ({', '.join(f'{t:,}' for t in totals)}).",
                "submission.json")
    if claims.bytes_code is not None and st.totals is not None:
        stated = {r.code_bytes for r in scored if r.code_bytes is not None}
        ok = {st.totals.practised_code} | stated
        if st.unwrapped is not None:
            ok.add(st.unwrapped.source_bytes)
        if all(abs(claims.bytes_code - x) > btol for x in ok):
            bad(f"bytes_code {claims.bytes_code:,} is neither train_gpt.py's {st.totals.practised_code:,} B "
                f"nor a code size the logs state.", "submission.json")
    hw_logs = {lg.hardware for lg in scored if getattr(lg, "hardware", None)}
    if claims.hardware and hw_logs:
        norm = lambda s: "".join(ch for ch in s.lower().replace("×", "x") if ch.isalnum())  # noqa: E731
        if not any(norm(h) in norm(claims.hardware) or norm(claims.hardware) in norm(h) for h in hw_logs):
            bad(f"Hardware claimed '{claims.hardware}' but logs state {sorted(hw_logs)}.", "submission.json")
    n = len(scored)
    if findings:
        return _row(cfg, "S2", Status.FAIL, f"{len(findings)} disagreement(s) between submission.json and "
                    f"{n} log(s)", findings)
    return _row(cfg, "S2", Status.PASS, f"claims agree with {n} log(s): mean val_bpb {mean_bpb:.6f}")


def _budget_limit(cfg: Config, rid: str) -> float:
    p = cfg.rule_params(rid)
    return float(p["max_seconds"]) + float(p["grace_seconds"])


def _stated_time(cfg: Config, rid: str, what: str, times: list[tuple[float, Any]]) -> RuleResult | None:
    """INCONCLUSIVE without a stated time, FAIL for each log over the budget, None when all are within it."""
    limit = _budget_limit(cfg, rid)
    if not times:
        return _row(cfg, rid, Status.INCONCLUSIVE, f"no log states {'an' if what[0] in 'aeiou' else 'a'} {what} time")
    over = [(t, lg) for t, lg in times if t > limit]
    if not over:
        return None
    worst_t = max(t for t, _ in times)
    fs = [Finding(rid, Status.FAIL, f"{Path(lg.path).name} states {t:.1f} s of {what} (> {limit:.0f} s).",
                  [Evidence(where=Path(lg.path).name, time_s=t)]) for t, lg in over]
    return _row(cfg, rid, Status.FAIL, f"{what} {worst_t:.1f} s stated (limit {limit:.0f} s)", fs)


def rule_b2_logs(cfg: Config, st: CheckState) -> RuleResult:
    times = [(lg.train_time_ms / 1000.0, lg) for lg in st.logs if getattr(lg, "train_time_ms", None) is not None]
    decided = _stated_time(cfg, "B2", "training", times)
    if decided is not None:
        return decided
    return _row(cfg, "B2", Status.PASS, f"logs state at most {max(t for t, _ in times):.1f} s of training "
                "(self-reported; measured with --run --scale full)")


def rule_b3_logs(cfg: Config, st: CheckState) -> RuleResult:
    times = []
    for run in st.runs:
        ms = run.eval_time_ms
        if ms is None and run.final is not None:
            ms = run.final.eval_time_ms
        if ms is not None:
            times.append((ms / 1000.0, run))
    decided = _stated_time(cfg, "B3", "evaluation", times)
    if decided is not None:
        return decided
    limit = _budget_limit(cfg, "B3")
    worst_t = max(t for t, _ in times)
    # every post-training evaluation a log states, not only the reported pass: all passes count (B3)
    sums = [(lg.eval_time_sum_ms / 1000.0, lg) for lg in st.logs if getattr(lg, "eval_time_sum_ms", None)]
    over_sum = [(t, lg) for t, lg in sums if t > limit]
    if over_sum:
        fs = [Finding("B3", Status.WARN, f"{Path(lg.path).name}: the evaluations it states add up to {t:.1f} s "
                      f"(> {limit:.0f} s), though the reported pass alone is within budget.",
                      [Evidence(where=Path(lg.path).name, time_s=t)]) for t, lg in over_sum]
        return _row(cfg, "B3", Status.WARN, f"reported pass {worst_t:.1f} s; all stated evaluations "
                    f"{max(t for t, _ in over_sum):.1f} s (limit {limit:.0f} s)", fs)
    return _row(cfg, "B3", Status.PASS, f"logs state at most {worst_t:.1f} s of evaluation (self-reported)")


def rule_b5(cfg: Config, st: CheckState, opts: CheckOptions) -> tuple[RuleResult, Any]:
    """B5 and the significance test behind it (None when not run)."""
    from harness.check.significance import one_sided_improvement_test

    p = cfg.rule_params("B5")
    ref = opts.reference_val_loss
    if ref is None:
        ref = cfg.get("check", "reference_val_loss")
    losses = [r.final.val_loss for r in st.runs if r.final is not None and r.final.val_loss is not None]
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
