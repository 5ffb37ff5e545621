"""`check_folder`: a submission folder -> the check stage's rows (S1-S3, B1, B2/B3 as stated, B5), hints,
report sections (accounting, logs, claimed_runs ...), notes and input errors (what the harness cannot read
at all: no script, a truncated artifact; a missing log or README is S1's, not an input error)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.check.collect import CheckState, claim_runs, collect, count_bytes, jsonable, log_section
from harness.check.decide import rule_b1, rule_b2_logs, rule_b3_logs, rule_b5, rule_s1, rule_s2, rule_s3
from harness.check.options import CheckOptions
from harness.config import Config
from harness.results import Stage


@dataclass
class CheckedFolder(Stage):
    """The check stage's output, and what was collected (for callers that look closer)."""

    state: CheckState | None = None


def check_folder(path: str | Path, cfg: Config, opts: CheckOptions = CheckOptions()) -> CheckedFolder:
    from harness.check.artifact import artifact_caps

    st = collect(path, opts.artifact, opts.score_tag, artifact_caps(cfg))
    claim_runs(st, float(cfg.rule_params("B2")["max_seconds"]), float(cfg.rule_params("S2")["val_bpb_abs_tolerance"]))
    count_bytes(st, int(cfg.rule_params("B1")["max_bytes"]), opts.compress_code)
    sub = st.sub
    b5, sig = rule_b5(cfg, st, opts)
    out = CheckedFolder(
        rules=[rule_s1(cfg, st), rule_s2(cfg, st), rule_s3(cfg, st), rule_b1(cfg, st), rule_b2_logs(cfg, st),
               rule_b3_logs(cfg, st), b5],
        notes=list(st.notes), input_errors=list(st.input_errors), state=st,
    )
    if opts.hints and st.source is not None:
        from harness.check.hints import scan_source

        name = sub.script.name if sub.script else "train_gpt.py"
        if st.unwrapped is not None and st.unwrapped.wrapped:
            name += " (unwrapped)"  # line numbers are those of the exec'd source, not of the wrapper
        out.hints = scan_source(st.source, name)
    out.sections["accounting"] = st.totals.to_dict() if st.totals else None
    out.sections["artifact"] = jsonable(st.artifact)
    aside = {a.path: a.why for a in st.claimed.set_aside} if st.claimed is not None else {}
    out.sections["logs"] = [dict(log_section(lg), claimed=lg.path not in aside, set_aside=aside.get(lg.path))
                            for lg in st.logs]
    out.sections["claimed_runs"] = st.claimed.to_dict(sub.path) if st.claimed is not None else None
    out.sections["claims"] = jsonable(sub.claims.raw) if sub.claims else None
    out.sections["significance"] = jsonable(sig)
    if st.unwrapped is not None:
        out.sections["code"] = {"wrapped": st.unwrapped.wrapped, "layers": st.unwrapped.layers,
                                "wrapper_bytes": st.unwrapped.wrapper_bytes,
                                "source_bytes": st.unwrapped.source_bytes,
                                "note": getattr(st.unwrapped, "note", "")}
    _configuration(cfg, sub, out)
    return out


def _configuration(cfg: Config, sub: object, out: CheckedFolder) -> None:
    """The configuration the record was run with (harness.check.configuration): a report section, and a
    D1 FAIL when its documented data setup aliases validation shards as training data."""
    from harness.check.configuration import infer_configuration, rule_d1_aliasing

    try:
        conf = infer_configuration(sub.path, sub.script)  # type: ignore[attr-defined]
    except Exception as e:  # noqa: BLE001 - an aid: a failure is a note
        out.notes.append(f"configuration not inferred: {type(e).__name__}: {e}")
        return
    out.sections["configuration"] = conf.to_dict()
    d1 = rule_d1_aliasing(cfg, conf)
    if d1 is not None:
        out.rules.append(d1)
