"""Reference submission (illegal): phased test-time training whose global phase also trains on a document
it has not scored yet.

As legal_phased_ttt (documents scored longest first, a global SGD phase after half of them), except that
the global phase's tokens include one of the still unscored documents, the one nearest the middle of the
stream, which is scored only afterwards: TTT on validation tokens before scoring them (C3). That document
lies strictly inside the span of the scored documents, so one interval per value cannot prove it was used;
the score-order replay must never clear it. The reported line is final_ttt_phased_exact.
"""

from __future__ import annotations

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

# -----------------------------
# HYPERPARAMETERS (environment overrides, names as in the challenge scripts)
# -----------------------------


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
    train_log_every = int(os.environ.get("TRAIN_LOG_EVERY", 100))
    vocab_size = int(os.environ.get("VOCAB_SIZE", 1024))
    num_layers = int(os.environ.get("NUM_LAYERS", 2))
    model_dim = int(os.environ.get("MODEL_DIM", 128))
    num_heads = int(os.environ.get("NUM_HEADS", 4))
    mlp_mult = int(os.environ.get("MLP_MULT", 2))
    lr = float(os.environ.get("LR", 3e-3))
    ttt_epochs = int(os.environ.get("TTT_EPOCHS", 2))
    ttt_chunk_tokens = int(os.environ.get("TTT_CHUNK_TOKENS", 4096))
    ttt_batch_seqs = int(os.environ.get("TTT_BATCH_SEQS", 8))
    ttt_lr = float(os.environ.get("TTT_LR", 1e-3))


# -----------------------------
# DATA: shards are 256 int32 header (magic 20240520, version 1, count) + uint16 tokens
# -----------------------------


def load_data_shard(file: str | Path) -> np.ndarray:
    header = np.fromfile(file, dtype="<i4", count=256)
    if header.size != 256 or int(header[0]) != 20240520 or int(header[1]) != 1:
        raise ValueError(f"unexpected shard header for {file}")
    n = int(header[2])
    if os.path.getsize(file) != 256 * 4 + 2 * n:
        raise ValueError(f"shard size mismatch for {file}")
    return np.fromfile(file, dtype="<u2", count=n, offset=256 * 4)


