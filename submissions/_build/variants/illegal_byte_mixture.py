# illegal_byte_mixture/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (illegal: C2).

A byte-level model mixed into the token distribution, the way byte PPM / byte n-gram mixtures did: each
token's probability under the byte model is the product of its bytes' probabilities (a unigram over the
bytes of targets already scored), looked up for every token of the vocabulary before the target is seen
and mixed with the model's softmax. Causal (C1: the table is fixed before the target), counts added only
after a window is scored (C3), one pass (C4). But a product of byte probabilities is normalized over
byte strings, not over the token vocabulary: summed over the vocabulary the mixture is well above 1
(single-byte tokens already sum to about 1, every merged token adds more), so the score is not
-log p of a distribution (C2). The reported line is final_bytemix_exact.
"""

# @build: insert before_main
# -----------------------------
# BYTE-MODEL MIXTURE (single rank, sequential)
# -----------------------------

BYTEMIX_WEIGHT = float(os.environ.get("BYTEMIX_WEIGHT", 0.5))


def token_byte_matrix(tokenizer_path: str, vocab: int, device) -> Tensor:
    """[vocab, 256] counts of each byte value in each token's text (a leading-space marker is a space)."""
    sp = spm.SentencePieceProcessor(model_file=tokenizer_path)
    m = torch.zeros(vocab, 256, dtype=torch.float32)
    for i in range(int(sp.vocab_size())):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        piece = sp.id_to_piece(i)
        if sp.is_byte(i):
            m[i, int(piece[3:5], 16)] += 1.0
            continue
        for b in piece.replace("\u2581", " ").encode("utf-8"):
            m[i, b] += 1.0
    return m.to(device)


def eval_val_bytemix(args, model: GPT, val_tokens: Tensor, luts, device) -> tuple[float, float]:
    seq_len = args.eval_seq_len
    bytes_of = token_byte_matrix(args.tokenizer_path, args.vocab_size, device)
    byte_counts = torch.ones(256, dtype=torch.float32, device=device)  # add-one over scored targets' bytes
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
            # every token's byte-model probability, fixed before any target of this batch is looked at
            log_pb = torch.log(byte_counts / byte_counts.sum())
            p_bytes = torch.exp(bytes_of @ log_pb)  # [vocab]: a product over each token's bytes
            for j, (_, s, wlen) in enumerate(bw):
                prev, tgt, lp = x[j, s:wlen], y[j, s:wlen], logp[j, s:wlen]
                p_mix = (1.0 - BYTEMIX_WEIGHT) * lp.exp() + BYTEMIX_WEIGHT * p_bytes[None, :]
                nll = -torch.log(p_mix.gather(-1, tgt[:, None]).squeeze(-1))
                loss_sum += nll.to(torch.float64).sum()
                tok_count += wlen - s
                byte_count += target_bytes(luts, prev, tgt).sum()
            # the batch's targets are scored: now their bytes may enter the byte model
            for j, (_, s, wlen) in enumerate(bw):
                byte_counts += bytes_of[y[j, s:wlen]].sum(dim=0)
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
        b_loss, b_bpb = eval_val_bytemix(args, model, val_tokens, luts, device)
        log0(f"final_bytemix val_loss:{b_loss:.4f} val_bpb:{b_bpb:.4f} "
             f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
        log0(f"final_bytemix_exact val_loss:{b_loss:.8f} val_bpb:{b_bpb:.8f}")
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
