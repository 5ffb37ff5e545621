"""Running a record as it was run when its score came from an evaluation-only rerun of a saved artifact.

Some records were run in two steps: training (which writes the artifact), then the script again with an
evaluation-only switch (`TTT_EVAL_ONLY=1`: skip training, load the saved artifact, evaluate). The shipped
end-to-end path may then crash after the artifact exists (a record whose final evaluation only ever ran
through the switch). When the first run crashed after writing its artifact, the script reads such a switch
(off by default) and the folder's README or logs name it, the harness does what the author did: a second
traced run with the switch on and the first run's artifacts placed where it wrote them.

How the two runs are judged (nothing carries from one to the other but the artifact files):
- the evaluation-only run decides what its trace sees of evaluation: C1-C4, D3, and the rows a score-order
  replay decides; B3 is the whole rerun, launch to exit (it writes no artifact to draw the line at);
- the training run decides D1 (validation read or used before the artifact it wrote; an update on
  validation positions before it FAILs) and B2;
- D2: training reads of the training run placed against its artifact, and any training read in the
  evaluation-only run is after training; D3 and B4 take the worse of both runs.
The training run's crash is stated in the report. The rerun's folder is `<run>/eval_only/`.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.config import Config
from harness.results import Finding, RuleResult, Status, worst
from harness.run.result import RunResult

EVAL_ONLY_DIR = "eval_only"
PLAN_FILE = "eval_only.json"
# a switch that skips training and evaluates a saved artifact
_SWITCH = re.compile(r"(^|_)EVAL_ONLY$|^SKIP_TRAIN(ING)?$", re.I)
_FALSY = {"", "0", "false", "no", "off", "none"}
_DOC_SUFFIXES = {".md", ".log", ".txt", ".sh", ".json"}
_DOC_MAX_BYTES = 5_000_000
_ARTIFACT_ROLES = {"artifact", "checkpoint"}


@dataclass
class EvalOnlyPlan:
    switch: str  # the environment variable, set to "1" in the rerun
    where: str  # file:line of the folder naming it
    files: dict[str, str] = field(default_factory=dict)  # relative path in the working copy -> the saved copy
    training_end: str = ""  # how the training run ended

    def line(self) -> str:
        return (f"evaluation-only rerun: the training run ended in a {self.training_end} after writing "
                f"{', '.join(sorted(self.files))}; {self.folder_says()}, so the script runs again with "
                f"{self.switch}=1 on that artifact, as the record was run")

    def folder_says(self) -> str:
        return f"the folder names {self.switch} ({self.where})"

    def to_dict(self) -> dict[str, Any]:
        return {"switch": self.switch, "where": self.where, "files": self.files, "training_end": self.training_end}


def _documented(folder: Path, name: str) -> str | None:
    """file:line of the first README / log / notes line in the folder naming `name` (the script itself aside)."""
    pat = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])")
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            p = Path(root) / f
            if p.suffix.lower() not in _DOC_SUFFIXES:
                continue
            try:
                st = os.lstat(p)  # a regular file only: never a link out of the folder, a FIFO or a device
                if not stat.S_ISREG(st.st_mode) or st.st_size > _DOC_MAX_BYTES:
                    continue
                lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for i, ln in enumerate(lines, 1):
                if pat.search(ln):
                    return f"{p.relative_to(folder)}:{i}"
    return None


def plan_eval_only(path: str | os.PathLike[str], result: RunResult) -> EvalOnlyPlan | None:
    """The rerun to make after this run (None: the run is not a training run whose record was evaluated by
    an evaluation-only rerun)."""
    folder = Path(path).expanduser()
    if result.reason != "crash" or not folder.is_dir():
        return None
    end = result.phases.get("exit")
    files = {}
    for a in result.artifacts:
        t = a.get("t")
        if a.get("role") in _ARTIFACT_ROLES and a.get("copied_to") and isinstance(t, (int, float)) \
                and (end is None or t <= end) and not os.path.isabs(str(a.get("path", "/"))):
            files[str(a["path"])] = str(a["copied_to"])
    if not any(a.get("role") == "artifact" and str(a.get("path")) in files for a in result.artifacts):
        return None  # no compressed artifact written before the crash: nothing to evaluate
    reads = (result.configuration or {}).get("script_reads") or {}
    for name in sorted(reads):
        if not _SWITCH.search(name):
            continue
        default = (reads[name] or {}).get("default")
        if default is not None and str(default).strip().lower() not in _FALSY:
            continue  # on by default: the first run already was one
        if name in (result.env_overrides or {}) and str(result.env_overrides[name]).strip().lower() not in _FALSY:
            continue
        where = _documented(folder, name)
        if where is None:
            continue
        crash = (result.message or "crash").split("\n")[0][:160]
        return EvalOnlyPlan(name, where, files, f"crash ({crash})")
    return None


def rerun_kwargs(plan: EvalOnlyPlan, kw: dict[str, Any], first: RunResult) -> dict[str, Any]:
    """The training run's options, the switch on, its artifacts placed, its folder under the first run's."""
    out = dict(kw)
    out["env"] = {**(kw.get("env") or {}), plan.switch: "1"}
    out["place_files"] = dict(plan.files)
    out["out_dir"] = str(Path(first.out_dir) / EVAL_ONLY_DIR)
    return out


def save_plan(plan: EvalOnlyPlan, first: RunResult) -> None:
    from harness.fsutil import atomic_write_text

    atomic_write_text(Path(first.out_dir) / EVAL_ONLY_DIR / PLAN_FILE, json.dumps(plan.to_dict()))


def load_plan(first_out: str | os.PathLike[str]) -> EvalOnlyPlan | None:
    f = Path(first_out) / EVAL_ONLY_DIR / PLAN_FILE
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
        return EvalOnlyPlan(str(d["switch"]), str(d["where"]), dict(d.get("files") or {}),
                            str(d.get("training_end", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _training_rows(cfg: Config, first: RunResult, claimed: Any = None) -> dict[str, RuleResult]:
    """D1, D2, D3, B2 as the training run's ledger decides them (its crash came after its artifact)."""
    from harness.verdict import verdict_for_run

    try:
        v = verdict_for_run(first.ledger_dir, replace(first, reason="ok"), cfg, claimed=claimed)
    except Exception as e:  # noqa: BLE001 - an unreadable ledger decides nothing: INCONCLUSIVE rows below
        why = f"the training run's ledger could not be judged ({type(e).__name__}: {e})"
        return {rid: RuleResult(rid, "", Status.INCONCLUSIVE, why, checker="run") for rid in ("D1", "D2", "D3", "B2")}
    return {r.rule_id: r for r in v.results if r.rule_id in ("D1", "D2", "D3", "B2")}


