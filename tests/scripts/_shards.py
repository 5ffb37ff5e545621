"""Shared by the test scripts: the challenge's shard reader (np.fromfile, as every real script does)."""
import glob
import os

import numpy as np

DATA = os.environ.get("DATA_PATH", ".")


def load(path):
    header = np.fromfile(path, dtype=np.int32, count=256)
    assert header[0] == 20240520 and header[1] == 1, "bad shard header"
    return np.fromfile(path, dtype=np.uint16, count=int(header[2]), offset=256 * 4)


def train_tokens():
    return np.concatenate([load(p) for p in sorted(glob.glob(os.path.join(DATA, "fineweb_train_*.bin")))])


def val_tokens():
    return np.concatenate([load(p) for p in sorted(glob.glob(os.path.join(DATA, "fineweb_val_*.bin")))])


def score(val, counts):
    probs = counts / counts.sum()
    nll = float(-np.log(probs[val[1:]]).mean())
    return nll, nll / 1.7
