"""Copying and reading a submission folder never leaves it: links out (`cycle -> ..`, a log linked to /dev/zero
or /etc/passwd) are skipped and listed, devices and FIFOs are never read, the copy is capped (exit 3 past a cap).
No child runs here: everything is the parent's file handling, milliseconds each."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from harness.check.submission import load_submission
from harness.errors import BadInput
from harness.fsutil import CopyLimitExceeded, read_capped, regular_file_inside, safe_copy_tree
from harness.run.workdir import copy_caps, prepare_workdir

@pytest.fixture(autouse=True)
def _guard():
    """A test that hangs on a FIFO or /dev/zero fails in seconds instead of filling the disk."""
    def boom(*_):
        raise TimeoutError("hung on a link, device or FIFO")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def small_folder(sub: Path) -> Path:
    """A complete, tiny submission folder (checks in well under a second)."""
    sub.mkdir(parents=True)
    (sub / "train_gpt.py").write_text("import os\nprint('final_x val_loss:2.0 val_bpb:1.0')\n")
    (sub / "README.md").write_text("# tiny\n")
    (sub / "submission.json").write_text('{"val_bpb": 1.0, "seeds": [1]}')
    (sub / "train_seed1.log").write_text("step:1/1 train_loss:2.0\nfinal_x val_loss:2.0 val_bpb:1.0\n")
    return sub


def hostile_folder(tmp_path: Path) -> Path:
    """A submission folder with every kind of link and special file an attacker can ship."""
    sub = small_folder(tmp_path / "sub")
    (sub / "pkg").mkdir()
    (sub / "pkg" / "helper.py").write_text("X = 1\n")
    os.symlink("..", sub / "cycle")  # the parent folder: copying it recurses forever
    os.symlink(".", sub / "pkg" / "self")  # inside: kept as a link, never walked
    os.symlink("/dev/zero", sub / "zero.log")  # endless
    os.symlink("/etc/passwd", sub / "passwd.log")  # someone else's file
    os.symlink("pkg/helper.py", sub / "alias.py")  # inside: a relative link in the copy
    os.symlink(str(sub / "pkg" / "helper.py"), sub / "abs_alias.py")  # absolute, inside: made relative
    os.mkfifo(sub / "pipe.log")  # a reader blocks forever
    return sub


def test_copy_skips_links_out_devices_and_fifos(tmp_path: Path) -> None:
    sub = hostile_folder(tmp_path)
    dst = tmp_path / "copy"
    rep = safe_copy_tree(sub, dst, max_bytes=10 << 20, max_files=1000, max_file_bytes=1 << 20)
    skipped = {s.split(" ")[0]: s for s in rep.skipped}
    assert set(skipped) == {"cycle", "zero.log", "passwd.log", "pipe.log"}
    assert "link out of the folder" in skipped["cycle"] and "FIFO" in skipped["pipe.log"]
    assert (dst / "train_gpt.py").read_bytes() == (sub / "train_gpt.py").read_bytes()
    assert (dst / "submission.json").stat().st_mtime == (sub / "submission.json").stat().st_mtime
    assert os.readlink(dst / "alias.py") == "pkg/helper.py" and (dst / "alias.py").read_text() == "X = 1\n"
    assert os.readlink(dst / "abs_alias.py") == "pkg/helper.py"  # never points back at the original
    assert os.readlink(dst / "pkg" / "self") == "." and not (dst / "cycle").exists()
    assert rep.bytes < 10 << 20


def test_copy_caps_bytes_and_files(tmp_path: Path) -> None:
    sub = tmp_path / "big"
    sub.mkdir()
    for i in range(5):
        (sub / f"f{i}.bin").write_bytes(b"x" * 1000)
    with pytest.raises(CopyLimitExceeded, match="more than 2,500 bytes"):
        safe_copy_tree(sub, tmp_path / "c1", max_bytes=2500, max_files=100, max_file_bytes=1 << 20)
    with pytest.raises(CopyLimitExceeded, match="more than 3 files"):
        safe_copy_tree(sub, tmp_path / "c2", max_bytes=1 << 20, max_files=3, max_file_bytes=1 << 20)
    rep = safe_copy_tree(sub, tmp_path / "c3", max_bytes=1 << 20, max_files=100, max_file_bytes=999)
    assert len(rep.skipped) == 5 and "over 999 per file" in rep.skipped[0]


def test_prepare_workdir_is_capped_and_lists_what_it_skipped(tmp_path: Path) -> None:
    sub = hostile_folder(tmp_path)
    wd = prepare_workdir(sub, str(tmp_path / "runs"))
    try:
        assert {s.split(" ")[0] for s in wd.skipped} == {"cycle", "zero.log", "passwd.log", "pipe.log"}
        assert wd.script.is_file() and not (wd.work / "cycle").exists()
    finally:
        wd.remove()
    with pytest.raises(BadInput, match="too large to copy.*copy_max_bytes"):
        prepare_workdir(sub, str(tmp_path / "runs"), max_bytes=50)
    with pytest.raises(BadInput, match="copy_max_files"):
        prepare_workdir(sub, str(tmp_path / "runs"), max_files=2)
    assert not list((tmp_path / "runs").iterdir())  # a refused copy leaves nothing behind
    with pytest.raises(BadInput, match="copy_max_bytes"):
        copy_caps({"copy_max_bytes": -1})
    assert copy_caps({}) == {"max_bytes": 2 << 30, "max_files": 20_000}


def test_script_linked_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    sub = tmp_path / "s"
    sub.mkdir()
    os.symlink("/etc/passwd", sub / "train_gpt.py")
    with pytest.raises(BadInput, match="link out of the folder"):
        prepare_workdir(sub, str(tmp_path / "runs"))


def test_check_reads_no_log_through_a_link_out_or_a_device(tmp_path: Path) -> None:
    sub = hostile_folder(tmp_path)
    s = load_submission(sub)
    names = {p.name for p in s.logs}
    assert not names & {"zero.log", "passwd.log", "pipe.log"}
    assert any(x.startswith("passwd.log (a link out of the folder") for x in s.skipped)


def test_check_cli_on_a_hostile_folder_finishes(tmp_path: Path, cli) -> None:
    sub = hostile_folder(tmp_path)
    js = tmp_path / "r.json"
    r = cli("check", sub, "--no-hints", "--json", js)
    assert r.code == 2, r.err  # B1 has no model size to count: INCONCLUSIVE; never a hang, never exit 5
    notes = json.loads(js.read_text())["notes"]
    assert any(n.startswith("not read: passwd.log (a link out of the folder") for n in notes)


def test_bounded_reads_refuse_special_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="FIFO"):
        read_capped(tmp_path / "fifo", 100)  # opened without blocking, refused by fstat
    with pytest.raises(OSError, match="device"):
        read_capped("/dev/zero", 100)
    (tmp_path / "f").write_bytes(b"y" * 50)
    assert read_capped(tmp_path / "f", 10) == b"y" * 11  # cap + 1: the caller sees the overflow
    assert regular_file_inside(tmp_path / "f", tmp_path) is None
    assert regular_file_inside("/etc/passwd", tmp_path) == "a link out of the folder"
