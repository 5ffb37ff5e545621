"""Tries to reach the outside world. NET_CATCH=1: tolerate the failure and score anyway."""
import os
import socket

from _shards import score, train_tokens, val_tokens
import numpy as np

try:
    socket.create_connection(("93.184.216.34", 80), timeout=3)
except OSError:
    if os.environ.get("NET_CATCH") != "1":
        raise
    try:
        socket.getaddrinfo("example.com", 443)
    except OSError as e:
        print(f"offline: {e}", flush=True)
counts = np.bincount(train_tokens(), minlength=1024).astype(np.float64) + 1
with open("final_model.int8.ptz", "wb") as f:
    f.write(counts.tobytes())
nll, bpb = score(val_tokens(), counts)
print(f"final_x val_loss:{nll:.6f} val_bpb:{bpb:.6f}")
