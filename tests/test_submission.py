"""harness.check.submission: which code files a record needs, what strict accounting cannot see, and claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import BadInput
from harness.check.submission import code_files, parse_claims, unaccounted_code

# A script for Python >= 3.12 (PEP 701 f-string reusing its quote), as unwrapped April records are: it
# must not hide the helper module it imports from the strict count under Python 3.11.
_PY312_SCRIPT = '''import os, torch
from flash_attn_interface import flash_attn_func
cats = {"a": ["x", "y"]}
for cat in sorted(cats): print(f"  {cat}: {", ".join(sorted(cats[cat]))}")
def run(h):
    if h.tilt:
        from tilt_helper import TiltState
        return TiltState(os.path.join(os.path.dirname(__file__), "tilt_kernel.cpp"))
'''


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path / "train_gpt.py"


def test_helper_imported_by_a_py312_only_script_counts_in_strict(tmp_path):
    script = _folder(tmp_path, {"train_gpt.py": _PY312_SCRIPT, "tilt_helper.py": "class TiltState: pass\n",
                                "tilt_kernel.cpp": "int f() { return 1; }\n"})
    files = {f.path.name: f for f in code_files(script, script.read_text())}
    assert set(files) == {"train_gpt.py", "tilt_helper.py", "tilt_kernel.cpp"}
    assert files["tilt_helper.py"].bytes == (tmp_path / "tilt_helper.py").stat().st_size
    assert "imported by" in files["tilt_helper.py"].why and "loaded by" in files["tilt_kernel.cpp"].why


def test_missing_helper_module_and_unreferenced_kernel_are_reported(tmp_path):
    # the shape of a copy that lacks the Python wrapper: the kernel it would load sits unreferenced
    script = _folder(tmp_path, {"train_gpt.py": _PY312_SCRIPT.replace('"tilt_kernel.cpp"', "KERNEL"),
                                "tilt_kernel.cpp": "int f() { return 1; }\n" * 10,
                                "notes/readable_copy.py": "x = 1\n", "README.md": "# r\n"})
    counted = code_files(script, script.read_text())
    assert [f.path.name for f in counted] == ["train_gpt.py"]
    u = unaccounted_code(script, script.read_text(), counted)
    # os (stdlib), torch and flash_attn_interface (environment packages) are not local helpers
    assert u.missing_modules == ["tilt_helper"]
    assert sorted(f.path.name for f in u.unreferenced) == ["readable_copy.py", "tilt_kernel.cpp"]
    assert u.unreferenced_bytes == 220 + 6
    assert all("not named" in f.why for f in u.unreferenced)


def test_readable_copy_of_a_wrapped_script_is_listed_apart(tmp_path):
    # records ship train_gpt_human.py beside the lzma wrapper: a copy, not code the wrapper runs
    script = _folder(tmp_path, {"train_gpt.py": "import torch\n", "train_gpt_human.py": "import torch\n" * 50,
                                "train_gpt_utils.py": "u = 1\n", "run.sh": "torchrun train_gpt.py\n"})
    u = unaccounted_code(script, "import torch\nimport train_gpt_utils\n",
                         code_files(script, "import torch\nimport train_gpt_utils\n"))
    assert [f.path.name for f in u.script_copies] == ["train_gpt_human.py"]
    assert u.unreferenced == [] and u.unreferenced_bytes == 0 and u.missing_modules == []


def test_nothing_unaccounted_when_every_helper_is_named(tmp_path):
    script = _folder(tmp_path, {"train_gpt.py": _PY312_SCRIPT, "tilt_helper.py": "import tilt_sub\n",
                                "tilt_sub.py": "import importlib\nm = importlib.import_module('tilt_dyn')\n",
                                "tilt_dyn.py": "y = 2\n", "tilt_kernel.cpp": "int f();\n"})
    counted = code_files(script, script.read_text())
    assert {f.path.name for f in counted} == {"train_gpt.py", "tilt_helper.py", "tilt_sub.py", "tilt_dyn.py",
                                              "tilt_kernel.cpp"}
    u = unaccounted_code(script, script.read_text(), counted)
    assert u.missing_modules == [] and u.unreferenced == []


def test_wrapped_script_scans_the_unwrapped_source_it_is_given(tmp_path):
    # the file on disk is a wrapper; the caller passes the unwrapped text, whose imports decide
    script = _folder(tmp_path, {"train_gpt.py": "exec(open('x').read())\n", "helper_a.py": "a = 1\n"})
    assert [f.path.name for f in code_files(script, "import helper_a\n")] == ["train_gpt.py", "helper_a.py"]
    u = unaccounted_code(script, "import helper_a, helper_b\n", code_files(script, "import helper_a\n"))
    assert u.missing_modules == ["helper_b"]


# ------------------------------------------------------------------ claims shaped like real submission.json files

def _claims(tmp_path: Path, obj) -> Path:
    p = tmp_path / "submission.json"
    p.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return p


def test_claims_with_mean_fields_and_top_level_artifact_bytes(tmp_path):
    c = parse_claims(_claims(tmp_path, {
        "seed_results": {"1337": {"val_loss": 2.03123284, "val_bpb": 1.20301050, "steps": 10605},
                         "42": {"val_loss": 2.02877662, "val_bpb": 1.20155579, "ms_per_step": 56.57}},
        "mean_val_loss": 2.03100910, "mean_val_bpb": 1.20287799, "p_value": 0.00056,
        "artifact_bytes": 15039175, "code_bytes": 50269}))
    assert c.val_bpb == pytest.approx(1.20287799) and c.val_loss == pytest.approx(2.03100910)
    assert c.bytes_total == 15039175 and c.bytes_code == 50269
    assert c.seeds == [42, 1337]
    assert c.per_seed[1337] == {"val_loss": pytest.approx(2.03123284), "val_bpb": pytest.approx(1.2030105)}


def test_claims_ignore_pre_fix_results_and_keep_per_seed_artifact_bytes(tmp_path):
    c = parse_claims(_claims(tmp_path, {
        "val_bpb": 1.08091, "val_loss": 2.7921, "bytes_total": 15995572, "hardware": "8xH100 80GB SXM",
        "seeds": [0, 42],
        "seed_results": {"0": {"val_bpb": 1.08035, "artifact_bytes": 15994644},
                         "42": {"val_bpb": 1.08097, "artifact_bytes": 15995572}},
        "seed_results_pre_fix": {"0": {"val_bpb": 1.07751, "artifact_bytes": 15992304}}}))
    assert c.per_seed[0] == {"val_bpb": pytest.approx(1.08035), "artifact_bytes": 15994644}
    assert c.hardware == "8xH100 80GB SXM" and c.seeds == [0, 42]


@pytest.mark.parametrize("text", ['{"val_bpb": 1.1,}', "[1, 2]", "\xff\xfe"])
def test_malformed_claims_are_one_line_bad_input(tmp_path, text):
    p = tmp_path / "submission.json"
    p.write_bytes(text.encode("latin-1"))
    with pytest.raises(BadInput) as e:
        parse_claims(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_a_misnamed_claims_file_is_read_and_s1_still_names_the_missing_submission_json(tmp_path):
    from harness.check.submission import load_submission

    (tmp_path / "train_gpt.py").write_text("print('x')\n")
    (tmp_path / "README.md").write_text("# r\n")
    (tmp_path / "submission_ternary.json").write_text(json.dumps({"val_bpb": 1.1, "val_loss": 1.9}))
    sub = load_submission(tmp_path)
    assert sub.claims is not None and sub.claims.val_bpb == 1.1
    assert "submission.json (claims read from submission_ternary.json)" in sub.missing
    (tmp_path / "submission_other.json").write_text("{}")  # two candidates: which one is the claim is unknown
    sub = load_submission(tmp_path)
    assert sub.claims is None and "submission.json" in sub.missing
