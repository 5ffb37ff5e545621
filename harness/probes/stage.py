"""The probe stage: the behavioural probes on a submission, as rule rows and a report section. Used by
`harness probe PATH` and `harness check --run --probes` (composed in harness.cli.commands).

    probe_rule_results(path, cfg, run_opts, which=("c2", "c1", "canary"), sampled=False) -> (rows, section)

sampled=True is the cheap set `check --run` runs by default: the canary and C2 on c2_default_candidates
sampled candidates (no whole-vocabulary stream). They decide only by a violation: a FAIL stands, anything
else is a NOT RUN row saying what they found (a sample can never PASS C2).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import Config
from harness.errors import BadInput, RunFailed
from harness.probes.execute import HarnessExecutor
from harness.probes.outcome import ProbeOutcome
from harness.probes.results import rule_results
from harness.probes.session import (PROBES, MainRun, block_length, blocks_for, probe_params, run_session,
                                    session_dir_name, variant_estimate)
from harness.results import RuleResult, Status
from harness.run.options import RunOptions


def _data(cfg: Config, opts: Mapping[str, Any], path: str | os.PathLike[str]
          ) -> tuple[np.ndarray, str | None, int]:
    """(validation tokens, tokenizer path, vocabulary size) the probe streams are built from: the data the
    runner serves this folder (harness.run.runner.data_source: the user's data folder, else the built-in data
    in the record's own tokenizer or at the vocabulary it names), so a variant's tokens, candidates and byte
    counts are those of the main run."""
    from harness.run.runner import data_source, inferred_configuration
    from harness.run.serve import read_shard, val_shards

    conf, _ = inferred_configuration(path, bool(opts.get("infer_env", True)))
    data_path, tok, vocab = data_source(cfg, str(opts.get("scale") or cfg.get("run", "scale", "tiny")),
                                        opts.get("data_path"), opts.get("tokenizer"), opts.get("vocab_size"), conf)
    d = Path(str(data_path)).expanduser()
    if not d.is_dir():
        raise BadInput(f"data folder not found: {d}")
    shards = val_shards(d)
    if not shards:
        raise BadInput(f"{d}: no fineweb_val_*.bin shards to build probe streams from")
    val = np.concatenate([read_shard(p) for p in shards])
    if vocab is None:  # data_source reads it from the tokenizer when it is a SentencePiece model
        raise BadInput("the probes need the vocabulary size: pass --vocab-size or --tokenizer")
    return val, tok, int(vocab)


def _main_length(cfg: Config, val: np.ndarray, block: int) -> int:
    """The length of the stream the main run serves at tiny scale (harness.run.serve.serve_data)."""
    from harness.run.serve import cut_whole_documents

    n = int(cut_whole_documents(val, int(cfg.get("run", "val_tokens", 4097))).size)
    return (n - 1) // block * block + 1 if block > 1 and n > block + 1 else n


def _env_for_block(cfg: Config, opts: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    if (opts.get("scale") or cfg.get("run", "scale", "tiny")) == "tiny":
        env.update({str(k): str(v) for k, v in (cfg.section("run").get("tiny_env") or {}).items()})
    env.update({str(k): str(v) for k, v in (opts.get("env") or {}).items()})
    return env


def main_run_facts(executor: HarnessExecutor, length: int | None) -> MainRun | None:
    """What the main run (executor.main_run: a RunResult of the same script and options) tells the probes
    before they run: what one variant costs (variant_estimate) and whether its reported pass scores a position
    twice. None when it is not comparable: it failed, printed no score, or served a stream of another length
    than the variants get."""
    view = executor.main_served()
    if view is None or length is None or view.tokens.size != length \
            or (getattr(view.result, "served", None) or {}).get("val_tokens") != length:
        return None
    ps = view.scores()
    twice = None if ps.scores is None and ps.lists is None else ps.lists is not None
    return MainRun(variant_s=variant_estimate(view.result)[0], twice=twice)


def probe_rule_results(path: str | Path, cfg: Config, run_opts: RunOptions | Mapping[str, Any] | None = None,
                       which: Iterable[str] = PROBES, sampled: bool = False, length: int | None = None,
                       main_result: Any = None) -> tuple[list[RuleResult], dict[str, Any]]:
    """Run the probes on the submission at `path`; rule rows (checker "probe") and the report section.

    run_opts: how to run (RunOptions, or run_submission keyword arguments). The probes' own settings come
    from rules/ (C1, C2 parameters) and harness.toml [probes]. RunFailed when the base run fails.
    main_result: the main run's RunResult under the same options (check --run): its score line is the one
    every variant reports, so the base variant need not run first and alone, and its cost and reported pass
    plan C2's candidates up front (session.MainRun)."""
    if run_opts is None:
        run_opts = RunOptions()
    opts = run_opts.kwargs() if isinstance(run_opts, RunOptions) else dict(run_opts)
    which = tuple(dict.fromkeys(which or PROBES))
    params = probe_params(cfg, str(opts.get("device") or "cpu"))
    if sampled:
        params["c2_batched"] = False
        params["c2_candidates"] = int(params["c2_default_candidates"])
        params["c2_time_budget_s"] = float(params["c2_default_time_budget_s"])
        params["lazy_replay"] = True
    val, tok, vocab = _data(cfg, opts, path)
    tables = None
    if tok:
        from harness.data.bpb import byte_tables

        tables = byte_tables(tok, vocab)
    env = _env_for_block(cfg, opts)
    block = block_length(env, default=2048)
    if length is None and (opts.get("scale") or cfg.get("run", "scale", "tiny")) == "tiny" \
            and not params.get("fork"):
        length = _main_length(cfg, val, block)  # what `harness run` serves: a probe has the main run's length
    if length:
        params["blocks"] = max(1, (int(length) - 1) // block)
    else:
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

    executor = HarnessExecutor(
        path, cfg, opts, session, fork=bool(params["fork"]), jobs=int(params["jobs"]),
        variant_timeout_s=float(params["variant_timeout_s"]), pos_bytes_of=pos_bytes_of,
    )
    main = None
    executor.main_run = main_result
    if main_result is not None:
        main = main_run_facts(executor, length)
        rep = getattr(main_result, "reported", None)
        if main is not None and rep is not None and getattr(rep, "tag", ""):
            executor.score_tag = str(rep.tag)
    outcomes, section = run_session(executor, val, vocab, block, params, which, tables, length=length, main=main)
    section["session_dir"] = str(session)
    base = executor.base_result
    if base is not None and getattr(base, "out_dir", None):
        section["base_run"] = str(Path(base.out_dir) / "run.json")  # a traced run of the base stream
    if base is not None and getattr(base, "failed", False):
        raise RunFailed(f"the probe's base run failed: {base.reason}: {getattr(base, 'message', '')}")
    if sampled:
        outcomes = [_sampled_c2_cannot_pass(o) for o in outcomes]
        section["outcomes"] = [o.to_dict() for o in outcomes]
        section["mode"] = (f"cheap (default): canary and a sampled C2 ({params['c2_candidates']} candidates, can "
                           "only FAIL or stay INCONCLUSIVE); --probes runs the full-vocabulary C2 and C1")
        return [_cheap_row(r) for r in rule_results(outcomes, cfg)], section
    return rule_results(outcomes, cfg), section


def _cheap_row(row: RuleResult) -> RuleResult:
    """The cheap default probes decide only by a violation: their FAIL stands; anything else cannot decide a
    rule (a sample, a canary that saw nothing) and joins the report as NOT RUN with what it found, so it
    neither passes a rule nor turns a decided row INCONCLUSIVE. --probes decides C1/C2."""
    if row.status is Status.FAIL:
        return row
    return replace(row, status=Status.NOT_RUN,
                   summary=f"cheap probes, no violation found ({row.status.value}: {row.summary}); "
                           "--probes decides this rule")


def _sampled_c2_cannot_pass(o: ProbeOutcome) -> ProbeOutcome:
    """A sample of the vocabulary cannot show a distribution is normalized: a PASS stays INCONCLUSIVE."""
    if o.probe != "c2" or o.status is not Status.PASS:
        return o
    o.status = Status.INCONCLUSIVE
    o.message = (f"{o.message.rstrip('.')}; a sampled C2 cannot pass (it does not see the tokens it did not "
                 "draw): --probes runs the whole vocabulary.")
    return o


__all__ = ["probe_rule_results"]
