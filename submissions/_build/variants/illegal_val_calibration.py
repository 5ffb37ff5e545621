# illegal_val_calibration/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (illegal: D1; C3 too).

Validation is loaded at startup. After training, activation-aware int8 quantization is calibrated on the
first CALIB_SEQS validation sequences: forward pre-hooks keep each linear layer's per-channel activation
maximum in an observer buffer, and those maxima scale the weight columns before rounding. The artifact
then depends on validation tokens (D1: validation used to calibrate quantization), and those tokens
shaped the model state before they were scored (C3). The reported line is final_int8_sliding_window_exact.
C1 may show too if the trace follows the calibration scales through the artifact.
"""

# @build: insert before_main
# -----------------------------
# ACTIVATION-AWARE QUANTIZATION, CALIBRATED ON VALIDATION
# -----------------------------

CALIB_SEQS = int(os.environ.get("CALIB_SEQS", 16))


def calibrate(args, model: GPT, val_tokens: Tensor, device) -> dict[str, Tensor]:
    """Per-input-channel activation maxima of every linear layer, measured on validation sequences and
    kept in observer buffers; returns column scales for the int8 export."""
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}

    def observe(mod: nn.Linear, inp: tuple[Tensor, ...]) -> None:
        mod.act_absmax.copy_(torch.maximum(mod.act_absmax, inp[0].detach().abs().amax(dim=(0, 1))))

    hooks = []
    for m in linears.values():
        m.register_buffer("act_absmax", torch.zeros(m.in_features, device=device), persistent=False)
        hooks.append(m.register_forward_pre_hook(observe))
    seq_len = args.train_seq_len
    n = min(CALIB_SEQS, (val_tokens.numel() - 1) // seq_len)
    model.eval()
    with torch.no_grad():
        model.forward_logits(val_tokens[: n * seq_len].to(device).reshape(n, seq_len))
    for h in hooks:
        h.remove()
    scales = {}
    for name, m in linears.items():
        s = m.act_absmax.clamp_min(1e-5).sqrt()
        scales[f"{name}.weight"] = (s / s.mean()).cpu()
    return scales


# @build: replace main
def main() -> None:
    code = Path(__file__).read_text(encoding="utf-8")
    args, rank, world_size, device, log0, luts = setup()
    val_tokens = load_validation_tokens(args.val_files, args.train_seq_len)
    log0(f"val_loader:shards pattern={args.val_files} tokens:{val_tokens.numel() - 1}")
    model = GPT(args).to(device)
    log0(f"model_params:{sum(p.numel() for p in model.parameters())}")
    train_model(args, model, rank, world_size, device, log0)
    col_scales = calibrate(args, model, val_tokens, device)
    log0(f"calibration:layers:{len(col_scales)} seqs:{CALIB_SEQS}")
    if rank == 0:
        write_artifact(quantize_state_dict_int8(model.state_dict(), col_scales), "final_model.int8.ptz", code, log0)
    if world_size > 1:
        dist.barrier()
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
