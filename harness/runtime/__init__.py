"""Code that runs inside the submission's process (every rank), injected before its first line.

Kept apart from the parent side (harness.run): nothing here may assume the harness CLI is running.
"""
