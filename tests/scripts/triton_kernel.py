"""A @triton.jit kernel launched on the script's own tensors (needs the `triton` extra; on CPU the harness
runs it in Triton's interpreter). Reads the validation shard with open(), prints a final score line."""
import os
import struct

import torch
import triton
import triton.language as tl


@triton.jit
def leaky_relu_sq_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    r = tl.where(x > 0, x, 0.5 * x)
    tl.store(y_ptr + offs, r * r, mask=offs < n)


def leaky_relu_sq(x):
    y = torch.empty_like(x)
    n = x.numel()
    leaky_relu_sq_kernel[(triton.cdiv(n, 64),)](x, y, n, BLOCK=64)  # LAUNCH
    return y


path = os.path.join(os.environ["DATA_PATH"], "fineweb_val_000000.bin")
with open(path, "rb") as f:
    header = struct.unpack("<256i", f.read(1024))
    tokens = struct.unpack(f"<{min(header[2], 256)}H", f.read(2 * min(header[2], 256)))
x = torch.tensor(tokens[:200], dtype=torch.float32, device="cuda") / 512.0 - 1.0
for _ in range(2):
    y = leaky_relu_sq(x)
ref = torch.where(x > 0, x, 0.5 * x) ** 2
print(f"kernel maxerr:{(y - ref).abs().max().item():.3g}")
with open("final_model.int8.ptz", "wb") as f:
    f.write(b"model")
loss = float(y.mean())
print(f"final_triton val_loss:{loss:.4f} val_bpb:{loss / 2:.4f}")
