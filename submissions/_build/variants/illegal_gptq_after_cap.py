# illegal_gptq_after_cap/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (illegal: B2, training data read after the training budget).

Training runs until its wall-clock cap (at tiny scale: ITERATIONS); only then does a GPTQ-style
calibration open the training shards again and collect per-layer input second moments (a Hessian
proxy) on CALIB_BATCHES training sequences, before the artifact is written. Those reads happen after
the script's own training clock stopped, so the train_time its log states (at the cap, see
train_seed1337.log) does not count them: training time past the 600 s budget (B2). No validation is
touched, and the artifact is written before any evaluation.
"""

# @build: insert before_main
# -----------------------------
# GPTQ-STYLE CALIBRATION ON TRAINING DATA, AFTER THE LOOP
# -----------------------------

CALIB_BATCHES = int(os.environ.get("CALIB_BATCHES", 4))


def collect_hessians(args, model: GPT, device) -> dict[str, Tensor]:
    """Per-layer input second moments on training sequences (a fresh reader of the training shards)."""
    stream = TokenStream(args.train_files)
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    hess = {name: torch.zeros(m.in_features, device=device) for name, m in linears.items()}

    def hook(name: str):
        def observe(mod: nn.Linear, inp: tuple[Tensor, ...]) -> None:
            hess[name].add_(inp[0].detach().float().pow(2).mean(dim=(0, 1)))
        return observe

    hooks = [m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]
    model.eval()
    with torch.no_grad():
        for _ in range(CALIB_BATCHES):
            x = stream.take(args.train_seq_len).to(device).reshape(1, args.train_seq_len)
            model.forward_logits(x)
    for h in hooks:
        h.remove()
    return {f"{n}.weight": (h.clamp_min(1e-8).sqrt() / h.clamp_min(1e-8).sqrt().mean()).cpu() for n, h in hess.items()}


# @build: replace main
def main() -> None:
    code = Path(__file__).read_text(encoding="utf-8")
    args, rank, world_size, device, log0, luts = setup()
    model = GPT(args).to(device)
    log0(f"model_params:{sum(p.numel() for p in model.parameters())}")
    train_model(args, model, rank, world_size, device, log0)
    t0 = time.perf_counter()
    log0(f"gptq:calibrating with {CALIB_BATCHES} batches (training data)...")
    col_scales = collect_hessians(args, model, device)
    log0(f"gptq:calibrated {len(col_scales)} layers in {time.perf_counter() - t0:.1f}s")
    if rank == 0:
        write_artifact(quantize_state_dict_int8(model.state_dict(), col_scales), "final_model.int8.ptz", code, log0)
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
    s_loss, s_bpb = eval_val_sliding(args, model, val_tokens, luts, rank, world_size, device)
    log0(f"final_int8_sliding_window val_loss:{s_loss:.4f} val_bpb:{s_bpb:.4f} stride:{args.eval_stride} "
         f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    log0(f"final_int8_sliding_window_exact val_loss:{s_loss:.8f} val_bpb:{s_bpb:.8f}")
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
