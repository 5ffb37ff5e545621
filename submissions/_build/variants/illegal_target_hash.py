# illegal_target_hash/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (illegal: C1, and C2 by the probe).

A hashed bigram cache whose key is hash(previous token, TARGET token): the cache probability is looked
up only for the true next token and blended into the model's probability of that token. The value used
to score position t depends on token t beyond selecting its probability (C1), and the "distribution" is
never normalized over the vocabulary (C2: summed over candidate targets it far exceeds 1). Counts are
added after scoring, so C3 holds. The reported line is final_ngram_exact.
"""

# @build: insert before_main
# -----------------------------
# HASHED N-GRAM CACHE (single rank, sequential)
# -----------------------------

NGRAM_BUCKETS = int(os.environ.get("NGRAM_BUCKETS", 1 << 16))
NGRAM_WEIGHT = float(os.environ.get("NGRAM_WEIGHT", 0.3))


def eval_val_ngram(args, model: GPT, val_tokens: Tensor, luts, device) -> tuple[float, float]:
    seq_len = args.eval_seq_len
    pair_counts = torch.zeros(NGRAM_BUCKETS, dtype=torch.float32, device=device)  # hash(prev, next) -> count
    ctx_counts = torch.zeros(args.vocab_size, dtype=torch.float32, device=device)  # prev -> count
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
                p_model = lp.gather(-1, tgt[:, None]).squeeze(-1).exp()
                key = (prev * 1_000_003 + tgt) % NGRAM_BUCKETS  # the key holds the target token
                p_ngram = (pair_counts[key] + 0.5) / (ctx_counts[prev] + 1.0)  # only for the target
                nll = -torch.log((1.0 - NGRAM_WEIGHT) * p_model + NGRAM_WEIGHT * p_ngram)
                loss_sum += nll.to(torch.float64).sum()
                tok_count += wlen - s
                byte_count += target_bytes(luts, prev, tgt).sum()
            for j, (_, s, wlen) in enumerate(bw):
                prev, tgt = x[j, s:wlen], y[j, s:wlen]
                ones = torch.ones(wlen - s, device=device)
                pair_counts.index_put_(((prev * 1_000_003 + tgt) % NGRAM_BUCKETS,), ones, accumulate=True)
                ctx_counts.index_put_((prev,), ones, accumulate=True)
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
