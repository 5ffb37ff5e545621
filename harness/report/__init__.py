"""Reporting: reads a Report (harness.results) and renders it. Never computes a verdict."""
