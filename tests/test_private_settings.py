"""Settings the script must not see (the score-order replay's relabeling) travel in a private descriptor that
the runtime reads and closes before the script's first line: a replay's environment and open files are
spelled like any other run's, and the tracer still gets its labels. Two short traced runs of a numpy script."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.config import load_config
from harness.data.shards import write_shard
from harness.ledger import read_ledger
from harness.run import run_submission
from harness.runtime.context import private_settings_fd, read_private_settings

SCRIPT = '''
import json, os
raw = os.environ.get("HARNESS_RUNTIME", "")
s = json.loads(raw)
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
print("view:" + json.dumps({"relabel_in_env": "relabel" in raw, "keys": sorted(s), "extra": sorted(s["extra"]),
                            "private_fd_open": str(s.get("private_fd")) in fds,
                            "memfd": sorted(v for v in fds.values() if "harness-settings" in v)}))
print("final_int8_zlib_roundtrip val_loss:2.0000 val_bpb:1.0000")
'''


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    toks = lambda n: np.concatenate([[1], rng.integers(3, 1024, n - 1)]).astype(np.uint16)  # noqa: E731
    write_shard(d / "fineweb_train_000000.bin", toks(3000))
    write_shard(d / "fineweb_val_000000.bin", toks(3000))
    return d


def _view(tmp_path: Path, data: Path, name: str, private: dict | None) -> tuple[dict, list[dict]]:
    sub = tmp_path / name
    sub.mkdir()
    (sub / "train_gpt.py").write_text(SCRIPT)
    r = run_submission(sub, load_config(), data_path=str(data), out_dir=tmp_path / f"out-{name}", trace=True,
                       timeout=120, runtime_private=private)
    lines = [ln for ln in (r.stdout_tail or "").splitlines() if ln.startswith("view:")]
    assert lines, f"{r.reason}: {r.message}\n{r.stdout_tail}\n{r.stderr_tail}"
    return json.loads(lines[0][5:]), read_ledger(r.ledger_dir).of("stats")


def test_a_replay_looks_like_run_one_to_the_script_and_its_tracer_has_the_labels(tmp_path: Path, data: Path):
    v1, stats1 = _view(tmp_path, data, "run1", None)
    v2, stats2 = _view(tmp_path, data, "replay", {"relabel": [[5, 5], [0, 5]]})
    assert v1 == v2, (v1, v2)  # the same settings, nothing more, in both
    assert not v2["relabel_in_env"] and not v2["private_fd_open"] and not v2["memfd"]
    assert "private_fd" in v2["keys"]
    assert stats1 and all(ev.get("relabeled") is False for ev in stats1)
    assert stats2 and all(ev.get("relabeled") is True for ev in stats2)


def test_the_private_descriptor_round_trips_and_reads_empty_when_gone():
    payload = {"relabel": [[0, 3]], "big": "x" * 300_000}
    fd = private_settings_fd(payload)
    try:
        assert read_private_settings(fd) == payload
        assert read_private_settings(fd) == payload  # pread: every reader from the start
    finally:
        import os

        os.close(fd)
    assert read_private_settings(fd) == {}