def load_validation_tokens(pattern: str, seq_len: int) -> Tensor:
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no validation shards match {pattern}")
    tokens = np.concatenate([load_data_shard(f) for f in files])
    usable = ((tokens.size - 1) // seq_len) * seq_len  # whole sequences, plus one token for the targets
    if usable <= 0:
        raise ValueError(f"validation is too short for seq_len={seq_len}")
    return torch.from_numpy(tokens[: usable + 1].astype(np.int64))


class TokenStream:
    """Training shards read in order, wrapping around."""

    def __init__(self, pattern: str):
        self.files = sorted(glob.glob(pattern))
        if not self.files:
            raise FileNotFoundError(f"no training shards match {pattern}")
        self.idx, self.pos = 0, 0
        self.tokens = load_data_shard(self.files[0])

    def take(self, n: int) -> Tensor:
        out = []
        while n > 0:
            if self.pos >= self.tokens.size:
                self.idx = (self.idx + 1) % len(self.files)
                self.tokens, self.pos = load_data_shard(self.files[self.idx]), 0
            k = min(n, self.tokens.size - self.pos)
            out.append(self.tokens[self.pos : self.pos + k])
            self.pos += k
            n -= k
        return torch.from_numpy(np.concatenate(out).astype(np.int64))


# -----------------------------
# BYTES PER TOKEN (tokenizer-agnostic val_bpb, as in the baseline)
# -----------------------------


def build_sentencepiece_luts(sp, vocab_size: int, device) -> tuple[Tensor, Tensor, Tensor]:
    size = max(int(sp.vocab_size()), vocab_size)
    base = np.zeros(size, dtype=np.int16)
    lead = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for i in range(int(sp.vocab_size())):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            lead[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return (torch.tensor(base, device=device), torch.tensor(lead, device=device),
            torch.tensor(boundary, device=device))


def target_bytes(luts, prev: Tensor, tgt: Tensor) -> Tensor:
    base, lead, boundary = luts
    return base[tgt].to(torch.float64) + (lead[tgt] & ~boundary[prev]).to(torch.float64)


# -----------------------------
# MODEL: a tiny causal GPT, tied embeddings
# -----------------------------


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_mult: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.fc = nn.Linear(dim, mlp_mult * dim, bias=False)
        self.out = nn.Linear(mlp_mult * dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(F.rms_norm(x, (c,))).split(c, dim=-1)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.out(torch.relu(self.fc(F.rms_norm(x, (c,)))).square())


class GPT(nn.Module):
    def __init__(self, args: Hyperparameters):
        super().__init__()
        self.tok_emb = nn.Embedding(args.vocab_size, args.model_dim)
        self.pos_emb = nn.Embedding(max(args.train_seq_len, args.eval_seq_len), args.model_dim)
        self.blocks = nn.ModuleList(
            Block(args.model_dim, args.num_heads, args.mlp_mult) for _ in range(args.num_layers)
        )
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.01)

    def forward_hidden(self, x: Tensor) -> Tensor:
        h = self.tok_emb(x) + self.pos_emb(torch.arange(x.size(1), device=x.device))
        for block in self.blocks:
            h = block(h)
        return F.rms_norm(h, (h.size(-1),))

    def logits_from_hidden(self, h: Tensor) -> Tensor:
        return 30.0 * torch.tanh(F.linear(h, self.tok_emb.weight) / 30.0)

    def forward_logits(self, x: Tensor) -> Tensor:
        return self.logits_from_hidden(self.forward_hidden(x))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        logits = self.forward_logits(x)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))


# -----------------------------
# INT8 EXPORT (per-row int8 + zlib, like final_model.int8.ptz)
# -----------------------------


def quantize_state_dict_int8(sd: dict[str, Tensor], col_scale: dict[str, Tensor] | None = None) -> dict:
    q, scales, keep, cols = {}, {}, {}, {}
    for name, t in sd.items():
        t = t.detach().float().cpu()
        if t.ndim == 2 and t.numel() >= 4096:
            s_col = col_scale.get(name) if col_scale else None
            if s_col is not None:  # activation-aware: scale input columns before rounding
                t = t * s_col[None, :]
                cols[name] = s_col.half()
            clip = t.abs().amax(dim=1).clamp_min(1e-8)
            scale = clip / 127.0
            q[name] = torch.clamp(torch.round(t / scale[:, None]), -127, 127).to(torch.int8)
            scales[name] = scale.half()
        else:
            keep[name] = t.half()
    return {"quantized": q, "scales": scales, "passthrough": keep, "col_scales": cols}


def dequantize_state_dict_int8(obj: dict) -> dict[str, Tensor]:
    out = {}
    for name, qt in obj["quantized"].items():
        w = qt.float() * obj["scales"][name].float()[:, None]
        if name in obj["col_scales"]:
            w = w / obj["col_scales"][name].float()[None, :]
        out[name] = w
    for name, t in obj["passthrough"].items():
        out[name] = t.float()
    return out


def write_artifact(obj: dict, path: str, code: str, log0) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    blob = zlib.compress(buf.getvalue(), level=9)
    with open(path, "wb") as f:
        f.write(blob)
    log0(f"Serialized model int8+zlib: {len(blob)} bytes")
    log0(f"Code size: {len(code.encode('utf-8'))} bytes")
    log0(f"Total submission size int8+zlib: {len(blob) + len(code.encode('utf-8'))} bytes")
    return len(blob)


def read_artifact(path: str) -> dict[str, Tensor]:
    with open(path, "rb") as f:
        blob = f.read()
    return dequantize_state_dict_int8(torch.load(io.BytesIO(zlib.decompress(blob)), map_location="cpu"))


