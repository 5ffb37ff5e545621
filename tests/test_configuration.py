"""Configuration inference (harness.check.configuration) and tiny scale that keeps the method
(harness.run.scale): small fixtures, no run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.check.configuration import infer_configuration, is_switch, not_applied_reason
from harness.check.run_commands import find_entry_script
from harness.run.scale import env_overrides

SCRIPT = '''import os
class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    vocab_size = int(os.environ.get("VOCAB_SIZE", 1024))
    iterations = int(os.environ.get("ITERATIONS", 20000))
    ttt_enabled = bool(int(os.environ.get("TTT_ENABLED", "0")))
    ttt_epochs = int(os.environ.get("TTT_EPOCHS", "3"))
    ttt_lr = float(os.environ.get("TTT_LR", "0.002"))
    ngram_order = int(os.getenv("NGRAM_ORDER", "7"))
    train_seq_len = int(os.environ["TRAIN_SEQ_LEN"]) if "TRAIN_SEQ_LEN" in os.environ else 2048
    scaled = int(os.environ.get("SCALED", "4")) * 2
args = Hyperparameters()
print(f"ttt_enabled: {args.ttt_enabled}")
'''


def _folder(tmp_path: Path, script: str = SCRIPT, **files: str) -> Path:
    d = tmp_path / "rec"
    d.mkdir()
    if script is not None:
        (d / "train_gpt.py").write_text(script)
    for name, text in files.items():
        p = d / name.replace("__", "/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return d


def test_script_reads_and_defaults(tmp_path: Path) -> None:
    conf = infer_configuration(_folder(tmp_path))
    assert conf.reads["TTT_ENABLED"].default == "0"
    assert conf.reads["TTT_ENABLED"].where == "train_gpt.py:6"
    assert "ttt_enabled" in conf.reads["TTT_ENABLED"].fields
    assert conf.reads["NGRAM_ORDER"].default == "7"  # os.getenv
    assert "TRAIN_SEQ_LEN" in conf.reads  # os.environ[...]
    assert conf.values == {}
    assert conf.vocab_size == 1024


def test_env_from_log_dump(tmp_path: Path) -> None:
    log = ("import os\n"  # a log starting with the code is not a dump
           '    ttt_enabled = bool(int(os.environ.get("TTT_ENABLED", "0")))\n'
           "Hyperparameters:\n  ttt_enabled: True\n  ttt_lr: 0.005\n  iterations: 9000\n  scaled: 8\n"
           "  data_path: ./data/datasets/fineweb10B_sp1024\n"
           "mixed: 32 int6, 35 int5\n"
           "step:100/9000 train_loss:2.1 ttt_epochs:9\n"
           "final_ttt val_loss:1.9 val_bpb:1.1234\n")
    d = _folder(tmp_path, **{"train_seed42.log": log,
                             "submission.json": json.dumps({"seeds": [42], "val_bpb": 1.1234})})
    conf = infer_configuration(d)
    env = conf.applied_env()
    assert env["TTT_ENABLED"] == "1" and conf.values["TTT_ENABLED"].where == "train_seed42.log:4"
    assert env["TTT_LR"] == "0.005" and env["ITERATIONS"] == "9000"
    assert "SCALED" not in env  # a transformed value does not map back
    assert "TTT_EPOCHS" not in env  # score lines are not dumps
    assert "DATA_PATH" not in env and any(s["name"] == "DATA_PATH" for s in conf.skipped)
    assert conf.switches() == {"TTT_ENABLED": "1"}
    assert conf.score_tag == "final_ttt"


def test_env_from_readme_command_multiline(tmp_path: Path) -> None:
    readme = ("# Rec\n\n```bash\nRUN_ID=x DATA_PATH=./data/datasets/fineweb10B_sp4096 \\\n  TTT_ENABLED=1 \\\n"
              "  NGRAM_ORDER=5 SEED=$SEED \\\n  torchrun --standalone --nproc_per_node=8 train_gpt.py\n```\n"
              "Prose: we use `TTT_EPOCHS=4` for the final runs.\n")
    conf = infer_configuration(_folder(tmp_path, **{"README.md": readme}))
    env = conf.applied_env()
    assert env == {"TTT_ENABLED": "1", "NGRAM_ORDER": "5", "TTT_EPOCHS": "4"}
    assert conf.values["TTT_ENABLED"].where == "README.md:4"
    assert conf.values["TTT_EPOCHS"].where.startswith("README.md:9")
    skipped = {s["name"]: s["why"] for s in conf.skipped}
    assert "SEED" in skipped and "RUN_ID" in skipped and "DATA_PATH" in skipped
    assert conf.vocab_size == 4096  # named by the data path


def test_env_from_run_script(tmp_path: Path) -> None:
    sh = "#!/bin/bash\nexport TTT_LR=0.01\nE=3\nNCCL_IB_DISABLE=1 SEED=${SEED:-1337} TTT_EPOCHS=$E \\\n" \
         "torchrun --standalone --nproc_per_node=8 train_gpt.py 2>&1 | tee log.txt\n"
    conf = infer_configuration(_folder(tmp_path, **{"run.sh": sh}))
    env = conf.applied_env()
    assert env == {"TTT_LR": "0.01", "TTT_EPOCHS": "3"}
    assert conf.values["TTT_EPOCHS"].source == "folder-script" and conf.values["TTT_EPOCHS"].where == "run.sh:4"


def test_conflict_log_wins_over_readme(tmp_path: Path) -> None:
    d = _folder(tmp_path, **{
        "README.md": "```\nTTT_LR=0.01 TTT_ENABLED=1 torchrun train_gpt.py\n```\n",
        "train_seed1.log": "ttt_lr: 0.02\nttt_enabled: True\n",
        "submission.json": json.dumps({"seeds": [1]}),
    })
    conf = infer_configuration(d)
    assert conf.applied_env()["TTT_LR"] == "0.02"
    (c,) = conf.conflicts
    assert c["name"] == "TTT_LR" and c["source"] == "log" and c["others"][0]["value"] == "0.01"
    assert c["others"][0]["where"] == "README.md:2"


def test_method_switch_survives_tiny_scale() -> None:
    run_cfg = {"tiny_env": {"ITERATIONS": "4", "TTT_EPOCHS": "1", "TTT_ENABLED": "0", "EVAL_STRIDE": "32",
                            "TRAIN_SEQ_LEN": "64"}}
    notes: list[str] = []
    sources: dict[str, str] = {}
    o = env_overrides(run_cfg, "tiny", data_dir="/d", tokenizer=None, vocab_size=1024, run_id="r", device="cpu",
                      nproc=1, inferred={"TTT_ENABLED": "1", "TTT_EPOCHS": "3", "NGRAM_ORDER": "7",
                                         "NGRAM_MIN_ORDER": "2", "SLOT_STEPS": "8", "RECUR_START_STEP": "3000",
                                         "EVAL_STRIDE": "0", "NGRAM_CACHE": "1"},
                      defaults={"TTT_CHUNK_TOKENS": "32768", "TRAIN_SEQ_LEN": "2048"}, notes=notes, sources=sources,
                      user_env={"TTT_LR": "0.1"})
    assert o["TTT_ENABLED"] == "1" and o["NGRAM_CACHE"] == "1"  # switches kept
    assert o["TTT_EPOCHS"] == "1" and o["NGRAM_ORDER"] == "4" and o["SLOT_STEPS"] == "2"  # down, not to zero
    assert o["TTT_CHUNK_TOKENS"] == "512"  # a script default scaled down too
    assert o["RECUR_START_STEP"] == "2"  # pulled inside the tiny ITERATIONS
    assert o["EVAL_STRIDE"] == "0"  # a tiny value never raises the record's
    assert o["ITERATIONS"] == "4" and o["TRAIN_SEQ_LEN"] == "64"
    assert o["TTT_LR"] == "0.1" and sources["TTT_LR"] == "--env"
    assert any("TTT_ENABLED" in n for n in notes) and any("RECUR_START_STEP" in n for n in notes)


def test_env_overrides_everything() -> None:
    o = env_overrides({"tiny_env": {"ITERATIONS": "4"}}, "tiny", data_dir="/d", tokenizer=None, vocab_size=None,
                      run_id="r", device="cpu", nproc=1, inferred={"TTT_ENABLED": "1"},
                      user_env={"TTT_ENABLED": "0", "ITERATIONS": "2"})
    assert o["TTT_ENABLED"] == "0" and o["ITERATIONS"] == "2"


def test_never_applied() -> None:
    assert not_applied_reason("DATA_PATH", "./x") is not None
    assert not_applied_reason("ARTIFACT_DIR", "runs/a") is not None
    assert not_applied_reason("NCCL_NET", "Socket") is not None
    assert not_applied_reason("SEED", "42") is not None
    assert not_applied_reason("TTT_LR", "$LR") is not None
    assert not_applied_reason("TTT_EVAL_ONLY", "1") is not None
    assert not_applied_reason("TTT_ENABLED", "1") is None
    assert is_switch("TTT_ENABLED") and is_switch("NGRAM_CACHE") and is_switch("SLOT_ENABLED")
    assert not is_switch("TTT_EPOCHS") and not is_switch("NGRAM_ORDER")


def test_validation_aliasing_is_d1_fail(tmp_path: Path) -> None:
    from harness.check.configuration import rule_d1_aliasing
    from harness.results import Status

    readme = ("## Data\n```\nmkdir -p data/mix\nln -s $(pwd)/data/fineweb_val_000000.bin data/mix/fineweb_train_000099.bin\n"
              "DATA_PATH=data/mix torchrun train_gpt.py\n```\n")
    conf = infer_configuration(_folder(tmp_path, **{"README.md": readme}))
    assert [a["where"] for a in conf.aliasing] == ["README.md:4"]
    row = rule_d1_aliasing(None, conf)
    assert row is not None and row.status is Status.FAIL and row.findings[0].evidence[0].where == "README.md:4"
    clean = infer_configuration(_folder(tmp_path / "b", **{"README.md": "ln -s data/train data/x\n"})) \
        if (tmp_path / "b").mkdir() is None else None
    assert clean is not None and clean.aliasing == []


def test_entry_script_from_readme_command(tmp_path: Path) -> None:
    d = _folder(tmp_path, script=None, **{
        "README.md": "```\nbash run_it.sh\n```\n",
        "run_it.sh": "VOCAB_SIZE=8192 TTT_ENABLED=1 torchrun --nproc_per_node=8 train_gpt_custom.py\n",
        "train_gpt_custom.py": SCRIPT, "helper.py": "x = 1\n", "train_gpt_old.py": "print(1)\n",
    })
    name, where = find_entry_script(d)
    assert name == "train_gpt_custom.py" and "run_it.sh" in where
    conf = infer_configuration(d)
    assert conf.entry_script == "train_gpt_custom.py"
    assert conf.applied_env() == {"TTT_ENABLED": "1"} and conf.vocab_size == 8192
    from harness.run.workdir import locate_script

    assert locate_script(d)[0].name == "train_gpt_custom.py"
    from harness.check.submission import load_submission

    assert load_submission(d).script.name == "train_gpt_custom.py"


def test_custom_tokenizer(tmp_path: Path) -> None:
    pytest.importorskip("sentencepiece")
    from harness.data.builtin import byte_counts, corpus_documents, ensure_tokenizer_data, train_tokenizer

    model = train_tokenizer(corpus_documents()[:400], 600, tmp_path / "src" / "my_600.model")
    d = _folder(tmp_path, **{"README.md": "x\n"})
    (d / "tokenizers").mkdir()
    (d / "tokenizers" / "my_600.model").write_bytes(model.read_bytes())
    conf = infer_configuration(d)
    assert conf.tokenizer and conf.tokenizer.endswith("my_600.model") and conf.vocab_size == 600
    paths = ensure_tokenizer_data(conf.tokenizer, cache_dir=tmp_path / "cache")
    assert paths.vocab_size == 600 and paths.data_dir.name.startswith("tok-")
    again = ensure_tokenizer_data(d / "tokenizers" / "my_600.model", cache_dir=tmp_path / "cache")
    assert again.data_dir == paths.data_dir and again.build_seconds is None  # cached by content
    val = paths.read_val()
    assert val.max() < 600
    counts = byte_counts(paths.tokenizer, val[:200])
    assert counts.dtype.name == "uint16" and counts[0] == 0 and counts.sum() > 100  # BOS counts 0 bytes


def test_probe_streams_use_the_data_the_run_is_served(tmp_path: Path) -> None:
    """The probes build their streams, candidates and byte counts from what the runner serves the folder (its
    own tokenizer here), not from the built-in 1024 data: with the wrong tokenizer a variant's reported pass
    was matched to another pass and C1's comparison broke on an 8192-vocabulary record."""
    pytest.importorskip("sentencepiece")
    from harness.config import load_config
    from harness.data.builtin import corpus_documents, train_tokenizer
    from harness.probes.stage import _data

    model = train_tokenizer(corpus_documents()[:400], 600, tmp_path / "src" / "my_600.model")
    d = _folder(tmp_path, **{"README.md": "x\n"})
    (d / "tokenizers").mkdir()
    (d / "tokenizers" / "my_600.model").write_bytes(model.read_bytes())
    cfg = load_config()
    cfg.raw.setdefault("run", {})["cache_dir"] = str(tmp_path / "cache")
    val, tok, vocab = _data(cfg, {}, d)
    assert vocab == 600 and tok is not None and val.max() < 600
    assert Path(tok).read_bytes() == model.read_bytes()
    # --no-infer-env: the built-in default, as the run would be served
    _, _, v2 = _data(cfg, {"infer_env": False}, d)
    assert v2 == 1024


