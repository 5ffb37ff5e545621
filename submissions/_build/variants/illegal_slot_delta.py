# illegal_slot_delta/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (illegal: C1 and C3), "SLOT".

For each batch of sliding windows, a bias over the vocabulary is optimized for SLOT_STEPS Adam steps
against that batch's own targets, and the batch is then scored with the fitted bias. The distribution for
position t depends on token t and on the later targets of its batch (C1), and the state (the bias and its
optimizer) was updated with t before t was scored (C3). The reported line is final_slot_exact.
"""

# @build: insert before_main
# -----------------------------
# SLOT: PER-BATCH LOGIT BIAS OPTIMIZED BEFORE SCORING
# -----------------------------

SLOT_STEPS = int(os.environ.get("SLOT_STEPS", 3))
SLOT_LR = float(os.environ.get("SLOT_LR", 0.05))


def eval_val_slot(
    args, model: GPT, val_tokens: Tensor, luts, rank: int, world_size: int, device
) -> tuple[float, float]:
    seq_len = args.eval_seq_len
    wins = scoring_windows(1, val_tokens.numel() - 1, seq_len, args.eval_stride)[rank::world_size]
    batch = max(args.val_batch_size // seq_len, 1)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    tok_count = torch.zeros((), dtype=torch.float64, device=device)
    byte_count = torch.zeros((), dtype=torch.float64, device=device)
    model.eval()
    for i in range(0, len(wins), batch):
        bw = wins[i : i + batch]
        x, y = window_batch(val_tokens, bw, seq_len, device)
        with torch.no_grad():
            base = model.forward_logits(x).float()
        mask = torch.zeros(len(bw), seq_len, dtype=torch.bool, device=device)
        for j, (_, s, wlen) in enumerate(bw):
            mask[j, s:wlen] = True
        # a per-batch bias over the vocabulary, fitted to this batch's own targets
        delta = torch.zeros(1, 1, base.size(-1), device=device, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=SLOT_LR)
        for _ in range(SLOT_STEPS):
            loss = F.cross_entropy((base + delta)[mask], y[mask])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = base + delta
            nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                  reduction="none").reshape(len(bw), seq_len)
            for j, (_, s, wlen) in enumerate(bw):
                loss_sum += nll[j, s:wlen].to(torch.float64).sum()
                tok_count += wlen - s
                byte_count += target_bytes(luts, x[j, s:wlen], y[j, s:wlen]).sum()
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
    s_loss, s_bpb = eval_val_slot(args, model, val_tokens, luts, rank, world_size, device)
    log0(f"final_slot val_loss:{s_loss:.4f} val_bpb:{s_bpb:.4f} "
         f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    log0(f"final_slot_exact val_loss:{s_loss:.8f} val_bpb:{s_bpb:.8f}")
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
