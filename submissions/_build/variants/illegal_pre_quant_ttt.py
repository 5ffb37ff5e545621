# illegal_pre_quant_ttt/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).

# @build: replace docstring
"""Reference submission (illegal: C3 and D1), "pre-quant TTT".

Validation is loaded at startup; after training, the full-precision model is fine-tuned on the whole
validation stream for TTT_EPOCHS epochs, then quantized and written as the artifact, reloaded and
evaluated with sliding windows. Validation shaped the model before the artifact existed (D1) and every
token was trained on before it was scored (C3). The reported line is final_int8_sliding_window_exact.
C1 may show too when the trace follows the fine-tuned weights through the artifact.
"""

# @build: insert before_main
# -----------------------------
# PRE-QUANTIZATION TTT ON VALIDATION
# -----------------------------


def pre_quant_ttt(args, model: GPT, val_tokens: Tensor, device, log0) -> None:
    """Fine-tune the full-precision model on the validation stream before quantizing it."""
    opt = torch.optim.SGD(model.parameters(), lr=args.ttt_lr, momentum=0.9)
    t0 = time.perf_counter()
    ttt_train_span(model, opt, val_tokens, 1, val_tokens.numel() - 1, args.eval_seq_len, args.ttt_batch_seqs,
                   args.ttt_epochs, device)
    log0(f"pre_quant_ttt:epochs:{args.ttt_epochs} time:{1000 * (time.perf_counter() - t0):.0f}ms")


# @build: replace main
def main() -> None:
    code = Path(__file__).read_text(encoding="utf-8")
    args, rank, world_size, device, log0, luts = setup()
    val_tokens = load_validation_tokens(args.val_files, args.train_seq_len)
    log0(f"val_loader:shards pattern={args.val_files} tokens:{val_tokens.numel() - 1}")
    model = GPT(args).to(device)
    log0(f"model_params:{sum(p.numel() for p in model.parameters())}")
    train_model(args, model, rank, world_size, device, log0)
    pre_quant_ttt(args, model, val_tokens, device, log0)
    if rank == 0:
        write_artifact(quantize_state_dict_int8(model.state_dict()), "final_model.int8.ptz", code, log0)
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
