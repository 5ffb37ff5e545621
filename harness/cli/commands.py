"""One function per subcommand: compose the stages (check, run, probes, verdict), build one report,
write it, render it, and return the exit code.

    check    the folder's rows; with --run the run's rows merged in (judged with what the folder's logs state
             about training: harness.verdict.budgets.claimed_training), then the probes' rows: the cheap
             ones (canary, sampled C2) unless --no-probes, the full ones with --probes
    run      the run's rows
    probe    the probes' rows
    verdict  the run's rows, re-judged from a saved run folder (no re-run)
    audit    many folders, each checked as check would in a child process, cached (harness.audit)
    workflow the shipped GitHub workflow; ci: its steps (harness.ci)
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

from harness.check.folder import check_folder
from harness.cli.options import Options, ProbeOptions
from harness.config import Config
from harness.errors import BadInput, Exit, RunFailed
from harness.merge import merge_rows
from harness.probes.results import merge_rule_results, probes_section_lines
from harness.probes.session import PROBES, probe_params, variant_estimate
from harness.probes.stage import probe_rule_results
from harness.report.build import finalize, fold_stage, new_report, write_outputs
from harness.report.console import print_rules, render_report
from harness.results import PART_RULES, Report, Stage, Status
from harness.rules import rule_order
from harness.run.console import print_run_summary
from harness.run.eval_only import EVAL_ONLY_DIR, combine, load_plan, plan_eval_only, rerun_kwargs, save_plan
from harness.run.judge import Judged, judge_run, load_saved_run
from harness.run.options import RunOptions
from harness.run.replay import rejudge_saved, replay
from harness.run.result import BUDGET_REASONS, RunResult
from harness.run.runner import run_submission
from harness.verdict.budgets import ClaimedTraining, claimed_training


def _say(line: str) -> None:
    sys.stderr.write(f"harness: {line}\n")


def _run(path: str, cfg: Config, opts: RunOptions, claimed: ClaimedTraining | None = None
         ) -> tuple[RunResult, Judged]:
    kw = opts.kwargs()
    result = run_submission(path, cfg, **kw)
    print_run_summary(result)
    first = None
    if (plan := plan_eval_only(path, result)) is not None:
        # the training run crashed after its artifact, and the record was evaluated by an evaluation-only rerun
        _say(plan.line())
        first, kw = result, rerun_kwargs(plan, kw, result)
        second = run_submission(path, cfg, **kw)
        save_plan(plan, first)
        print_run_summary(second)
        if not second.failed:
            result = second
    judged = judge_run(result, cfg, claimed=claimed)
    if opts.trace:  # C1/C3 rows one interval per value left undecided: a score-order replay may decide them
        judged = replay(path, cfg, kw, result, judged, claimed)
    if first is not None and plan is not None:  # plan is set whenever first is
        if result is first:
            judged.notes.append(f"{plan.line()}; the evaluation-only run failed too ({second.reason}: "
                                f"{second.message}), in {second.out_dir}")
        else:
            judged = combine(cfg, first, result, judged, plan, claimed)
    return result, judged


def fold_probes(report: Report, path: str, cfg: Config, run_opts: RunOptions, probe_opts: ProbeOptions,
                length: int | None = None, main: RunResult | None = None) -> None:
    """The probes' rows merged into the report's (trace) rows; a failed base run is a note, not a crash.
    main: the main run under the same options (its score line and cost plan the variants)."""
    try:
        rows, section = probe_rule_results(path, cfg, run_opts, probe_opts.which or PROBES, sampled=probe_opts.sampled,
                                           **({"length": length} if length else {}), main_result=main)
    except RunFailed as e:
        report.notes.append(f"probes not decided: {e}")
        _say(str(e))
        return
    fold_stage(report, Stage(rows, sections={"probes": section}), merge_rule_results)
    report.rules.sort(key=lambda r: rule_order(r.rule_id))
    cost = f"probes cost {section.get('wall_s', 0):.1f} s ({section.get('variants', 0)} variant streams" + (
        ", cheap default: C1 future, canaries, sampled C2; --no-probes skips them" if probe_opts.sampled else "") + ")"
    report.notes.append(cost)
    _say(cost)


def fold_byte_tables(report: Report, path: str, cfg: Config, run_opts: RunOptions, result: RunResult) -> None:
    """C4 by the record's own byte table, run alone, when the trace did not decide C4 (the run never reached
    its score, or the printed number could not be matched): see harness.run.byte_table."""
    c4 = next((r for r in report.rules if r.rule_id == "C4"), None)
    if c4 is not None and c4.status in (Status.PASS, Status.FAIL, Status.WARN):
        return
    tok = result.tokenizer
    if not tok or "C4" not in cfg.enabled:
        return
    from harness.run.byte_table import byte_table_row, run_builders

    verdicts = run_builders(path, cfg, run_opts.kwargs(), tok, result.vocab_size)
    row = byte_table_row(verdicts, cfg)
    if row is not None:
        fold_stage(report, Stage([row]), partial(merge_rows, label="byte table"))


def _why_no_probes(probes: ProbeOptions | None, result: RunResult, cfg: Config, judged: Any = None) -> str | None:
    """Why the probes stay off after this run (None: run them). The cheap default is cheap only where a
    variant is: each variant re-runs the evaluation, so a run longer than [probes] default_budget_s / 2
    (two variants at least) skips them and says so; --probes always runs them."""
    if probes is None:
        return None
    if result.failed:
        return "the run failed"
    failed = [r.rule_id for r in getattr(judged, "rules", ()) if r.status is Status.FAIL
              and r.rule_id in PART_RULES["legality"]]
    if probes.sampled and failed:  # the cheap probes decide only by a violation: one is already shown
        return f"the trace already found a violation ({', '.join(failed)}); --probes runs them anyway"
    if judged is not None and "eval_only" in getattr(judged, "sections", {}):
        return ("the score came from an evaluation-only rerun of the training run's artifact; probe variants "
                "are whole runs of the script and would not be run the same way")
    budget = float(probe_params(cfg)["default_budget_s"])
    cost, what = variant_estimate(result)
    if probes.sampled and cost is not None and 2 * cost > budget:
        return (f"the run took {cost:.0f} s{what} and each probe variant re-runs its evaluation, past the "
                f"cheap probes' {budget:.0f} s budget ([probes] default_budget_s); C2 is decided with --probes")
    return None


def check(o: Options, cfg: Config) -> int:
    report = new_report(o.path, "check", cfg)
    folder = check_folder(o.path, cfg, o.check)
    fold_stage(report, folder)
    if o.run is not None:
        # the run's B2 sizes reads after the script's training clock by what the claimed runs' logs state
        claimed_logs = [lg for lg in folder.sections.get("logs") or () if lg.get("claimed", True)]
        result, judged = _run(o.path, cfg, o.run, claimed_training(claimed_logs))
        fold_stage(report, judged, partial(merge_rows, label="run"))
        if result.failed:
            report.run_failed = f"{result.reason}: {result.message}"  # exit 4, in the JSON too
            _say(f"run failed: {result.reason}: {result.message}")
        fold_byte_tables(report, o.path, cfg, o.run, result)
        skip = _why_no_probes(o.probes, result, cfg, judged)
        if skip:
            report.notes.append(f"probes not run: {skip}")
            _say(f"probes not run: {skip}")
        elif o.probes is not None:
            # every variant is served as files of the main run's length: a probe looks like the main run
            fold_probes(report, o.path, cfg, o.run, o.probes, length=(result.served or {}).get("val_tokens"),
                        main=result)
    finalize(report, cfg)
    write_outputs(report, o.out.json, o.out.markdown)
    render_report(report)
    for e in report.input_errors:
        _say(f"bad input: {e}")
    return int(report.exit_code)


def _judged_report(o: Options, command: str, result: RunResult, judged: Judged, cfg: Config) -> int:
    """`harness run` and `harness verdict`: the run's rows; a failed run is one line and exit 4."""
    report = new_report(o.path, command, cfg)
    fold_stage(report, judged)
    if result.failed:
        report.run_failed = f"{result.reason}: {result.message}"  # the JSON's exit code is the process's: 4
    write_outputs(report, o.out.json, o.out.markdown)
    if result.failed:
        _say(f"run failed: {result.reason}: {result.message}")
        return int(report.exit_code)
    render_report(report)
    if result.reason in BUDGET_REASONS:
        _say(f"run stopped: {result.reason}: {result.message}")
    return int(report.exit_code)


