# legal_phased_ttt/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (legal): phased test-time training, modeled on the April phased-TTT records.

Validation documents (BOS to BOS) are scored one document at a time, longest first, so the order of
scoring is scattered over the stream. After PHASED_PREFIX_PERCENT of the documents have been scored,
the whole model takes TTT_EPOCHS passes of SGD on exactly those documents (their tokens concatenated in
the order they were scored, training windows crossing from one document into the next); the remaining
documents are then scored with the adapted model. Every token is scored before any update uses it. The
reported line is final_ttt_phased_exact.
"""

# @build: insert before_main
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
    """What the global phase trains on: the scored documents, in the order they were scored."""
    return torch.cat([val_tokens[docs[i][0] : docs[i][1] + 1] for i in prefix])


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
    p_loss, p_bpb = eval_val_phased(args, model, val_tokens, luts, rank, world_size, device)
    log0(f"final_ttt_phased val_loss:{p_loss:.4f} val_bpb:{p_bpb:.4f} "
         f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    log0(f"final_ttt_phased_exact val_loss:{p_loss:.8f} val_bpb:{p_bpb:.8f}")
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

