"""The registry of hint patterns: pattern id -> the rule (RULES.md) it may break; '-' for the
patterns that only say the scan could not run (unparsed, wrapped).
"""

from __future__ import annotations


HINT_PATTERNS: dict[str, str] = {
    "ttt_before_score": "C3",
    "min_over_passes": "C4",
    "target_in_hash": "C1",
    "delta_vs_targets": "C1",
    "val_calibration": "B4",
    "train_loader_after_training": "D2",
    "gate_on_target": "C1",
    "unparsed": "-",
    "wrapped": "-",
}
