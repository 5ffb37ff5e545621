"""Two ranks (torchrun): gloo all_reduce over a per-rank count of validation tokens; rank 0 scores."""
import os

import numpy as np
import torch
import torch.distributed as dist
from _shards import score, train_tokens, val_tokens

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
counts = np.bincount(train_tokens(), minlength=1024).astype(np.float64) + 1
if rank == 0:
    with open("final_model.int8.ptz", "wb") as f:
        f.write(counts.tobytes())
dist.barrier()
val = val_tokens()
mine = torch.tensor([float(val[rank::world].size)])
dist.all_reduce(mine)
if rank == 0:
    nll, bpb = score(val, counts)
    print(f"world:{world} total:{int(mine.item())}", flush=True)
    print(f"final_x val_loss:{nll:.6f} val_bpb:{bpb:.6f}", flush=True)
dist.destroy_process_group()
