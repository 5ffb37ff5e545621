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
    input_errors: list[str] = field(default_factory=list)  # what the harness cannot read at all (exit 3)
    notes: list[str] = field(default_factory=list)
    unaccounted: Any = None
    claimed: Any = None  # claimed.ClaimedRuns: the runs the submission claims, and the logs set aside
    unreadable_logs: list[str] = field(default_factory=list)  # empty or binary logs (S1 says so)
    compressed: Any = None  # code_size.CompressedCode: the harness's own self-extracting form of the script

    @property
    def claimed_runs(self) -> list[Any]:
        """The claimed runs (logs.SeedRun) when they were told apart, else every run."""
        return list(self.claimed.runs) if self.claimed is not None else list(self.runs)


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
    """The folder's state. A file the system cannot read (EIO, permissions) is bad input: one line, exit 3."""
    try:
        return _collect(path, artifact, score_tag, caps)
    except OSError as e:
        where = e.filename or path
        raise BadInput(f"{where}: cannot read ({e.strerror or e})") from None


def _syntax_error(name: str, source: str) -> str | None:
    """`file:line: message` when the script is no Python this harness or Python 3.12 parses (PEP 701
    f-strings parse with libcst's 3.12 grammar: the run rewrites those, so they are no error)."""
    from harness.run.py312 import compiles

    err = compiles(source, name)
    if err is None:
        return None
    try:
        import libcst as cst

        cst.parse_module(source, config=cst.PartialParserConfig(python_version="3.12"))
        return None
    except ImportError:
        return None  # cannot tell 3.12 syntax from an error: the run says
    except Exception:  # noqa: BLE001 - libcst's ParserSyntaxError and friends: not 3.12 either
        pass
    line = f":{err.lineno}" if err.lineno else ""
    return f"{name}{line}: syntax error: {err.msg} (the script cannot run)"


def _collect(path: str | Path, artifact: str | None, score_tag: str | None,
             caps: dict[str, Any] | None) -> CheckState:
    from harness.check.artifact import inspect_artifact
    from harness.check.logs import parse_log, seed_runs
    from harness.check.unwrap import unwrap_file

    sub = load_submission(path, artifact)
    st = CheckState(sub=sub)
    st.notes += [f"not read: {x}" for x in sub.skipped]
    # a missing README, submission.json or log is paperwork (S1 FAIL); only a folder without any script
    # to check is input the harness cannot read at all
    if sub.script is None:
        st.input_errors.append(f"{sub.path}: missing train_gpt.py (no script to check)")
    if sub.script is not None:
        try:
            st.unwrapped = unwrap_file(sub.script)
            st.source = st.unwrapped.source
        except BadInput as e:
            st.input_errors.append(str(e))
        if st.source is not None and (err := _syntax_error(sub.script.name, st.source)) is not None:
            st.input_errors.append(err + (" (in the unwrapped source)" if st.unwrapped.wrapped else ""))
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
            if unreadable:  # paperwork: S1 names it
                st.unreadable_logs.append(f"{lp.name}: no reported score ({why})")
            else:  # e.g. an ablation or quantization-study log beside the seed logs
                st.notes.append(f"{lp.name}: no reported score ({why}); not counted as a seed log")
    st.runs = seed_runs(st.logs)
    return st


def claim_runs(st: CheckState, train_budget_s: float, tol: float) -> None:
    """Tell the claimed runs from the other logs (harness.check.claimed), into the state."""
    from harness.check.claimed import find_claimed_runs

    readme = None
    if st.sub.readme is not None:
        try:
            readme = st.sub.readme.read_text(encoding="utf-8", errors="replace")[:2_000_000]
        except OSError:
            readme = None
    st.claimed = find_claimed_runs(st.logs, st.sub.claims, readme, root=st.sub.path,
                                   train_budget_s=train_budget_s, tol=tol)


def _run_model_bytes(run: Any) -> tuple[int | None, str]:
    """A claimed run's compressed model bytes as its logs state them (or its total less its stated code)."""
    name = Path(run.logs[0].path).name if run.logs else "?"
    if run.model_bytes is not None:
        return run.model_bytes, f"log {name}"
    if run.total_bytes is not None:
        code = run.code_bytes or 0
        return run.total_bytes - code, f"log {name} (its total less its stated code {code:,} B)"
    return None, ""


