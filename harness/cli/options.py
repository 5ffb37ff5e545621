"""The parsed command line, read once: typed, frozen options built from argparse's Namespace and
harness.toml. The libraries below harness.cli receive these (or plain values), never the Namespace."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from harness.check.options import CheckOptions
from harness.config import Config
from harness.run.options import RunOptions
from harness.run.scale import parse_env_pairs


@dataclass(frozen=True)
class ProbeOptions:
    which: tuple[str, ...] = ()  # probe names; empty: all of them
    sampled: bool = False  # the cheap default of check --run: canary + a sampled C2 that never PASSes


CHEAP_PROBES = ProbeOptions(("canary", "c2"), sampled=True)


@dataclass(frozen=True)
class DataOptions:
    vocab_size: int = 1024
    cache_dir: str | None = None
    force: bool = False


@dataclass(frozen=True)
class Outputs:
    json: str | None = None
    markdown: str | None = None


@dataclass(frozen=True)
class Options:
    """One subcommand's options. `run` is None unless the command runs the script (run, probe, check --run);
    `probes` is None unless it runs the probes (probe; check --run: the cheap ones unless --no-probes, the
    full ones with --probes)."""

    command: str
    path: str | None = None
    out: Outputs = Outputs()
    check: CheckOptions | None = None
    run: RunOptions | None = None
    probes: ProbeOptions | None = None
    data: DataOptions | None = None


def _run_options(args: argparse.Namespace, cfg: Config) -> RunOptions:
    rc = cfg.section("run")
    return RunOptions(
        device=args.device or rc.get("device", "cpu"),
        nproc=int(args.nproc or rc.get("nproc", 1)),
        scale=args.scale or rc.get("scale", "tiny"),
        data_path=args.data_path,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        python=args.python or rc.get("python"),
        env=parse_env_pairs(args.env),
        timeout=args.timeout,
        out_dir=args.out,
        trace=not args.no_trace,
        keep_workdir=bool(args.keep_workdir),
        score_tag=getattr(args, "score_tag", None) or None,
        infer_env=not getattr(args, "no_infer_env", False),
    )


def options_from(args: argparse.Namespace, cfg: Config) -> Options:
    cmd = args.command
    out = Outputs(getattr(args, "json_out", None), getattr(args, "md_out", None))
    path = getattr(args, "path", None)
    if cmd == "check":
        check = CheckOptions(
            artifact=args.artifact,
            score_tag=args.score_tag or cfg.get("check", "score_tag") or None,
            reference_val_loss=args.reference_val_loss,
            p_value=args.p_value,
            hints=not args.no_hints,
        )
        run = _run_options(args, cfg) if args.run else None
        probes = None
        if args.run and args.probes:
            probes = ProbeOptions()
        elif args.run and not getattr(args, "no_probes", False):
            probes = CHEAP_PROBES
        return Options(cmd, path, out, check=check, run=run, probes=probes)
    if cmd == "run":
        return Options(cmd, path, out, run=_run_options(args, cfg))
    if cmd == "probe":
        return Options(cmd, path, out, run=_run_options(args, cfg), probes=ProbeOptions(tuple(args.probe or ())))
    if cmd == "data":
        return Options(cmd, data=DataOptions(int(args.vocab_size), args.cache_dir, bool(args.force)))
    return Options(cmd, path, out)  # verdict, rules
