"""Builds a CUDA extension: nothing a CPU shim can run (torch)."""
import torch.utils.cpp_extension as ext

ext.load_inline(name="fused_kernels", cpp_sources="", cuda_sources="__global__ void k() {}")
print("final_x val_loss:1.0 val_bpb:0.5")
