"""The check stage: collect what a submission folder holds (files, code, artifact, logs) and decide the
folder rules. A library: harness.check.folder.check_folder(path, cfg, CheckOptions(...)) -> CheckedFolder
(rows, hints, sections, notes, input errors); the command layer (harness.cli) turns it into a report.

Rooms: submission, unwrap, artifact, logs, accounting, significance, hints (what is collected and how);
collect (gathering it), decide (the rules), folder (putting it together), options (CheckOptions).
"""
