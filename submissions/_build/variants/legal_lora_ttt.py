# legal_lora_ttt/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (legal): per-document LoRA test-time training.

Each validation document (from its BOS to the next BOS) gets fresh low-rank adapters on the final hidden
state (h + h A B, rank LORA_RANK, B = 0 at the start). The document's targets - its own tokens and the
next document's BOS - are cut into chunks of TTT_CHUNK_TOKENS; each chunk is scored first (inference
mode, context never crosses the document's start), then the adapters train on it for TTT_EPOCHS steps.
Adapters and their optimizer are reset at every document. The reported line is final_ttt_lora_exact.
"""

# @build: insert before_main
# -----------------------------
# PER-DOCUMENT LORA TTT
# -----------------------------

BOS_ID = 1
LORA_RANK = int(os.environ.get("LORA_RANK", 4))
LORA_LR = float(os.environ.get("LORA_LR", 1e-2))


class HiddenLoRA(nn.Module):
    def __init__(self, dim: int, r: int, gen: torch.Generator):
        super().__init__()
        self.A = nn.Parameter(torch.randn(dim, r, generator=gen) * 0.02)
        self.B = nn.Parameter(torch.zeros(r, dim))

    def forward(self, h: Tensor) -> Tensor:
        return h + (h @ self.A) @ self.B


def lora_logits(model: GPT, lora: HiddenLoRA, x: Tensor) -> Tensor:
    with torch.no_grad():
        h = model.forward_hidden(x)
    return model.logits_from_hidden(lora(h))


def eval_val_lora(
    args, model: GPT, val_tokens: Tensor, luts, rank: int, world_size: int, device
) -> tuple[float, float]:
    seq_len, total, chunk = args.eval_seq_len, val_tokens.numel() - 1, args.ttt_chunk_tokens
    starts = (val_tokens == BOS_ID).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    bounds = starts[1:] + [val_tokens.numel()]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    tok_count = torch.zeros((), dtype=torch.float64, device=device)
    byte_count = torch.zeros((), dtype=torch.float64, device=device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(args.seed)
    for d, (d0, d1) in enumerate(zip(starts, bounds)):
        if d % world_size != rank:
            continue
        last = min(d1, total)  # this document also predicts the next document's BOS
        lora = HiddenLoRA(args.model_dim, LORA_RANK, gen).to(device)
        opt = torch.optim.Adam(lora.parameters(), lr=LORA_LR)
        for c0 in range(d0 + 1, last + 1, chunk):
            c1 = min(c0 + chunk - 1, last)
            wins = scoring_windows(c0, c1, seq_len, args.eval_stride, floor=d0)
            with torch.no_grad():
                x, y = window_batch(val_tokens, wins, seq_len, device)
                logits = lora_logits(model, lora, x)
                nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1),
                                      reduction="none").reshape(len(wins), seq_len)
                for j, (_, s, wlen) in enumerate(wins):
                    loss_sum += nll[j, s:wlen].to(torch.float64).sum()
                    tok_count += wlen - s
                    byte_count += target_bytes(luts, x[j, s:wlen], y[j, s:wlen]).sum()
            if c1 == last:
                break  # nothing of this document is left to adapt for
            for _ in range(max(args.ttt_epochs, 1)):
                for s in range(c0 - 1, c1, seq_len):
                    e = min(s + seq_len, c1)
                    local = val_tokens[max(s, d0) : e + 1].to(device)
                    logits = lora_logits(model, lora, local[:-1][None])
                    loss = F.cross_entropy(logits[0].float(), local[1:])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    for p in model.parameters():
        p.requires_grad_(True)
    all_reduce_sum(loss_sum, tok_count, byte_count)
    val_loss = (loss_sum / tok_count).item()
    return val_loss, val_loss / math.log(2.0) * (tok_count.item() / byte_count.item())


# @build: replace main
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
    q_loss, q_bpb = eval_val(args, model, val_tokens, luts, rank, world_size, device)
    log0(f"final_int8_zlib_roundtrip val_loss:{q_loss:.4f} val_bpb:{q_bpb:.4f} "
         f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    t0 = time.perf_counter()
    l_loss, l_bpb = eval_val_lora(args, model, val_tokens, luts, rank, world_size, device)
    log0(f"final_ttt_lora val_loss:{l_loss:.4f} val_bpb:{l_bpb:.4f} "
         f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    log0(f"final_ttt_lora_exact val_loss:{l_loss:.8f} val_bpb:{l_bpb:.8f}")
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
