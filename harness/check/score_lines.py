"""Score lines: which printed lines carry a score, and which one is the reported score.

Shared by log parsing (harness.check.logs: a submission's logs) and the runner / probes (harness.run,
harness.probes: a run's live output), so `harness check` and `harness check --run` pick the same line.

- ``parse_score_line``: a cleaned log line carrying a numeric ``val_bpb`` (``val_loss`` optional), or
  naming one as ``<words> BPB: <x>`` (``Quantized BPB: 1.027163``) -> ``ScoreLine`` with its tag (the text before the first val_loss / val_bpb key, ``step`` for
  training-time validation lines), ``eval_time`` in ms when it has a unit;
- ``parse_line``: a line of a run's output in the baseline format
  ``<tag> val_loss:<x> val_bpb:<y> [eval_time:<t>ms]``, or ``<words> BPB: <x>`` -> ``PrintedScore``
  (with its arrival time);
- ``choose_reported``: the reported score among parsed lines: the last line with the score tag
  (exact, else case-insensitive), else the last line that is not a training-time validation
  (``step`` / ``step:N/M``), else the last;
- ``script_times``: what the script printed about its own clock. (harness.check.logs.pick_reported
  chooses the reported score of a run's printed lines as a log would be, with the line's time.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

# ------------------------------------------------------------------ log score lines

_TEXT_KEEP = 500  # characters of a score line kept as evidence

NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?i:nan|inf(?:inity)?)"


def _key_num(key: str) -> re.Pattern[str]:
    # `key:1.23`, `key=1.23`, `key: 1.23`, `key 1.23`; not `mean_key:` (a summary over seeds)
    return re.compile(rf"(?<![\w.]){key}(?:\s*[:=]\s*|\s+)({NUM})(?![\w.])")


_VAL_BPB = _key_num("val_bpb")
_VAL_LOSS = _key_num("val_loss")
_UNIT = r"(ms|s|min|m)"


def timed(key: str) -> re.Pattern[str]:
    # `key:67952ms`, `key: 591.4s`, `key_ms:123`, `key: 0.8m`; group 1 key unit, 2 value, 3 suffix unit
    return re.compile(rf"(?<![\w.]){key}(?:_{_UNIT})?\s*[:=]\s*({NUM})\s*{_UNIT}?(?![\w.])")


_EVAL_TIME = timed("eval_time")
_FIRST_KEY = re.compile(r"(?<![\w.])val_(?:loss|bpb)\b")
_STEP_TAG = re.compile(r"^(?:step\s*[:=]?\s*(\d+)(?:\s*/\s*\d+)?|(\d+)\s*/\s*\d+)$", re.I)


@dataclass
class ScoreLine:
    tag: str  # text before val_loss/val_bpb, e.g. "final_int8_zlib_roundtrip_exact"; "step" for step lines
    val_loss: float | None
    val_bpb: float
    eval_time_ms: float | None
    line_no: int  # 1-based line in the file
    text: str  # the cleaned line (cut to 500 characters)
    step: int | None = None  # for training-time validation lines ("step:200/20000 val_loss:...")


def to_ms(value: str, key_unit: str | None, suffix_unit: str | None) -> float | None:
    unit = suffix_unit or key_unit
    if unit is None:
        return None  # a bare number could be seconds or milliseconds: never guess
    v = float(value)
    return v * {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "min": 60_000.0}[unit]


def _tag_of(line: str) -> tuple[str, int | None]:
    m = _FIRST_KEY.search(line)
    head = line[: m.start()] if m else line
    head = head.strip().rstrip(":=,;|-").strip()
    sm = _STEP_TAG.match(head)
    if sm:
        return "step", int(sm.group(1) or sm.group(2))
    return head, None


# "Quantized BPB: 1.027163", "Quantized BPB (no XSA): 1.027811", "TTT BPB:   1.0412": a few words then
# BPB (an optional parenthesised note) and the number, at the start of the line; the words are the tag
_NAMED_BPB = re.compile(
    rf"^(?P<tag>(?:[A-Za-z][\w.+-]*\s+){{0,4}})BPB(?P<note>\s*\([^)]*\))?\s*[:=]\s*(?P<num>{NUM})(?![\w.])")
_NAMED_LOSS = re.compile(rf"(?<![\w.])(?:val_)?loss\s*[:=]\s*({NUM})(?![\w.])", re.I)


# summaries over seeds or runs, and comparisons, are not a run's score
_NOT_A_SCORE = {"mean", "avg", "average", "best", "worst", "std", "delta", "diff", "target", "baseline", "previous",
                "prev", "sota", "record", "median", "min", "max", "expected", "improvement"}


def _named_bpb(line_no: int, line: str) -> ScoreLine | None:
    m = _NAMED_BPB.match(line.strip())
    if not m:
        return None
    words = m.group("tag").lower().split()
    if any(w.strip(".:") in _NOT_A_SCORE for w in words):
        return None
    tag = (m.group("tag") + "BPB" + (m.group("note") or "")).strip()
    et = _EVAL_TIME.search(line)
    ml = _NAMED_LOSS.search(line, m.end())
    return ScoreLine(tag=tag, val_loss=float(ml.group(1)) if ml else None, val_bpb=float(m.group("num")),
                     eval_time_ms=to_ms(et.group(2), et.group(1), et.group(3)) if et else None,
                     line_no=line_no, text=line[:_TEXT_KEEP])


def parse_score_line(line_no: int, line: str) -> tuple[ScoreLine | None, bool]:
    """(the score on a cleaned log line, or None; whether its eval_time was ignored for lacking a unit).

    Lines carrying ``val_bpb`` (tagged or not), and lines that name a score ``<words> BPB: <x>``
    (``Quantized BPB: 1.027163``)."""
    mb = _VAL_BPB.search(line)
    if not mb:
        return _named_bpb(line_no, line), False  # "val_bpb:enabled tokenizer_kind=..." gives None
    ml = _VAL_LOSS.search(line)
    et = _EVAL_TIME.search(line)
    eval_ms = None
    unitless = False
    if et:
        eval_ms = to_ms(et.group(2), et.group(1), et.group(3))
        unitless = eval_ms is None
    tag, step = _tag_of(line)
    return ScoreLine(
        tag=tag, val_loss=float(ml.group(1)) if ml else None, val_bpb=float(mb.group(1)),
        eval_time_ms=eval_ms, line_no=line_no, text=line[:_TEXT_KEEP], step=step,
    ), unitless


# ------------------------------------------------------------------ the reported score

_S = TypeVar("_S", ScoreLine, "PrintedScore")


def is_progress(tag: str) -> bool:
    """A training-time validation line: tag "step" (log lines) or "step:N/M" (a run's printed lines)."""
    return tag == "step" or tag.startswith("step:")


def names_a_comparison(tag: str) -> bool:
    """A tag such as "delta(no-TTT - TTT)" or "mean over seeds": a difference or a summary, not a run's score.
    Words are split at punctuation and spaces, not at underscores (final_int8_zlib_roundtrip stays one)."""
    return any(w in _NOT_A_SCORE for w in re.split(r"[^\w]+", tag.lower()) if w)


def choose_reported(lines: list[_S], score_tag: str | None = "") -> _S | None:
    """The score the script reports: the last line with `score_tag` (exact, else case-insensitive;
    None when no line has it), else the last that is not a training-time validation, else the last."""
    if score_tag:
        tagged = [s for s in lines if s.tag == score_tag]
        if not tagged:
            tagged = [s for s in lines if s.tag.lower() == score_tag.lower()]
        return tagged[-1] if tagged else None
    finals = [s for s in lines if not is_progress(s.tag) and not names_a_comparison(s.tag)]
    if finals:
        return finals[-1]
    return lines[-1] if lines else None


# ------------------------------------------------------------------ a run's printed lines

_RUN_NUM = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+|nan|inf)"
_SCORE = re.compile(rf"val_loss\s*[:=]\s*(?P<loss>{_RUN_NUM})[\s,;]+val_bpb\s*[:=]\s*(?P<bpb>{_RUN_NUM})", re.I)
_RANK_PREFIX = re.compile(r"^\[(?:rank|default)\d*\]:\s*")
_RUN_TRAIN_TIME = re.compile(rf"train_time\s*[:=]\s*(?P<v>{_RUN_NUM})\s*ms")
_RUN_EVAL_TIME = re.compile(rf"eval_time\s*[:=]\s*(?P<v>{_RUN_NUM})\s*ms")


