"""Crashes with an exception during 'training'."""
from _shards import train_tokens


def step(n):
    if n == 3:
        raise ValueError(f"boom at step {n}")


train_tokens()
for n in range(5):
    step(n)
