"""`traced(...)`: the token-access tracer around one block of the caller's code, in this process.

    with traced(tokens, vocab_size=1024) as t:
        val_loss = my_eval(model, t.stream)     # t.stream: the validation stream, traced
        t.report(val_loss)                      # the number the script would print
    t.assert_legal()                            # judged by harness.verdict when the block exits

The block is evaluation: the model it is given plays the artifact (a marker `artifact_write` opens the
block, after a marker training read), so C1, C3 and C4 speak about the block alone, and D2/D3 about
what the io hooks saw inside it. D1 (validation influence on training) happened before the block and is
NOT RUN here. The same machinery as a real run: the tracer of harness.runtime.tracer, the io hooks of
harness.runtime.io_hooks (undone on exit, io_watch.py), the verdict of harness.verdict over the ledger.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from harness.data import shards
from harness.ledger import Ledger
from harness.results import RuleResult, Status
from harness.testing.outcome import MUST_PASS, Outcome

VAL_FILE = "fineweb_val_000000.bin"  # the challenge's name for the first validation shard
_LN2 = math.log(2.0)
# called with each judged Trace (the pytest plugin keeps the last ones of a test to report a failure)
OBSERVERS: list[Callable[["Trace"], None]] = []

TokensLike = Any  # np.ndarray | torch.Tensor | Sequence[int]


def _as_tokens(tokens: TokensLike) -> np.ndarray:
    if hasattr(tokens, "detach"):  # a torch tensor
        tokens = tokens.detach().cpu().numpy()
    arr = np.asarray(tokens)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"traced(): expected a 1-D integer token stream, got {arr.dtype} {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.uint16).max):
        raise ValueError("traced(): token ids must fit the challenge's uint16 shards")
    return arr.astype(np.uint16)


def _code_dir(code: Any, depth: int) -> str:
    """The folder whose files are 'the submission' (evidence cites file:line there): `code` (a path, a
    module, or several), else the folder of the file that called traced()."""
    if code is None:
        return str(Path(sys._getframe(depth).f_code.co_filename).resolve().parent)
    items = code if isinstance(code, (list, tuple)) else [code]
    dirs = []
    for c in items:
        f = getattr(c, "__file__", None) if isinstance(c, ModuleType) else c
        p = Path(os.fspath(f)).resolve()
        dirs.append(str(p if p.is_dir() else p.parent))
    return os.path.commonpath(dirs)


class Trace:
    """What the block gets: the served stream and `report`; after the block, the Outcome's verdict.

    t.stream / t.tokens   the validation stream, traced (torch int64 / numpy uint16; position i = element i)
    t.shard               a challenge-format shard file of the same stream (VAL_FILE, written on first use)
                          for code that reads validation itself; `t.shard_pattern` globs it
    t.report(val_loss)    the printed score (a tensor is read here, under the trace)
    after the block:      t.outcome (the Outcome) and its API: t.ledger, t.verdict, t.results, t.notes,
                          t.status("C3"), t.evidence("C4"), t.first_positions("C4"), t.table(),
                          t.assert_legal(), t.assert_violates("C4"), t.write_report(path)
    """

    def __init__(self, raw: np.ndarray, ctx: Any, data_dir: Path, pos_bytes: np.ndarray) -> None:
        self.raw = raw
        self._ctx = ctx
        self._data_dir = data_dir
        self._pos_bytes = pos_bytes
        self._served: tuple[np.ndarray, Any] | None = None
        self._shard: Path | None = None
        self._printed: tuple[str, float, float, str] | None = None
        self._outcome: Outcome | None = None
        self.active = True

    # ---- inside the block
    def _serve(self) -> tuple[np.ndarray, Any]:
        if self._served is None:
            import torch

            self._need_active("the stream")
            # what the io hooks emit when a script reads the validation shard, then its tagging
            self._ctx.emit("read", site="", file=VAL_FILE, lo=0, hi=int(self.raw.size), how="harness.testing")
            arr = self._ctx.tag_validation(self.raw.copy(), 0, VAL_FILE)
            self._served = (arr, torch.from_numpy(arr.astype(np.int64)))
        return self._served

    @property
    def tokens(self) -> np.ndarray:
        """The stream as a traced numpy uint16 array (served on first use)."""
        return self._serve()[0]

    @property
    def stream(self) -> Any:
        """The stream as a traced torch int64 tensor (served on first use)."""
        return self._serve()[1]

    @property
    def shard(self) -> Path:
        """A validation shard in the challenge format holding the stream; code that reads it inside the
        block (np.fromfile, open().readinto, np.memmap) is traced by the io hooks, as in a real run."""
        if self._shard is None:
            self._shard = shards.write_shard(self._data_dir / VAL_FILE, self.raw)
        return self._shard

    @property
    def shard_pattern(self) -> str:
        return str(self.shard.parent / "fineweb_val_*.bin")

    def report(self, val_loss: Any, val_bpb: float | None = None, tag: str = "final",
               decimals: int | None = None) -> float:
        """Record the printed score line. val_bpb defaults to the one that fits the byte counts traced() was
        given (one byte per target unless `pos_bytes` / `tokenizer`): pass it when the code computes its own.
        decimals: the precision printed, which C4 holds the recomputation to (default 8; 5 for a tensor of
        less than double precision, whose own rounding is about 1e-6)."""
        self._need_active("report()")
        if decimals is None:
            low = getattr(val_loss, "dtype", None) is not None and str(val_loss.dtype) not in ("torch.float64",
                                                                                                  "float64")
            decimals = 5 if low else 8
        loss = float(val_loss.item() if hasattr(val_loss, "item") else val_loss)  # .item() is a consume
        if val_bpb is None:
            val_bpb = self._default_bpb(loss)
        bpb = float(val_bpb.item() if hasattr(val_bpb, "item") else val_bpb)
        line = f"{tag} val_loss:{loss:.{decimals}f} val_bpb:{bpb:.{decimals}f}"
        self._ctx.emit("reported", tag=tag, val_loss=loss, val_bpb=bpb, line=line)
        self._printed = (tag, loss, bpb, line)
        return loss

    def _default_bpb(self, loss: float) -> float:
        pb = self._pos_bytes[1:]
        if pb.size and np.all(pb == 1):
            return loss / _LN2
        # without the pass we cannot know which targets the number covers: assume every one
        return loss * pb.size / _LN2 / max(float(pb.sum()), 1.0)

    def _need_active(self, what: str) -> None:
        if not self.active:
            raise RuntimeError(f"harness.testing: {what} is only available inside the traced block")

    # ---- after the block
    @property
    def outcome(self) -> Outcome:
        if self._outcome is None:
            raise RuntimeError("harness.testing: the verdict is computed when the traced block exits")
        return self._outcome

    # the Outcome's API, typed here so that `t.assert_legal()` reads as the docs say
    @property
    def ledger(self) -> Ledger:
        return self.outcome.ledger

    @property
    def verdict(self) -> Any:
        """harness.verdict.Verdict (rule results and the analysis behind them)."""
        return self.outcome.verdict

    @property
    def results(self) -> dict[str, RuleResult]:
        return self.outcome.results

    @property
    def notes(self) -> list[str]:
        return self.outcome.notes

    def status(self, rule_id: str) -> Status:
        return self.outcome.status(rule_id)

    def evidence(self, rule_id: str) -> str:
        return self.outcome.evidence(rule_id)

    def first_positions(self, rule_id: str) -> list[int]:
        return self.outcome.first_positions(rule_id)

    def table(self) -> str:
        return self.outcome.table()

    def assert_legal(self, rules: Iterable[str] = MUST_PASS) -> None:
        self.outcome.assert_legal(rules)

    def assert_violates(self, rule_id: str) -> None:
        self.outcome.assert_violates(rule_id)

    def write_report(self, path: str | os.PathLike[str], name: str = "harness.testing") -> Path:
        return self.outcome.write_report(path, name)


@contextmanager
def traced(
    tokens: TokensLike,
    *,
    vocab_size: int | None = None,
    code: Any = None,
    seq_len: int | Sequence[int] = (),
    pos_bytes: np.ndarray | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    watch_io: bool = True,
    keep: str | os.PathLike[str] | None = None,
    strict: bool = False,
) -> Iterator[Trace]:
    """Trace one block of evaluation code over a validation stream and judge it on exit.

    tokens: the stream (numpy / torch / list of ids, or a path to a challenge-format shard file).
    vocab_size: the model's vocabulary (lets the tracer recognise a target picked from a logit row).
    code: where the code under test lives (path, module, or a list): evidence cites file:line there;
        default the caller's folder. seq_len: sequence length(s) the code truncates the stream to (C4's
        coverage allows the standard tail). pos_bytes: bytes per target (default 1; position 0 has none),
        or `tokenizer`: a SentencePiece model to count them. watch_io: the io hooks watch files, network
        and subprocesses inside the block (D2, D3); off: those rules are INCONCLUSIVE.
    keep: a folder to keep the ledger in (a fresh `ledger-*` folder inside; default a temporary one,
        removed). strict: a tracer op handler that fails raises instead of widening (tests of the tracer).
    The tracer is uninstalled and every hook undone on exit, also when the block raises (then no verdict).
    """
    import torch  # noqa: F401 - before the hooks, so they patch it now

    from harness.runtime import tracer
    from harness.runtime.context import RuntimeContext, RuntimeSettings

    if isinstance(tokens, (str, os.PathLike)):
        raw = shards.read_shard(tokens).astype(np.uint16)
    else:
        raw = _as_tokens(tokens)
    if tracer.current() is not None:
        raise RuntimeError("harness.testing.traced(): a tracer is already active in this process (nested block?)")
    work = Path(tempfile.mkdtemp(prefix="harness-testing-"))
    ledger_dir = (Path(keep) / f"ledger-{time.time_ns()}") if keep is not None else work / "ledger"
    data_dir = work / "data"
    data_dir.mkdir()
    sub = _code_dir(code, 3)  # traced() <- contextmanager.__enter__ <- the caller
    if pos_bytes is None and tokenizer is not None:
        from harness.data import bpb

        pos_bytes = bpb.stream_bytes(bpb.byte_tables(tokenizer, vocab_size), raw)
    if pos_bytes is None:
        pos_bytes = np.ones(raw.size, dtype=np.int64)
        if raw.size:
            pos_bytes[0] = 0
    pos_bytes = np.asarray(pos_bytes, dtype=np.int64)
    ctx = RuntimeContext(RuntimeSettings(
        ledger_dir=str(ledger_dir), t0=time.time(), trace=True, submission_dir=sub, vocab_size=vocab_size,
        extra={"data_dir": str(data_dir), "val_tokens": int(raw.size), "scale": "tiny"}))
    ctx.emit("run_start", site="", argv=["harness.testing"], pid=os.getpid(), python=sys.version.split()[0],
             device="cpu", scale="tiny", traced=True)
    # the block is evaluation: training (a marker read) ended and the artifact (the given model) exists
    ctx.emit("train_read", site="", file="<before the traced block>", first=True, how="harness.testing")
    ctx.emit("artifact_write", site="", path="<the model given to the traced block>", bytes=0, how="harness.testing")
    t = Trace(raw, ctx, data_dir, pos_bytes)
    raised = False
    try:
        with ExitStack() as stack:
            parts = {"tracer": "ok", "io_hooks": "failed: off (traced(watch_io=False)): file and network "
                                                 "access not observed"}
            if watch_io:
                from harness.testing.io_watch import watching_io

                if stack.enter_context(watching_io(ctx)):
                    parts["io_hooks"] = "ok"
                else:
                    parts["io_hooks"] = "failed: this process's own io hooks report to another ledger"
            tr = tracer.install(ctx)
            stack.callback(tracer.uninstall)
            tr.strict = strict
            ctx.emit("phase", site="", name="runtime_ready", parts=parts)
            try:
                yield t
            except BaseException:
                raised = True
                raise
    finally:
        t.active = False
        try:
            if not raised:
                from harness.ledger import read_ledger

                ctx.emit("run_end", site="", rc=0, wall_s=time.time() - ctx.settings.t0, reason="exit")
                t._outcome = Outcome.judge(read_ledger(ledger_dir), printed=t._printed, val_tokens=raw,
                                           pos_bytes=pos_bytes, seq_lens=_lens(seq_len), code_dir=sub)
                for obs in list(OBSERVERS):
                    obs(t)
        finally:
            try:
                ctx.ledger.close()
            except Exception:  # noqa: BLE001 - the verdict is in memory already
                pass
            shutil.rmtree(work, ignore_errors=True)


def _lens(seq_len: int | Sequence[int]) -> tuple[int, ...]:
    return (int(seq_len),) if isinstance(seq_len, int) else tuple(int(x) for x in seq_len)
