"""The fork server end to end through the real runner, with a toy script whose score is a known function
of the tokens it was served (no torch: a couple of seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.config import load_config
from harness.probes.execute import HarnessExecutor, Variant
from harness.run.serve import write_shard

TOY = '''
import glob, os, sys
import numpy as np
files = sorted(glob.glob(os.path.join(os.environ["DATA_PATH"], "fineweb_val_*.bin")))
HOW = os.environ.get("TOY_READ", "fromfile")
if HOW in ("fromfile", "twice"):
    tok = np.fromfile(files[0], dtype="<u2", offset=1024)
if HOW in ("bytes", "twice"):  # bytes -> Python ints: a path no hook can tag
    import array
    raw = open(files[0], "rb").read()[1024:]
    a = array.array("H")
    a.frombytes(raw)
    tok = np.array(a.tolist(), dtype=np.uint16)
n = ((tok.size - 1) // 16) * 16
v = tok[: n + 1].astype(np.float64)
loss = float(np.mean((v[1:] * 7 + v[:-1]) % 97) / 10)
print(f"final_toy_exact val_loss:{loss:.8f} val_bpb:{loss / 2:.8f}")
'''


def _expected(tokens: np.ndarray) -> float:
    v = tokens.astype(np.float64)
    return round(float(np.mean((v[1:] * 7 + v[:-1]) % 97) / 10), 8)


@pytest.fixture()
def toy(tmp_path):
    sub = tmp_path / "toy"
    sub.mkdir()
    (sub / "train_gpt.py").write_text(TOY, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    write_shard(data / "fineweb_train_000000.bin", rng.integers(4, 200, size=2000).astype(np.uint16))
    write_shard(data / "fineweb_val_000000.bin", rng.integers(4, 200, size=500).astype(np.uint16))
    return sub, data


def _variants(n=4, length=65):
    rng = np.random.default_rng(1)
    base = rng.integers(4, 200, size=length).astype(np.uint16)
    base[0] = 1
    out = [Variant("base", base, "base")]
    for i in range(1, n):
        v = base.copy()
        v[-i:] = rng.integers(4, 200, size=i)
        out.append(Variant(f"v{i}", v, "c2"))
    return out


@pytest.mark.parametrize("fork", [True, False])
def test_each_variant_is_served_and_scored(toy, tmp_path, fork):
    sub, data = toy
    cfg = load_config()
    ex = HarnessExecutor(sub, cfg, {"data_path": str(data), "trace": False, "vocab_size": 256},
                         tmp_path / "session", fork=fork, variant_timeout_s=60)
    variants = _variants()
    runs = ex.run(variants)
    assert [r.name for r in runs] == [v.name for v in variants]
    for v, r in zip(variants, runs):
        assert r.ok, (r.name, r.reason)
        assert r.val_loss == pytest.approx(_expected(v.tokens), abs=1e-8), r.name
    assert len({r.val_loss for r in runs}) == len(runs)  # every stream really differed
    if fork:
        assert ex.cost.runs == 1 and ex.cost.forks == len(variants) - 1
        assert all(r.how == "fork" for r in runs[1:])
        ledger = ex.session / "fork1" / "run" / "ledger"
        names = sorted(p.name for p in ledger.glob("ledger*.jsonl"))
        assert names == ["ledger.parent.jsonl", "ledger.rank0.jsonl"]  # no child wrote into the run's ledger
        assert (ex.session / "fork1" / "variants" / "v1" / "ledger.rank0.jsonl").is_file()
    else:
        assert ex.cost.runs == len(variants) and ex.cost.forks == 0


def test_untagged_read_falls_back_to_runs_of_their_own(toy, tmp_path):
    sub, data = toy
    cfg = load_config()
    ex = HarnessExecutor(sub, cfg, {"data_path": str(data), "trace": False, "vocab_size": 256,
                                    "env": {"TOY_READ": "bytes"}}, tmp_path / "s2", fork=True, variant_timeout_s=60)
    variants = _variants(3)
    runs = ex.run(variants)
    for v, r in zip(variants, runs):
        assert r.ok and r.val_loss == pytest.approx(_expected(v.tokens), abs=1e-8)
    assert any("fork server did not run" in n for n in ex.cost.notes)
    assert ex.cost.runs == 3  # the fork run, then one run per variant it could not serve


def test_a_second_untagged_read_is_caught_not_trusted(toy, tmp_path):
    """Forked at the tagged read, the child would score the base tokens from the later bytes read:
    the executor sees the untagged read in the child's ledger and serves the stream as a file."""
    sub, data = toy
    cfg = load_config()
    ex = HarnessExecutor(sub, cfg, {"data_path": str(data), "trace": False, "vocab_size": 256,
                                    "env": {"TOY_READ": "twice"}}, tmp_path / "s3", fork=True, variant_timeout_s=60)
    variants = _variants(3)
    runs = ex.run(variants)
    for v, r in zip(variants, runs):
        assert r.ok and r.val_loss == pytest.approx(_expected(v.tokens), abs=1e-8), r.name
    assert any("not served" in n for n in ex.cost.notes) and ex.cost.runs == 3
