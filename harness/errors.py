"""Errors the CLI turns into one clear line and a distinct exit code."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """Process exit codes (documented in README)."""

    COMPLIANT = 0  # legality and budgets passed (WARN allowed); paperwork (S1-S3, B5) never moves the code
    VIOLATION = 1  # a legality rule or a budget FAILED
    INCONCLUSIVE = 2  # no failure, but a legality rule or a budget could not reach a verdict
    BAD_INPUT = 3  # bad input or usage: missing folder/file, malformed JSON, truncated artifact ...
    RUN_FAILED = 4  # the submission's script crashed, hung, was killed, or needs a GPU we cannot shim
    INTERNAL = 5  # a bug in the harness itself


class HarnessError(Exception):
    """An expected failure: shown as one line, mapped to an exit code."""

    exit_code: Exit = Exit.BAD_INPUT

    def __init__(self, message: str, exit_code: Exit | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInput(HarnessError):
    exit_code = Exit.BAD_INPUT


class RunFailed(HarnessError):
    exit_code = Exit.RUN_FAILED
