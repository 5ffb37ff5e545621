"""The command line: subcommands, their flags and their help. Nothing below harness.cli sees the result."""

from __future__ import annotations

import argparse
import sys

from harness import __version__
from harness.errors import Exit

PROBE_NAMES = ("c2", "c1", "canary")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: one line, exit 3
        sys.stderr.write(f"harness: error: {message}\n")
        raise SystemExit(int(Exit.BAD_INPUT))


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run options")
    g.add_argument("--device", choices=["cpu", "cuda"], default=None, help="cpu: CUDA shim, tiny scale")
    g.add_argument("--nproc", type=int, default=None, help="processes (torchrun when > 1)")
    g.add_argument("--scale", choices=["tiny", "full"], default=None)
    g.add_argument("--data-path", default=None, help="folder with fineweb_{train,val}_*.bin shards")
    g.add_argument("--tokenizer", default=None, help="SentencePiece .model matching --data-path")
    g.add_argument("--vocab-size", type=int, default=None, help="built-in data vocabulary (default 1024)")
    g.add_argument("--python", default=None, help="interpreter for the child (e.g. python3.12)")
    g.add_argument("--env", action="append", default=[], metavar="K=V", help="extra environment override")
    g.add_argument("--timeout", type=float, default=None, help="wall-clock cap for the whole run, seconds")
    g.add_argument("--out", default=None, help="folder for the run's ledger, logs and picture")
    g.add_argument("--no-trace", action="store_true", help="run without the token-access tracer")
    g.add_argument("--keep-workdir", action="store_true", help="keep the run's working copy")
    g.add_argument("--no-infer-env", action="store_true",
                   help="do not apply the configuration inferred from the folder (log dumps, README and "
                        "run-script commands, its tokenizer, the claimed score line); --env still applies")


