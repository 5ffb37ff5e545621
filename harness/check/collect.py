"""Collect what a submission folder holds: files, code (unwrapped), artifact, logs, byte totals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from harness.check.accounting import ByteTotals, byte_totals
from harness.check.submission import Submission, code_files, load_submission, unaccounted_code
from harness.errors import BadInput


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


def jsonable(x: Any) -> Any:
    if is_dataclass(x):
        return {k: jsonable(v) for k, v in asdict(x).items()}
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def collect(path: str | Path, artifact: str | None = None, score_tag: str | None = None,
            caps: dict[str, Any] | None = None) -> CheckState:
    from harness.check.artifact import inspect_artifact
    from harness.check.logs import parse_log, seed_runs
    from harness.check.unwrap import unwrap_file

    sub = load_submission(path, artifact)
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
        st.artifact = inspect_artifact(sub.artifact, **(caps or {}))  # caps: S3's (artifact_caps)
        # a custom (non-torch) format is not bad input: S3 says it could not be verified
        if st.artifact.problem in ("truncated", "bomb", "unreadable", "unknown_container"):
            st.input_errors.append(f"{sub.artifact}: {st.artifact.message}")
    for lp in sub.logs:
        try:
            summary = parse_log(lp, score_tag=score_tag)
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


def count_bytes(st: CheckState, cap: int) -> None:
    """The byte totals (practised and strict) and the code nobody accounts for, into the state."""
    sub = st.sub
    if sub.script is None:
        return
    source = st.source if st.source is not None else ""
    files = code_files(sub.script, source)
    st.unaccounted = unaccounted_code(sub.script, source, files)
    mb, src = _model_bytes(st)
    st.totals = byte_totals(files, cap, mb, src, st.unwrapped.source_bytes if st.unwrapped is not None else None)


def log_section(lg: Any) -> dict:
    d = jsonable(lg)
    d.pop("scores", None)  # every val line is noise in a report; the final one is kept
    return d
