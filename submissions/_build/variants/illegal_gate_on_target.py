# illegal_gate_on_target/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (illegal: C1).

The normalized bigram cache of legal_ngram_cache, but the mixing weight is chosen per token by whether
the cache gives the TRUE next token a higher probability than the model does (weight NGRAM_MAX_WEIGHT if
it does, 0 otherwise). The mixture is a proper distribution, but which one is used depends on the target
(C1: target-aware gating). The reported line is final_ngram_exact.
"""

# @build: insert before_main
# -----------------------------
# N-GRAM CACHE EVALUATION (single rank, sequential)
# -----------------------------

NGRAM_ALPHA = float(os.environ.get("NGRAM_ALPHA", 0.1))
NGRAM_MAX_WEIGHT = float(os.environ.get("NGRAM_MAX_WEIGHT", 0.4))


def eval_val_ngram(args, model: GPT, val_tokens: Tensor, luts, device) -> tuple[float, float]:
    seq_len, vocab = args.eval_seq_len, args.vocab_size
    counts = torch.zeros(vocab, vocab, dtype=torch.float32, device=device)  # counts[prev, next] of scored pairs
    wins = scoring_windows(1, val_tokens.numel() - 1, seq_len, args.eval_stride)
    batch = max(args.val_batch_size // seq_len, 1)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    tok_count = torch.zeros((), dtype=torch.float64, device=device)
    byte_count = torch.zeros((), dtype=torch.float64, device=device)
    model.eval()
    with torch.no_grad():
        for i in range(0, len(wins), batch):
            bw = wins[i : i + batch]
            x, y = window_batch(val_tokens, bw, seq_len, device)
            logp = F.log_softmax(model.forward_logits(x).float(), dim=-1)
            for j, (_, s, wlen) in enumerate(bw):
                prev, tgt, lp = x[j, s:wlen], y[j, s:wlen], logp[j, s:wlen]
                p_model = lp.exp()
                row = counts[prev]
                p_cache = (row + NGRAM_ALPHA) / (row.sum(dim=-1, keepdim=True) + NGRAM_ALPHA * vocab)
                # trust the cache where it beats the model on the true next token
                cache_wins = p_cache.gather(-1, tgt[:, None]) > p_model.gather(-1, tgt[:, None])
                lam = torch.where(cache_wins, NGRAM_MAX_WEIGHT, 0.0)
                p_mix = (1.0 - lam) * p_model + lam * p_cache
                nll = -torch.log(p_mix.gather(-1, tgt[:, None]).squeeze(-1))
                loss_sum += nll.to(torch.float64).sum()
                tok_count += wlen - s
                byte_count += target_bytes(luts, prev, tgt).sum()
            # the window's targets are scored: now they may enter the cache
            for j, (_, s, wlen) in enumerate(bw):
                counts.index_put_((x[j, s:wlen], y[j, s:wlen]), torch.ones(wlen - s, device=device), accumulate=True)
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
    if rank == 0:
        t0 = time.perf_counter()
        n_loss, n_bpb = eval_val_ngram(args, model, val_tokens, luts, device)
        log0(f"final_ngram val_loss:{n_loss:.4f} val_bpb:{n_bpb:.4f} "
             f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
        log0(f"final_ngram_exact val_loss:{n_loss:.8f} val_bpb:{n_bpb:.8f}")
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