# -----------------------------
# TRAINING AND PLAIN EVALUATION
# -----------------------------


def autocast(device):
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def all_reduce_sum(*ts: Tensor) -> None:
    if dist.is_available() and dist.is_initialized():
        for t in ts:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def train_model(args, model: GPT, rank: int, world_size: int, device, log0) -> float:
    grad_accum = max(8 // world_size, 1)
    local_tokens = args.train_batch_tokens // (world_size * grad_accum)
    seqs = max(local_tokens // args.train_seq_len, 1)
    stream = TokenStream(args.train_files)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    t0 = time.perf_counter()
    model.train()
    for step in range(1, args.iterations + 1):
        opt.zero_grad(set_to_none=True)
        for _ in range(grad_accum):
            span = stream.take(world_size * (seqs * args.train_seq_len + 1))
            local = span[rank * (seqs * args.train_seq_len + 1) :][: seqs * args.train_seq_len + 1].to(device)
            x = local[:-1].reshape(seqs, args.train_seq_len)
            y = local[1:].reshape(seqs, args.train_seq_len)
            with autocast(device):
                loss = model(x, y)
            (loss / grad_accum).backward()
        if world_size > 1:
            for p in model.parameters():
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= world_size
        opt.step()
        elapsed = time.perf_counter() - t0
        if step % args.train_log_every == 0 or step == args.iterations:
            log0(f"step:{step}/{args.iterations} train_loss:{loss.item():.4f} train_time:{1000 * elapsed:.0f}ms")
        if args.max_wallclock_seconds > 0 and elapsed > args.max_wallclock_seconds:
            log0(f"stopping_early: wallclock_cap train_time:{1000 * elapsed:.0f}ms step:{step}/{args.iterations}")
            break
    return time.perf_counter() - t0


def eval_val(args, model: GPT, val_tokens: Tensor, luts, rank: int, world_size: int, device) -> tuple[float, float]:
    """Non-overlapping sequences of train_seq_len, every target scored once."""
    seq_len = args.train_seq_len
    n_seqs = (val_tokens.numel() - 1) // seq_len
    per_batch = max(args.val_batch_size // seq_len, 1)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    tok_count = torch.zeros((), dtype=torch.float64, device=device)
    byte_count = torch.zeros((), dtype=torch.float64, device=device)
    model.eval()
    with torch.no_grad():
        for b0 in range(rank * per_batch, n_seqs, world_size * per_batch):
            b1 = min(b0 + per_batch, n_seqs)
            local = val_tokens[b0 * seq_len : b1 * seq_len + 1].to(device)
            x = local[:-1].reshape(-1, seq_len)
            y = local[1:].reshape(-1, seq_len)
            with autocast(device):
                logits = model.forward_logits(x)
            nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="none")
            loss_sum += nll.to(torch.float64).sum()
            tok_count += y.numel()
            byte_count += target_bytes(luts, x.reshape(-1), y.reshape(-1)).sum()
    all_reduce_sum(loss_sum, tok_count, byte_count)
    val_loss = (loss_sum / tok_count).item()
    return val_loss, val_loss / math.log(2.0) * (tok_count.item() / byte_count.item())


def scoring_windows(first: int, last: int, seq_len: int, stride: int, floor: int = 0) -> list[tuple[int, int, int]]:
    """Windows (ws, s, wlen) that score each target first..last exactly once: the window holds tokens
    ws..ws+wlen-1 (never before `floor`), predicts targets ws+1..ws+wlen and scores those from s on
    (ws+s+1..ws+wlen), so every scored target sees up to seq_len-1 tokens of context."""
    out, t = [], first
    while t <= last:
        end = min(t + stride - 1, last)
        ws = max(floor, end - seq_len)
        out.append((ws, t - 1 - ws, end - ws))
        t = end + 1
    return out


def window_batch(val_tokens: Tensor, wins, seq_len: int, device) -> tuple[Tensor, Tensor]:
    x = torch.zeros(len(wins), seq_len, dtype=torch.int64, device=device)
    y = torch.zeros(len(wins), seq_len, dtype=torch.int64, device=device)
    for i, (ws, _, wlen) in enumerate(wins):
        chunk = val_tokens[ws : ws + wlen + 1].to(device)
        x[i, :wlen] = chunk[:-1]
        y[i, :wlen] = chunk[1:]
    return x, y


def setup():
    """Distributed + device setup, seeds, tokenizer; returns what every main needs."""
    args = Hyperparameters()
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if distributed:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def log0(msg: str) -> None:
        if rank == 0:
            print(msg, flush=True)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    sp = spm.SentencePieceProcessor(model_file=args.tokenizer_path)
    if int(sp.vocab_size()) != args.vocab_size:
        raise ValueError(f"VOCAB_SIZE={args.vocab_size} does not match tokenizer vocab_size={int(sp.vocab_size())}")
    luts = build_sentencepiece_luts(sp, args.vocab_size, device)
    log0(f"val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path={args.tokenizer_path}")
    log0(f"world_size:{world_size} device:{device.type} seed:{args.seed}")
    return args, rank, world_size, device, log0, luts


def eval_val_sliding(
    args, model: GPT, val_tokens: Tensor, luts, rank: int, world_size: int, device
) -> tuple[float, float]:
    """Sliding-window evaluation: each target scored once, with up to eval_seq_len-1 tokens of context."""
    seq_len = args.eval_seq_len
    wins = scoring_windows(1, val_tokens.numel() - 1, seq_len, args.eval_stride)[rank::world_size]
    batch = max(args.val_batch_size // seq_len, 1)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    tok_count = torch.zeros((), dtype=torch.float64, device=device)
    byte_count = torch.zeros((), dtype=torch.float64, device=device)
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(wins), batch):
            bw = wins[i : i + batch]
            x, y = window_batch(val_tokens, bw, seq_len, device)
            with autocast(device):
                logits = model.forward_logits(x)
            nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1),
                                  reduction="none").reshape(len(bw), seq_len)
            for j, (_, s, wlen) in enumerate(bw):
                loss_sum += nll[j, s:wlen].to(torch.float64).sum()
                tok_count += wlen - s
                byte_count += target_bytes(luts, x[j, s:wlen], y[j, s:wlen]).sum()
    all_reduce_sum(loss_sum, tok_count, byte_count)
    val_loss = (loss_sum / tok_count).item()
    return val_loss, val_loss / math.log(2.0) * (tok_count.item() / byte_count.item())