def test_claimed_score_tag_per_seed(tmp_path: Path) -> None:
    logs = {f"train_seed{s}.log": f"final_int8 val_loss:2.0 val_bpb:1.2{s}\nfinal_sliding val_loss:1.9 "
            f"val_bpb:1.1{s}\nfinal_export_exact val_loss:1.8 val_bpb:1.0{s}\n" for s in (1, 2)}
    claims = {"seeds": [1, 2], "seed_results": {"1": {"val_bpb": 1.11}, "2": {"val_bpb": 1.12}}}
    conf = infer_configuration(_folder(tmp_path, **logs, **{"submission.json": json.dumps(claims)}))
    assert conf.score_tag == "final_sliding"


def test_tied_size_knobs_follow_tiny() -> None:
    o = env_overrides({"tiny_env": {"MODEL_DIM": "128", "TRAIN_SEQ_LEN": "64"}}, "tiny", data_dir="/d",
                      tokenizer=None, vocab_size=None, run_id="r", device="cpu", nproc=1,
                      inferred={"MODEL_DIM": "512", "EMBEDDING_DIM": "512", "BIGRAM_DIM": "112",
                                "ROPE_TRAIN_SEQ_LEN": "2048", "TRAIN_SEQ_LEN": "2048"})
    assert o["EMBEDDING_DIM"] == "128" and o["ROPE_TRAIN_SEQ_LEN"] == "64" and o["BIGRAM_DIM"] == "112"
