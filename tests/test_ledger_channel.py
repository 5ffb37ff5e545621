"""The ledger channel: child events reach the parent through a socket, numbered per process, ended by an
end-of-stream frame; anything else (a gap, a cut stream, events after the end, forged frames, dropped
score events) is a problem the verdict turns into INCONCLUSIVE (harness.verdict.integrity)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from harness.ledger import ChannelReader, ChannelWriter, channel_pair, read_ledger
from harness.results import Status
from harness.verdict.handwritten import LedgerBuilder
from harness.verdict.core import judge


def _pair(tmp_path: Path) -> tuple[ChannelReader, ChannelWriter, object]:
    parent, child = channel_pair()
    reader = ChannelReader(parent, tmp_path)
    reader.start()
    return reader, ChannelWriter(child.fileno(), rank=0, t0=0.0), child


def _finish(reader: ChannelReader, child: object) -> dict:
    child.close()  # type: ignore[attr-defined]
    reader.join(5)
    reader.finish()
    return reader.summary()


def test_a_whole_stream_arrives_in_order_and_is_written_by_the_parent(tmp_path):
    reader, w, child = _pair(tmp_path)
    w.emit("run_start", site="", argv=[], pid=os.getpid(), descendant=False)
    big = list(range(40_000))  # a score event larger than one frame
    w.emit("score", site="train_gpt.py:1", sid=big, pos=big, nll=[0.5] * len(big), dep=big, grad=False, op="nll")
    w.emit("stats", site="", events={"score": 1})
    w.close()
    s = _finish(reader, child)
    assert s["problems"] == [] and s["notes"] == []
    (st,) = s["streams"].values()
    assert st["events"] == 3 and st["eos"] == 3 and st["main"]
    led = read_ledger(tmp_path)
    assert [e["kind"] for e in led.events] == ["run_start", "score", "stats"]
    assert (tmp_path / "ledger.rank0.jsonl").is_file()
    assert led.first("score")["pos"] == big


def test_a_cut_stream_a_gap_and_events_after_the_end_are_problems(tmp_path):
    reader, w, child = _pair(tmp_path)
    w.emit("run_start", site="", descendant=False)
    w._seq += 2  # two events that never arrived
    w.emit("phase", site="", name="x")
    w.close()
    w._closed = False
    w.emit("phase", site="", name="late")  # after its end-of-stream
    s = _finish(reader, child)
    assert any("jumps from 1 to 3" in p for p in s["problems"])
    assert any("after its end-of-stream" in p for p in s["problems"])

    (tmp_path / "b").mkdir()
    reader, w, child = _pair(tmp_path / "b")
    w.emit("run_start", site="", descendant=False)
    s = _finish(reader, child)  # the main process never ended its stream (os._exit, a kill, a closed socket)
    assert any("without an end-of-stream" in p for p in s["problems"])


def test_forged_frames_and_dropped_scores_are_problems(tmp_path):
    reader, w, child = _pair(tmp_path)
    w.emit("run_start", site="", descendant=False)
    # a frame the script wrote by hand on the socket: a parent-only kind, and garbage
    payload = json.dumps({"seq": 1, "kind": "witness", "active": False}).encode()
    os.write(child.fileno(), struct.pack("<IQII", os.getpid(), 1, 0, 1) + payload)
    os.write(child.fileno(), b"xx")
    w._seq = 2
    w.emit("stats", site="", events={"score": 5})  # the tracer sent 5 scores; none arrived
    w.close()
    s = _finish(reader, child)
    text = " | ".join(s["problems"])
    assert "not a child event" in text and "shorter than a header" in text and "5 score events" in text


def test_channel_problems_and_tamper_events_never_pass():
    b = LedgerBuilder()
    b.run_start()
    b.artifact_write(site="train_gpt.py:9")
    b.read(0, 65, site="train_gpt.py:10")
    pos = list(range(1, 65))
    b.consume(b.score(pos, [1.0] * len(pos), site="train_gpt.py:11"), site="train_gpt.py:12")
    b.reported("final", 1.0, 1.0)
    base = judge(b.ledger(), printed=b.printed(), seq_lens=[64])
    assert base.result("C1").status is Status.PASS and base.result("C3").status is Status.PASS

    cut = LedgerBuilder()
    cut.events = [dict(e) for e in b.events]
    cut.ev("channel", -1, streams={}, problems=["pid 7: sequence jumps from 3 to 9"], notes=[])
    v = judge(cut.ledger(), printed=b.printed(), seq_lens=[64])
    for rid in ("C1", "C3"):
        r = v.result(rid)
        assert r.status is Status.INCONCLUSIVE and "ledger channel is not whole" in r.summary
    assert v.result("C4").status is Status.INCONCLUSIVE

    tam = LedgerBuilder()
    tam.events = [dict(e) for e in b.events]
    tam.ev("tamper", 0, "train_gpt.py:3", what="dispatch_mode", detail="the script called _disable_current_modes")
    v = judge(tam.ledger(), printed=b.printed(), seq_lens=[64])
    assert {v.result(r).status for r in ("C1", "C3", "C4")} == {Status.INCONCLUSIVE}
    assert v.result("D2").status is base.result("D2").status  # only the rules resting on the trace move


def test_a_flood_past_the_cap_is_cut_and_said(tmp_path):
    parent, child = channel_pair()
    reader = ChannelReader(parent, tmp_path, max_bytes=2000)
    reader.start()
    w = ChannelWriter(child.fileno(), rank=0, t0=0.0)
    w.emit("run_start", site="", descendant=False)
    for _ in range(50):
        w.emit("phase", site="", name="x" * 100)
    w.close()
    s = _finish(reader, child)
    assert any("passed 2000 bytes" in p for p in s["problems"])
    assert (tmp_path / "ledger.rank0.jsonl").stat().st_size <= 2100
