# illegal_min_over_passes/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (illegal: C4), the pattern of PR #685 ("multi-pass scoring, min NLL").

Two sliding-window passes with different context lengths each give every token an NLL; the script keeps
each token's minimum over the passes and reports their mean. The score of a token is chosen after seeing
how well each pass predicted the target (C4: no min or best-of over passes). The reported line is
final_multipass_exact.
"""

# @build: insert before_main
# -----------------------------
# MULTI-PASS SCORING (rank 0)
# -----------------------------

def per_token_nll(args, model: GPT, val_tokens: Tensor, device, stride: int, seq_len: int) -> Tensor:
    """NLL of every target position (index = position; index 0 unused) from one sliding-window pass."""
    total = val_tokens.numel() - 1
    out = torch.zeros(total + 1, dtype=torch.float64, device=device)
    wins = scoring_windows(1, total, seq_len, stride)
    batch = max(args.val_batch_size // seq_len, 1)
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(wins), batch):
            bw = wins[i : i + batch]
            x, y = window_batch(val_tokens, bw, seq_len, device)
            logits = model.forward_logits(x)
            nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1),
                                  reduction="none").reshape(len(bw), seq_len)
            for j, (ws, s, wlen) in enumerate(bw):
                out[ws + s + 1 : ws + wlen + 1] = nll[j, s:wlen].to(torch.float64)
    return out


def eval_val_multipass(args, model: GPT, val_tokens: Tensor, luts, device, log0) -> tuple[float, float]:
    """Several passes with different context lengths; keep each token's best (lowest) NLL."""
    passes = [(args.eval_stride, args.eval_seq_len), (max(args.eval_seq_len // 2, 1), args.eval_seq_len // 2 or 1)]
    best = None
    for k, (stride, seq_len) in enumerate(passes):
        nll = per_token_nll(args, model, val_tokens, device, stride, seq_len)
        log0(f"pass:{k + 1}/{len(passes)} stride:{stride} seq_len:{seq_len} mean_nll:{nll[1:].mean().item():.4f}")
        best = nll if best is None else torch.minimum(best, nll)
    nbytes = target_bytes(luts, val_tokens[:-1].to(device), val_tokens[1:].to(device)).sum()
    val_loss = best[1:].mean().item()
    return val_loss, val_loss / math.log(2.0) * ((val_tokens.numel() - 1) / nbytes.item())


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
        m_loss, m_bpb = eval_val_multipass(args, model, val_tokens, luts, device, log0)
        log0(f"final_multipass val_loss:{m_loss:.4f} val_bpb:{m_bpb:.4f} "
             f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
        log0(f"final_multipass_exact val_loss:{m_loss:.8f} val_bpb:{m_bpb:.8f}")
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
