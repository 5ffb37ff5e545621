"""`harness probe PATH` and `harness check --run --probes`: the behavioural probes, as report rows.

    probe_rule_results(path, cfg, run_opts, which=("c2", "c1", "canary")) -> (list[RuleResult], dict)
    fold_probes(report, args, cfg, run_result=None)       merge the probes into a check/run report
    main_probe(args, cfg) -> int                          the CLI subcommand
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import Config
from harness.errors import BadInput, Exit, RunFailed
from harness.probes.execute import HarnessExecutor
from harness.probes.results import merge_rule_results, probes_section_lines, rule_results
from harness.probes.session import PROBES, block_length, blocks_for, probe_params, run_session, session_dir_name
from harness.results import Report, RuleResult
from harness.rules import rule_order


def run_options(args: argparse.Namespace, cfg: Config) -> dict[str, Any]:
    """run_submission keyword arguments from the CLI's run options (the runner's own mapping)."""
    try:
        from harness.run.judge import run_kwargs

        return run_kwargs(args, cfg)
    except ImportError:  # the runner package without its judge: the same mapping, minimal
        from harness.run.scale import parse_env_pairs

        rc = cfg.section("run")
        return {"device": args.device or rc.get("device", "cpu"), "nproc": int(args.nproc or rc.get("nproc", 1)),
                "scale": args.scale or rc.get("scale", "tiny"), "data_path": args.data_path,
                "tokenizer": args.tokenizer, "vocab_size": args.vocab_size, "python": args.python or rc.get("python"),
                "env": parse_env_pairs(args.env), "timeout": args.timeout, "out_dir": args.out,
                "trace": not args.no_trace, "keep_workdir": bool(args.keep_workdir)}


def _data(cfg: Config, opts: Mapping[str, Any]) -> tuple[np.ndarray, str | None, int]:
    """(validation tokens, tokenizer path, vocabulary size) the probe streams are built from: the user's
    data folder, else the built-in data (the same sources the runner serves)."""
    data_path = opts.get("data_path")
    tok = opts.get("tokenizer")
    vocab = opts.get("vocab_size")
    if data_path:
        from harness.run.serve import read_shard, val_shards

        d = Path(data_path).expanduser()
        if not d.is_dir():
            raise BadInput(f"data folder not found: {d}")
        shards = val_shards(d)
        if not shards:
            raise BadInput(f"{d}: no fineweb_val_*.bin shards to build probe streams from")
        val = np.concatenate([read_shard(p) for p in shards])
        if tok is None:
            models = sorted(d.glob("*.model"))
            tok = str(models[0]) if len(models) == 1 else None
        if vocab is None:
            if tok is None:
                raise BadInput("the probes need the vocabulary size: pass --vocab-size or --tokenizer")
            from harness.data.bpb import load_sentencepiece

            vocab = int(load_sentencepiece(tok).vocab_size())
        return val, tok, int(vocab)
    from harness.data.builtin import ensure_data

    paths = ensure_data(vocab_size=int(vocab or 1024), cache_dir=cfg.get("run", "cache_dir"))
    return paths.read_val(), str(tok or paths.tokenizer), int(paths.vocab_size)


def _env_for_block(cfg: Config, opts: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    if (opts.get("scale") or cfg.get("run", "scale", "tiny")) == "tiny":
        env.update({str(k): str(v) for k, v in (cfg.section("run").get("tiny_env") or {}).items()})
    env.update({str(k): str(v) for k, v in (opts.get("env") or {}).items()})
    return env


def probe_rule_results(path: str | Path, cfg: Config, run_opts: Mapping[str, Any] | argparse.Namespace,
                       which: Iterable[str] = PROBES) -> tuple[list[RuleResult], dict[str, Any]]:
    """Run the probes on the submission at `path`; rule rows (checker "probe") and the report section.

    run_opts: run_submission keyword arguments (or the parsed CLI namespace). The probes' own settings
    come from rules/ (C1, C2 parameters) and harness.toml [probes]."""
    opts = run_options(run_opts, cfg) if isinstance(run_opts, argparse.Namespace) else dict(run_opts)
    which = tuple(dict.fromkeys(which or PROBES))
    params = probe_params(cfg, str(opts.get("device") or "cpu"))
    val, tok, vocab = _data(cfg, opts)
    tables = None
    if tok:
        from harness.data.bpb import byte_tables

        tables = byte_tables(tok, vocab)
    env = _env_for_block(cfg, opts)
    block = block_length(env, default=2048)
    params["blocks"] = blocks_for(env, block, int(params["blocks"]))
    base_out = opts.pop("out_dir", None)
    session = (Path(base_out) / "probes") if base_out else \
        Path(cfg.get("run", "out_dir", "out")).expanduser() / session_dir_name(path)
    session = session.resolve()
    opts.pop("val_override", None)
    opts.pop("val_tokens", None)
    if tok and not opts.get("tokenizer") and opts.get("data_path"):
        opts["tokenizer"] = tok

    def pos_bytes_of(tokens: np.ndarray) -> np.ndarray | None:
        if tables is None:
            return None
        from harness.data.bpb import stream_bytes

        return stream_bytes(tables, tokens)

    c4 = cfg.rule_params("C4") if "C4" in cfg.rules else {}
    executor = HarnessExecutor(
        path, cfg, opts, session, fork=bool(params["fork"]), jobs=int(params["jobs"]),
        variant_timeout_s=float(params["variant_timeout_s"]), pos_bytes_of=pos_bytes_of,
        tol_loss=float(c4.get("val_loss_abs_tolerance", 5e-4)), tol_bpb=float(c4.get("val_bpb_abs_tolerance", 5e-4)),
    )
    outcomes, section = run_session(executor, val, vocab, block, params, which, tables)
    section["session_dir"] = str(session)
    base = executor.base_result
    if base is not None and getattr(base, "out_dir", None):
        section["base_run"] = str(Path(base.out_dir) / "run.json")  # a traced run of the base stream
    if base is not None and getattr(base, "failed", False):
        raise RunFailed(f"the probe's base run failed: {base.reason}: {getattr(base, 'message', '')}")
    return rule_results(outcomes, cfg), section


def fold_probes(report: Report, args: argparse.Namespace, cfg: Config, run_result: Any = None) -> None:
    """`harness check --run --probes`: probe rows merged into the report's (trace) rows."""
    which = getattr(args, "probe", None) or PROBES
    try:
        rows, section = probe_rule_results(args.path, cfg, args, which)
    except RunFailed as e:
        report.notes.append(f"probes not decided: {e}")
        sys.stderr.write(f"harness: {e}\n")
        return
    report.rules, notes = merge_rule_results(report.rules, rows)
    report.rules.sort(key=lambda r: rule_order(r.rule_id))
    report.notes.extend(notes)
    report.sections["probes"] = section


def main_probe(args: argparse.Namespace, cfg: Config) -> int:
    from harness.check.decide import new_report, write_outputs
    from harness.report.console import render_report

    which = args.probe or list(PROBES)
    rows, section = probe_rule_results(args.path, cfg, args, which)
    report = new_report(args.path, "probe")
    report.rules = sorted((r for r in rows if r.rule_id in cfg.enabled), key=lambda r: rule_order(r.rule_id))
    report.sections["probes"] = section
    cost = section.get("cost") or {}
    for n in cost.get("notes", []):
        report.notes.append(n)
    report.notes.append("probes run at the requested scale on harness-built streams; C1/C2 rows here come from "
                        "the probes alone (harness check --run --probes merges them with the trace)")
    write_outputs(report, args.json_out, args.md_out)
    render_report(report)
    for line in probes_section_lines(section):
        print(line)
    if not report.rules:
        return int(Exit.INCONCLUSIVE)
    return int(report.exit_code)


__all__ = ["fold_probes", "main_probe", "probe_rule_results", "run_options"]
