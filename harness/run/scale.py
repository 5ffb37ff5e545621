"""Environment overrides per scale.

Order (later wins): the record's inferred configuration (harness.check.configuration: log dump > README
command > run script), then at tiny scale `[run.tiny_env]` of harness.toml shrunk against the record's
value (a tiny value never raises a knob: min(record, tiny)), and never over a switch that selects the
method; then the method's own knobs scaled down, not to zero (TTT epochs and chunks, n-gram orders,
SLOT steps, step thresholds beyond the tiny ITERATIONS); then the served data (DATA_PATH, DATA_DIR,
TOKENIZER_PATH, VOCAB_SIZE), RUN_ID, SEED, OMP_NUM_THREADS=1 (several processes on few cores slow down
10-20x otherwise); then the user's --env, which overrides everything.
full: the inferred configuration, where the data is, RUN_ID, and the user's --env.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from harness.errors import BadInput

SCALES = ("tiny", "full")


def parse_env_pairs(pairs: Iterable[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise BadInput(f"--env {p!r}: expected KEY=VALUE with a valid variable name")
        out[key] = value
    return out


def env_overrides(
    run_cfg: dict[str, Any],
    scale: str,
    *,
    data_dir: str,
    tokenizer: str | None,
    data_root: str | None = None,
    vocab_size: int | None,
    run_id: str,
    device: str,
    nproc: int,
    user_env: dict[str, str] | None = None,
    inferred: dict[str, str] | None = None,
    defaults: dict[str, str] | None = None,
    notes: list[str] | None = None,
    sources: dict[str, str] | None = None,
) -> dict[str, str]:
    """The child's environment overrides. `inferred`: the record's configuration to apply; `defaults`:
    the script's literal defaults (what a knob is when nothing sets it); `notes` and `sources` (name ->
    where the applied value comes from) are filled in when given."""
    if scale not in SCALES:
        raise BadInput(f"unknown scale {scale!r} (expected one of {', '.join(SCALES)})")
    notes = notes if notes is not None else []
    sources = sources if sources is not None else {}
    o: dict[str, str] = {}
    for k, v in (inferred or {}).items():
        o[k] = v
        sources.setdefault(k, "inferred")
    if scale == "tiny":
        tiny = run_cfg.get("tiny_env", {})
        if not isinstance(tiny, dict):
            raise BadInput("harness.toml: [run.tiny_env] must be a table of strings")
        tiny = {str(k): str(v) for k, v in tiny.items()}
        o.update(tiny_scaled(tiny, inferred or {}, defaults or {}, notes, sources))
    for k in ("DATA_PATH", "DATA_DIR", "TOKENIZER_PATH", "VOCAB_SIZE", "RUN_ID", "SEED", "OMP_NUM_THREADS",
              "GLOO_SOCKET_IFNAME"):
        sources[k] = "harness"
    o["DATA_PATH"] = data_dir
    if data_root:
        o["DATA_DIR"] = data_root  # newer records: DATA_DIR/datasets/..., DATA_DIR/tokenizers/...
    if tokenizer:
        o["TOKENIZER_PATH"] = tokenizer
    if vocab_size:
        o["VOCAB_SIZE"] = str(vocab_size)
    o["RUN_ID"] = run_id
    if scale == "tiny":
        o["SEED"] = str(run_cfg.get("seed", 1337))
        o["OMP_NUM_THREADS"] = "1"
    if device == "cpu" and nproc > 1:
        o["GLOO_SOCKET_IFNAME"] = "lo"  # rendezvous on loopback (the child's network namespace has only lo)
    for k in user_env or {}:
        sources[k] = "--env"
    o.update(user_env or {})
    return o


def _num(v: str | None) -> float | None:
    if v is None:
        return None
    try:
        return float(v)
    except ValueError:
        return None


def _fmt(x: float, like: str) -> str:
    return str(int(x)) if x == int(x) and "." not in like else str(x)


# knobs of the method scaled down (not to zero) at tiny scale: (name pattern, cap)
_SLIDING_WINDOWS = r"SLIDING_BATCH(_SIZE|_SEQS)?$"
_COUNTS_BELOW = {_SLIDING_WINDOWS: 1024}  # a cap that applies only below this value (above: a token count)
METHOD_CAPS: tuple[tuple[str, float], ...] = (
    (r"EPOCHS$", 1),  # TTT / pre-quant TTT epochs
    (r"(TTT|SLOT|LORA).*STEPS$", 2),  # SLOT steps, TTT inner steps
    (r"CHUNK(_TOKENS|_SIZE)?$", 512),  # TTT chunks (tokens)
    (r"BATCH_SEQS$", 4),
    (r"TTT.*BATCH_SIZE$", 8),  # documents per TTT batch (per-document LoRA): [64, seq, vocab] logits are GBs traced
    # sliding windows per evaluation batch when counted in sequences (64 windows x an 8192-token vocabulary's
    # logits ran the traced run out of memory); counted in tokens (65536) it is VAL_BATCH_SIZE's family
    (_SLIDING_WINDOWS, 8),
    (r"PREFIX_DOCS$", 4),  # phased TTT: documents in the first phase
    (r"(^|_)ORDER$", 4),  # n-gram orders
    (r"CALIBRATION_BATCHES$|CALIB_BATCHES$", 2),
)
_STEP_THRESHOLD = re.compile(r"(_START_STEP|_AT_STEP|_STEP|_START_ITER)$")
_SIZE_KNOB = re.compile(r"(_DIM|_SIZE|_LEN|_TOKENS|_BUCKETS)$")


def tiny_scaled(tiny: dict[str, str], inferred: dict[str, str], defaults: dict[str, str],
                notes: list[str], sources: dict[str, str]) -> dict[str, str]:
    """Tiny overrides that keep the method: each tiny value is min(record, tiny) for numbers (a tiny
    value never switches on what the record had off, nor raises a knob); a switch the record sets
    (TTT_ENABLED, NGRAM_*, SLOT_*, *_ENABLED) is never overridden; the method's knobs are scaled down
    (METHOD_CAPS), step thresholds beyond the tiny ITERATIONS are pulled inside it."""
    from harness.check.configuration import is_switch

    out: dict[str, str] = {}
    for k, t in tiny.items():
        rec = inferred.get(k)
        base = rec if rec is not None else defaults.get(k)
        if rec is not None and is_switch(k, rec):
            notes.append(f"tiny scale keeps {k}={rec} (a switch of the method; [run.tiny_env] says {t})")
            continue
        b, tv = _num(base), _num(t)
        if b is not None and tv is not None and b < tv:
            if rec is not None:
                out[k] = rec
                sources[k] = sources.get(k, "inferred")
            elif base is not None:
                out[k] = base
                sources[k] = "script default"
            continue
        out[k] = t
        sources[k] = "tiny"
    merged = {**defaults, **inferred, **out}
    iters = _num(merged.get("ITERATIONS"))
    for k, v in sorted(merged.items()):
        if k in out and sources.get(k) == "tiny":
            continue
        x = _num(v)
        if x is None or x <= 0:
            continue
        new = None
        for pat, cap in METHOD_CAPS:
            if re.search(pat, k) and x > cap:
                if x >= _COUNTS_BELOW.get(pat, float("inf")):
                    break
                new = cap
                if pat == r"(^|_)ORDER$":  # never below a minimum order the record sets
                    lo = _num(merged.get(k.replace("ORDER", "MIN_ORDER"))) if "MIN_ORDER" not in k else None
                    new = max(cap, lo or 0)
                break
        if new is None and iters and _STEP_THRESHOLD.search(k) and x > iters and not k.endswith("WARMUP_STEP"):
            new = max(1.0, float(int(iters // 2)))
            notes.append(f"tiny scale: {k}={v} is past ITERATIONS={merged.get('ITERATIONS')}; set to {_fmt(new, v)} "
                         "so the step-triggered part of the method still runs")
        if new is not None and new < x:
            out[k] = _fmt(new, v)
            sources[k] = f"tiny (scaled down from {v})"
    _follow_shrunk_sizes(tiny, inferred, defaults, out, sources)
    for k, v in sorted(inferred.items()):
        x = _num(v)
        if k in out or x is None or not _SIZE_KNOB.search(k):
            continue
        if x > 1024:
            notes.append(f"tiny scale cannot shrink {k}={v} (the record's value; no tiny rule for it): kept")
    return out


# Sizes that follow the ones tiny scale shrinks, for any knob the script reads (a literal default) or
# the record sets that neither [run.tiny_env] nor the caps above gave a value. Two general rules:
#  (a) tied: a knob whose last name word is a size word (_DIM, _LEN, _TOKENS, _SIZE) shared with a knob
#      tiny shrank, and whose value equals that knob's record value -- or, left at its script default,
#      whose default equals that knob's script default -- is the same size by construction
#      (EMBEDDING_DIM = MODEL_DIM, ROPE_TRAIN_SEQ_LEN = TRAIN_SEQ_LEN): it takes the shrunk value;
#  (b) family: a knob whose name ends with the last two words of a [run.tiny_env] size knob
#      (*_SEQ_LEN, *_BATCH_TOKENS, *_CHUNK_TOKENS, *_BATCH_SIZE) is a size of that kind (TTT_EVAL_SEQ_LEN,
#      VAL_BATCH_TOKENS): larger than the tiny knob's [run.tiny_env] value, it is shrunk to it. The longest
#      shared name tail picks the tiny knob (TTT_EVAL_SEQ_LEN follows EVAL_SEQ_LEN, not TRAIN_SEQ_LEN).
# Both only lower a knob; a switch of the method is never touched.
_SIZE_WORDS = ("DIM", "LEN", "TOKENS", "SIZE")
_FAMILY_WORDS = ("LEN", "TOKENS", "SIZE")


def _words(name: str) -> list[str]:
    return [w for w in name.upper().split("_") if w]


def _shared_tail(a: str, b: str) -> int:
    """How many last name words two knobs share (EVAL_SEQ_LEN, TTT_EVAL_SEQ_LEN: 3)."""
    wa, wb = _words(a), _words(b)
    n = 0
    while n < min(len(wa), len(wb)) and wa[-1 - n] == wb[-1 - n]:
        n += 1
    return n


def _follow_shrunk_sizes(tiny: dict[str, str], inferred: dict[str, str], defaults: dict[str, str],
                         out: dict[str, str], sources: dict[str, str]) -> None:
    from harness.check.configuration import is_switch

    record = {**defaults, **inferred}
    # (a) the knobs tiny scale lowered: name -> (applied value, as a number and as given)
    shrunk: dict[str, tuple[float, str]] = {}
    for t, tv in out.items():
        a, r = _num(tv), _num(record.get(t))
        if a is not None and r is not None and a < r:
            shrunk[t] = (a, tv)
    for k, v in sorted(record.items()):
        x = _num(v)
        if k in tiny or k in out or x is None or x <= 0 or is_switch(k, v):
            continue
        word = _words(k)[-1] if _words(k) else ""
        if word not in _SIZE_WORDS:
            continue
        for t, (a, tv) in sorted(shrunk.items(), key=lambda it: (-_shared_tail(it[0], k), it[0])):
            if _words(t)[-1] != word or a >= x:
                continue
            same_record = _num(record.get(t)) == x
            same_default = (k not in inferred and defaults.get(k) is not None
                            and _num(defaults.get(t)) == _num(defaults.get(k)))
            if same_record or same_default:
                out[k] = tv
                sources[k] = f"tiny (follows {t}; record {v})"
                break
    # (b) families of the tiny size knobs
    families = [(t, tv) for t, tv in tiny.items()
                if len(_words(t)) >= 2 and _words(t)[-1] in _FAMILY_WORDS and _num(tv) is not None]
    for k, v in sorted(record.items()):
        x = _num(v)
        if k in tiny or k in out or x is None or x <= 0 or is_switch(k, v):
            continue
        best: tuple[int, float, str, str] | None = None
        for t, tv in families:
            n = _shared_tail(t, k)
            if n < 2:
                continue
            cand = (n, _num(tv) or 0.0, t, tv)
            if best is None or cand[:2] > best[:2]:
                best = cand
        if best is not None and best[1] < x:
            out[k] = best[3]
            sources[k] = f"tiny (a size like {best[2]}; record {v})"
