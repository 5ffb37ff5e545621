"""A well-behaved tiny 'submission': train reads, artifact write + read, validation read, score line."""
import glob
import os
import time

import numpy as np

data = os.environ["DATA_PATH"]


def load(path):
    header = np.fromfile(path, dtype=np.int32, count=256)
    assert header[0] == 20240520 and header[1] == 1
    return np.fromfile(path, dtype=np.uint16, count=int(header[2]), offset=256 * 4)


train = [load(p) for p in sorted(glob.glob(os.path.join(data, "fineweb_train_*.bin")))]
counts = np.bincount(np.concatenate(train), minlength=1024).astype(np.float64) + 1.0
print(f"step:1/1 train_loss:6.9 train_time:{12}ms step_avg:12.00ms", flush=True)
time.sleep(float(os.environ.get("TRAIN_SLEEP", "0")))
with open("final_model.int8.ptz", "wb") as f:
    f.write(counts.astype(np.float32).tobytes())
with open("final_model.int8.ptz", "rb") as f:
    probs = np.frombuffer(f.read(), dtype=np.float32).astype(np.float64)
probs /= probs.sum()
val = np.concatenate([load(p) for p in sorted(glob.glob(os.path.join(data, "fineweb_val_*.bin")))])
nll = float(-np.log(probs[val[1:]]).mean())
print(f"step:1/1 val_loss:{nll + 1:.4f} val_bpb:{nll:.4f} train_time:12ms")
print(f"final_int8_zlib_roundtrip_exact val_loss:{nll:.8f} val_bpb:{nll / 2:.8f} eval_time:5ms")