def _add_audit_and_ci(sub: argparse._SubParsersAction) -> None:
    """audit (many folders, as check), workflow (the shipped GitHub workflow), ci (its steps)."""
    a = sub.add_parser("audit", help="check many submission folders in parallel, cached; one summary table",
                       epilog="exit code: the most severe of the folders' codes, in this order: 1 (violation) > "
                              "5 (harness error) > 4 (run failed) > 3 (bad input) > 2 (inconclusive) > 0")
    a.add_argument("paths", nargs="+", metavar="PATH",
                   help="a records/ tree (every folder below holding a train_gpt*.py), a folder, or a file "
                        "listing folders (one a line; @FILE also works)")
    a.add_argument("--jobs", type=int, default=None, help="folders checked at once (default: the cores)")
    a.add_argument("--cache-dir", default=None, help="result cache (default: ./.harness-audit-cache)")
    a.add_argument("--no-cache", action="store_true", help="check every folder again (results still cached)")
    a.add_argument("--folder-timeout", type=float, default=None,
                   help="seconds one folder's check may take (default: 600 static, 3600 with --run)")
    a.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="write the summary as JSON")
    a.add_argument("--markdown", dest="md_out", default=None, metavar="FILE", help="write the summary table")
    a.add_argument("--csv", dest="csv_out", default=None, metavar="FILE", help="write the summary as CSV")
    a.add_argument("--score-tag", default=None, help="log tag of the reported score line")
    a.add_argument("--reference-val-loss", type=float, default=None, help="previous record (nats), for B5")
    a.add_argument("--p-value", type=float, default=None, help="B5 significance level")
    a.add_argument("--run", action="store_true", help="also run each script (as check --run)")
    a.add_argument("--probes", action="store_true", help="with --run: the full probes")
    a.add_argument("--no-probes", action="store_true", help="with --run: skip the cheap default probes")
    a.add_argument("--no-hints", action="store_true", help="skip static hints")
    _add_run_options(a)  # --out DIR: each folder's run goes to DIR/<folder>

    sub.add_parser("workflow", help="print the GitHub Actions workflow (> .github/workflows/pgolf-check.yml)")

    ci = sub.add_parser("ci", help="the workflow's steps: changed submission folders, the PR comment")
    cs = ci.add_subparsers(dest="ci_command", required=True, parser_class=_Parser)
    ch = cs.add_parser("changed-folders", help="submission folders a diff touches, as a JSON matrix")
    ch.add_argument("--base", default=None, help="base commit (with --head: git diff --name-only BASE...HEAD)")
    ch.add_argument("--head", default=None, help="head commit")
    ch.add_argument("--diff-file", default=None, metavar="FILE",
                    help="`git diff --name-only` output instead of --base/--head (- for stdin)")
    ch.add_argument("--root", default=".", help="the checkout the paths are relative to (default: .)")
    ch.add_argument("--records", default="records", help="the folder holding submissions (default: records)")
    ch.add_argument("--github-output", default=None, metavar="FILE",
                    help="also append matrix=..., count=N to this file ($GITHUB_OUTPUT)")
    cm = cs.add_parser("comment", help="one Markdown PR comment from the per-folder reports")
    cm.add_argument("report_dirs", nargs="+", metavar="REPORT_DIR", help="folders holding check --json reports")
    cm.add_argument("--expect", default=None, metavar="MATRIX",
                    help="the changed-folders matrix (JSON): folders without a report are listed as such")
    cm.add_argument("--out", default=None, metavar="FILE", help="write the comment here (default: stdout)")
    cm.add_argument("--details-url", default=None, help="link to the workflow run (reports, timelines)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="harness", description="Parameter Golf compliance harness")
    p.add_argument("--version", action="version", version=f"harness {__version__}")
    p.add_argument("--config", default=None, help="harness.toml (default: ./harness.toml)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of harness bugs")
    p.add_argument("-q", "--quiet", action="store_true", help="no live progress display")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("check", help="check a submission folder: bytes, artifact, logs, claims, hints")
    c.add_argument("path", help="submission folder (records/<track>/<name>/)")
    c.add_argument("--artifact", default=None, help="compressed model file (default: found in the folder)")
    c.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="write the JSON report")
    c.add_argument("--markdown", dest="md_out", default=None, metavar="FILE", help="write a PR comment")
    c.add_argument("--score-tag", default=None, help="log tag of the reported score line")
    c.add_argument("--reference-val-loss", type=float, default=None, help="previous record (nats), for B5")
    c.add_argument("--p-value", type=float, default=None, help="B5 significance level")
    c.add_argument("--run", action="store_true", help="also run the script (harness run) and fold it in")
    c.add_argument("--probes", action="store_true",
                   help="with --run: the full probes (whole-vocabulary C2, C1 perturbations, canary)")
    c.add_argument("--no-probes", action="store_true",
                   help="with --run: skip the cheap probes it runs by default (canary, sampled C2)")
    c.add_argument("--no-hints", action="store_true", help="skip static hints")
    _add_run_options(c)

    r = sub.add_parser("run", help="run the submission's train_gpt.py under the harness runtime")
    r.add_argument("path", help="submission folder or a train_gpt.py")
    r.add_argument("--json", dest="json_out", default=None, metavar="FILE")
    r.add_argument("--markdown", dest="md_out", default=None, metavar="FILE")
    _add_run_options(r)

    d = sub.add_parser("data", help="build (once) and show the built-in tokenizer and shards")
    d.add_argument("--vocab-size", type=int, default=1024)
    d.add_argument("--cache-dir", default=None)
    d.add_argument("--force", action="store_true", help="rebuild even if cached")

    pr = sub.add_parser("probe", help="behavioural probes: C2 normalization, C1 future perturbation, canary")
    pr.add_argument("path")
    pr.add_argument("--probe", action="append", choices=list(PROBE_NAMES), default=None)
    pr.add_argument("--json", dest="json_out", default=None, metavar="FILE")
    pr.add_argument("--markdown", dest="md_out", default=None, metavar="FILE")
    _add_run_options(pr)

    v = sub.add_parser("verdict", help="re-judge a saved run folder (harness run --out DIR) without re-running")
    v.add_argument("path", metavar="OUT_DIR", help="the folder `harness run --out` wrote (run.json, ledger/)")
    v.add_argument("--json", dest="json_out", default=None, metavar="FILE")
    v.add_argument("--markdown", dest="md_out", default=None, metavar="FILE")

    sub.add_parser("rules", help="list the rules (ids, parameters, sources)")
    _add_audit_and_ci(sub)
    for sp in sub.choices.values():  # --quiet after the subcommand too (SUPPRESS: never resets the global one)
        sp.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no live progress")
    return p
