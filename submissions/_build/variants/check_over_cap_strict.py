# check_over_cap_strict/train_gpt.py: ../base.py with these parts (python submissions/_build/build.py).
# The compliant script plus an import of tokenizer_helpers.py, shipped beside it: counted in the code size
# under the strict reading, not as practised.

# @build: insert imports
import tokenizer_helpers  # noqa: F401
