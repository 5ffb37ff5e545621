"""Reads validation data every way real scripts do; prints what it read so the test can compare."""
import json
import os
from pathlib import Path

import numpy as np

val = Path(os.environ["DATA_PATH"]) / "fineweb_val_000000.bin"
with open("final_model.int8.ptz", "wb") as f:  # the artifact first: every read below is evaluation
    f.write(b"\0" * 64)
out = {}
a = np.fromfile(val, dtype=np.uint16, offset=1024)  # positions 0..n
out["fromfile"] = [0, int(a.size)]
with open(val, "rb") as f:
    f.seek(1024 + 2 * 20)
    raw = f.read(2 * 40)  # positions 20..60
b = np.frombuffer(raw, dtype=np.uint16)
out["frombuffer"] = [20, 60, bool((b == a[20:60]).all())]
mm = np.memmap(val, dtype=np.uint16, mode="r", offset=1024)
s = mm[100:164]  # positions 100..164
out["memmap_slice"] = [100, 164, bool((np.asarray(s) == a[100:164]).all())]
data = val.read_bytes()
c = np.frombuffer(data, dtype=np.uint16, offset=1024)
out["read_bytes"] = [0, int(c.size)]
with val.open("rb", buffering=0) as f:  # the first baseline: readinto a preallocated buffer
    f.seek(1024 + 2 * 200)
    buf = np.empty(10, dtype=np.uint16)
    f.readinto(buf)
out["readinto"] = [200, 210, bool((buf == a[200:210]).all())]
print("READS " + json.dumps(out))
print("final_x val_loss:1.0 val_bpb:0.5")
