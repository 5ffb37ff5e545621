"""Tiny scale shrinks sizes generally (harness/run/scale.py): knobs [run.tiny_env] names, sizes tied to them
(the same value or the same script default), and every *_SEQ_LEN / *_BATCH_TOKENS / ... a script reads;
it never raises a knob and never flips a switch that selects the method."""

from __future__ import annotations

from harness.config import load_config
from harness.run.scale import env_overrides

TINY = {"MODEL_DIM": "128", "TRAIN_SEQ_LEN": "64", "EVAL_SEQ_LEN": "64", "TRAIN_BATCH_TOKENS": "1024",
        "VAL_BATCH_SIZE": "1024", "TTT_CHUNK_TOKENS": "512", "ITERATIONS": "4", "TTT_EPOCHS": "1"}


def _tiny(inferred: dict[str, str] | None = None, defaults: dict[str, str] | None = None,
          tiny: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    sources: dict[str, str] = {}
    o = env_overrides({"tiny_env": dict(TINY if tiny is None else tiny)}, "tiny", data_dir="/d", tokenizer=None,
                      vocab_size=None, run_id="r", device="cpu", nproc=1, inferred=inferred or {},
                      defaults=defaults or {}, sources=sources)
    return o, sources


def test_seq_len_and_batch_token_knobs_shrink_by_kind() -> None:
    defaults = {"TRAIN_SEQ_LEN": "2048", "EVAL_SEQ_LEN": "2048", "TRAIN_BATCH_TOKENS": "786432",
                "VAL_BATCH_TOKENS": "524288", "TTT_EVAL_SEQ_LEN": "1536", "MAX_SEQ_LEN": "4096",
                "GLOBAL_TTT_CHUNK_TOKENS": "32768", "SLIDING_BATCH_SIZE": "65536"}
    o, src = _tiny(defaults=defaults)
    assert o["VAL_BATCH_TOKENS"] == "1024" and "TRAIN_BATCH_TOKENS" in src["VAL_BATCH_TOKENS"]
    assert o["TTT_EVAL_SEQ_LEN"] == "64" and "EVAL_SEQ_LEN" in src["TTT_EVAL_SEQ_LEN"]
    assert o["MAX_SEQ_LEN"] == "64" and o["GLOBAL_TTT_CHUNK_TOKENS"] == "512"
    assert o["SLIDING_BATCH_SIZE"] == "1024"


def test_a_knob_of_that_kind_already_small_is_kept() -> None:
    o, _ = _tiny(defaults={"TTT_EVAL_SEQ_LEN": "32", "TTT_BATCH_SIZE": "8", "VAL_BATCH_TOKENS": "512"})
    assert "TTT_EVAL_SEQ_LEN" not in o and "TTT_BATCH_SIZE" not in o and "VAL_BATCH_TOKENS" not in o


def test_documents_per_ttt_batch_are_scaled_down_not_to_zero() -> None:
    # per-document LoRA TTT: 64 documents x seq x an 8192 vocabulary is gigabytes once traced
    o, src = _tiny(defaults={"TTT_BATCH_SIZE": "64", "GLOBAL_TTT_BATCH_SIZE": "2"})
    assert o["TTT_BATCH_SIZE"] == "8" and "scaled down from 64" in src["TTT_BATCH_SIZE"]
    assert "GLOBAL_TTT_BATCH_SIZE" not in o


def test_sliding_windows_per_batch_are_scaled_down() -> None:
    # counted in windows, not tokens: the VAL_BATCH_SIZE family (1024 tokens) would leave 64 windows alone
    o, src = _tiny(defaults={"SLIDING_BATCH_SIZE": "64", "SLIDING_BATCH_SEQS": "4"})
    assert o["SLIDING_BATCH_SIZE"] == "8" and "scaled down from 64" in src["SLIDING_BATCH_SIZE"]
    assert "SLIDING_BATCH_SEQS" not in o  # already small: kept


def test_a_record_value_is_shrunk_too_and_the_user_env_wins() -> None:
    o, src = _tiny(inferred={"VAL_BATCH_TOKENS": "262144"}, defaults={"VAL_BATCH_TOKENS": "524288"})
    assert o["VAL_BATCH_TOKENS"] == "1024"
    o2 = env_overrides({"tiny_env": TINY}, "tiny", data_dir="/d", tokenizer=None, vocab_size=None, run_id="r",
                       device="cpu", nproc=1, user_env={"VAL_BATCH_TOKENS": "4096"},
                       defaults={"VAL_BATCH_TOKENS": "524288"})
    assert o2["VAL_BATCH_TOKENS"] == "4096"


def test_tied_sizes_follow_the_shrunk_one() -> None:
    # the same record value, the same last word: the same size by construction
    o, src = _tiny(inferred={"MODEL_DIM": "512", "EMBEDDING_DIM": "512", "ROPE_TRAIN_SEQ_LEN": "2048",
                             "TRAIN_SEQ_LEN": "2048"})
    assert o["EMBEDDING_DIM"] == "128" and "follows MODEL_DIM" in src["EMBEDDING_DIM"]
    assert o["ROPE_TRAIN_SEQ_LEN"] == "64"
    # the same script default (the record moved MODEL_DIM, left HASH_DIM at its default = MODEL_DIM's)
    o, _ = _tiny(inferred={"MODEL_DIM": "640"}, defaults={"MODEL_DIM": "512", "HASH_DIM": "512"})
    assert o["MODEL_DIM"] == "128" and o["HASH_DIM"] == "128"
    # a different size of the same kind is the record's design: kept
    o, _ = _tiny(defaults={"MODEL_DIM": "512", "BIGRAM_DIM": "112", "VE_DIM": "128"})
    assert "BIGRAM_DIM" not in o and "VE_DIM" not in o
    # a record value set apart from the default is not tied by the default
    o, _ = _tiny(inferred={"MODEL_DIM": "512", "HASH_DIM": "768"}, defaults={"MODEL_DIM": "512", "HASH_DIM": "512"})
    assert o["HASH_DIM"] == "768"


def test_tied_size_follows_the_applied_value_not_the_table() -> None:
    # the record's MODEL_DIM is below the tiny one: kept (min), and EMBEDDING_DIM stays equal to it
    o, _ = _tiny(inferred={"MODEL_DIM": "96", "EMBEDDING_DIM": "96"})
    assert o["MODEL_DIM"] == "96" and o.get("EMBEDDING_DIM", "96") == "96"


def test_method_switches_are_kept_and_nothing_is_raised() -> None:
    o, _ = _tiny(inferred={"TTT_ENABLED": "1", "HASH_EMBED_ENABLED": "1", "SLIDING_WINDOW_ENABLED": "0",
                           "TRAIN_SEQ_LEN": "32"},
                 tiny={**TINY, "TTT_ENABLED": "0"})
    assert o["TTT_ENABLED"] == "1" and o["HASH_EMBED_ENABLED"] == "1" and o["SLIDING_WINDOW_ENABLED"] == "0"
    assert o["TRAIN_SEQ_LEN"] == "32"
    o, _ = _tiny(defaults={"EVAL_SEQ_LEN": "32", "TTT_EVAL_SEQ_LEN": "48"})
    assert o["EVAL_SEQ_LEN"] == "32" and "TTT_EVAL_SEQ_LEN" not in o


def test_full_scale_leaves_sizes_alone() -> None:
    o = env_overrides({"tiny_env": TINY}, "full", data_dir="/d", tokenizer=None, vocab_size=None, run_id="r",
                      device="cpu", nproc=1, defaults={"VAL_BATCH_TOKENS": "524288", "EMBEDDING_DIM": "512"})
    assert "VAL_BATCH_TOKENS" not in o and "EMBEDDING_DIM" not in o and "MODEL_DIM" not in o


def test_shipped_tiny_table_covers_the_eval_knobs_records_read() -> None:
    tiny = load_config().section("run")["tiny_env"]
    for k in ("VAL_BATCH_TOKENS", "VAL_BATCH_SIZE", "TTT_EVAL_SEQ_LEN", "EVAL_SEQ_LEN", "TRAIN_SEQ_LEN"):
        assert k in tiny, k
    seq = int(tiny["TRAIN_SEQ_LEN"])
    assert int(tiny["VAL_BATCH_TOKENS"]) % seq == 0 and int(tiny["TTT_EVAL_SEQ_LEN"]) <= seq
    # a record-shaped read set: nothing of a full-scale size is left
    defaults = {"TRAIN_SEQ_LEN": "2048", "EVAL_SEQ_LEN": "2048", "TTT_EVAL_SEQ_LEN": "2048",
                "ROPE_TRAIN_SEQ_LEN": "2048", "VAL_BATCH_TOKENS": "524288", "TRAIN_BATCH_TOKENS": "786432",
                "MODEL_DIM": "512", "EMBEDDING_DIM": "512"}
    o = env_overrides({"tiny_env": tiny}, "tiny", data_dir="/d", tokenizer=None, vocab_size=None, run_id="r",
                      device="cpu", nproc=1, defaults=defaults)
    assert all(int(o[k]) < int(v) for k, v in defaults.items()), {k: o.get(k) for k in defaults}
