"""The run ledger: JSON lines of events, one file per process (rank).

Written by the runtime inside the submission's process (collection), read by the verdict and the
report (analysis). Nothing here imports torch: the writer must be cheap and safe to import first.

Every event is one JSON object with these common keys:
    seq   int    order of the event within its file (0, 1, 2, ...)
    t     float  harness clock: seconds since the run started (the parent's start time is passed in)
    rank  int    process rank (0 for a single process)
    kind  str    one of KINDS
    site  str    the submission's own "file:line" that caused it, when known

Kind-specific keys:
    run_start      argv, pid, python, device, scale, traced
    read           file, lo, hi            validation positions [lo, hi) entering the process
    train_read     file, first (bool)      a training shard read
    artifact_write path, bytes
    artifact_read  path, bytes
    net            host, port, blocked     a network attempt (always blocked in the sandbox)
    subprocess     argv, allowed
    score          sid, pos, nll, dep, grad, op
                   parallel lists: score id, target position, NLL in nats, largest position the value
                   depends on other than selecting the target (-1 = none), whether grad was enabled
    update         lo, hi, target, op, n   a state change whose inputs depend on positions [lo, hi]
                                           (target: param | buffer | optimizer_state | table | array |
                                           serialized); states: ids of the memory blocks written
    release        states, escapes         those blocks were freed; escapes (parallel): values that left
                                           torch while each one lived
    combine        pos, sids, op           a value combining two scores of one position (min, max, ...)
    consume        sids, value, op         scores reaching a number that left torch/numpy (item, tolist,
                                           float, print) or a collective (all_reduce); sids = score ids
    stdout         line                    a printed line that carries val_loss / val_bpb
    reported       tag, val_loss, val_bpb, line     the final score line the script printed
    phase          name                    harness-observed phase marks (train_start, eval_start, ...)
    needs_gpu      what, where
    kernel_launch  name, where, grid, tensors, interpreter, provenance
                                           a GPU kernel (Triton) run on the CPU by Triton's interpreter,
                                           first launch per kernel and line; provenance "followed": the
                                           tracer follows it (tracer/kernels.py), "untracked": its
                                           outputs do not carry the inputs' provenance
    kernel_time    kernels {name: [launches, s]}, seconds, launches   time in Triton's interpreter so far
    stats          unruled_ops {name: count}, escapes int, traced_ops int, events {kind: count sent}
    run_end        rc, wall_s, reason
    tamper         what, detail            the runtime saw the script reach for its own controls (leave
                                           the dispatch mode, replace the ledger writer); child side
    channel        streams, problems       parent side: what the ledger channel delivered per process
                                           (events, gaps, end-of-stream); problems make C1/C3/C4
                                           INCONCLUSIVE (harness.verdict.integrity)
    witness        active, opens, unmatched, note   parent side: the OS's record of opens of the served
                                           validation files (harness.run.witness)

The child's events reach the parent through a channel (ChannelWriter -> ChannelReader): a socket the
child inherits, never a file in its reach, so nothing it does after an event is sent can rewrite it.
Each frame carries the sender's pid and a per-process sequence number; a process ends its stream with
an end-of-stream frame. The parent writes what it receives into its own ledger files.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = frozenset(
    {
        "run_start", "read", "train_read", "artifact_write", "artifact_read", "net", "subprocess",
        "score", "update", "release", "combine", "consume", "stdout", "reported", "phase", "needs_gpu", "stats",
        "run_end", "kernel_launch", "kernel_time", "tamper", "channel", "witness",
    }
)
# kinds only the parent writes: a child frame claiming one is a forgery (a channel problem)
PARENT_KINDS = frozenset({"channel", "witness", "reported", "run_end"})


class LedgerWriter:
    """Append-only JSONL writer, flushed per event so a crash loses nothing already recorded."""

    def __init__(self, path: str | os.PathLike[str], rank: int = 0, t0: float | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self.t0 = time.time() if t0 is None else t0
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the run
        self._seq = 0
        self._lock = threading.Lock()

    def emit(self, kind: str, site: str | None = None, **fields: Any) -> int:
        if kind not in KINDS:
            raise ValueError(f"unknown ledger event kind {kind!r}")
        with self._lock:
            seq = self._seq
            self._seq += 1
            ev = {"seq": seq, "t": round(time.time() - self.t0, 6), "rank": self.rank, "kind": kind}
            if site:
                ev["site"] = site
            ev.update(fields)
            self._fh.write(json.dumps(ev, separators=(",", ":"), default=_jsonable) + "\n")
            self._fh.flush()
            return seq

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()


# ------------------------------------------------------------------ the channel (child -> parent)

LEDGER_FD_ENV = "HARNESS_LEDGER_FD"  # the inherited socket's fd number (also in the runtime settings)
_HEAD = struct.Struct("<IQII")  # pid, seq, part, parts
_PART = 60_000  # bytes of JSON per frame: well under a SOCK_SEQPACKET socket's send buffer
EOS = "__eos__"  # an end-of-stream frame's payload kind


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(parent end, child end): a message-preserving Unix socket pair; each frame is delivered whole."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class ChannelWriter:
    """The child's ledger: events as frames on an inherited socket (harness.run.runner reads them).
    Same emit() as LedgerWriter. Frames of one event are sent under one lock, in order."""

    def __init__(self, fd: int, rank: int = 0, t0: float | None = None) -> None:
        # a process started without the descriptor (multiprocessing's spawn closes it) may have that number
        # on another file: write only to a socket; otherwise its events are lost, and the parent says so
        try:
            self._fd = fd if stat.S_ISSOCK(os.fstat(fd).st_mode) else -1
        except OSError:
            self._fd = -1
        self.rank = rank
        self.t0 = time.time() if t0 is None else t0
        self.path = None
        self._pid = os.getpid()
        self._seq = 0
        self._lock = threading.Lock()
        self._closed = False

    def _send(self, seq: int, payload: bytes) -> None:
        parts = max(1, -(-len(payload) // _PART))
        for i in range(parts):
            os.write(self._fd, _HEAD.pack(self._pid, seq, i, parts) + payload[i * _PART:(i + 1) * _PART])

    def emit(self, kind: str, site: str | None = None, **fields: Any) -> int:
        if kind not in KINDS:
            raise ValueError(f"unknown ledger event kind {kind!r}")
        with self._lock:
            seq = self._seq
            self._seq += 1
            ev = {"seq": seq, "t": round(time.time() - self.t0, 6), "rank": self.rank, "kind": kind}
            if site:
                ev["site"] = site
            ev.update(fields)
            try:
                self._send(seq, json.dumps(ev, separators=(",", ":"), default=_jsonable).encode())
            except OSError:
                pass  # the parent is gone, or the script closed the socket: the gap is the evidence
            return seq

    @property
    def sent(self) -> int:
        return self._seq

    def close(self) -> None:
        """End of stream: the number of events sent, so the parent can tell a cut stream from a whole one."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            seq = self._seq
            self._seq += 1
            try:
                self._send(seq, json.dumps({"kind": EOS, "n": seq}).encode())
            except OSError:
                pass