def run(o: Options, cfg: Config) -> int:
    result, judged = _run(o.path, cfg, o.run)
    return _judged_report(o, "harness run", result, judged, cfg)


def verdict(o: Options, cfg: Config) -> int:
    result = load_saved_run(o.path)
    print_run_summary(result)
    first, plan = None, load_plan(o.path) if result.failed else None
    if plan is not None and (Path(o.path) / EVAL_ONLY_DIR / "run.json").is_file():  # a saved evaluation-only rerun
        first, result = result, load_saved_run(Path(o.path) / EVAL_ONLY_DIR)
        print_run_summary(result)
    judged = rejudge_saved(cfg, result, judge_run(result, cfg))  # a saved score-order replay beside it
    if first is not None and plan is not None and not result.failed:  # plan is set whenever first is
        judged = combine(cfg, first, result, judged, plan)
    return _judged_report(o, "verdict", result, judged, cfg)


def probe(o: Options, cfg: Config) -> int:
    rows, section = probe_rule_results(o.path, cfg, o.run, o.probes.which or PROBES)
    report = new_report(o.path, "probe", cfg)
    rows = [r for r in rows if r.rule_id in cfg.enabled]
    notes = list((section.get("cost") or {}).get("notes", []))
    notes.append("probes run at the requested scale on harness-built streams; C1/C2 rows here come from "
                 "the probes alone (harness check --run --probes merges them with the trace)")
    fold_stage(report, Stage(rows, notes, {"probes": section}))
    report.rules.sort(key=lambda r: rule_order(r.rule_id))
    write_outputs(report, o.out.json, o.out.markdown)
    render_report(report)
    for line in probes_section_lines(section):
        print(line)
    if not report.rules:
        return int(Exit.INCONCLUSIVE)
    return int(report.exit_code)


