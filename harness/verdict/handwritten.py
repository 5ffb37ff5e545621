"""Hand-written ledgers: build a run's events in a few lines, for tests, examples and reports.

    b = LedgerBuilder()
    b.run_start(); b.read(0, 129); b.artifact_write()
    sids = b.score(range(1, 65), nll=2.0)
    b.consume(sids); b.reported("final_exact", 2.0, 1.44)
    judge(b.ledger(), printed=b.printed(), ...)

Every event gets seq (per rank), t (a clock advanced by `step` per event) and rank, like LedgerWriter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.ledger import Ledger
from harness.verdict.passes import Printed


class LedgerBuilder:
    def __init__(self, step: float = 0.01, site: str = "train_gpt.py:1") -> None:
        self.events: list[dict[str, Any]] = []
        self.t = 0.0
        self.step = step
        self.site = site
        self._seq: dict[int, int] = {}
        self._sid: dict[int, int] = {}
        self._printed: Printed | None = None

    def ev(self, kind: str, rank: int = 0, site: str | None = None, t: float | None = None, **fields: Any) -> dict:
        if t is None:
            self.t = round(self.t + self.step, 6)
            t = self.t
        seq = self._seq.get(rank, 0)
        self._seq[rank] = seq + 1
        e = {"seq": seq, "t": t, "rank": rank, "kind": kind, "site": site or self.site}
        e.update(fields)
        self.events.append(e)
        return e

    # ---- runner / io hooks
    def run_start(self, traced: bool = True, scale: str = "tiny", rank: int = 0) -> dict:
        return self.ev("run_start", rank, argv=["train_gpt.py"], pid=1, python="3.11", device="cpu",
                       scale=scale, traced=traced)

    def read(self, lo: int, hi: int, file: str = "fineweb_val_000000.bin", rank: int = 0,
             site: str | None = None) -> dict:
        return self.ev("read", rank, site, file=file, lo=lo, hi=hi)

    def train_read(self, file: str = "fineweb_train_000000.bin", first: bool = True, rank: int = 0,
                   site: str | None = None) -> dict:
        return self.ev("train_read", rank, site, file=file, first=first)

    def artifact_write(self, path: str = "final_model.int8.ptz", nbytes: int = 1000, rank: int = 0,
                       site: str | None = None, **fields: Any) -> dict:
        return self.ev("artifact_write", rank, site, path=path, bytes=nbytes, **fields)

    def net(self, host: str = "huggingface.co", port: int = 443, rank: int = 0, site: str | None = None) -> dict:
        return self.ev("net", rank, site, host=host, port=port, blocked=True)

    def phase(self, name: str, rank: int = 0) -> dict:
        return self.ev("phase", rank, name=name)

    def reported(self, tag: str, val_loss: float, val_bpb: float, rank: int = 0, site: str | None = None) -> dict:
        self._printed = Printed(tag, val_loss, val_bpb, f"{tag} val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
        return self.ev("reported", rank, site, tag=tag, val_loss=val_loss, val_bpb=val_bpb, line=self._printed.line)

    def stats(self, unruled: dict[str, int] | None = None, escapes: int = 0, traced_ops: int = 100,
              rank: int = 0, coarse: dict[str, int] | None = None, relabeled: bool | None = None) -> dict:
        extra = {} if coarse is None else {"coarse": dict(coarse)}
        if relabeled is not None:
            extra["relabeled"] = relabeled
        return self.ev("stats", rank, unruled_ops=unruled or {}, escapes=escapes, traced_ops=traced_ops, **extra)

    def run_end(self, rc: int = 0, reason: str = "exit", rank: int = 0) -> dict:
        return self.ev("run_end", rank, rc=rc, wall_s=self.t, reason=reason)

    # ---- tracer
    def score(self, positions: Iterable[int], nll: float | Sequence[float] = 2.0, dep: Sequence[int] | None = None,
              grad: bool = False, rank: int = 0, site: str | None = None, op: str = "cross_entropy",
              zsum: Sequence[float] | None = None, norm: bool = False) -> list[int]:
        """zsum: picks from rows that are not a distribution, each row's sum (as the tracer writes it);
        norm: the picks are the target tokens' own entries of normalized full-vocabulary rows."""
        pos = [int(p) for p in positions]
        nlls = [float(nll)] * len(pos) if isinstance(nll, (int, float)) else [float(x) for x in nll]
        deps = [p - 1 for p in pos] if dep is None else [int(d) for d in dep]
        start = self._sid.get(rank, 0)
        sids = list(range(start, start + len(pos)))
        self._sid[rank] = start + len(pos)
        extra: dict[str, Any] = {} if zsum is None else {"zsum": [float(z) for z in zsum]}
        if norm:
            extra["norm"] = True
        self.ev("score", rank, site, sid=list(sids), pos=pos, nll=nlls, dep=deps, grad=[grad] * len(pos), op=op, **extra)
        return sids

    def update(self, lo: int, hi: int, target: str = "param", op: str = "optimizer.step", rank: int = 0,
               site: str | None = None, n: int = 1, states: Sequence[int] | None = None) -> dict:
        extra = {} if states is None else {"states": list(states)}
        return self.ev("update", rank, site, lo=lo, hi=hi, target=target, op=op, n=n, **extra)

    def release(self, states: Sequence[int], last_read: Sequence[int] | None = None,
                escapes: Sequence[int] | None = None, rank: int = 0) -> dict:
        """Blocks an update named, freed or at the end: the seq the next event had at each one's last read
        (default: this event's, read until now), values that left torch between its first update and then."""
        seq = self._seq.get(rank, 0)
        return self.ev("release", rank, "", states=list(states), last_read=list(last_read or [seq] * len(states)),
                       escapes=list(escapes or [0] * len(states)))

    @property
    def next_seq(self) -> int:
        return self._seq.get(0, 0)

    def consume(self, sids: Iterable[int], op: str = "item", rank: int = 0, site: str | None = None,
                value: float | None = None) -> dict:
        return self.ev("consume", rank, site, sids=list(sids), op=op, value=value)

    def combine(self, pos: Sequence[int], sids: Sequence[int], op: str = "min", rank: int = 0,
                site: str | None = None) -> dict:
        return self.ev("combine", rank, site, pos=list(pos), sids=list(sids), op=op)

    def stdout(self, line: str, rank: int = 0) -> dict:
        return self.ev("stdout", rank, line=line)

    # ---- out
    def printed(self) -> Printed | None:
        return self._printed

    def ledger(self) -> Ledger:
        led = Ledger(events=[dict(e) for e in self.events])
        led.events.sort(key=lambda e: (e.get("t", 0.0), e.get("rank", 0), e.get("seq", 0)))
        return led

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """One ledger.rank{r}.jsonl per rank, like the runtime writes them."""
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        for r in sorted({e["rank"] for e in self.events}):
            lines = [json.dumps(e, separators=(",", ":")) for e in self.events if e["rank"] == r]
            (d / f"ledger.rank{r}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return d
