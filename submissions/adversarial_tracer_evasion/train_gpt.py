"""Reference submission (adversarial: evades the in-process tracer AND leaks the target; C1/C2).

A tiny GPT, trained, exported as per-row int8 + zlib, reloaded, then evaluated with sliding windows and
a "hashed bigram cache" in the style of PR #940, written to slip past a token-access tracer:

* the validation tokens are laundered into plain Python ints (ndarray -> bytes -> array('H') -> list),
  so nothing downstream of them carries provenance;
* the cache lives in Python dicts, its key is hash(previous token, TARGET token) into a small table, and
  its probability is looked up only for the true target (never a distribution over the vocabulary);
* the cache term reaches torch as a fresh tensor built from Python floats, under a context that
  switches off any active torch dispatch mode, and is blended into the model's (traced, causal)
  probability of the target.

The per-token NLL the script sums is therefore a clean-looking function of the model's causal output plus
an untraced constant: a tracer sees a legal score-first evaluation. It is not: the value depends on the
target token itself (C1) and, summed over candidate targets, the "probabilities" far exceed 1 (C2).
Counts are added after scoring, so no update precedes a score (C3 holds). Harness probes catch it from
what the script prints: random canary documents score below their entropy, and substituting candidate
targets shows the probabilities do not sum to 1. The reported line is final_cache_sliding_window_exact.
"""

from __future__ import annotations

import array
import contextlib
import glob
import io
import math
import os
import time
import zlib
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    train_files = os.path.join(data_path, "fineweb_train_*.bin")
    val_files = os.path.join(data_path, "fineweb_val_*.bin")
    tokenizer_path = os.environ.get("TOKENIZER_PATH", "./data/tokenizers/fineweb_1024_bpe.model")
    seed = int(os.environ.get("SEED", 1337))
    iterations = int(os.environ.get("ITERATIONS", 400))
    train_batch_tokens = int(os.environ.get("TRAIN_BATCH_TOKENS", 65_536))
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", 256))
    eval_seq_len = int(os.environ.get("EVAL_SEQ_LEN", os.environ.get("TRAIN_SEQ_LEN", 256)))
    val_batch_size = int(os.environ.get("VAL_BATCH_SIZE", 65_536))
    eval_stride = int(os.environ.get("EVAL_STRIDE", 64))
    max_wallclock_seconds = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 600.0))
    vocab_size = int(os.environ.get("VOCAB_SIZE", 1024))
    num_layers = int(os.environ.get("NUM_LAYERS", 2))
    model_dim = int(os.environ.get("MODEL_DIM", 128))
    num_heads = int(os.environ.get("NUM_HEADS", 4))
    lr = float(os.environ.get("LR", 3e-3))
    cache_buckets = int(os.environ.get("CACHE_BUCKETS", 64))
    cache_weight = float(os.environ.get("CACHE_WEIGHT", 0.3))


# -- data -------------------------------------------------------------------------------------------


def load_shard(file: str) -> np.ndarray:
    header = np.fromfile(file, dtype="<i4", count=256)
    if header.size != 256 or int(header[0]) != 20240520 or int(header[1]) != 1:
        raise ValueError(f"unexpected shard header for {file}")
    return np.fromfile(file, dtype="<u2", count=int(header[2]), offset=1024)