def _d2(train: RuleResult, analysis: Any) -> RuleResult:
    if analysis is None:
        return RuleResult("D2", "", Status.INCONCLUSIVE, "the evaluation-only run has no trace", checker="run")
    why = analysis.part_failed("io_hooks")
    if why is not None:
        return RuleResult("D2", "", Status.INCONCLUSIVE, f"the evaluation-only run's I/O hooks did not start ({why})",
                          checker="run")
    late = [e for e in analysis.ledger.events if e.get("kind") == "train_read"]
    if late:
        e0 = late[0]
        msg = (f"training data ({os.path.basename(str(e0.get('file', '?')))}) was read at {e0.get('site') or '?'} in "
               f"the evaluation-only run, after training ({len(late)} reads).")
        return RuleResult("D2", "", Status.FAIL, msg, [Finding("D2", Status.FAIL, msg)], checker="run")
    if train.status is Status.PASS:
        return replace(train, summary=f"training run: {train.summary}; none in the evaluation-only run")
    return replace(train, summary=f"training run: {train.summary}")


def _c2_with_training_d1(cfg: Config, rows: dict[str, RuleResult], new: dict[str, RuleResult],
                         an: Any) -> RuleResult | None:
    """C2's trace proof, judged again once D1 is the training run's: the rerun writes no artifact, so its own
    D1 cannot hold the premise, while the artifact it scores with is the training run's. The other premises
    (C1, C3, C4) and their integrity checks stay the rerun's. None: nothing changes."""
    from harness.verdict.conditions import C2_PREMISES, check_c2

    if an is None or "D1" not in new or rows.get("C2") is None or rows["C2"].status is not Status.NOT_RUN:
        return None
    # a missing premise is check_c2's to refuse (c2_premises_hold)
    premises = {rid: new.get(rid, rows.get(rid)) for rid in C2_PREMISES}
    c2 = check_c2(an, cfg.rule_params("C2"), premises)  # type: ignore[arg-type]
    if c2.status is not Status.PASS:
        return None
    return replace(c2, summary=f"{c2.summary} (D1 from the training run)")


def combine(cfg: Config, first: RunResult, second: RunResult, judged: Any, plan: EvalOnlyPlan,
            claimed: Any = None) -> Any:
    """The evaluation-only run's rows (judged), with what only the training run can decide."""
    from harness.results import rule_row
    from harness.verdict.access import check_b4

    train = _training_rows(cfg, first, claimed)
    rows = {r.rule_id: r for r in judged.rules}
    new: dict[str, RuleResult] = {}
    if "D1" in rows and "D1" in train:
        new["D1"] = replace(train["D1"], summary=f"training run: {train['D1'].summary}")
    if "B2" in rows and "B2" in train:
        new["B2"] = replace(train["B2"], summary=f"training run: {train['B2'].summary}")
    if "D2" in rows and "D2" in train:
        new["D2"] = _d2(train["D2"], getattr(judged, "analysis", None))
    if "D3" in rows and "D3" in train:
        pair = [train["D3"], rows["D3"]]
        bad = max(pair, key=lambda r: r.status.rank)
        new["D3"] = replace(bad, status=worst([r.status for r in pair]),
                            summary=f"training run: {train['D3'].summary}; evaluation-only run: {rows['D3'].summary}")
    if "B4" in rows:
        new["B4"] = check_b4(new.get("D2", rows.get("D2")), new.get("D3", rows.get("D3")))
    c2 = _c2_with_training_d1(cfg, rows, new, getattr(judged, "analysis", None))
    if c2 is not None:
        new["C2"] = c2
    exit_t = second.phases.get("exit")
    if "B3" in rows and isinstance(exit_t, (int, float)) and second.phases.get("artifact_write") is None:
        # the rerun writes no artifact, so the run's own clock has no line: all of it is evaluation
        from harness.verdict.budgets import Timing, check_time

        tm = Timing(None, float(exit_t), None, "the evaluation-only rerun, launch to exit")
        b3 = check_time("B3", "eval", tm, cfg.rule_params("B3"), second.scale, second.reason)
        new["B3"] = replace(b3, summary=f"evaluation-only run: {b3.summary}")
    out = []
    for r in judged.rules:
        n = new.get(r.rule_id)
        out.append(r if n is None else rule_row(cfg, n.rule_id, n.status, n.summary, n.findings, checker="run"))
    judged.rules = out
    judged.notes.insert(0, plan.line() + f" (run folders: {first.out_dir}, {second.out_dir})")
    judged.sections["training_run"] = first.to_dict()
    judged.sections["eval_only"] = plan.to_dict()
    return judged


__all__ = ["EVAL_ONLY_DIR", "EvalOnlyPlan", "combine", "load_plan", "plan_eval_only", "rerun_kwargs", "save_plan"]
