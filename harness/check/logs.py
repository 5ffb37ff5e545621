"""Parse Parameter Golf train logs: the reported score, seed, sizes, times and hardware they state.

Real logs are messy: torchrun/NCCL warnings, `[rank3]:` prefixes, ANSI colours, CRLF, the script's own
source code logged before a `=====` separator, nvidia-smi tables, several evaluations (pre-quantization,
post-quantization, sliding window, TTT) and ~200 different tags on the score lines, e.g.

    step:5434/20000 val_loss:2.0619 val_bpb:1.2212 train_time:599812ms step_avg:45.33ms
    final_int8_zlib_roundtrip val_loss:2.0537 val_bpb:1.2163 eval_time:67952ms
    final_int8_zlib_roundtrip_exact val_loss:2.05372224 val_bpb:1.21632999
    ttt:done val_loss=1.768268 val_bpb=1.047270 elapsed=336.0s
    4902/20000 val_loss: 2.3544 val_bpb: 1.0758

The reported score is the last line carrying a numeric val_bpb that is not a training-time validation
(the last step line when there is nothing else) unless a tag is named (rules/ or the user); the choice
and the score-line parsing live in harness.check.score_lines, shared with the runner.
Everything here is what the log *states*; the harness's own measurements live elsewhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from harness.check.score_lines import (
    NUM,
    PrintedScore,
    ScoreLine,
    carries_score,
    choose_reported,
    parse_line,
    parse_score_line,
)
from harness.check.score_lines import timed as _timed
from harness.check.score_lines import to_ms as _to_ms
from harness.errors import BadInput

MAX_LINES = 2_000_000  # stop reading after this many lines (a warning says so)
MAX_CHARS = 512_000_000  # ... or after this many characters (a binary blob without newlines)
MAX_LINE_CHARS = 65_536  # longer lines are cut (progress bars without newlines, binary blobs)

# ------------------------------------------------------------------ line cleaning

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
# prefixes that launchers put before a script's own output
_PREFIXES = re.compile(
    r"^(?:\[(?:rank|default)\d+\]:\s*"  # torchrun: "[rank3]: ...", "--tee" gives "[default0]:..."
    r"|\[\d{4}-\d\d-\d\d[ T][\d:.,]+\]\s*"  # "[2026-03-18 14:38:12] ..."
    r"|\d{4}-\d\d-\d\d[ T][\d:.,]+(?:Z|[+-]\d\d:?\d\d)?\s+(?:[A-Z]+\s+)?(?:-\s+)?"
    r"|1\d{9}(?:\.\d+)?\s+)+"  # a Unix time stamp: "1776143356.801 Serialized model ..."
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_SOURCE_START = re.compile(r"""^(?:#!|\"\"\"|'''|import\s+\w|from\s+[\w.]+\s+import\b)""")
_SEPARATOR = re.compile(r"^={20,}\s*$")


def _clean(raw: str) -> tuple[str, bool]:
    """(cleaned line, is_garbage). Garbage: mostly replacement/control characters (binary data)."""
    line = raw.rstrip("\r\n")
    had_nul = "\x00" in line
    if had_nul:
        line = line.replace("\x00", "")
    line = _ANSI.sub("", line).replace("\r", "")
    if line:
        bad = len(_CONTROL.findall(line))
        if bad and bad > 0.1 * len(line):
            return "", True
    elif had_nul:
        return "", True
    line = _PREFIXES.sub("", line.strip())
    return line.strip(), False


# ------------------------------------------------------------------ patterns

_INT = r"\d[\d,_]*"


_TOTAL_EVAL = _timed("total_eval_time")
_TRAIN_TIME = _timed("train_time")

_STEP_LINE = re.compile(r"^(?:step\s*[:=]\s*(\d+)\s*/\s*(\d+)|(\d+)\s*/\s*(\d+)\s+(?:val|train)_loss)\b")
_STOP = re.compile(r"^stopping_early\b.*?\bstep\s*[:=]\s*(\d+)\s*/\s*(\d+)")

_SEED = re.compile(r"(?<![\w.])seed\s*[:=]\s*(\d+)\b", re.I)  # "seed:1337", "  seed: 42", "SEED=7"
_SEED_IN_NAME = re.compile(r"seed[_-]?(\d+)|(?:^|[_-])s(\d+)$", re.I)
_WORLD = re.compile(r"(?<![\w.])world_size\s*[:=]\s*(\d+)\b")
# the wall-clock budget a run was given ("max_wallclock_seconds: 600.0", "MAX_WALLCLOCK_SECONDS=2400")
_WALLCLOCK = re.compile(r"(?<![\w.])max_wallclock_seconds\s*[:=]\s*(\d+(?:\.\d*)?)", re.I)
_STEP_AVG = re.compile(r"(?<![\w.])step_avg\s*[:=]\s*(\d+(?:\.\d*)?)\s*ms\b")

_GPU_MODEL = r"(GH200|GB200|[HBA]\d{2,3}|L40S?|L4|T4|V100|P100|A10G?|RTX\s?\d{4}(?:\s?Ti)?)"
# "8xH100", "8×H100", "8 x H100 SXM": the count the author states next to the GPU model
_STATED_HW = re.compile(rf"(?<![\w.])(\d{{1,3}})\s*[x×]\s*(?:NVIDIA\s+)?{_GPU_MODEL}(?![\w])", re.I)
_SMI_ROW = re.compile(r"^\|\s*(\d+)\s+(NVIDIA\s.+?)\s{2,}(?:On|Off)\s*\|")
_NVIDIA_NAME = re.compile(rf"NVIDIA\s+(?:GeForce\s+)?{_GPU_MODEL}", re.I)


@dataclass(frozen=True)
class _SizePattern:
    kind: str  # "model" (compressed), "raw_model", "total" (compressed), "raw_total", "code"
    regex: re.Pattern[str]
    example: str  # a line modeled on a real log; tests check every pattern against its example


def _sp(kind: str, pattern: str, example: str) -> _SizePattern:
    """A size pattern: <N> marks the number (digits with optional , or _ separators)."""
    return _SizePattern(kind, re.compile(pattern.replace("<N>", rf"({_INT})"), re.I), example)


_B = r"\s*(?:bytes|B)\b"  # the unit after a size

# Every match updates the last value of its kind. "model"/"total" are the compressed sizes; the
# "raw_" kinds are the uncompressed torch.save sizes the baseline also prints.
SIZE_PATTERNS: tuple[_SizePattern, ...] = (
    _sp("model", rf"^Serialized model\s+(?![:(])[^:]*?\S\s*:\s*<N>{_B}",
        "Serialized model int8+zlib: 15811522 bytes (payload:17178912 raw_torch:17224025 payload_ratio:3.91x)"),
    _sp("model", r"^serialized_model_\w+\s*[:=]\s*<N>\s*(?:bytes|B)?\b",
        "serialized_model_int8_zlib:11239210 bytes (payload:17178912 raw_pickle:17188361)"),
    _sp("model", rf"^(?:compressed|quantized) model(?: size)?(?:\s*\([^)]*\))?\s*[:=]\s*<N>{_B}",
        "Compressed model size: 15794806 bytes"),
    _sp("model", r"(?<![\w.])(?:artifact_bytes|compressed_bytes|quant_file_bytes)\s*[:=]\s*<N>\b",
        "artifact:final_model.int6.ptz artifact_bytes:15555121"),
    _sp("raw_model", rf"^Serialized model\s*:\s*<N>{_B}", "Serialized model: 67224983 bytes"),
    _sp("raw_model", r"^saved_model:\S*\s+bytes\s*[:=]\s*<N>\b", "saved_model:logs/run_mlx_model.npz bytes:67212188"),
    _sp("total", r"^Total submission size\s+(?![:(])[^:]*?\S\s*:\s*<N>\s*(?:bytes|B)?\b",
        "Total submission size int8+zlib: 15863068 bytes"),
    _sp("total", r"^Total submission size\s*\([^)]*\)\s*:\s*<N>\s*(?:bytes|B)?\b",
        "Total submission size (NCA rule + code): 1203311 bytes"),
    _sp("total", r"(?<![\w.])(?:total_bytes|bytes_total|submission_bytes|total_submission_bytes)\s*[:=]\s*<N>\b",
        "budget: bytes_total:15989499 cap:16000000"),
    _sp("total", r"^Size check \w+\s*:\s*<N>\s*/", "Size check PASSED: 15552158 / 16,000,000 (97.2%)"),
    _sp("total", r"^budget\s*[:=]\s*<N>\s*/\s*\d", "budget:15993853/16000000 (15.99/16.00MB) FITS"),
    _sp("raw_total", r"^Total submission size\s*:\s*<N>\s*(?:bytes|B)?\b", "Total submission size: 67275034 bytes"),
    _sp("model", rf"^Artifact(?: size)?\s*[:=]\s*<N>{_B}", "Artifact: 15,188,240 bytes (14.48 MB)"),
    _sp("code", rf"^Code size(?:\s*\([^)]*\))?\s*:\s*<N>{_B}", "Code size: 48140 bytes"),
    _sp("code", rf"(?<![\w.])code size\s*:\s*<N>{_B}", "export_only:code size: 66084 bytes"),
    _sp("code", r"(?<![\w.])code_(?:bytes|size)\s*[:=]\s*<N>\b", "code_bytes:48881 model_bytes:12569851"),
    _sp("code", r"^artifact\s*:.*?(?<![\w.])code\s*[:=]\s*<N>\b",
        "artifact:15.92MB ternary:64880640(14239486B) fp:2513744(2537376B) code:70853"),
)


# ------------------------------------------------------------------ adaptation before the artifact

# Evaluation-time adaptation a log states after training stopped and before the artifact is written
# ("pre-quant TTT": fine-tuning on validation tokens, then quantize and serialize). Its time is part of
# the evaluation behind the reported score (B3), though no score line's eval_time holds it. Score-first
# TTT comes after the artifact and is inside the reported pass's eval_time already: never counted here.
#     prequant_ttt:epoch 21/21 time=24.9s lr=0.000050
#     prequant_ttt:done total_time=523.0s
_ADAPT_NAME = re.compile(r"ttt|slot|adapt(?!ive)|prequant", re.I)
_LEAD_TAG = re.compile(r"^([A-Za-z][\w.+-]*)")
_DUR_UNIT = r"(?:ms|s|min|m)"
# a duration key: "total_time", "elapsed", "time", "ttt_time_ms"; not an evaluation's, training's or a limit
_DURATION = re.compile(
    r"(?<![\w.])(?<!eval\s)(?P<key>(?!\w*(?:eval|train|max|budget|limit|remain|left))"
    rf"(?:\w+_)?(?:time|elapsed|duration))(?:_(?P<kunit>{_DUR_UNIT}))?\s*[:=]\s*(?P<num>{NUM})"
    rf"\s*(?P<unit>{_DUR_UNIT})?(?![\w.])", re.I)
_PART = re.compile(r"\d+\s*/\s*\d+|(?<![a-z])(?:epoch|chunk|step|iter)(?![a-z])", re.I)
_TOTAL_WORD = re.compile(r"(?<![a-z])(?:done|total|finished|complete|completed|end)(?![a-z])", re.I)
_START_WORD = re.compile(r"(?<![a-z])start(?:ed|ing)?(?![a-z])", re.I)
_ARTIFACT_KINDS = ("model", "raw_model", "total", "raw_total")  # a size line: the artifact is written


@dataclass(frozen=True)
class _AdaptLine:
    line_no: int
    tag: str  # the line's leading word ("prequant_ttt"), or the duration key when only that names it
    ms: float | None  # None: the duration has no unit (never guessed)
    part: bool  # one epoch / chunk of the adaptation, not its total


def _adaptation_line(line_no: int, line: str) -> _AdaptLine | None:
    """A cleaned line that states a duration of test-time training, SLOT or other adaptation, or None."""
    low = line.lower()
    if "ttt" not in low and "slot" not in low and "adapt" not in low and "prequant" not in low:
        return None  # the common case, without the regexes
    lead = _LEAD_TAG.match(line)
    found = list(_DURATION.finditer(line))
    if not found or _START_WORD.search(line):
        return None
    tag = lead.group(1) if lead and _ADAPT_NAME.search(lead.group(1)) else None
    if tag is None:
        tag = next((m.group("key") for m in found if _ADAPT_NAME.search(m.group("key"))), None)
    if tag is None:
        return None
    times = [_to_ms(m.group("num"), m.group("kunit"), m.group("unit")) for m in found]
    known = [t for t in times if t is not None and math.isfinite(t) and t >= 0]
    part = bool(_PART.search(line)) and not _TOTAL_WORD.search(line)
    return _AdaptLine(line_no, tag, max(known) if known else None, part)


@dataclass(frozen=True)
class Adaptation:
    """Adaptation a log states before its artifact, for one tag: B3 adds it to the reported pass's time."""

    tag: str  # "prequant_ttt"
    ms: float
    lines: tuple[int, ...]  # the lines the time comes from: a total line, or the per-epoch lines
    how: str  # "total", "per-epoch times summed", "cumulative per-epoch times (the last)"
    artifact_line: int  # the first size line after it: where the artifact is written


def _is_cumulative(ms: list[float]) -> bool:
    # "epoch 1/8 time:15.2s ... epoch 8/8 time:120.2s": elapsed so far, not each epoch's own time
    return len(ms) > 1 and all(b > a for a, b in zip(ms, ms[1:])) and ms[-1] >= 1.5 * ms[0]


def _per_tag(tag: str, lines: list[_AdaptLine], artifact_line: int) -> Adaptation:
    totals = [a for a in lines if not a.part]
    if totals:  # a stated total wins over the epochs it covers
        last = totals[-1]
        return Adaptation(tag, float(last.ms or 0.0), (last.line_no,), "total", artifact_line)
    ms = [float(a.ms or 0.0) for a in lines]
    nums = tuple(a.line_no for a in lines)
    if _is_cumulative(ms):
        return Adaptation(tag, ms[-1], nums, "cumulative per-epoch times (the last)", artifact_line)
    return Adaptation(tag, sum(ms), nums, "per-epoch times summed", artifact_line)


def _same_phase(a: Adaptation, b: Adaptation) -> bool:
    """One adaptation stated twice: a wrapper's timer and its inner loop ("ttt:elapsed=120.2s" after
    "ttt_adamw:done elapsed=120.2s"), or two names for the same duration. Counted once."""
    x, y = sorted((a.tag.lower(), b.tag.lower()), key=len)
    nested = y.startswith(x) and (len(y) == len(x) or y[len(x)] in "_-.:")
    return nested or abs(a.ms - b.ms) <= max(500.0, 0.01 * max(a.ms, b.ms))


def _adaptations(lines: list[_AdaptLine], artifact_line: int) -> tuple[list[Adaptation], int]:
    """(the adaptation phases the lines state, in line order; how many durations had no unit)."""
    usable = [a for a in lines if a.ms is not None]
    by_tag: dict[str, list[_AdaptLine]] = {}
    for a in usable:
        by_tag.setdefault(a.tag, []).append(a)
    phases = sorted((_per_tag(t, ls, artifact_line) for t, ls in by_tag.items()), key=lambda a: -a.ms)
    kept: list[Adaptation] = []
    for a in phases:  # the longest statement of a phase stands for it
        if not any(_same_phase(a, k) for k in kept):
            kept.append(a)
    return sorted(kept, key=lambda a: a.lines[0]), len(lines) - len(usable)


# ------------------------------------------------------------------ results

@dataclass
class LogSummary:
    path: str
    seed: int | None  # from "seed:1337" lines or the file name (train_seed42.log)
    final: ScoreLine | None  # the reported score (harness.check.score_lines.choose_reported)
    scores: list[ScoreLine]  # every line carrying val_bpb, in order
    stop_step: int | None
    total_steps: int | None
    train_time_ms: float | None  # last train_time reported (training phase)
    eval_time_ms: float | None  # total_eval_time when stated, else the final line's (or its companion's)
    code_bytes: int | None
    model_bytes: int | None  # compressed model ("Serialized model int8+zlib: N bytes")
    total_bytes: int | None  # code + compressed model ("Total submission size int8+zlib: N bytes")
    hardware: str | None  # e.g. "8xH100" when stated
    world_size: int | None
    warnings: list[str] = field(default_factory=list)
    # additive details (evidence for reports)
    score_tag: str | None = None  # the tag asked for, if any
    eval_time_source: str | None = None  # which line eval_time_ms came from
    eval_time_sum_ms: float | None = None  # sum of eval_time over every post-training score line
    raw_model_bytes: int | None = None  # uncompressed torch.save size ("Serialized model: N bytes")
    gpu_name: str | None = None  # e.g. "NVIDIA H100 80GB HBM3" from nvidia-smi
    lines_read: int = 0
    # "train": the log shows training (step lines, train_time, stopping_early); "eval": it reports a score
    # but shows no training (a separate evaluation run, e.g. ngram_eval_seed42.log); "other": neither
    kind: str = "other"
    max_wallclock_s: float | None = None  # the training budget the run was given (hyperparameter dump)
    step_avg_ms: float | None = None  # the last step_avg a step line states
    # evaluation-time adaptation stated after training and before the artifact (pre-quant TTT); B3 adds it
    adaptation: list[Adaptation] = field(default_factory=list)

    @property
    def adaptation_ms(self) -> float:
        return sum(a.ms for a in self.adaptation)


# ------------------------------------------------------------------ parsing

def _int(s: str) -> int:
    return int(s.replace(",", "").replace("_", ""))


class _Parser:
    """State machine over cleaned lines; one instance per pass."""

    def __init__(self, skip_source: bool) -> None:
        self.skip_source = skip_source
        self.in_source = False
        self.source_closed = False
        self.seen_nonblank = False
        self.scores: list[ScoreLine] = []
        self.garbage = 0
        self.cut_lines = 0
        self.seeds: list[int] = []
        self.world_size: int | None = None
        self.wallclock: float | None = None
        self.step_avg: float | None = None
        self.stop: tuple[int, int] | None = None
        self.last_step: tuple[int, int] | None = None
        self.train_time_step: float | None = None  # from step / stopping_early lines
        self.train_time_any: float | None = None
        self.total_eval: tuple[float, int] | None = None
        self.sizes: dict[str, int] = {}
        self.stated_hw: str | None = None
        self.gpu_name: str | None = None
        self.gpu_model: str | None = None
        self.smi_gpus: set[int] = set()
        self.unitless_eval = 0
        # adaptation lines after the last training line; closed (with its line) by the first size line after it
        self.adapt_open = False
        self.adapt_pending: list[_AdaptLine] = []
        self.adapt_closed: tuple[list[_AdaptLine], int] | None = None
        self.n = 0

    def feed(self, line_no: int, raw: str, cut: bool) -> None:
        self.n = line_no
        if cut:
            self.cut_lines += 1
        line, garbage = _clean(raw)
        if garbage:
            self.garbage += 1
            return
        if not line:
            return
        if not self.seen_nonblank:
            self.seen_nonblank = True
            if self.skip_source and _SOURCE_START.match(line):
                self.in_source = True
        if self.in_source:
            if _SEPARATOR.match(line):
                self.in_source = False
                self.source_closed = True
            return
        self._hardware(line)
        if self._meta(line):
            self._training_line()
        if self.adapt_open:
            a = _adaptation_line(line_no, line)
            if a is not None:
                self.adapt_pending.append(a)
        if self._sizes(line) and self.adapt_open:
            self.adapt_closed, self.adapt_open = (self.adapt_pending, line_no), False
        if carries_score(line):
            self._score(line_no, line)

    def _hardware(self, line: str) -> None:
        if self.stated_hw is None:
            m = _STATED_HW.search(line)
            if m:
                model = re.sub(r"\s+", " ", m.group(2)).upper()
                self.stated_hw = f"{m.group(1)}x{model}"
        row = _SMI_ROW.match(line)
        if row:
            self.smi_gpus.add(int(row.group(1)))
        if self.gpu_model is None and "NVIDIA" in line:
            m = _NVIDIA_NAME.search(line)
            if m:
                self.gpu_model = re.sub(r"\s+", " ", m.group(1)).upper()
                name = row.group(2) if row else line[m.start():]
                self.gpu_name = re.split(r"\s{2,}|\|", name.strip())[0].strip()

    def _training_line(self) -> None:
        """Training goes on: what came after an earlier stop belongs to an earlier run."""
        self.adapt_open, self.adapt_pending, self.adapt_closed = True, [], None

    def _meta(self, line: str) -> bool:
        """Seed, world size, steps and times; True on a training line (step, stop or train_time)."""
        m = _SEED.search(line)
        if m:
            self.seeds.append(int(m.group(1)))
        if self.world_size is None:
            m = _WORLD.search(line)
            if m:
                self.world_size = int(m.group(1))
        if self.wallclock is None and "allclock" in line.lower():
            m = _WALLCLOCK.search(line)
            if m:
                self.wallclock = float(m.group(1))
        if "step_avg" in line:
            m = _STEP_AVG.search(line)
            if m:
                self.step_avg = float(m.group(1))
        stop = _STOP.search(line)
        step = _STEP_LINE.match(line)
        if stop:
            self.stop = (int(stop.group(1)), int(stop.group(2)))
        elif step:
            a, b = (step.group(1), step.group(2)) if step.group(1) else (step.group(3), step.group(4))
            self.last_step = (int(a), int(b))
        tt = _TRAIN_TIME.search(line)
        if tt:
            ms = _to_ms(tt.group(2), tt.group(1), tt.group(3))
            if ms is not None:
                self.train_time_any = ms
                if stop or step:
                    self.train_time_step = ms
        te = _TOTAL_EVAL.search(line)
        if te:
            ms = _to_ms(te.group(2), te.group(1), te.group(3))
            if ms is not None:
                self.total_eval = (ms, self.n)
        return bool(stop or step or tt)

    def _sizes(self, line: str) -> bool:
        """Record the sizes a line states; True when one is the model's or the submission's (not code)."""
        low = line.lower()
        if "byte" not in low and "size" not in low and "budget" not in low and "code:" not in low:
            return False  # every size phrasing says bytes, size, budget or code: skip the regexes on the other lines
        artifact = False
        for p in SIZE_PATTERNS:
            m = p.regex.search(line)
            if m:
                self.sizes[p.kind] = _int(m.group(1))
                artifact = artifact or p.kind in _ARTIFACT_KINDS
        return artifact

    def _score(self, line_no: int, line: str) -> None:
        score, unitless = parse_score_line(line_no, line)
        if unitless:
            self.unitless_eval += 1
        if score is not None:
            self.scores.append(score)


class _Reader:
    """(line_no, text, was_cut) for at most MAX_LINES lines / MAX_CHARS characters, each line at most
    MAX_LINE_CHARS long; `capped` tells whether a cap stopped the reading."""

    def __init__(self, f: TextIO) -> None:
        self.f = f
        self.capped = False

    def __iter__(self) -> Iterator[tuple[int, str, bool]]:
        n = chars = 0
        while True:
            if n >= MAX_LINES or chars >= MAX_CHARS:
                self.capped = bool(self.f.read(1))
                return
            chunk = self.f.readline(MAX_LINE_CHARS)
            if not chunk:
                return
            n += 1
            chars += len(chunk)
            cut = False
            if len(chunk) >= MAX_LINE_CHARS and not chunk.endswith(("\n", "\r")):
                cut = True  # drop the rest of this very long line without holding it in memory
                while chars < MAX_CHARS:
                    rest = self.f.readline(MAX_LINE_CHARS)
                    chars += len(rest)
                    if not rest or rest.endswith(("\n", "\r")):
                        break
            yield n, chunk, cut


def _seed_from_name(path: str) -> int | None:
    stem = Path(path).stem
    m = _SEED_IN_NAME.search(stem)
    if not m:
        return None
    return int(m.group(1) or m.group(2))


def _summarize(p: _Parser, path: str, score_tag: str | None, hit_cap: bool, extra: list[str]) -> LogSummary:
    warnings = list(extra)
    if p.n == 0:
        warnings.append("empty file")
    if p.garbage:
        warnings.append(f"skipped {p.garbage} line(s) of binary garbage or invalid text")
    if p.cut_lines:
        warnings.append(f"cut {p.cut_lines} line(s) longer than {MAX_LINE_CHARS:,} characters")
    if hit_cap:
        warnings.append(f"stopped reading after {p.n:,} lines (caps: {MAX_LINES:,} lines, {MAX_CHARS:,} "
                        "characters); later lines were not parsed")
    if p.unitless_eval:
        warnings.append(f"ignored {p.unitless_eval} eval_time value(s) without a unit (ms or s)")

    final = choose_reported(p.scores, score_tag)
    adapt, unitless_adapt = _adaptations(*p.adapt_closed) if p.adapt_closed else ([], 0)
    if unitless_adapt:
        warnings.append(f"ignored {unitless_adapt} adaptation time(s) before the artifact without a unit (ms or s)")
    if adapt and final is not None and final.line_no < adapt[0].artifact_line:
        adapt = []  # the reported pass ran before the artifact too: what came before may be that pass itself
    if score_tag and final is None:
        seen = list(dict.fromkeys(s.tag for s in p.scores if s.tag))[-8:]
        warnings.append(f"no score line with tag '{score_tag}'" +
                        (f" (tags seen: {', '.join(seen)})" if seen else ""))
    if not p.scores and p.n:
        warnings.append("no line carrying a numeric val_bpb")
    if final is not None:
        if final.tag == "step" and not score_tag:
            warnings.append(f"the last score is a training-time validation (line {final.line_no}); "
                            "no post-training evaluation line was found")
        if not math.isfinite(final.val_bpb) or (final.val_loss is not None and not math.isfinite(final.val_loss)):
            warnings.append(f"the reported score is not finite (line {final.line_no})")

    # evaluation time: a stated total wins (every pass counts); else the final line or its companion
    eval_ms: float | None = None
    eval_src: str | None = None
    if p.total_eval is not None:
        eval_ms, eval_src = p.total_eval[0], f"total_eval_time (line {p.total_eval[1]})"
    elif final is not None and final.eval_time_ms is not None:
        eval_ms, eval_src = final.eval_time_ms, f"final line {final.line_no}"
    elif final is not None:
        base = final.tag[: -len("_exact")] if final.tag.endswith("_exact") else final.tag
        for s in reversed(p.scores):
            if s.line_no < final.line_no and s.tag == base and s.eval_time_ms is not None:
                eval_ms, eval_src = s.eval_time_ms, f"'{s.tag}' line {s.line_no}"
                break
    post = [s.eval_time_ms for s in p.scores if s.tag != "step" and s.eval_time_ms is not None]
    eval_sum = sum(post) if post else None

    seed = p.seeds[0] if p.seeds else None
    name_seed = _seed_from_name(path)
    if len(set(p.seeds)) > 1:
        warnings.append(f"several seeds stated: {sorted(set(p.seeds))}; using the first ({seed})")
    if seed is None:
        seed = name_seed
    elif name_seed is not None and name_seed != seed:
        warnings.append(f"file name says seed {name_seed} but the log states seed:{seed}")

    stop_step, total_steps = (p.stop or p.last_step or (None, None))
    train_ms = p.train_time_step if p.train_time_step is not None else p.train_time_any

    total = p.sizes.get("total")
    if total is None and "raw_total" in p.sizes:
        total = p.sizes["raw_total"]
        warnings.append("total bytes from an unqualified 'Total submission size' line "
                        "(may be the uncompressed size)")

    count = p.world_size or (len(p.smi_gpus) if p.smi_gpus else None)
    if p.stated_hw:
        hardware = p.stated_hw
    elif p.gpu_model and count:
        hardware = f"{count}x{p.gpu_model}"
    else:
        hardware = p.gpu_model

    return LogSummary(
        path=path, seed=seed, final=final, scores=p.scores, stop_step=stop_step, total_steps=total_steps,
        train_time_ms=train_ms, eval_time_ms=eval_ms, code_bytes=p.sizes.get("code"),
        model_bytes=p.sizes.get("model"), total_bytes=total, hardware=hardware, world_size=p.world_size,
        warnings=warnings, score_tag=score_tag, eval_time_source=eval_src, eval_time_sum_ms=eval_sum,
        raw_model_bytes=p.sizes.get("raw_model"), gpu_name=p.gpu_name, lines_read=p.n,
        kind=_kind(p), max_wallclock_s=p.wallclock, step_avg_ms=p.step_avg, adaptation=adapt,
    )


def _kind(p: "_Parser") -> str:
    trained = p.stop is not None or p.last_step is not None or p.train_time_any is not None
    if trained:
        return "train"
    return "eval" if p.scores else "other"


_Lines = Callable[[], Iterable[tuple[int, str, bool]]]  # a fresh pass over the lines; `.capped` after it


def _feed_all(p: _Parser, open_lines: _Lines) -> bool:
    """Feed every line to p; True when a cap stopped the reading."""
    lines = open_lines()
    for n, raw, cut in lines:
        p.feed(n, raw, cut)
    return bool(getattr(lines, "capped", False))


def _parse(open_lines: _Lines, path: str,
           score_tag: str | None) -> LogSummary:
    p = _Parser(skip_source=True)
    capped = _feed_all(p, open_lines)
    extra: list[str] = []
    if p.in_source and not p.source_closed:
        # it looked like source code but never reached the "=====" separator: parse every line
        p = _Parser(skip_source=False)
        capped = _feed_all(p, open_lines)
        extra.append("the log starts like Python source but has no '=====' separator; parsed every line")
    elif p.source_closed:
        extra.append("skipped the script source logged before the '=====' separator")
    return _summarize(p, path, score_tag, hit_cap=capped, extra=extra)


def parse_log(path: str | Path, *, score_tag: str | None = None) -> LogSummary:
    """Parse one log file, streaming (huge files are read at most MAX_LINES lines)."""
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{p}: log file not found")
    if not p.is_file():
        raise BadInput(f"{p}: not a regular file")

    class _FileLines:
        capped = False

        def __iter__(self) -> Iterator[tuple[int, str, bool]]:
            try:
                with p.open("r", encoding="utf-8", errors="replace", newline=None) as f:
                    reader = _Reader(f)
                    yield from reader
                    self.capped = reader.capped
            except OSError as e:
                raise BadInput(f"{p}: cannot read log ({e.strerror or e})") from None

    return _parse(_FileLines, str(p), score_tag)


def parse_log_text(text: str, *, path: str = "<text>", score_tag: str | None = None) -> LogSummary:
    """Parse a log held in memory (tests, logs captured from a run)."""
    import io

    return _parse(lambda: _Reader(io.StringIO(text, newline=None)), path, score_tag)


def pick_reported(lines: list[tuple[str, float | None]], score_tag: str = "") -> PrintedScore | None:
    """The reported score among the printed lines carrying val_bpb (arrival order, with their times).

    Chosen by harness.check.logs (the same choice `harness check` applies to a submission's logs:
    ``choose_reported`` over the log's score lines); ``parse_line`` gives each line's time.
    """
    mine = [p for p in (parse_line(text, t) for text, t in lines) if p is not None]
    summary = parse_log_text("\n".join(text for text, _ in lines), path="<run output>", score_tag=score_tag or None)
    f = summary.final
    if f is None:
        return None
    loss = f.val_loss  # None when the line printed val_bpb alone
    for s in reversed(mine):  # the same line as printed, for its time and eval_time
        if s.val_bpb == f.val_bpb and (f.val_loss is None or s.val_loss == f.val_loss):
            return PrintedScore(f.tag or s.tag, loss, f.val_bpb, f.text, f.eval_time_ms or s.eval_time_ms, s.t)
    t = next((tt for text, tt in reversed(lines) if f.text and f.text in text), None)
    return PrintedScore(f.tag, loss, f.val_bpb, f.text, f.eval_time_ms, t)


# ------------------------------------------------------------------ logs of one seed

@dataclass
class SeedRun:
    """The logs of one seed: its training log and any separate evaluation logs (a record may ship
    train_seed42.log and ngram_eval_seed42.log). The seed's reported score is the last evaluation-only
    log's final line when there is one (the later stage), else the training log's."""

    seed: int | None
    logs: list[LogSummary]  # the training log first (if any), then eval-only logs in file order
    final: ScoreLine | None
    final_log: str | None  # path of the log the final score comes from
    warnings: list[str] = field(default_factory=list)

    def _first(self, attr: str):
        return next((getattr(lg, attr) for lg in self.logs if getattr(lg, attr) is not None), None)

    @property
    def train_time_ms(self) -> float | None:
        return self._first("train_time_ms")

    @property
    def model_bytes(self) -> int | None:
        return self._first("model_bytes")

    @property
    def total_bytes(self) -> int | None:
        return self._first("total_bytes")

    @property
    def code_bytes(self) -> int | None:
        return self._first("code_bytes")

    @property
    def hardware(self) -> str | None:
        return self._first("hardware")

    @property
    def path(self) -> str:
        """The log the reported score comes from (what a finding should point at)."""
        return self.final_log or (self.logs[0].path if self.logs else "")

    @property
    def final_summary(self) -> LogSummary | None:
        """The log the reported score comes from."""
        return next((lg for lg in self.logs if lg.path == self.final_log), self.logs[0] if self.logs else None)

    @property
    def eval_time_ms(self) -> float | None:
        """Evaluation time stated for the pass behind the reported score: the log the score comes from.
        An evaluation-only rerun of the seed replaces the training log's evaluation (a rerun evaluates
        the same artifact again; its time never adds to the first evaluation's). None when unstated."""
        lg = self.final_summary
        return lg.eval_time_ms if lg is not None else None

    @property
    def eval_time_sum_ms(self) -> float | None:
        """Every post-training evaluation the reported score's log states, added up."""
        lg = self.final_summary
        return lg.eval_time_sum_ms if lg is not None else None

    @property
    def adaptation_log(self) -> LogSummary | None:
        """The log (the training log) stating adaptation before its artifact: the artifact an evaluation-only
        rerun evaluates is the adapted one, so the adaptation counts for the reported pass either way."""
        return next((lg for lg in self.logs if lg.adaptation), None)


def seed_label(seed: int | None) -> str:
    return "?" if seed is None else str(seed)


def seed_runs(summaries: Iterable[LogSummary]) -> list[SeedRun]:
    """Group logs into runs: every training log is a run; an eval-only log joins the single training
    log of its seed, else stands alone. Logs without a score (ablations, notes) are left out."""
    logs = [lg for lg in summaries if lg.final is not None]
    runs: list[SeedRun] = []
    by_seed: dict[int, list[SeedRun]] = {}
    for lg in logs:
        if lg.kind == "eval":
            continue
        run = SeedRun(seed=lg.seed, logs=[lg], final=lg.final, final_log=lg.path)
        runs.append(run)
        if lg.seed is not None:
            by_seed.setdefault(lg.seed, []).append(run)
    for seed, rs in by_seed.items():
        if len(rs) > 1:
            names = ", ".join(Path(r.final_log or "").name for r in rs)
            for r in rs:
                r.warnings.append(f"{len(rs)} training logs state seed {seed} ({names})")
    for lg in logs:
        if lg.kind != "eval":
            continue
        rs = by_seed.get(lg.seed, []) if lg.seed is not None else []
        if len(rs) == 1:
            run = rs[0]
            run.logs.append(lg)
            run.warnings.append(f"reported score from {Path(lg.path).name} (an evaluation-only rerun of seed "
                                f"{seed_label(lg.seed)}): it replaces the evaluation in {Path(run.logs[0].path).name}")
            run.final, run.final_log = lg.final, lg.path
        else:
            run = SeedRun(seed=lg.seed, logs=[lg], final=lg.final, final_log=lg.path)
            if rs:
                run.warnings.append(f"evaluation-only log; {len(rs)} training logs share seed {lg.seed}")
            runs.append(run)
    return runs


# ------------------------------------------------------------------ finding logs in a folder

_LOG_TXT_NAME = re.compile(r"^(?:train|log)|seed|(?:^|[_-])log(?:s)?(?:[_-]|$)|(?:^|[_-])run(?:[_-]|$)", re.I)
_NOT_LOG_NAME = re.compile(r"^(?:readme|requirements|license|pr_body|notes?|changelog)", re.I)
_LOG_SNIFF = re.compile(r"val_bpb|train_loss|(?<![\w])step:\d+/\d+")
_SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv", "venv", ".ipynb_checkpoints"}
_MAX_DEPTH = 5


def _looks_like_log(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(262_144)
            size = path.stat().st_size
            tail = b""
            if size > 2 * 262_144:
                f.seek(size - 262_144)
                tail = f.read()
    except OSError:
        return False
    text = (head + b"\n" + tail).decode("utf-8", errors="replace")
    return bool(_LOG_SNIFF.search(text))


def find_logs(folder: str | Path) -> list[Path]:
    """Train logs in a submission folder: every *.log, *.txt under a logs/ folder, and train/log/seed
    named *.txt that look like logs; never README or requirements files. Sorted by relative path."""
    root = Path(folder)
    if not root.exists():
        raise BadInput(f"{root}: folder not found")
    if not root.is_dir():
        raise BadInput(f"{root}: not a folder")
    found: list[Path] = []

    def walk(d: Path, depth: int) -> None:
        try:
            entries = sorted(d.iterdir(), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if e.name.startswith(".") or e.name in _SKIP_DIRS:
                continue
            if e.is_dir() and not e.is_symlink():
                if depth < _MAX_DEPTH:
                    walk(e, depth + 1)
                continue
            if not e.is_file() or _NOT_LOG_NAME.match(e.name):
                continue
            suffix = e.suffix.lower()
            if suffix == ".log":
                found.append(e)
            elif suffix == ".txt":
                under_logs = any(part.lower() == "logs" for part in e.relative_to(root).parts[:-1])
                if (under_logs or _LOG_TXT_NAME.search(e.stem)) and _looks_like_log(e):
                    found.append(e)

    walk(root, 0)
    return sorted(found, key=lambda p: _natural_key(str(p.relative_to(root))))


def _natural_key(s: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]
