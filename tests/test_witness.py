"""The OS witness: inotify on the served validation file's inode sees opens by any path (a symlink, a hard
link, os.open, mmap); the verdict matches each with a recorded read near it, and an unmatched open makes
C1/C3/D1 INCONCLUSIVE (never PASS). Without inotify the report says the witness was off."""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path

from harness.results import Status
from harness.run.witness import Witness
from harness.verdict.core import judge
from harness.verdict.handwritten import LedgerBuilder
from harness.verdict.integrity import check_integrity

NAME = "fineweb_val_000000.bin"


def test_opens_by_any_path_are_seen(tmp_path: Path):
    f = tmp_path / NAME
    f.write_bytes(b"\0" * 4096)
    os.symlink(f, tmp_path / "notes.bin")
    os.link(f, tmp_path / "hard.bin")
    w = Witness([str(f)], time.time())
    assert w.active, w.note
    w.start()
    fd = os.open(tmp_path / "notes.bin", os.O_RDONLY)  # a symlink, os.open / os.read
    os.read(fd, 16)
    os.close(fd)
    with open(tmp_path / "hard.bin", "rb") as fh:  # a hard link, mmap
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            assert mm[:4] == b"\0" * 4
    time.sleep(0.2)
    rec = w.stop()
    assert rec["active"] and rec["n_opens"] == 2 and {o["file"] for o in rec["opens"]} == {NAME}
    # each open is placed between the watcher last seeing an empty queue and reading the event
    assert all(0.0 <= o["t_lo"] <= o["t"] for o in rec["opens"]), rec["opens"]


def test_a_missing_file_turns_the_witness_off_with_a_note(tmp_path: Path):
    w = Witness([str(tmp_path / "absent.bin")], time.time())
    rec = w.stop()
    assert not rec["active"] and "witness was off" in rec["note"]


def _ledger(opens: list[float | tuple[float, float]], active: bool = True) -> LedgerBuilder:
    """opens: a wake-up time, or (t_lo, t): the open happened between them."""
    b = LedgerBuilder()
    b.run_start()
    b.artifact_write(site="train_gpt.py:9")
    b.read(0, 65, site="train_gpt.py:10")  # at t = 0.03 (the builder's clock)
    pos = list(range(1, 65))
    b.consume(b.score(pos, [1.0] * len(pos), site="train_gpt.py:11"), site="train_gpt.py:12")
    b.reported("final", 1.0, 1.0)
    b.ev("witness", -1, active=active, files=[NAME], opens=[{"t": t, "file": NAME} if isinstance(t, float) else {"t_lo": t[0], "t": t[1], "file": NAME}
                                            for t in opens],
         n_opens=len(opens), accesses=0, note="" if active else "inotify unavailable (test)")
    return b


def test_an_open_next_to_a_recorded_read_is_matched_one_far_from_it_is_not():
    b = _ledger([0.02])
    integ = check_integrity(b.ledger())
    assert not integ.problems and any("all matched" in n for n in integ.notes)

    b = _ledger([0.02, 30.0])  # a read around the hooks half a minute later
    v = judge(b.ledger(), printed=b.printed(), seq_lens=[64])
    for rid in ("C1", "C3", "D1"):
        r = v.result(rid)
        assert r.status is Status.INCONCLUSIVE and "t=30.00s" in r.summary, (rid, r.summary)


def test_the_witness_off_is_said_never_assumed():
    integ = check_integrity(_ledger([], active=False).ledger())
    assert not integ.problems and any("OS witness off" in n for n in integ.notes)


def test_a_late_wake_up_of_the_watcher_is_matched_through_the_open_s_interval():
    # the read at t = 0.03; the watcher, starved on a loaded machine, read the open's event 0.6 s later: with
    # the wake-up time alone it would look like an open around the hooks
    assert check_integrity(_ledger([0.63]).ledger()).problems
    assert not check_integrity(_ledger([(0.0, 0.63)]).ledger()).problems
    # an interval wider than the cap is cut at OPEN_LATENCY_MAX_S before its wake-up, not trusted whole
    integ = check_integrity(_ledger([(0.0, 30.0)]).ledger())
    assert integ.problems
