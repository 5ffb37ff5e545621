"""Saves a raw checkpoint, calibrates on training data (GPTQ-style, inside the training budget),
then writes the compressed artifact and evaluates: the checkpoint is not the train/eval line."""
import zlib

import numpy as np
from _shards import score, train_tokens, val_tokens

counts = np.bincount(train_tokens(), minlength=1024).astype(np.float64) + 1
with open("final_model.pt", "wb") as f:  # a raw torch.save zip starts with PK
    f.write(b"PK\x03\x04" + counts.tobytes())
calib = train_tokens()[:256]  # calibration reads training data after the checkpoint
with open("final_model.int8.ptz", "wb") as f:
    f.write(zlib.compress(counts.astype(np.float32).tobytes()))
nll, bpb = score(val_tokens(), counts)
print(f"final_int8_zlib_roundtrip_exact val_loss:{nll:.6f} val_bpb:{bpb:.6f}")
