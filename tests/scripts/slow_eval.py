"""Trains, writes the artifact, then evaluates for far too long."""
import time

import numpy as np
from _shards import train_tokens, val_tokens

counts = np.bincount(train_tokens(), minlength=1024).astype(np.float64) + 1
with open("final_model.int8.ptz", "wb") as f:
    f.write(counts.tobytes())
val_tokens()
time.sleep(60)
