"""torch.inference_mode treated like torch.no_grad.

Run eagerly, several score-first TTT scripts build a cache (rotary tables) under inference_mode and reuse
it in training, which fails with "Inference tensors cannot be saved for backward" (compiled on a GPU the
cache is traced away). no_grad keeps the semantics that matter: no graph is recorded while scoring.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from harness.runtime.shim import state


def install(torch: ModuleType) -> None:
    no_grad = torch.autograd.grad_mode.no_grad

    class inference_mode(no_grad):  # noqa: N801 - replaces torch.inference_mode
        def __new__(cls, mode: Any = True) -> Any:
            if callable(mode) and not isinstance(mode, bool):  # bare @torch.inference_mode
                return cls()(mode)
            return object.__new__(cls)

        def __init__(self, mode: bool = True) -> None:
            super().__init__()
            self.mode = bool(mode)

        def __enter__(self) -> None:
            if self.mode:
                super().__enter__()

        def __exit__(self, *exc: Any) -> None:
            if self.mode:
                super().__exit__(*exc)

        def clone(self) -> "inference_mode":
            return self.__class__(self.mode)

    torch.inference_mode = inference_mode
    torch.autograd.inference_mode = inference_mode
    torch.autograd.grad_mode.inference_mode = inference_mode
    state.note("inference_mode=no_grad")
