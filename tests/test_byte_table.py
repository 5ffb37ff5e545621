"""The record's own byte table, run alone in the sandbox on the served tokenizer (harness.run.byte_table)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.config import load_config
from harness.data.builtin import ensure_data
from harness.results import Status
from harness.run.byte_table import TableBuilder, byte_table_row, compare, driver, find_builders, run_builders
from harness.run.options import RunOptions

FIX = Path(__file__).resolve().parent / "fixtures" / "byte_tables"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    return ensure_data(1024, tmp_path_factory.mktemp("cache"))


def _folder(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    shutil.copy(FIX / f"{name}.py", d / "train_gpt.py")
    return d


def test_builders_are_found_only_where_the_code_calls_them(tmp_path: Path) -> None:
    (b,) = find_builders(_folder(tmp_path, "double_space"))
    assert (b.file, b.name, b.params) == ("train_gpt.py", "build_sentencepiece_luts", ["sp", "vocab_size", "device"])
    assert b.called_at == ["train_gpt.py:33"] and b.adds_space_table == "train_gpt.py:30"
    src = driver(b)
    assert src is not None and "SPACE = " in src and "a_kernel_package_that_is_not_installed" in src
    compile(src, "driver", "exec")  # a failing import is wrapped, not fatal
    (r,) = find_builders(_folder(tmp_path, "right"))
    assert r.name == "build_luts" and r.adds_space_table == "train_gpt.py:30"  # the unused one is not taken


def test_the_comparison_names_each_wrong_class(data) -> None:
    import sentencepiece as spm

    from harness.data.bpb import byte_tables

    sp = spm.SentencePieceProcessor(model_file=str(data.tokenizer))
    ref = byte_tables(data.tokenizer, 1024)
    base = ref.base_bytes.astype(float).copy()
    space = ref.has_leading_space.astype(float)
    lead = int(next(i for i in range(1024) if sp.id_to_piece(i).startswith("\u2581") and not sp.is_byte(i)))
    base[lead] += 1  # the space counted twice for one piece
    fake = TableBuilder("t.py", "f", 1, [], "", ["t.py:2"], "t.py:3")
    v = compare(fake, [base.tolist(), space.tolist(), ref.is_boundary.astype(float).tolist()], str(data.tokenizer), 1024)
    assert [(c["name"], c["count"], c["example"]) for c in v.classes] == [("leading-space pieces", 1, lead)]
    right = compare(fake, [ref.base_bytes.tolist(), space.tolist(), ref.is_boundary.tolist()], str(data.tokenizer), 1024)
    assert right.classes == [] and byte_table_row([right], load_config()) is None


def test_a_run_that_never_scores_still_gets_c4_from_its_table(tmp_path: Path, data) -> None:
    cfg = load_config()
    opts = RunOptions(data_path=str(data.data_dir)).kwargs()
    wrong = run_builders(_folder(tmp_path, "double_space"), cfg, opts, str(data.tokenizer), 1024)
    row = byte_table_row(wrong, cfg)
    assert row is not None and row.status is Status.FAIL and row.checker == "byte table"
    names = {f.message.split(" the wrong byte count")[0].split(" gives ")[1] for f in row.findings}
    assert any("leading-space pieces" in n for n in names) and any("byte-fallback pieces" in n for n in names)
    assert all(f.evidence and f.evidence[0].where == "train_gpt.py:12" for f in row.findings)
    right = run_builders(_folder(tmp_path, "right"), cfg, opts, str(data.tokenizer), 1024)
    assert len(right) == 1 and right[0].error is None and byte_table_row(right, cfg) is None
