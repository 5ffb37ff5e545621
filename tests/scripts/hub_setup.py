"""Sets its data up as records that fetch a custom dataset do: the hub client imported at the top, a download
only when the dataset folder it names is missing. HUB_FORCE=1: downloads anyway."""
import os

from huggingface_hub import snapshot_download

from _shards import load, score
import glob
import numpy as np

d = os.environ.get("DATA_DIR", "./data/")
ds = os.path.join(d, "datasets", "fineweb10B_sp1024_custom")
if os.environ.get("HUB_FORCE") == "1" or not glob.glob(os.path.join(ds, "fineweb_val_*.bin")):
    snapshot_download(repo_id="someone/sp1024_custom", repo_type="dataset", local_dir=ds)
train = np.concatenate([load(p) for p in sorted(glob.glob(os.path.join(ds, "fineweb_train_*.bin")))])
val = np.concatenate([load(p) for p in sorted(glob.glob(os.path.join(ds, "fineweb_val_*.bin")))])
counts = np.bincount(train, minlength=1024).astype(np.float64) + 1
with open("final_model.int8.ptz", "wb") as f:
    f.write(counts.tobytes())
nll, bpb = score(val, counts)
print(f"final_x val_loss:{nll:.6f} val_bpb:{bpb:.6f}")