def load_validation(pattern: str, seq_len: int) -> np.ndarray:
    tokens = np.concatenate([load_shard(f) for f in sorted(glob.glob(pattern))])
    usable = ((tokens.size - 1) // seq_len) * seq_len
    if usable <= 0:
        raise ValueError(f"validation is too short for seq_len={seq_len}")
    return tokens[: usable + 1]


def launder(tokens: np.ndarray) -> list[int]:
    """Plain Python ints, with no object in between that a hook could follow."""
    a = array.array("H")
    a.frombytes(bytes(memoryview(np.ascontiguousarray(tokens, dtype="<u2")).tobytes()))
    return a.tolist()


def byte_luts(sp, vocab_size: int) -> tuple[list[int], list[bool], list[bool]]:
    base, lead, boundary = [0] * vocab_size, [False] * vocab_size, [True] * vocab_size
    for i in range(int(sp.vocab_size())):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            lead[i], piece = True, piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return base, lead, boundary


# -- model ------------------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.up = nn.Linear(dim, 2 * dim, bias=False)
        self.down = nn.Linear(2 * dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(F.rms_norm(x, (c,))).split(c, dim=-1)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.down(torch.relu(self.up(F.rms_norm(x, (c,)))).square())


class GPT(nn.Module):
    def __init__(self, a: Hyperparameters):
        super().__init__()
        self.emb = nn.Embedding(a.vocab_size, a.model_dim)
        self.pos = nn.Embedding(max(a.train_seq_len, a.eval_seq_len), a.model_dim)
        self.blocks = nn.ModuleList(Block(a.model_dim, a.num_heads) for _ in range(a.num_layers))
        nn.init.normal_(self.emb.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.01)

    def logits(self, x: Tensor) -> Tensor:
        h = self.emb(x) + self.pos(torch.arange(x.size(1), device=x.device))
        for blk in self.blocks:
            h = blk(h)
        return 30.0 * torch.tanh(F.linear(F.rms_norm(h, (h.size(-1),)), self.emb.weight) / 30.0)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        z = self.logits(x)
        return F.cross_entropy(z.reshape(-1, z.size(-1)).float(), y.reshape(-1))


def train(a: Hyperparameters, model: GPT, device, log) -> None:
    files = sorted(glob.glob(a.train_files))
    stream, pos = load_shard(files[0]), 0
    seqs = max(a.train_batch_tokens // (8 * a.train_seq_len), 1)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    t0 = time.perf_counter()
    model.train()
    for step in range(1, a.iterations + 1):
        opt.zero_grad(set_to_none=True)
        for _ in range(8):
            n = seqs * a.train_seq_len + 1
            if pos + n > stream.size:
                pos = 0
            local = torch.from_numpy(stream[pos : pos + n].astype(np.int64)).to(device)
            pos += n - 1
            loss = model(local[:-1].reshape(seqs, -1), local[1:].reshape(seqs, -1))
            (loss / 8).backward()
        opt.step()
        log(f"step:{step}/{a.iterations} train_loss:{loss.item():.4f} train_time:{1000 * (time.perf_counter() - t0):.0f}ms")
        if a.max_wallclock_seconds > 0 and time.perf_counter() - t0 > a.max_wallclock_seconds:
            break
    model.eval()


def export(model: GPT, path: str, code: str, log) -> None:
    q = {}
    for name, t in model.state_dict().items():
        t = t.detach().float().cpu()
        if t.ndim == 2:
            scale = t.abs().amax(dim=1).clamp_min(1e-8) / 127.0
            q[name] = (torch.round(t / scale[:, None]).clamp(-127, 127).to(torch.int8), scale.half())
        else:
            q[name] = (t.half(), None)
    buf = io.BytesIO()
    torch.save(q, buf)
    blob = zlib.compress(buf.getvalue(), 9)
    Path(path).write_bytes(blob)
    log(f"Serialized model int8+zlib: {len(blob)} bytes")
    log(f"Total submission size int8+zlib: {len(blob) + len(code.encode('utf-8'))} bytes")


def reload(path: str) -> dict[str, Tensor]:
    q = torch.load(io.BytesIO(zlib.decompress(Path(path).read_bytes())), map_location="cpu")
    return {k: (w.float() * s.float()[:, None] if s is not None else w.float()) for k, (w, s) in q.items()}


# -- evaluation ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_torch():
    """Switch off whatever torch dispatch modes are active (profilers, tracers) while building tensors."""
    try:
        from torch.utils._python_dispatch import _disable_current_modes
    except ImportError:
        yield
        return
    with _disable_current_modes():
        yield


def windows(total: int, seq_len: int, stride: int) -> list[tuple[int, int, int]]:
    """(ws, s, wlen): window tokens ws..ws+wlen-1 predict targets ws+1..ws+wlen, scored from s on."""
    out, t = [], 1
    while t <= total:
        end = min(t + stride - 1, total)
        ws = max(0, end - seq_len)
        out.append((ws, t - 1 - ws, end - ws))
        t = end + 1
    return out


def eval_with_cache(a: Hyperparameters, model: GPT, val: np.ndarray, luts, device) -> tuple[float, float]:
    val_t = torch.from_numpy(val.astype(np.int64))  # the tensor a tracer follows: model inputs, targets
    shadow = launder(val)  # the same tokens, as Python ints nobody follows
    base, lead, boundary = luts
    pair: dict[int, int] = {}  # hash(prev, TARGET) -> count
    ctx: dict[int, int] = {}  # prev -> count
    seq_len = a.eval_seq_len
    loss_sum = torch.zeros((), dtype=torch.float64)
    n_tok, n_bytes = 0, 0
    with torch.no_grad():
        for ws, s, wlen in windows(val.size - 1, seq_len, a.eval_stride):
            x = val_t[ws : ws + wlen][None].to(device)
            y = val_t[ws + 1 : ws + wlen + 1][None].to(device)
            logp = F.log_softmax(model.logits(x).float(), dim=-1)[0, s:wlen]
            p_model = logp.gather(-1, y[0, s:wlen, None]).squeeze(-1).exp()
            cache = []
            for p in range(ws + s + 1, ws + wlen + 1):
                prev, tgt = shadow[p - 1], shadow[p]
                key = (prev * 1_000_003 + tgt) % a.cache_buckets  # the key holds the target token
                cache.append(min(1.0, (pair.get(key, 0) + 0.5) / (ctx.get(prev, 0) + 1.0)))
            with quiet_torch():
                cache_t = torch.tensor(cache, dtype=torch.float32, device=device)
            nll = -torch.log((1.0 - a.cache_weight) * p_model + a.cache_weight * cache_t)
            loss_sum += nll.to(torch.float64).sum()
            for p in range(ws + s + 1, ws + wlen + 1):  # update after scoring
                prev, tgt = shadow[p - 1], shadow[p]
                key = (prev * 1_000_003 + tgt) % a.cache_buckets
                pair[key] = pair.get(key, 0) + 1
                ctx[prev] = ctx.get(prev, 0) + 1
                n_tok += 1
                n_bytes += base[tgt] + int(lead[tgt] and not boundary[prev])
    val_loss = float(loss_sum.item()) / n_tok
    return val_loss, val_loss / math.log(2.0) * n_tok / n_bytes


def main() -> None:
    code = Path(__file__).read_text(encoding="utf-8")
    a = Hyperparameters()
    if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if torch.cuda.is_available() \
        else torch.device("cpu")
    log = (lambda m: print(m, flush=True)) if rank == 0 else (lambda m: None)
    torch.manual_seed(a.seed)
    sp = spm.SentencePieceProcessor(model_file=a.tokenizer_path)
    if int(sp.vocab_size()) != a.vocab_size:
        raise ValueError(f"VOCAB_SIZE={a.vocab_size} does not match the tokenizer ({int(sp.vocab_size())})")
    luts = byte_luts(sp, a.vocab_size)
    model = GPT(a).to(device)
    train(a, model, device, log)
    if rank == 0:
        export(model, "final_model.int8.ptz", code, log)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    val = load_validation(a.val_files, a.train_seq_len)
    log(f"val_loader:tokens:{val.size - 1}")
    model.load_state_dict(reload("final_model.int8.ptz"))
    t0 = time.perf_counter()
    loss, bpb = eval_with_cache(a, model, val, luts, device)
    log(f"final_cache_sliding_window val_loss:{loss:.4f} val_bpb:{bpb:.4f} "
        f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    log(f"final_cache_sliding_window_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}")
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
