"""Parameter Golf compliance harness."""

__version__ = "0.1.0"
