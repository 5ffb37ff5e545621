"""The `harness` command: check, run, verdict, probe, data, rules. The one command layer: it parses the
command line (parser), reads it once into typed options (options) and composes the libraries below
(commands); nothing below it sees argparse.

Every expected failure becomes one line on stderr and a distinct exit code (harness.errors.Exit);
a traceback is shown only for a harness bug (exit 5), and only with --debug.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from harness import progress
from harness.cli.parser import build_parser
from harness.errors import Exit, HarnessError


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress.configure(quiet=args.quiet)
    try:
        from harness.cli.commands import COMMANDS
        from harness.cli.options import options_from
        from harness.config import load_config

        cfg = load_config(args.config)
        return int(COMMANDS[args.command](options_from(args, cfg), cfg))
    except HarnessError as e:
        sys.stderr.write(f"harness: {e}\n")
        return int(e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("harness: interrupted\n")
        return int(Exit.INTERNAL)
    except Exception as e:  # a harness bug: still one line unless --debug
        if args.debug:
            raise
        sys.stderr.write(f"harness: internal error: {type(e).__name__}: {e} (rerun with --debug)\n")
        return int(Exit.INTERNAL)
    finally:
        progress.close()  # a step left open by an error must not outlive the command


__all__ = ["build_parser", "main"]
