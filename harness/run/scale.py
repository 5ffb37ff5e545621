"""Environment overrides per scale.

tiny: `[run.tiny_env]` of harness.toml (scripts read hyperparameters from the environment), the
served data (DATA_PATH, DATA_DIR, TOKENIZER_PATH, VOCAB_SIZE), RUN_ID, SEED, OMP_NUM_THREADS=1 (several
processes on few cores slow down 10-20x otherwise); then the user's --env.
full: no hyperparameter overrides; only where the data is, RUN_ID, and the user's --env.
"""

from __future__ import annotations

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
) -> dict[str, str]:
    if scale not in SCALES:
        raise BadInput(f"unknown scale {scale!r} (expected one of {', '.join(SCALES)})")
    o: dict[str, str] = {}
    if scale == "tiny":
        tiny = run_cfg.get("tiny_env", {})
        if not isinstance(tiny, dict):
            raise BadInput("harness.toml: [run.tiny_env] must be a table of strings")
        o.update({str(k): str(v) for k, v in tiny.items()})
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
    o.update(user_env or {})
    return o
