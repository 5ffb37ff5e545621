"""harness.run.requirements: the packages a folder declares, matched to a missing import."""

from __future__ import annotations

from pathlib import Path

from harness.run.requirements import declared, missing_module, missing_package_line, providers

TRACEBACK = """Traceback (most recent call last):
  File "/w/train_gpt.py", line 60, in <module>
    from architectures import HybridGDN
ModuleNotFoundError: No module named 'fla.layers'
"""


def test_missing_module_is_the_top_level_package() -> None:
    assert missing_module(TRACEBACK) == "fla"
    assert missing_module("ValueError: boom") is None


def test_declared_reads_requirements_readme_and_scripts(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("torch>=2.4\n\n# comment\n-r other.txt\nbrotli==1.1.0 ; python_version>'3'\n")
    (tmp_path / "README.md").write_text("Setup:\n\n```\npip install flash-linear-attention==0.4.2 fla-core "
                                        "sentencepiece -q  # kernels\n```\n")
    (tmp_path / "run.sh").write_text("#!/bin/sh\npip3 install --upgrade mamba-ssm && torchrun train_gpt.py\n")
    (tmp_path / "train_gpt.py").write_text("pip install notread\n")  # only text files are read
    got = {(r.spec, r.where) for r in declared(tmp_path)}
    assert got == {
        ("torch>=2.4", "requirements.txt:1"), ("brotli==1.1.0", "requirements.txt:5"),
        ("flash-linear-attention==0.4.2", "README.md:4"), ("fla-core", "README.md:4"),
        ("sentencepiece", "README.md:4"), ("mamba-ssm", "run.sh:2"),
    }


def test_providers_use_names_and_the_import_map(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("flash-linear-attention\nfla_core==0.4.2\nPyYAML\nzstandard\n")
    reqs = declared(tmp_path)
    assert [r.spec for r in providers("fla", reqs)] == ["flash-linear-attention", "fla_core==0.4.2"]
    assert [r.spec for r in providers("yaml", reqs)] == ["PyYAML"]
    assert providers("brotli", reqs) == []


def test_line_with_and_without_a_declaration(tmp_path: Path) -> None:
    assert missing_package_line("ValueError: x", tmp_path) is None
    line = missing_package_line(TRACEBACK, tmp_path)
    assert line is not None and "does not say which distribution" in line
    (tmp_path / "requirements.txt").write_text("flash-linear-attention==0.4.2\n")
    line = missing_package_line(TRACEBACK, tmp_path)
    assert line == ("needs package 'fla', not installed for the run's interpreter; the folder asks for "
                    "flash-linear-attention==0.4.2 (requirements.txt:1): install it there, or pass --python an "
                    "interpreter that has it")
