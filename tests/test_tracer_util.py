"""Shared helpers for the tracer tests (imported by tests/test_tracer_*.py; holds one smoke test)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from harness.ledger import read_ledger  # noqa: E402
from harness.runtime import tracer  # noqa: E402
from harness.runtime.context import RuntimeContext, RuntimeSettings  # noqa: E402

torch.set_num_threads(1)

HERE = Path(__file__).resolve().parent
V = 32  # vocabulary size of the synthetic streams


class Trace:
    """One traced session: tag tokens, run code, then read its ledger."""

    def __init__(self, tmp: Path, vocab: int | None = V, submission_dir: Path = HERE) -> None:
        self.dir = tmp / "ledger"
        self.ctx = RuntimeContext(
            RuntimeSettings(ledger_dir=str(self.dir), t0=time.time(), trace=True,
                            submission_dir=str(submission_dir), vocab_size=vocab)
        )
        self.tr = tracer.install(self.ctx)
        self.tr.strict = True  # a rule that fails raises here (in a real run it widens and is counted)
        self.closed = False

    def tokens(self, n: int, lo: int = 0, mult: int = 7) -> np.ndarray:
        raw = ((np.arange(n) + lo) * mult % V).astype(np.uint16)
        return self.ctx.tag_validation(raw, lo, "fineweb_val_000000.bin")

    def ttokens(self, n: int, lo: int = 0) -> torch.Tensor:
        return torch.from_numpy(self.tokens(n, lo).astype(np.int64))

    def prov(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        p = self.tr.prov(x)
        shape = tuple(x.shape)
        if p is None:
            return np.full(shape, np.iinfo(np.int32).max), np.full(shape, -1)
        return np.array(p.lo), np.array(p.hi)

    def sid(self, x: Any) -> np.ndarray | None:
        p = self.tr.prov(x)
        return None if p is None or p.sid is None else np.array(p.sid)

    def close(self) -> list[dict[str, Any]]:
        if not self.closed:
            tracer.uninstall()
            self.closed = True
        return read_ledger(self.dir).events

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.close() if e["kind"] == kind]


@pytest.fixture
def trace(tmp_path: Path) -> Iterator[Trace]:
    t = Trace(tmp_path)
    try:
        yield t
    finally:
        if not t.closed:
            tracer.uninstall()


def scores(events: list[dict[str, Any]], grad: bool | None = None) -> dict[int, dict[str, Any]]:
    """sid -> {pos, nll, dep, grad, op} over every score event."""
    out: dict[int, dict[str, Any]] = {}
    for e in events:
        if e["kind"] != "score" or (grad is not None and e["grad"] != grad):
            continue
        for s, p, n, d in zip(e["sid"], e["pos"], e["nll"], e["dep"]):
            out[s] = {"pos": p, "nll": n, "dep": d, "grad": e["grad"], "op": e["op"]}
    return out


def positions(lo: int, n: int) -> np.ndarray:
    return np.arange(lo, lo + n)


def test_install_uninstall_restores_everything(tmp_path: Path) -> None:
    before = (torch.Tensor.tolist, torch.Tensor.numpy, torch.from_numpy, np.zeros, np.asarray)
    t = Trace(tmp_path)
    assert tracer.current() is t.tr
    assert np.zeros is not before[3]
    x = t.ttokens(4)
    assert t.prov(x)[1].tolist() == [0, 1, 2, 3]
    events = t.close()
    assert tracer.current() is None
    assert (torch.Tensor.tolist, torch.Tensor.numpy, torch.from_numpy, np.zeros, np.asarray) == before
    assert events[-1]["kind"] == "stats"
    # after uninstall nothing is traced and a fresh install starts clean
    y = torch.arange(3) + 1
    assert tracer.current() is None and y.tolist() == [1, 2, 3]
