"""The parsed command line, read once: typed, frozen options built from argparse's Namespace and
harness.toml. The libraries below harness.cli receive these (or plain values), never the Namespace."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.audit.run import AuditOptions
from harness.check.options import CheckOptions
from harness.ci.options import CiOptions
from harness.config import Config
from harness.errors import BadInput
from harness.run.options import RunOptions
from harness.run.scale import parse_env_pairs


@dataclass(frozen=True)
class ProbeOptions:
    which: tuple[str, ...] = ()  # probe names; empty: all of them
    sampled: bool = False  # the cheap default of check --run: canary + a sampled C2 that never PASSes


# the probes that catch trace evasion (C1 future perturbation, the canaries) plus a sampled C2
CHEAP_PROBES = ProbeOptions(("c1", "canary", "c2"), sampled=True)


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
    audit: AuditOptions | None = None
    ci: CiOptions | None = None


def _positive(flag: str, value: Any, kind: type = int) -> Any:
    """`value` when it is a finite number > 0 of `kind`; else BadInput naming the flag (one line, exit 3)."""
    if value is None:
        return None
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
          and (kind is float or float(value).is_integer()))
    if not ok:
        raise BadInput(f"{flag} must be a {'whole ' if kind is int else ''}number above 0, got {value!r}")
    return kind(value)


def output_file(flag: str, path: str | None) -> str | None:
    """A report file to write: not a folder, in a folder that exists (checked before anything runs)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_dir():
        raise BadInput(f"{flag} {path}: is a folder (give a file name)")
    parent = p.parent
    if not parent.is_dir():
        raise BadInput(f"{flag} {path}: {'not a folder' if parent.exists() else 'no such folder'}: {parent}")
    return path


def output_dir(flag: str, path: str | None) -> str | None:
    """A run's output folder: a folder or nothing yet, never a file (nor under one)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise BadInput(f"{flag} {path}: {q} is a file, not a folder")
            break
    return path


def _run_options(args: argparse.Namespace, cfg: Config) -> RunOptions:
    rc = cfg.section("run")
    return RunOptions(
        device=args.device or rc.get("device", "cpu"),
        nproc=_positive("--nproc", args.nproc if args.nproc is not None else rc.get("nproc", 1)),
        scale=args.scale or rc.get("scale", "tiny"),
        data_path=args.data_path,
        tokenizer=args.tokenizer,
        vocab_size=_positive("--vocab-size", args.vocab_size),
        python=args.python or rc.get("python"),
        env=parse_env_pairs(args.env),
        timeout=_positive("--timeout", args.timeout, float),
        out_dir=output_dir("--out", args.out),
        trace=not args.no_trace,
        keep_workdir=bool(args.keep_workdir),
        score_tag=getattr(args, "score_tag", None) or None,
        infer_env=not getattr(args, "no_infer_env", False),
    )


def options_from(args: argparse.Namespace, cfg: Config) -> Options:
    cmd = args.command
    out = Outputs(output_file("--json", getattr(args, "json_out", None)),
                  output_file("--markdown", getattr(args, "md_out", None)))
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
    if cmd == "audit":
        return Options(cmd, out=out, audit=_audit_options(args, cfg))
    if cmd == "ci":
        return Options(cmd, ci=_ci_options(args))
    return Options(cmd, path, out)  # verdict, rules, workflow


def _audit_options(args: argparse.Namespace, cfg: Config) -> AuditOptions:
    """check's options (no --artifact: one file cannot belong to many folders), and the audit's own."""
    check = CheckOptions(score_tag=args.score_tag or cfg.get("check", "score_tag") or None,
                         reference_val_loss=args.reference_val_loss, p_value=args.p_value, hints=not args.no_hints)
    probes = "full" if args.probes else "none" if args.no_probes else "default"
    return AuditOptions(
        paths=tuple(args.paths), jobs=args.jobs, cache_dir=args.cache_dir, use_cache=not args.no_cache,
        folder_timeout=args.folder_timeout, check=check, run=_run_options(args, cfg) if args.run else None,
        probes=probes, config=args.config, csv=args.csv_out)


def _ci_options(args: argparse.Namespace) -> CiOptions:
    if args.ci_command == "changed-folders":
        return CiOptions(args.ci_command, base=args.base, head=args.head, diff_file=args.diff_file, root=args.root,
                         records=args.records, github_output=args.github_output)
    return CiOptions(args.ci_command, report_dirs=tuple(args.report_dirs), expect=args.expect, out=args.out,
                     details_url=args.details_url)
