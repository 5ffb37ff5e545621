"""Writes the artifact, then reads training data again (calibration after training), then scores."""
import numpy as np
from _shards import score, train_tokens, val_tokens

counts = np.bincount(train_tokens(), minlength=1024).astype(np.float64) + 1
with open("final_model.int8.ptz", "wb") as f:
    f.write(counts.tobytes())
calib = train_tokens()[:512]  # GPTQ-style calibration on training data, after the artifact
nll, bpb = score(val_tokens(), counts)
print(f"final_int6_roundtrip_exact val_loss:{nll:.6f} val_bpb:{bpb:.6f}")
