"""Collect what a submission folder holds (files, code, artifact, logs) and decide the folder rules."""
