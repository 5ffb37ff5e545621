"""What an op that touches no validation value costs under the tracer's dispatch mode (its fast path),
against the same op with no mode and under a dispatch mode that does nothing, measured in one run; and
what an op on a traced activation costs (its provenance handler), by the activation's size.

    python bench/dispatch_overhead.py [--n 20000] [--size 4] [--traced-sizes 1024 16384 131072]

Most ops of a real run (training, weights, masks) never touch a traced tensor: in the sliding-window
record 124k of 156k. Small tensors, so the figure is the per-op overhead, not the arithmetic. Each setting
is timed --repeat times interleaved and the minimum is kept; compare the ratios, not the microseconds.

The traced rows run the same three ops (x + w, x * y, tanh) on activations built from validation tokens
(an embedding lookup: every element depends on one position), with the mode unwrapped as in a harness run
on a CPU (no dynamo guard), against the same ops untraced: the handlers' per-op cost, and how much of it
grows with the size (numpy work) rather than staying flat (Python).
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


def _per_op_us(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, n: int) -> float:
    """Microseconds per op of x + w, (x + w) * y, tanh of that."""
    t = time.perf_counter()
    for _ in range(n):
        a = x + w
        b = a * y
        torch.tanh(b)
    return (time.perf_counter() - t) / (3 * n) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--size", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--traced-sizes", type=int, nargs="*", default=[1024, 16384, 131072],
                    help="elements of the traced activations (rows of 128)")
    args = ap.parse_args(argv)
    a, b = torch.randn(args.size, args.size), torch.randn(args.size, args.size)
    best = {"plain": float("inf"), "no-op mode": float("inf"), "tracer fast path": float("inf")}
    with traced(np.arange(64, dtype=np.uint16), vocab_size=1024, code=".", seq_len=8) as t:
        _ = t.tokens  # validation is read: the tracer holds traced blocks, as in a real evaluation
        for _ in range(args.repeat):
            with _Off():
                best["plain"] = min(best["plain"], _per_op_us(a, a, b, args.n))
            best["tracer fast path"] = min(best["tracer fast path"], _per_op_us(a, a, b, args.n))
    for _ in range(args.repeat):
        with _Nothing():
            best["no-op mode"] = min(best["no-op mode"], _per_op_us(a, a, b, args.n))
    base = best["plain"]
    print(f"{'setting':18} {'us/op':>7} {'x plain':>8}")
    for k, v in best.items():
        print(f"{k:18} {v:7.2f} {v / base:8.2f}")
    if args.traced_sizes:
        print(f"\n{'traced elements':18} {'plain us/op':>11} {'traced us/op':>12} {'x plain':>8}")
        for n in args.traced_sizes:
            plain, tr = _traced_op_us(n, max(20, args.n // 100), args.repeat)
            print(f"{n:<18} {plain:11.1f} {tr:12.1f} {tr / plain:8.2f}")
    return 0


def _traced_op_us(elements: int, n: int, repeat: int) -> tuple[float, float]:
    """(plain, traced) microseconds per op on an activation of `elements` floats built from validation tokens."""
    from harness.runtime.tracer import torch_mode

    rows = max(1, elements // 128)
    toks = (np.arange(rows + 1, dtype=np.uint16) * 7 + 1) % 1000
    real = torch_mode._compile_is_identity
    torch_mode._compile_is_identity = lambda: True  # the mode as a CPU harness run installs it: unwrapped
    try:
        with traced(toks, vocab_size=1024, code=".", seq_len=rows) as t:
            ids = torch.as_tensor(t.tokens[:rows]).long()
            emb = torch.randn(1024, 128)
            x, y, w = emb[ids].unsqueeze(0), emb[ids.flip(0)].unsqueeze(0), torch.randn(128)
            best = {"plain": float("inf"), "traced": float("inf")}
            for _ in range(repeat):
                with _Off():
                    best["plain"] = min(best["plain"], _per_op_us(x, y, w, n))
                best["traced"] = min(best["traced"], _per_op_us(x, y, w, n))
    finally:
        torch_mode._compile_is_identity = real
    return best["plain"], best["traced"]


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
