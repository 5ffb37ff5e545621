"""Reporting: reads a Report (harness.results) and renders it. Never computes a verdict.

build (the one factory and writer: new_report, finalize, write_outputs), console, json_report, markdown,
timeline.
"""