def run_models(st: CheckState) -> list[dict[str, Any]]:
    """Per claimed run (and the folder's artifact): the model bytes B1 adds the code to."""
    out: list[dict[str, Any]] = []
    art = st.artifact
    if art is not None and art.problem not in ("truncated", "unreadable"):
        out.append({"seed": None, "what": f"artifact {Path(art.path).name}", "model_bytes": art.file_bytes})
    for run in st.claimed_runs:
        mb, src = _run_model_bytes(run)
        if mb is not None:
            out.append({"seed": run.seed, "what": src, "model_bytes": mb,
                        "stated_total": run.total_bytes, "stated_code": run.code_bytes})
    return out


# a stated code size under this fraction of the file is a compressed count (minified + lzma/brotli gives
# 15-35 %); a few percent under is a log of an earlier version of the readable script, not a compressed form
COMPRESSED_FRACTION = 0.7


def counts_compressed(st: CheckState, as_is: int) -> str | None:
    """Why the submission counts its code compressed (a log or the claim states a code size well under
    the file as it is), or None when it counts the file as it is."""
    for run in st.claimed_runs:
        lg = next((lg for lg in run.logs if lg.code_bytes is not None), None)
        if lg is not None and lg.code_bytes < COMPRESSED_FRACTION * as_is:
            return f"{Path(lg.path).name} states code size {lg.code_bytes:,} B (the file is {as_is:,} B)"
    claims = st.sub.claims
    if (claims is not None and claims.bytes_code is not None
            and claims.bytes_code < COMPRESSED_FRACTION * as_is):
        return f"submission.json states bytes_code {claims.bytes_code:,} (the file is {as_is:,} B)"
    return None


def count_bytes(st: CheckState, cap: int, always_compress: bool = False) -> None:
    """The byte totals (as is, the harness's compressed form, strict; per claimed run) and the code nobody
    accounts for, into the state."""
    from harness.check.code_size import compressed_code

    sub = st.sub
    if sub.script is None:
        return
    source = st.source if st.source is not None else ""
    files = code_files(sub.script, source)
    st.unaccounted = unaccounted_code(sub.script, source, files)
    models = run_models(st)
    worst = max(models, key=lambda m: m["model_bytes"]) if models else None
    st.totals = byte_totals(files, cap, worst["model_bytes"] if worst else None,
                            (worst["what"] + (f" (largest of {len(models)})" if len(models) > 1 else ""))
                            if worst else "unknown",
                            st.unwrapped.source_bytes if st.unwrapped is not None else None)
    t = st.totals
    wrapped = st.unwrapped is not None and st.unwrapped.wrapped
    why = counts_compressed(st, t.practised_code) if not wrapped else None
    if wrapped:
        t.harness_code, t.harness_recipe = t.practised_code, "the script already ships as a self-extracting form"
    elif st.source is not None and (why or always_compress):
        # minifying takes seconds: built when the submission counts its code compressed (or when asked)
        st.compressed = compressed_code(st.source)
        t.harness_code = min(st.compressed.bytes, t.practised_code)
        t.harness_recipe = st.compressed.recipe
        t.harness_notes = list(st.compressed.notes)
    else:
        t.harness_recipe = "not built: the submission counts the file as it is"
    t.stated_code = sorted({r.code_bytes for r in st.claimed_runs if r.code_bytes is not None})
    if why and t.harness_code is not None:
        t.decided_code, t.counted_as = t.harness_code, f"compressed, as the submission counts it: {why}"
    else:
        t.decided_code, t.counted_as = t.practised_code, "the file as it is"
    t.runs = [dict(m, total=m["model_bytes"] + t.decided_code) for m in models]
    # strict: the script as B1 counts it plus every other code file it needs, as they are
    t.strict_code = t.strict_code - t.practised_code + t.decided_code


def log_section(lg: Any) -> dict:
    d = jsonable(lg)
    d.pop("scores", None)  # every val line is noise in a report; the final one is kept
    return d
