"""Allocates far more than the memory limit."""
import numpy as np

blocks = [np.ones(64 * 1024 * 1024, dtype=np.uint8) for _ in range(64)]  # 4 GiB
print(len(blocks))