def ttt_train_span(model: GPT, opt, val_tokens: Tensor, first: int, last: int, seq_len: int, batch_seqs: int,
                   epochs: int, device) -> None:
    """Train on the targets first..last of the validation stream (inputs first-1..last-1)."""
    seqs = [(s, min(s + seq_len, last)) for s in range(first - 1, last, seq_len)]
    model.train()
    for _ in range(epochs):
        for b in range(0, len(seqs), batch_seqs):
            group = seqs[b : b + batch_seqs]
            opt.zero_grad(set_to_none=True)
            loss = torch.zeros((), device=device)
            for s, e in group:
                local = val_tokens[s : e + 1].to(device)
                with autocast(device):
                    loss = loss + model(local[:-1][None], local[1:][None]) * (e - s)
            (loss / sum(e - s for s, e in group)).backward()
            opt.step()
    model.eval()


# -----------------------------
# PHASED TTT: score documents longest first; after a prefix of them, SGD on what was scored
# -----------------------------

BOS_ID = 1
PHASED_PREFIX_PERCENT = int(os.environ.get("PHASED_PREFIX_PERCENT", 50))


def documents(val_tokens: Tensor) -> list[tuple[int, int]]:
    """(first, last): a document's opening token and its last target (the next document's BOS)."""
    total = val_tokens.numel() - 1
    starts = (val_tokens == BOS_ID).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    bounds = starts[1:] + [val_tokens.numel()]
    return [(d0, min(d1, total)) for d0, d1 in zip(starts, bounds) if min(d1, total) > d0]


