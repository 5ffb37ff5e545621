"""What an op that touches no validation value costs under the tracer's dispatch mode (its fast path),
against the same op with no mode and under a dispatch mode that does nothing, measured in one run.

    python bench/dispatch_overhead.py [--n 20000] [--size 4]

Most ops of a real run (training, weights, masks) never touch a traced tensor: in the sliding-window
record 124k of 156k. Small tensors, so the figure is the per-op overhead, not the arithmetic. Each setting
is timed --repeat times interleaved and the minimum is kept; compare the ratios, not the microseconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.testing import traced  # noqa: E402


class _Nothing(TorchDispatchMode):
    """A mode that only calls the op (no dynamo guard, like the tracer's own mode on a CPU)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        return func(*args, **(kwargs or {}))


def _per_op_us(a: torch.Tensor, b: torch.Tensor, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        c = a + b
        d = c * a
        torch.tanh(d)
    return (time.perf_counter() - t) / (3 * n) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--size", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    a, b = torch.randn(args.size, args.size), torch.randn(args.size, args.size)
    best = {"plain": float("inf"), "no-op mode": float("inf"), "tracer fast path": float("inf")}
    with traced(np.arange(64, dtype=np.uint16), vocab_size=1024, code=".", seq_len=8) as t:
        _ = t.tokens  # validation is read: the tracer holds traced blocks, as in a real evaluation
        for _ in range(args.repeat):
            with _Off():
                best["plain"] = min(best["plain"], _per_op_us(a, b, args.n))
            best["tracer fast path"] = min(best["tracer fast path"], _per_op_us(a, b, args.n))
    for _ in range(args.repeat):
        with _Nothing():
            best["no-op mode"] = min(best["no-op mode"], _per_op_us(a, b, args.n))
    base = best["plain"]
    print(f"{'setting':18} {'us/op':>7} {'x plain':>8}")
    for k, v in best.items():
        print(f"{k:18} {v:7.2f} {v / base:8.2f}")
    return 0


class _Off:
    """Time the plain op with the tracer's mode switched off for the block (torch's own guard)."""

    def __enter__(self) -> None:
        from torch.utils._python_dispatch import _disable_current_modes

        self._cm = _disable_current_modes()
        self._cm.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


if __name__ == "__main__":
    raise SystemExit(main())
