"""Offline stand-ins for hub clients that records import only to fetch their data.

The folder (not this package) goes at the END of the child's sys.path, so an installed package always wins.
A record such as `from huggingface_hub import snapshot_download` at the top of its data setup otherwise
ends the run with ModuleNotFoundError although the harness has already served the data it would fetch.
A call is what the real client would do on the network: it is recorded as a refused network attempt (D3
evidence) and raises OSError, as the real client does when offline.
"""
