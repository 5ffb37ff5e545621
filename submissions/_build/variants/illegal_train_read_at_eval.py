# illegal_train_read_at_eval/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (illegal: D2 and B4).

A legal sliding-window evaluation, except that at evaluation time (after the artifact is written) the
script reads the first training shard again to build a unigram prior that it mixes into the model's
distribution. The mixture is causal and normalized (C1-C4 hold), but training data is read after the
training budget (D2), which is outside data at evaluation (B4). The reported line is
final_int8_sliding_window_exact.
"""

# @build: insert before_main
# -----------------------------
# UNIGRAM PRIOR FROM THE TRAINING DATA, READ AT EVALUATION TIME
# -----------------------------

PRIOR_WEIGHT = float(os.environ.get("PRIOR_WEIGHT", 0.1))


def unigram_prior(args, device) -> Tensor:
    """Token frequencies of the first training shard (add-one smoothed, sums to 1)."""
    tokens = load_data_shard(sorted(glob.glob(args.train_files))[0])
    counts = np.bincount(tokens, minlength=args.vocab_size)[: args.vocab_size].astype(np.float64) + 1.0
    return torch.tensor(counts / counts.sum(), dtype=torch.float32, device=device)


def eval_val_with_prior(
    args, model: GPT, val_tokens: Tensor, luts, rank: int, world_size: int, device
) -> tuple[float, float]:
    prior = unigram_prior(args, device)
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
            p = (1.0 - PRIOR_WEIGHT) * torch.softmax(model.forward_logits(x).float(), dim=-1) + PRIOR_WEIGHT * prior
            nll = -torch.log(p.gather(-1, y[..., None]).squeeze(-1))
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
    s_loss, s_bpb = eval_val_with_prior(args, model, val_tokens, luts, rank, world_size, device)
    log0(f"final_int8_sliding_window val_loss:{s_loss:.4f} val_bpb:{s_bpb:.4f} stride:{args.eval_stride} "
         f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    log0(f"final_int8_sliding_window_exact val_loss:{s_loss:.8f} val_bpb:{s_bpb:.8f}")
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
