"""The GitHub Actions workflow the harness ships (`harness workflow` prints it): pgolf-check.yml, package
data beside this file; examples/github/pgolf-check.yml is a copy (a test holds them equal)."""

from __future__ import annotations

from importlib.resources import files

WORKFLOW_NAME = "pgolf-check.yml"


def workflow_text() -> str:
    return files(__name__).joinpath(WORKFLOW_NAME).read_text(encoding="utf-8")
