"""Run one script under the CPU shim alone: no runner, sandbox, io hooks or tracer.

    python -m harness.runtime.shim [--ledger DIR] [--keep-bf16] SCRIPT [ARGS...]

For debugging the shim and for its tests. Settings come from HARNESS_RUNTIME when set (as in a real run),
else from the options (ledger events go to DIR, default a fresh temporary folder). The script runs as
`python SCRIPT` would: as __main__, with sys.argv = [SCRIPT, ARGS...] and its folder first on sys.path.
Works under torchrun too: `python -m torch.distributed.run ... -m harness.runtime.shim SCRIPT`.
"""

from __future__ import annotations

import runpy
import sys
import tempfile
import time
from pathlib import Path

from harness.runtime import context
from harness.runtime.context import RuntimeSettings
from harness.runtime.shim import install

USAGE = "usage: python -m harness.runtime.shim [--ledger DIR] [--keep-bf16] SCRIPT [ARGS...]"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ledger: str | None = None
    keep_bf16 = False
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--ledger" and args:
            ledger = args.pop(0)
        elif opt == "--keep-bf16":
            keep_bf16 = True
        else:
            sys.stderr.write(f"harness: shim: unknown option {opt}\n{USAGE}\n")
            return 3
    if not args:
        sys.stderr.write(f"{USAGE}\n")
        return 3
    script = Path(args[0]).resolve()
    if not script.is_file():
        sys.stderr.write(f"harness: shim: no such script: {args[0]}\n")
        return 3
    settings = RuntimeSettings.from_env()
    if settings is None:
        settings = RuntimeSettings(
            ledger_dir=ledger or tempfile.mkdtemp(prefix="harness-shim-ledger-"),
            t0=time.time(),
            device="cpu",
            bf16_as_fp32=not keep_bf16,
            submission_dir=str(script.parent),
        )
    install(context.init(settings))
    sys.argv = [str(script), *args[1:]]
    sys.path.insert(0, str(script.parent))
    runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