def phase_plan(docs: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    order = sorted(range(len(docs)), key=lambda i: (-(docs[i][1] - docs[i][0]), i))
    k = max(1, len(order) * PHASED_PREFIX_PERCENT // 100)
    return order[:k], order[k:]


def global_sgd_tokens(val_tokens: Tensor, docs, prefix: list[int], suffix: list[int]) -> Tensor:
    """What the global phase trains on: the scored documents, plus the unscored one nearest the middle."""
    mid = val_tokens.numel() // 2
    extra = min(suffix, key=lambda i: abs(docs[i][0] - mid))
    return torch.cat([val_tokens[docs[i][0] : docs[i][1] + 1] for i in [*prefix, extra]])


def eval_val_phased(
    args, model: GPT, val_tokens: Tensor, luts, rank: int, world_size: int, device
) -> tuple[float, float]:
    seq_len = args.eval_seq_len
    docs = documents(val_tokens)
    prefix, suffix = phase_plan(docs)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    tok_count = torch.zeros((), dtype=torch.float64, device=device)
    byte_count = torch.zeros((), dtype=torch.float64, device=device)

    def score(ids: list[int]) -> None:
        model.eval()
        with torch.no_grad():
            for n, i in enumerate(ids):
                if n % world_size != rank:
                    continue
                d0, last = docs[i]
                wins = scoring_windows(d0 + 1, last, seq_len, args.eval_stride, floor=d0)
                x, y = window_batch(val_tokens, wins, seq_len, device)
                with autocast(device):
                    logits = model.forward_logits(x)
                nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1),
                                      reduction="none").reshape(len(wins), seq_len)
                for j, (_, s, wlen) in enumerate(wins):
                    loss_sum.add_(nll[j, s:wlen].to(torch.float64).sum())
                    tok_count.add_(wlen - s)
                    byte_count.add_(target_bytes(luts, x[j, s:wlen], y[j, s:wlen]).sum())

    score(prefix)
    stream = global_sgd_tokens(val_tokens, docs, prefix, suffix)
    opt = torch.optim.SGD(model.parameters(), lr=args.ttt_lr)
    ttt_train_span(model, opt, stream, 1, stream.numel() - 1, seq_len, args.ttt_batch_seqs,
                   max(args.ttt_epochs, 1), device)
    score(suffix)
    all_reduce_sum(loss_sum, tok_count, byte_count)
    val_loss = (loss_sum / tok_count).item()
    return val_loss, val_loss / math.log(2.0) * (tok_count.item() / byte_count.item())


# -----------------------------
# MAIN
# -----------------------------


def main() -> None:
    code = Path(__file__).read_text(encoding="utf-8")
    args, rank, world_size, device, log0, luts = setup()
    model = GPT(args).to(device)
    log0(f"model_params:{sum(p.numel() for p in model.parameters())}")
    train_model(args, model, rank, world_size, device, log0)
    if rank == 0:
        write_artifact(quantize_state_dict_int8(model.state_dict()), "final_model.int8.ptz", code, log0)
    if world_size > 1:
        dist.barrier()
    val_tokens = load_validation_tokens(args.val_files, args.train_seq_len)
    log0(f"val_loader:shards pattern={args.val_files} tokens:{val_tokens.numel() - 1}")
    model.load_state_dict(read_artifact("final_model.int8.ptz"), strict=True)
    t0 = time.perf_counter()
    p_loss, p_bpb = eval_val_phased(args, model, val_tokens, luts, rank, world_size, device)
    log0(f"final_ttt_phased val_loss:{p_loss:.4f} val_bpb:{p_bpb:.4f} "
         f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    log0(f"final_ttt_phased_exact val_loss:{p_loss:.8f} val_bpb:{p_bpb:.8f}")
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