@dataclass
class PrintedScore:
    """A score line as a run printed it, with its arrival time ``t``."""

    tag: str
    val_loss: float | None
    val_bpb: float
    line: str
    eval_time_ms: float | None = None
    t: float | None = None


def parse_line(line: str, t: float | None = None) -> PrintedScore | None:
    text = _RANK_PREFIX.sub("", line.rstrip("\r\n"))
    m = _SCORE.search(text)
    if m is None:
        named = _named_bpb(0, text)  # "Quantized BPB: 1.027163" (the same forms a log's lines take)
        if named is None:
            return None
        return PrintedScore(tag=named.tag, val_loss=named.val_loss, val_bpb=named.val_bpb, line=text.strip(),
                            eval_time_ms=named.eval_time_ms, t=t)
    before = text[: m.start()].split()
    tag = before[-1] if before else ""
    ev = _RUN_EVAL_TIME.search(text, m.end())
    return PrintedScore(
        tag=tag,
        val_loss=float(m.group("loss")),
        val_bpb=float(m.group("bpb")),
        line=text.strip(),
        eval_time_ms=float(ev.group("v")) if ev else None,
        t=t,
    )


def carries_score(line: str) -> bool:
    """Whether a line may carry a score (cheap; parse_score_line / parse_line decide)."""
    return "val_bpb" in line or "BPB" in line


def script_times(text: str, reported: PrintedScore | None = None) -> dict[str, float]:
    """What the script printed about its own clock: last train_time, the reported eval_time."""
    out: dict[str, float] = {}
    trains = _RUN_TRAIN_TIME.findall(text)
    if trains:
        out["train_time_ms"] = float(trains[-1])
    if reported is not None and reported.eval_time_ms is not None:
        out["eval_time_ms"] = reported.eval_time_ms
    else:
        evals = _RUN_EVAL_TIME.findall(text)
        if evals:
            out["eval_time_ms"] = float(evals[-1])
    return out
