"""Fused / capturable optimizer flags dropped: the CPU runs the plain (foreach or for-loop) update."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from harness.runtime.shim import state

_OPTIMIZERS = ("Adam", "AdamW", "SGD", "Adagrad", "Adamax", "NAdam", "RAdam", "RMSprop", "Adadelta", "ASGD",
               "Rprop", "Muon")


def install(torch: ModuleType) -> None:
    for name in _OPTIMIZERS:
        cls = getattr(torch.optim, name, None)
        if cls is None or getattr(cls.__init__, "_harness_shim", False):
            continue
        cls.__init__ = _wrap_init(cls.__init__)
    state.note("optimizers fused=False")


def _wrap_init(orig: Any) -> Any:
    @functools.wraps(orig)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("fused"):
            kwargs["fused"] = None
        if kwargs.get("capturable"):
            kwargs["capturable"] = False
        orig(self, *args, **kwargs)

    __init__._harness_shim = True  # type: ignore[attr-defined]
    return __init__
