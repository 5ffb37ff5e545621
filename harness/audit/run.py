"""`harness audit`: many folders, each checked as `harness check` would, --jobs at a time, cached.

Flow: find the folders -> key each (content hash, versions, settings, flags) -> a cached result is read,
the rest run as child processes (harness.audit.child) from a thread pool; each finished result goes into
the cache at once -> one row per folder (harness.audit.rows) -> the audit's exit code.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__, progress
from harness.audit.cache import DEFAULT_DIR, ResultCache, cache_key, folder_digest
from harness.audit.child import ChildResult, check_flags, run_check
from harness.audit.discover import find_folders
from harness.audit.rows import VERDICT_WORD, AuditRow, row_from_report, row_without_report, worst_exit
from harness.check.options import CheckOptions
from harness.config import Config
from harness.errors import BadInput, Exit, HarnessError
from harness.rules import ruleset_version
from harness.run.options import RunOptions

STATIC_TIMEOUT_S = 600.0
RUN_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class AuditOptions:
    paths: tuple[str, ...]
    jobs: int | None = None  # None: the cores
    cache_dir: str | None = None  # None: ./.harness-audit-cache
    use_cache: bool = True  # False: check every folder again (results are still written)
    folder_timeout: float | None = None  # None: STATIC_TIMEOUT_S, RUN_TIMEOUT_S with a run
    check: CheckOptions = field(default_factory=CheckOptions)
    run: RunOptions | None = None  # with --run: each folder's run (its out_dir is a root: one folder each)
    probes: str = "default"  # with a run: default (cheap), full, none
    config: str | None = None  # --config, passed on to every child
    csv: str | None = None  # the summary as CSV (JSON and Markdown: the command's usual --json/--markdown)


@dataclass
class AuditResult:
    rows: list[AuditRow]
    exit_code: int
    flags: list[str]
    ruleset_version: str
    cache_dir: str
    wall_s: float
    created: str

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
        return {"audit_format": 1, "harness_version": __version__, "ruleset_version": self.ruleset_version,
                "created": self.created, "flags": self.flags, "exit_code": self.exit_code,
                "exit_order": [1, 5, 4, 3, 2, 0], "folders": len(self.rows), "counts": counts,
                "cached": sum(r.cached for r in self.rows), "wall_s": round(self.wall_s, 2),
                "cache_dir": self.cache_dir, "rows": [r.to_dict() for r in self.rows]}


def _slug(folder: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(folder).strip("/.")).strip("_")[-120:] or "folder"


def _row(folder: Path, res: ChildResult, with_run: bool, timeout: float) -> AuditRow:
    if res.timed_out:
        code = Exit.RUN_FAILED if with_run else Exit.INTERNAL
        return row_without_report(str(folder), code, "TIMEOUT",
                                  f"no result after {timeout:.0f} s (--folder-timeout); killed", res.seconds)
    code = res.exit_code if res.exit_code >= 0 else int(Exit.INTERNAL)  # killed by a signal (memory?)
    if res.report is not None:
        return row_from_report(str(folder), res.report, code, res.seconds)
    why = res.why() if res.exit_code >= 0 else f"killed by signal {-res.exit_code}: {res.why()}"
    return row_without_report(str(folder), code, VERDICT_WORD.get(code, f"EXIT {code}"), why, res.seconds)


def _cacheable(res: ChildResult, row: AuditRow) -> bool:
    """Timeouts, signals and harness errors may be the machine's, not the folder's: tried again next time."""
    return not (res.timed_out or res.stopped or res.exit_code < 0 or row.exit_code == Exit.INTERNAL)


def _sigterm_as_interrupt() -> Callable[[], None]:
    """SIGTERM raises KeyboardInterrupt in the main thread while the audit waits; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, old)


def audit(opts: AuditOptions, cfg: Config, *, command_for: Callable[[Path, Path], list[str]] | None = None
          ) -> AuditResult:
    """Audit the folders of `opts.paths`. `command_for(folder, report_path)` replaces the child's command
    line (tests). Ctrl-C stops the children and raises HarnessError; finished folders stay cached."""
    t0 = time.monotonic()
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    folders = find_folders(opts.paths)
    flags = check_flags(opts.check, opts.run, opts.probes)
    ruleset = ruleset_version(cfg.get("harness", "rules_dir"))
    cache = ResultCache(Path(opts.cache_dir or DEFAULT_DIR))
    timeout = float(opts.folder_timeout or (RUN_TIMEOUT_S if opts.run is not None else STATIC_TIMEOUT_S))
    if opts.jobs is not None and opts.jobs < 1:
        raise BadInput(f"--jobs must be at least 1, got {opts.jobs}")
    jobs = opts.jobs or os.cpu_count() or 1
    out_root = opts.run.out_dir if opts.run is not None else None

    rows: dict[int, AuditRow] = {}
    keys: dict[int, str] = {}
    todo: list[int] = []
    for i, folder in enumerate(folders):
        keys[i] = cache_key(folder_digest(folder), __version__, ruleset, cfg.raw, flags)
        entry = cache.get(keys[i]) if opts.use_cache else None
        if entry is not None:
            row = AuditRow.from_dict(entry["row"])
            row.folder, row.cached = str(folder), True
            rows[i] = row
        else:
            todo.append(i)

    stop = threading.Event()

    def one(i: int) -> AuditRow:
        try:
            return check_one(i)
        except Exception as e:  # noqa: BLE001 - one folder's trouble never stops the others
            return row_without_report(str(folders[i]), Exit.INTERNAL, VERDICT_WORD[Exit.INTERNAL],
                                      f"audit error: {type(e).__name__}: {e}", 0.0)

    def check_one(i: int) -> AuditRow:
        folder = folders[i]
        report_path = cache.root / "work" / f"{keys[i]}.{os.getpid()}.json"
        out_dir = str(Path(out_root) / _slug(folder)) if out_root else None
        cmd = command_for(folder, report_path) if command_for is not None else None
        res = run_check(folder, flags, report_path, timeout=timeout, stop=stop, config=opts.config,
                        out_dir=out_dir, command=cmd)
        row = _row(folder, res, opts.run is not None, timeout)
        if _cacheable(res, row):  # at once: an interrupted audit keeps every finished folder
            cache.put(keys[i], {"folder": str(folder), "row": row.to_dict(), "report": res.report,
                                "stderr_tail": res.stderr_tail[-2000:], "created": created, "flags": flags})
        return row

    n, finished = len(folders), len(rows)
    label = f"audit: {len(rows)} cached, checking {len(todo)} folder(s), {jobs} at a time"
    progress.show("audit", label, completed=finished, total=n)
    restore = _sigterm_as_interrupt()  # `kill PID` stops an audit as cleanly as Ctrl-C
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="audit")
    futures: dict[Future[AuditRow], int] = {pool.submit(one, i): i for i in todo}
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in done:
                rows[futures[fut]] = fut.result()
                finished += 1
            progress.show("audit", label, completed=finished, total=n)
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise HarnessError(f"audit interrupted: {finished} of {n} folder(s) finished, their results cached in "
                           f"{cache.root}; run the same audit again to complete the rest", Exit.INTERNAL) from None
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        progress.done("audit")
        restore()
    try:
        (cache.root / "work").rmdir()  # the children's report files, each moved into the cache or removed
    except OSError:
        pass
    ordered = [rows[i] for i in range(n)]
    return AuditResult(ordered, worst_exit(r.exit_code for r in ordered), flags, ruleset, str(cache.root),
                       time.monotonic() - t0, created)
