"""Injected first on the child's PYTHONPATH by `harness run`: starts the harness runtime.

Python imports `sitecustomize` at startup, before the submission's first line. This file only hands
over to harness.runtime.bootstrap, then runs any other sitecustomize it shadows. It must never stop
the script from starting: a failure here is one line on stderr (the parent notices the missing
runtime events and reports the run as untraced).
"""

import os
import sys


def _start() -> None:
    if not os.environ.get("HARNESS_RUNTIME"):
        return
    try:
        from harness.runtime import bootstrap

        bootstrap.main()
    except Exception as e:  # noqa: BLE001 - never block the script's start
        sys.stderr.write(f"harness runtime: bootstrap failed: {type(e).__name__}: {e}\n")


def _chain() -> None:
    # Run the sitecustomize this one shadows (site-packages may ship one), once.
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == here:
            continue
        cand = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(cand):
            try:
                import importlib.util

                spec = importlib.util.spec_from_file_location("_harness_chained_sitecustomize", cand)
                if spec is not None and spec.loader is not None:
                    mod = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(mod)
            except Exception as e:  # noqa: BLE001
                sys.stderr.write(f"harness runtime: chained sitecustomize failed: {e}\n")
            return


_start()
_chain()
