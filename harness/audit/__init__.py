"""`harness audit`: many submission folders checked as `harness check` would, in parallel child processes,
with a result cache keyed by content and versions, and one summary table.

    discover.py  which folders (a records/ tree, folders, a file listing folders)
    cache.py     content hash, cache key, the atomic result cache
    child.py     one folder's check as a child process (timeout, Ctrl-C)
    rows.py      a report into a summary row; the audit's exit code (SEVERITY)
    run.py       the audit itself (AuditOptions -> AuditResult)
    render.py    console, JSON, Markdown, CSV
"""

from harness.audit.rows import SEVERITY, AuditRow, row_from_report, worst_exit
from harness.audit.run import AuditOptions, AuditResult, audit

__all__ = ["SEVERITY", "AuditOptions", "AuditResult", "AuditRow", "audit", "row_from_report", "worst_exit"]