class ChannelReader(threading.Thread):
    """The parent's end: reassembles frames per process, checks each stream's sequence numbers, and writes
    the events to its own files (ledger.rank<R>.jsonl for a rank's first process, .pid<P> for others)."""

    def __init__(self, sock: socket.socket, folder: Path, max_bytes: int | None = None) -> None:
        super().__init__(name="ledger-channel", daemon=True)
        self.sock = sock
        self.folder = folder
        # past what read_ledger reads (its cap makes the trace untrusted anyway) nothing is worth the disk
        self.max_bytes = 2 * READ_MAX_BYTES if max_bytes is None else max_bytes
        self.bytes = 0
        self.streams: dict[int, dict[str, Any]] = {}
        self.problems: list[str] = []
        self._parts: dict[int, list[bytes]] = {}
        self._files: dict[int, Any] = {}
        self._ranks: set[int] = set()
        self._halt = threading.Event()

    def run(self) -> None:
        self.sock.settimeout(0.2)
        while True:
            try:
                frame = self.sock.recv(_HEAD.size + _PART + 16)
            except socket.timeout:
                if self._halt.is_set():
                    return
                continue
            except OSError:
                return
            if not frame:
                return  # every child end closed
            self._frame(frame)

    def finish(self, timeout: float = 5.0) -> None:
        """Stop once what is queued has been read (after the child and its tree are gone)."""
        self._halt.set()
        self.join(timeout)
        for fh in self._files.values():
            fh.close()
        try:
            self.sock.close()
        except OSError:
            pass

    def _problem(self, msg: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(msg)

    def _frame(self, frame: bytes) -> None:
        if len(frame) < _HEAD.size:
            self._problem(f"a frame of {len(frame)} bytes (shorter than a header)")
            return
        pid, seq, part, parts = _HEAD.unpack_from(frame)
        st = self.streams.setdefault(pid, {"pid": pid, "next": 0, "events": 0, "gaps": [], "eos": None,
                                            "after_eos": 0, "rank": None, "main": False, "bad": 0})
        chunks = self._parts.setdefault(pid, [])
        if part != len(chunks) or parts < 1 or part >= parts:
            st["bad"] += 1
            self._problem(f"pid {pid}: frame {part}/{parts} of event {seq} out of order")
            chunks.clear()
            return
        chunks.append(frame[_HEAD.size:])
        if part + 1 < parts:
            return
        payload = b"".join(chunks)
        chunks.clear()
        self._event(st, seq, payload)

    def _event(self, st: dict[str, Any], seq: int, payload: bytes) -> None:
        pid = st["pid"]
        try:
            ev = json.loads(payload)
        except ValueError:
            ev = None
        if not isinstance(ev, dict):
            st["bad"] += 1
            self._problem(f"pid {pid}: event {seq} is not a JSON object")
            return
        if seq != st["next"]:
            st["gaps"].append([st["next"], seq])
            self._problem(f"pid {pid}: sequence jumps from {st['next']} to {seq}"
                          if seq > st["next"] else f"pid {pid}: sequence number {seq} repeated or reordered")
        st["next"] = max(st["next"], seq + 1)
        if ev.get("kind") == EOS:
            if st["eos"] is not None:
                self._problem(f"pid {pid}: a second end-of-stream")
            st["eos"] = seq
            if ev.get("n") != seq:
                self._problem(f"pid {pid}: end-of-stream says {ev.get('n')} events, sequence says {seq}")
            return
        if st["eos"] is not None:
            st["after_eos"] += 1
            self._problem(f"pid {pid}: event {seq} ({ev.get('kind')}) after its end-of-stream")
        kind = ev.get("kind")
        if kind not in KINDS or kind in PARENT_KINDS or ev.get("seq") != seq:
            st["bad"] += 1
            self._problem(f"pid {pid}: event {seq} of kind {kind!r} (not a child event, or a seq that disagrees "
                          "with its frame)")
            return
        if self.bytes + len(payload) > self.max_bytes:
            if self.bytes <= self.max_bytes:
                self._problem(f"the ledger passed {self.max_bytes} bytes: later events dropped")
            self.bytes = self.max_bytes + 1
            return
        self.bytes += len(payload) + 1
        if kind == "score":
            st["scores"] = st.get("scores", 0) + 1
        elif kind == "stats" and isinstance(ev.get("events"), dict):
            st["stated"] = ev["events"].get("score")
        if kind == "run_start" and st["rank"] is None:
            st["rank"] = int(ev.get("rank", 0) or 0)
            st["main"] = not ev.get("descendant") and st["rank"] not in self._ranks
            self._ranks.add(st["rank"])
        st["events"] += 1
        self._file(st, ev).write(payload.decode("utf-8", "replace") + "\n")

    def _file(self, st: dict[str, Any], ev: dict[str, Any]) -> Any:
        fh = self._files.get(st["pid"])
        if fh is None:
            if st["rank"] is None:
                st["rank"] = int(ev.get("rank", 0) or 0)
            rank = st["rank"]
            name = f"ledger.rank{rank}.jsonl" if st["main"] else f"ledger.rank{rank}.pid{st['pid']}.jsonl"
            # line-buffered: the runner's watcher tails these files while the run goes on
            fh = self._files[st["pid"]] = open(self.folder / name, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        return fh

    def summary(self) -> dict[str, Any]:
        """The `channel` event: per process what arrived; problems that make the trace untrustworthy.
        A rank's main process must end its stream; a descendant (a forked worker that left by os._exit)
        may not, which is a note."""
        problems = list(self.problems)
        notes = []
        for st in self.streams.values():
            if st["eos"] is None:
                msg = (f"pid {st['pid']} (rank {st['rank']}) ended without an end-of-stream after "
                       f"{st['events']} events")
                (problems if st["main"] else notes).append(msg)
            stated = st.get("stated")
            if st["main"] and isinstance(stated, int) and stated > st.get("scores", 0):
                problems.append(f"pid {st['pid']}: the tracer says it sent {stated} score events, "
                                f"{st.get('scores', 0)} arrived (the ledger writer was bypassed or filtered)")
        if any(c for c in self._parts.values()):
            problems.append("an event cut off mid-frame")
        streams = {str(p): {k: st[k] for k in ("rank", "main", "events", "gaps", "eos", "after_eos", "bad")}
                   for p, st in self.streams.items()}
        return {"streams": streams, "problems": problems, "notes": notes, "bytes": self.bytes}


def _jsonable(x: Any) -> Any:
    # numpy scalars and arrays, without importing numpy here
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    return str(x)


@dataclass
class Ledger:
    """All events of one run, every rank, in file order per rank."""

    events: list[dict[str, Any]] = field(default_factory=list)
    skipped_lines: int = 0
    truncated: str | None = None  # why reading stopped early (the size cap): the verdict trusts nothing then

    def of(self, *kinds: str) -> Iterator[dict[str, Any]]:
        return (e for e in self.events if e["kind"] in kinds)

    def first(self, kind: str) -> dict[str, Any] | None:
        return next(self.of(kind), None)

    def ranks(self) -> list[int]:
        return sorted({e.get("rank", 0) for e in self.events})


READ_MAX_BYTES = 64 << 20  # a parsed event costs ~10x its JSON: past this the parent would need GBs
READ_MAX_LINE = 16 << 20


def read_ledger(folder_or_file: str | os.PathLike[str], max_bytes: int = READ_MAX_BYTES) -> Ledger:
    """Read ledger*.jsonl (a folder) or one file, streaming, at most `max_bytes` in all (then `truncated`
    says so and the rest is not read). A torn last line (killed process) is skipped."""
    p = Path(folder_or_file)
    files = sorted(p.glob("ledger*.jsonl")) if p.is_dir() else [p]
    led = Ledger()
    total = 0
    for f in files:
        if led.truncated:
            break
        with open(f, encoding="utf-8", errors="replace") as fh:
            while line := fh.readline(READ_MAX_LINE):
                total += len(line)
                if total > max_bytes:
                    led.truncated = (f"the ledger passed {max_bytes:,} bytes at {f.name}: the rest was not read, "
                                     "so no rule can pass on it")
                    break
                if not line.endswith("\n") and len(line) >= READ_MAX_LINE:  # one huge line: skip the rest of it
                    while (rest := fh.readline(READ_MAX_LINE)) and not rest.endswith("\n"):
                        total += len(rest)
                    led.skipped_lines += 1
                    continue
                line = line.strip()
                if not line:
                    continue
                try:
                    ev = json.loads(line)
                except (ValueError, RecursionError):  # torn, a number Python refuses, nesting past the stack
                    led.skipped_lines += 1
                    continue
                if isinstance(ev, dict) and ev.get("kind") in KINDS:
                    led.events.append(ev)
                else:
                    led.skipped_lines += 1
    # stable order: by harness clock, then rank, then seq
    led.events.sort(key=lambda e: (e.get("t", 0.0), e.get("rank", 0), e.get("seq", 0)))
    return led
