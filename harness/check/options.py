"""What `harness check` is asked for beyond the folder (built once by the command layer, harness.cli)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckOptions:
    artifact: str | None = None  # the compressed model file (default: found in the folder)
    score_tag: str | None = None  # log tag of the reported score line
    reference_val_loss: float | None = None  # the previous record (nats), for B5
    p_value: float | None = None  # B5 significance level (default: rules/ B5 p_value)
    hints: bool = True  # scan the source for static hints
    # build the harness's compressed code form (B1) even when the submission counts its script as it is
    # (by default only when a log or the claim counts the code compressed: minifying takes seconds)
    compress_code: bool = False
