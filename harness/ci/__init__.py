"""`harness ci`: the GitHub workflow's steps as commands (no logic hidden in YAML).

    changed.py   changed-folders: the submission folders a pull request's diff touches -> a JSON matrix
    comment.py   comment: one Markdown PR comment from the per-folder check reports (hidden marker
                 MARKER, so the workflow updates its one comment instead of adding another)
"""

from harness.ci.changed import changed_folders, matrix
from harness.ci.comment import MARKER, build_comment

__all__ = ["MARKER", "build_comment", "changed_folders", "matrix"]
