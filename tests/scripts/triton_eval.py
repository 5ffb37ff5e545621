"""A tiny causal 'model' whose hidden layer is a @triton.jit kernel (needs the `triton` extra; on CPU the
harness runs it in Triton's interpreter), scored on the validation shard with cross-entropy.

KERNEL=rowwise (default): a fused linear + leaky-ReLU^2 over row blocks (legal: row t sees token t).
KERNEL=leak: the same plus half of row t+1 mixed into row t (the score of t+1 then depends on t+1)."""
import math
import os

import numpy as np

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

V, D, H, T = 1024, 16, 32, 128


@triton.jit
def mlp_kernel(x_ptr, w_ptr, y_ptr, M, K: tl.constexpr, N: tl.constexpr, BLOCK_M: tl.constexpr,
               LEAK: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ks = tl.arange(0, K)
    x = tl.load(x_ptr + rows[:, None] * K + ks[None, :], mask=rows[:, None] < M, other=0.0)
    if LEAK:
        x += 0.5 * tl.load(x_ptr + (rows[:, None] + 1) * K + ks[None, :], mask=rows[:, None] + 1 < M, other=0.0)
    ns = tl.arange(0, N)
    h = tl.dot(x, tl.load(w_ptr + ks[:, None] * N + ns[None, :]))
    h = tl.where(h > 0, h, 0.5 * h)
    tl.store(y_ptr + rows[:, None] * N + ns[None, :], h * h, mask=rows[:, None] < M)


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # the CPU shim maps cuda to the CPU (interpreter)


def mlp(x, w, leak):
    y = torch.empty(x.shape[0], w.shape[1], device=x.device)
    mlp_kernel[(triton.cdiv(x.shape[0], 32),)](x, w, y, x.shape[0], K=D, N=H, BLOCK_M=32, LEAK=leak)  # LAUNCH
    return y


path = os.path.join(os.environ["DATA_PATH"], "fineweb_val_000000.bin")
header = np.fromfile(path, dtype=np.int32, count=256)
tokens = torch.from_numpy(np.fromfile(path, dtype=np.uint16, count=min(int(header[2]), T + 1), offset=1024)
                          .astype(np.int64)).to(DEVICE)
torch.manual_seed(0)
emb, w, head = (t.to(DEVICE) for t in (torch.randn(V, D) * 0.3, torch.randn(D, H) * 0.3, torch.randn(H, V) * 0.1))
leak = os.environ.get("KERNEL", "rowwise") == "leak"
x, y = tokens[:-1], tokens[1:]
with torch.no_grad():
    logits = mlp(emb[x].contiguous(), w, leak) @ head
    nll = F.cross_entropy(logits, y, reduction="none")
    val_loss = nll.mean().item()
with open("final_model.int8.ptz", "wb") as f:
    f.write(b"model")
print(f"final_triton val_loss:{val_loss:.6f} val_bpb:{val_loss / math.log(2) / 2:.6f}")
