"""`harness check`: turn a submission folder (and optionally a run) into a Report.

Collection happens in submission/unwrap/artifact/logs; this module decides rule statuses from what was
collected and hands the Report to harness.report. Input problems (malformed JSON, truncated artifact,
empty logs ...) are findings in the report AND one line each on stderr with exit code 3.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from harness import __version__
from harness.check.accounting import ByteTotals, byte_totals
from harness.config import Config
from harness.errors import BadInput
from harness.results import Evidence, Finding, Report, RuleResult, Status
from harness.rules import rule_order
from harness.check.submission import Submission, code_files, load_submission, unaccounted_code

@dataclass
class CheckOptions:
    artifact: str | None = None
    score_tag: str | None = None
    reference_val_loss: float | None = None
    p_value: float | None = None
    hints: bool = True


@dataclass
class CheckState:
    """Everything collected about a folder, kept for the report's sections."""

    sub: Submission
    source: str | None = None
    unwrapped: Any = None
    artifact: Any = None
    logs: list[Any] = field(default_factory=list)
    totals: ByteTotals | None = None
    runs: list[Any] = field(default_factory=list)  # logs.SeedRun: one per seed (train log + eval logs)
    input_errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unaccounted: Any = None


def new_report(path: str | Path, command: str) -> Report:
    return Report(
        submission=str(path),
        command=command,
        harness_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def _jsonable(x: Any) -> Any:
    if is_dataclass(x):
        return {k: _jsonable(v) for k, v in asdict(x).items()}
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _rr(cfg: Config, rule_id: str, status: Status, summary: str, findings: list[Finding] | None = None,
        checker: str = "check") -> RuleResult:
    rule = cfg.rules.get(rule_id)
    return RuleResult(
        rule_id=rule_id, title=rule.title if rule else rule_id, status=status, summary=summary,
        findings=findings or [], checker=checker, severity=rule.severity if rule else "error",
    )


# ---------------------------------------------------------------- collection

def collect(path: str | Path, opts: CheckOptions) -> CheckState:
    from harness.check.artifact import inspect_artifact
    from harness.check.logs import parse_log
    from harness.check.unwrap import unwrap_file

    sub = load_submission(path, opts.artifact)
    st = CheckState(sub=sub)
    for m in sub.missing:
        st.input_errors.append(f"{sub.path}: missing {m}")
    if sub.claims_error:
        st.input_errors.append(sub.claims_error)
    if sub.script is not None:
        try:
            st.unwrapped = unwrap_file(sub.script)
            st.source = st.unwrapped.source
        except BadInput as e:
            st.input_errors.append(str(e))
    if sub.artifact is not None:
        st.artifact = inspect_artifact(sub.artifact)
        # a custom (non-torch) format is not bad input: S3 says it could not be verified
        if st.artifact.problem in ("truncated", "bomb", "unreadable", "unknown_container"):
            st.input_errors.append(f"{sub.artifact}: {st.artifact.message}")
    for lp in sub.logs:
        try:
            summary = parse_log(lp, score_tag=opts.score_tag)
        except BadInput as e:
            st.input_errors.append(str(e))
            continue
        st.logs.append(summary)
        if summary.final is None:
            why = "; ".join(summary.warnings) if summary.warnings else "no line carrying val_bpb"
            unreadable = any(w == "empty file" or "binary garbage" in w for w in summary.warnings)
            if unreadable:
                st.input_errors.append(f"{lp}: no reported score ({why})")
            else:  # e.g. an ablation or quantization-study log beside the seed logs
                st.notes.append(f"{lp.name}: no reported score ({why}); not counted as a seed log")
    if st.logs and all(lg.final is None for lg in st.logs):
        st.input_errors.append(f"{sub.path}: no log states a final score")
    from harness.check.logs import seed_runs

    st.runs = seed_runs(st.logs)
    return st


def _model_bytes(st: CheckState) -> tuple[int | None, str]:
    art = st.artifact
    if art is not None and art.problem not in ("truncated", "unreadable"):
        return art.file_bytes, f"artifact {Path(art.path).name}"
    stated = [(lg.model_bytes, lg.path) for lg in st.logs if getattr(lg, "model_bytes", None)]
    if stated:
        b, p = max(stated)
        return b, f"log {Path(p).name} (largest stated over {len(stated)} log(s))"
    return None, "unknown"


# ---------------------------------------------------------------- rules

def rule_s1(cfg: Config, st: CheckState) -> RuleResult:
    sub = st.sub
    problems = [f"missing {m}" for m in sub.missing]
    if sub.claims_error:
        problems.append(sub.claims_error)
    if problems:
        f = Finding("S1", Status.FAIL, "The submission folder is incomplete or unreadable.",
                    [Evidence(detail=p) for p in problems])
        return _rr(cfg, "S1", Status.FAIL, "; ".join(problems), [f])
    n = len(sub.logs)
    return _rr(cfg, "S1", Status.PASS, f"train_gpt.py, README.md, submission.json, {n} log(s)")


def rule_s3(cfg: Config, st: CheckState) -> RuleResult:
    art = st.artifact
    if art is None:
        return _rr(cfg, "S3", Status.NOT_RUN, "no artifact in the folder (give one with --artifact)")
    if art.problem == "not_a_model":
        f = Finding("S3", Status.INCONCLUSIVE, f"Artifact decompressed but holds no tensors: {art.message}",
                    [Evidence(where=Path(art.path).name, detail=art.message)])
        return _rr(cfg, "S3", Status.INCONCLUSIVE, f"not a torch model: {art.message}", [f])
    if art.problem:
        ev = Evidence(where=Path(art.path).name, detail=art.message)
        if art.unsafe_globals:
            ev.detail += f" (wants {', '.join(art.unsafe_globals[:5])})"
        f = Finding("S3", Status.FAIL, f"Artifact {art.problem}: {art.message}", [ev])
        return _rr(cfg, "S3", Status.FAIL, f"{art.problem}: {art.message}", [f])
    layers = " > ".join(art.layers) if art.layers else art.container
    q = f", {art.quant_format}" if art.quant_format else ""
    return _rr(cfg, "S3", Status.PASS,
               f"{layers}: {art.tensor_count} tensors, {art.parameters:,} parameters{q}")


def rule_b1(cfg: Config, st: CheckState) -> RuleResult:
    t = st.totals
    params = cfg.rule_params("B1")
    if t is None:
        return _rr(cfg, "B1", Status.INCONCLUSIVE, "no train_gpt.py to count")
    if t.model_bytes is None:
        f = Finding("B1", Status.INCONCLUSIVE,
                    "Compressed model bytes unknown: no artifact in the folder and no log line states them.",
                    [Evidence(detail=f"code: practised {t.practised_code:,} B, strict {t.strict_code:,} B")])
        return _rr(cfg, "B1", Status.INCONCLUSIVE, "model bytes unknown (no artifact, no size line)", [f])
    cap = t.cap
    decide = params.get("decide_on", "practised")
    pt, stt = t.practised_total or 0, t.strict_total or 0
    summary = (f"practised {pt:,} B ({'over' if pt > cap else 'under'}), strict {stt:,} B "
               f"({'over' if stt > cap else 'under'}) vs {cap:,}; model bytes from {t.model_source}")
    findings = []
    decided = stt if decide == "strict" else pt
    if decided > cap:
        findings.append(Finding("B1", Status.FAIL, f"The {decide} total {decided:,} B exceeds {cap:,} B.",
                                [Evidence(where="train_gpt.py", detail=summary)]))
        return _rr(cfg, "B1", Status.FAIL, summary, findings)
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
        return _rr(cfg, "B1", Status.WARN, summary, findings)
    if findings:
        return _rr(cfg, "B1", Status.WARN, summary, findings)
    return _rr(cfg, "B1", Status.PASS, summary)


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol + 1e-12


def rule_s2(cfg: Config, st: CheckState) -> RuleResult:
    claims = st.sub.claims
    params = cfg.rule_params("S2")
    tol = float(params.get("val_bpb_abs_tolerance", 5e-4))
    if claims is None:
        return _rr(cfg, "S2", Status.INCONCLUSIVE, "no readable submission.json to compare")
    scored = [r for r in st.runs if r.final is not None]
    if not scored:
        return _rr(cfg, "S2", Status.INCONCLUSIVE, "no log states a final score")
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
        if ab is not None and lg.total_bytes is not None and int(ab) != lg.total_bytes:
            bad(f"Seed {seed}: claimed {int(ab):,} bytes, log states {lg.total_bytes:,}.",
                f"{Path(lg.path).name}")
    totals = [r.total_bytes for r in scored if r.total_bytes is not None]
    if claims.bytes_total is not None and totals and claims.bytes_total not in totals:
        if abs(claims.bytes_total - statistics.fmean(totals)) < 1:
            pass  # the mean over seeds (records' README "Mean" row); B1 still decides on the largest
        elif claims.bytes_total < max(totals):
            bad(f"bytes_total {claims.bytes_total:,} is below the largest total a log states ({max(totals):,}).",
                "submission.json", ", ".join(f"{t:,}" for t in totals))
        elif claims.bytes_total != max(totals):
            bad(f"bytes_total {claims.bytes_total:,} matches no log total ({', '.join(f'{t:,}' for t in totals)}).",
                "submission.json")
    if claims.bytes_code is not None and st.totals is not None:
        stated = {r.code_bytes for r in scored if r.code_bytes is not None}
        ok = {st.totals.practised_code} | stated
        if st.unwrapped is not None:
            ok.add(st.unwrapped.source_bytes)
        if claims.bytes_code not in ok:
            bad(f"bytes_code {claims.bytes_code:,} is neither train_gpt.py's {st.totals.practised_code:,} B "
                f"nor a code size the logs state.", "submission.json")
    hw_logs = {lg.hardware for lg in scored if getattr(lg, "hardware", None)}
    if claims.hardware and hw_logs:
        norm = lambda s: "".join(ch for ch in s.lower().replace("×", "x") if ch.isalnum())  # noqa: E731
        if not any(norm(h) in norm(claims.hardware) or norm(claims.hardware) in norm(h) for h in hw_logs):
            bad(f"Hardware claimed '{claims.hardware}' but logs state {sorted(hw_logs)}.", "submission.json")
    n = len(scored)
    if findings:
        return _rr(cfg, "S2", Status.FAIL, f"{len(findings)} disagreement(s) between submission.json and "
                   f"{n} log(s)", findings)
    return _rr(cfg, "S2", Status.PASS, f"claims agree with {n} log(s): mean val_bpb {mean_bpb:.6f}")


def _budget_limit(cfg: Config, rid: str) -> float:
    p = cfg.rule_params(rid)
    return float(p.get("max_seconds", 600)) + float(p.get("grace_seconds", 0))


def _stated_time(cfg: Config, rid: str, what: str, times: list[tuple[float, Any]]) -> RuleResult | None:
    """INCONCLUSIVE without a stated time, FAIL for each log over the budget, None when all are within it."""
    limit = _budget_limit(cfg, rid)
    if not times:
        return _rr(cfg, rid, Status.INCONCLUSIVE, f"no log states {'an' if what[0] in 'aeiou' else 'a'} {what} time")
    over = [(t, lg) for t, lg in times if t > limit]
    if not over:
        return None
    worst_t = max(t for t, _ in times)
    fs = [Finding(rid, Status.FAIL, f"{Path(lg.path).name} states {t:.1f} s of {what} (> {limit:.0f} s).",
                  [Evidence(where=Path(lg.path).name, time_s=t)]) for t, lg in over]
    return _rr(cfg, rid, Status.FAIL, f"{what} {worst_t:.1f} s stated (limit {limit:.0f} s)", fs)


def rule_b2_logs(cfg: Config, st: CheckState) -> RuleResult:
    times = [(lg.train_time_ms / 1000.0, lg) for lg in st.logs if getattr(lg, "train_time_ms", None) is not None]
    decided = _stated_time(cfg, "B2", "training", times)
    if decided is not None:
        return decided
    return _rr(cfg, "B2", Status.PASS, f"logs state at most {max(t for t, _ in times):.1f} s of training "
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
        return _rr(cfg, "B3", Status.WARN, f"reported pass {worst_t:.1f} s; all stated evaluations "
                   f"{max(t for t, _ in over_sum):.1f} s (limit {limit:.0f} s)", fs)
    return _rr(cfg, "B3", Status.PASS, f"logs state at most {worst_t:.1f} s of evaluation (self-reported)")


def rule_b5(cfg: Config, st: CheckState, opts: CheckOptions) -> tuple[RuleResult, Any]:
    from harness.check.significance import one_sided_improvement_test

    p = cfg.rule_params("B5")
    ref = opts.reference_val_loss
    if ref is None:
        ref = cfg.get("check", "reference_val_loss")
    losses = [r.final.val_loss for r in st.runs if r.final is not None and r.final.val_loss is not None]
    if ref is None:
        return _rr(cfg, "B5", Status.NOT_RUN, "no reference score (give --reference-val-loss)"), None
    if len(losses) < int(p.get("min_seeds", 2)):
        return _rr(cfg, "B5", Status.INCONCLUSIVE, f"{len(losses)} seed(s) with val_loss; need "
                   f"{p.get('min_seeds', 2)}"), None
    alpha = opts.p_value if opts.p_value is not None else float(p.get("p_value", 0.01))
    res = one_sided_improvement_test(losses, float(ref), margin=float(p.get("min_improvement_nats", 0.005)),
                                     alpha=alpha)
    if res.significant:
        return _rr(cfg, "B5", Status.PASS, res.message), res
    f = Finding("B5", Status.WARN, res.message, [Evidence(detail=f"per-seed val_loss {losses}")])
    return _rr(cfg, "B5", Status.WARN, res.message, [f]), res


# ---------------------------------------------------------------- assembly

def check_folder(path: str | Path, cfg: Config, opts: CheckOptions) -> tuple[Report, CheckState]:
    st = collect(path, opts)
    report = new_report(path, "check")
    sub = st.sub
    if sub.script is not None:
        files = code_files(sub.script, st.source if st.source is not None else "")
        st.unaccounted = unaccounted_code(sub.script, st.source if st.source is not None else "", files)
        mb, src = _model_bytes(st)
        cap = int(cfg.rule_params("B1").get("max_bytes", 16_000_000))
        st.totals = byte_totals(files, cap, mb, src,
                                st.unwrapped.source_bytes if st.unwrapped is not None else None)
    results = [rule_s1(cfg, st), rule_s2(cfg, st), rule_s3(cfg, st), rule_b1(cfg, st),
               rule_b2_logs(cfg, st), rule_b3_logs(cfg, st)]
    b5, sig = rule_b5(cfg, st, opts)
    results.append(b5)
    report.rules = results
    if opts.hints and st.source is not None:
        from harness.check.hints import scan_source

        name = sub.script.name if sub.script else "train_gpt.py"
        if st.unwrapped is not None and st.unwrapped.wrapped:
            name += " (unwrapped)"  # line numbers are those of the exec'd source, not of the wrapper
        report.hints = scan_source(st.source, name)
    report.sections["accounting"] = st.totals.to_dict() if st.totals else None
    report.sections["artifact"] = _jsonable(st.artifact)
    report.sections["logs"] = [_log_section(lg) for lg in st.logs]
    report.sections["claims"] = _jsonable(sub.claims.raw) if sub.claims else None
    report.sections["significance"] = _jsonable(sig)
    if st.unwrapped is not None:
        report.sections["code"] = {"wrapped": st.unwrapped.wrapped, "layers": st.unwrapped.layers,
                                   "wrapper_bytes": st.unwrapped.wrapper_bytes,
                                   "source_bytes": st.unwrapped.source_bytes,
                                   "note": getattr(st.unwrapped, "note", "")}
    report.input_errors = list(st.input_errors)
    report.notes.extend(st.notes)
    return report, st


def _log_section(lg: Any) -> dict:
    d = _jsonable(lg)
    d.pop("scores", None)  # every val line is noise in a report; the final one is kept
    return d


def finalize(report: Report, cfg: Config) -> None:
    """Add NOT RUN rows for enabled rules nobody checked; order rows; apply not_run_is_inconclusive."""
    have = {r.rule_id for r in report.rules}
    for rid in sorted(cfg.enabled, key=rule_order):
        if rid not in have and rid in cfg.rules:
            report.rules.append(_rr(cfg, rid, Status.NOT_RUN, "needs a run (harness check --run)", checker=""))
    report.rules = [r for r in report.rules if r.rule_id in cfg.enabled]
    report.rules.sort(key=lambda r: rule_order(r.rule_id))
    if cfg.get("harness", "not_run_is_inconclusive", False):
        for r in report.rules:
            if r.status is Status.NOT_RUN:
                r.status = Status.INCONCLUSIVE


def write_outputs(report: Report, json_out: str | None, md_out: str | None) -> None:
    from harness.report.json_report import write_json
    from harness.report.markdown import write_markdown

    if json_out:
        write_json(report, json_out)
    if md_out:
        write_markdown(report, md_out)


def main_check(args: argparse.Namespace, cfg: Config) -> int:
    from harness.report.console import render_report

    opts = CheckOptions(
        artifact=args.artifact,
        score_tag=args.score_tag or cfg.get("check", "score_tag") or None,
        reference_val_loss=args.reference_val_loss,
        p_value=args.p_value,
        hints=not args.no_hints,
    )
    report, st = check_folder(args.path, cfg, opts)
    if args.run:
        from harness.run.fold import fold_run  # the run's rule results join the same report

        fold_run(report, args, cfg, probes=args.probes)
    finalize(report, cfg)
    write_outputs(report, args.json_out, args.md_out)
    render_report(report)
    for e in report.input_errors:
        sys.stderr.write(f"harness: bad input: {e}\n")
    return int(report.exit_code)
