"""`check_folder`: a submission folder -> the check stage's rows (S1-S3, B1, B2/B3 as stated, B5), hints,
report sections, notes and input errors (malformed JSON, truncated artifact, empty logs ...)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.check.collect import CheckState, collect, count_bytes, jsonable, log_section
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
    count_bytes(st, int(cfg.rule_params("B1")["max_bytes"]))
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
    out.sections["logs"] = [log_section(lg) for lg in st.logs]
    out.sections["claims"] = jsonable(sub.claims.raw) if sub.claims else None
    out.sections["significance"] = jsonable(sig)
    if st.unwrapped is not None:
        out.sections["code"] = {"wrapped": st.unwrapped.wrapped, "layers": st.unwrapped.layers,
                                "wrapper_bytes": st.unwrapped.wrapper_bytes,
                                "source_bytes": st.unwrapped.source_bytes,
                                "note": getattr(st.unwrapped, "note", "")}
    return out