def data(o: Options, cfg: Config) -> int:
    from harness.data.builtin import main_data

    return main_data(o.data, cfg)


def rules(o: Options, cfg: Config) -> int:
    print_rules(cfg)
    return int(Exit.COMPLIANT)


def audit(o: Options, cfg: Config) -> int:
    from harness.audit.render import print_console, write_outputs as write_audit
    from harness.audit.run import audit as run_audit

    res = run_audit(o.audit, cfg)
    write_audit(res, o.out.json, o.out.markdown, o.audit.csv)
    print_console(res)
    return res.exit_code


def workflow(o: Options, cfg: Config) -> int:
    from harness.workflow import workflow_text

    sys.stdout.write(workflow_text())
    return int(Exit.COMPLIANT)


def ci(o: Options, cfg: Config) -> int:
    """changed-folders: the JSON matrix on stdout (and $GITHUB_OUTPUT); comment: the Markdown comment."""
    import json
    from pathlib import Path

    from harness.ci import changed as ch
    from harness.ci.comment import build_comment, expected_folders, find_reports
    from harness.fsutil import atomic_write_text

    c = o.ci
    if c.command == "changed-folders":
        if c.diff_file is not None:
            text = sys.stdin.read() if c.diff_file == "-" else _read_file(c.diff_file)
            paths = ch.read_paths(text)
        elif c.base and c.head:
            paths = ch.git_changed_paths(Path(c.root), c.base, c.head)
        else:
            raise BadInput("ci changed-folders needs --base and --head, or --diff-file")
        folders, notes = ch.changed_folders(paths, Path(c.root), c.records)
        for n in notes:
            _say(n)
        mat = ch.matrix(folders)
        if c.github_output:
            ch.github_output(c.github_output, mat)
        print(json.dumps(mat))
        return int(Exit.COMPLIANT)
    text = build_comment(find_reports(c.report_dirs), expected_folders(c.expect), c.details_url)
    if c.out:
        atomic_write_text(c.out, text)
    else:
        sys.stdout.write(text)
    return int(Exit.COMPLIANT)


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None


COMMANDS = {"check": check, "run": run, "verdict": verdict, "probe": probe, "data": data, "rules": rules,
            "audit": audit, "workflow": workflow, "ci": ci}
