# illegal_last_epoch_scores/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (illegal: C3; also a C4 pattern: "the last epoch's score").

Chunked score-first TTT, but repeated TTT_EPOCHS times over the whole stream (TTT_EPOCHS >= 2, set in
expected.toml): each epoch scores every chunk and then trains on it, and the reported score is the last
epoch's. From the second epoch on, each chunk is scored after the model already trained on it in the
epochs before (C3); the choice of which epoch to report is made after seeing the scores (C4).
The reported line is legal_ttt_exact (the tag claims what the code does not do).
C1 may show too: the weights that score a chunk in a later epoch were trained on that chunk.
"""

# @build: insert before_main
# -----------------------------
# SCORE-FIRST TTT
# -----------------------------


def eval_val_ttt(args, model: GPT, val_tokens: Tensor, luts, rank: int, world_size: int, device,
                 log0) -> tuple[float, float]:
    """Score-first TTT repeated for TTT_EPOCHS passes over all chunks; the last pass's scores are kept."""
    seq_len, total, chunk = args.eval_seq_len, val_tokens.numel() - 1, args.ttt_chunk_tokens
    batch = max(args.val_batch_size // seq_len, 1)
    opt = torch.optim.SGD(model.parameters(), lr=args.ttt_lr, momentum=0.9)
    for epoch in range(max(args.ttt_epochs, 1)):
        val_loss, val_bpb = ttt_epoch(args, model, opt, val_tokens, luts, rank, world_size, device, total, chunk,
                                      seq_len, batch)
        log0(f"ttt_epoch:{epoch + 1}/{args.ttt_epochs} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f}")
    return val_loss, val_bpb  # the last epoch's: every chunk was already trained on in the epochs before


def ttt_epoch(args, model, opt, val_tokens, luts, rank, world_size, device, total, chunk, seq_len, batch):
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    tok_count = torch.zeros((), dtype=torch.float64, device=device)
    byte_count = torch.zeros((), dtype=torch.float64, device=device)
    for c0 in range(1, total + 1, chunk):
        c1 = min(c0 + chunk - 1, total)
        # 1. score the chunk (no state change)
        wins = scoring_windows(c0, c1, seq_len, args.eval_stride)[rank::world_size]
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
        # 2. then train on the tokens just scored
        if c1 < total:
            if world_size > 1:
                dist.barrier()  # every rank has scored the chunk before anyone trains on it
            ttt_train_span(model, opt, val_tokens, c0, c1, seq_len, args.ttt_batch_seqs, 1, device)
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
    t_loss, t_bpb = eval_val_ttt(args, model, val_tokens, luts, rank, world_size, device, log0)
    log0(f"legal_ttt val_loss:{t_loss:.4f} val_bpb:{t_bpb:.4f} "
         f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    log0(f"legal_ttt_exact val_loss:{t_loss:.8f} val_bpb:{t_bpb:.8f}")
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
