"""Score lines in a run's output: `<tag> val_loss:<x> val_bpb:<y> [eval_time:<t>ms]`, and the
training / evaluation times the script reports about itself."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUM = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+|nan|inf)"
_SCORE = re.compile(rf"val_loss\s*[:=]\s*(?P<loss>{_NUM})[\s,;]+val_bpb\s*[:=]\s*(?P<bpb>{_NUM})", re.I)
_RANK_PREFIX = re.compile(r"^\[(?:rank|default)\d*\]:\s*")
_TRAIN_TIME = re.compile(rf"train_time\s*[:=]\s*(?P<v>{_NUM})\s*ms")
_EVAL_TIME = re.compile(rf"eval_time\s*[:=]\s*(?P<v>{_NUM})\s*ms")


@dataclass
class ScoreLine:
    tag: str
    val_loss: float | None
    val_bpb: float
    line: str
    eval_time_ms: float | None = None
    t: float | None = None


def parse_line(line: str, t: float | None = None) -> ScoreLine | None:
    text = _RANK_PREFIX.sub("", line.rstrip("\r\n"))
    m = _SCORE.search(text)
    if m is None:
        return None
    before = text[: m.start()].split()
    tag = before[-1] if before else ""
    ev = _EVAL_TIME.search(text, m.end())
    return ScoreLine(
        tag=tag,
        val_loss=float(m.group("loss")),
        val_bpb=float(m.group("bpb")),
        line=text.strip(),
        eval_time_ms=float(ev.group("v")) if ev else None,
        t=t,
    )


def carries_score(line: str) -> bool:
    return "val_bpb" in line


def pick_reported(lines: list[tuple[str, float | None]], score_tag: str = "") -> ScoreLine | None:
    """The reported score among the printed lines carrying val_bpb (arrival order, with their times).

    Chosen by harness.check.logs (the same rule `harness check` applies to a submission's logs: the last
    line with a numeric val_bpb, or the one with `score_tag`); this module's own parser stands in
    when that is not available.
    """
    mine = [p for p in (parse_line(text, t) for text, t in lines) if p is not None]
    try:
        from harness.check.logs import parse_log_text
    except ImportError:
        return choose_reported(mine, score_tag)
    summary = parse_log_text("\n".join(text for text, _ in lines), path="<run output>", score_tag=score_tag or None)
    f = summary.final
    if f is None:
        return None
    loss = f.val_loss  # None when the line printed val_bpb alone
    for s in reversed(mine):  # the same line as printed, for its time and eval_time
        if s.val_bpb == f.val_bpb and (f.val_loss is None or s.val_loss == f.val_loss):
            return ScoreLine(f.tag or s.tag, loss, f.val_bpb, f.text, f.eval_time_ms or s.eval_time_ms, s.t)
    t = next((tt for text, tt in reversed(lines) if f.text and f.text in text), None)
    return ScoreLine(f.tag, loss, f.val_bpb, f.text, f.eval_time_ms, t)


def choose_reported(lines: list[ScoreLine], score_tag: str = "") -> ScoreLine | None:
    """The score the script reports: the last line with `score_tag`, else the last that is not a
    training-progress line (`step:N/M ...`), else the last."""
    if score_tag:
        tagged = [s for s in lines if s.tag == score_tag]
        return tagged[-1] if tagged else None
    finals = [s for s in lines if not s.tag.startswith("step:")]
    if finals:
        return finals[-1]
    return lines[-1] if lines else None


def script_times(text: str, reported: ScoreLine | None = None) -> dict[str, float]:
    """What the script printed about its own clock: last train_time, the reported eval_time."""
    out: dict[str, float] = {}
    trains = _TRAIN_TIME.findall(text)
    if trains:
        out["train_time_ms"] = float(trains[-1])
    if reported is not None and reported.eval_time_ms is not None:
        out["eval_time_ms"] = reported.eval_time_ms
    else:
        evals = _EVAL_TIME.findall(text)
        if evals:
            out["eval_time_ms"] = float(evals[-1])
    return out
