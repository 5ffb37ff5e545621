"""harness.check.hints: every pattern fires on its illegal shape and stays quiet on the legal one."""

from __future__ import annotations

import base64
import glob
import lzma
import re
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.check.hints import HINT_PATTERNS as RULES, scan_source
from harness.results import Hint

FIX = Path(__file__).parent / "fixtures" / "hints"


def _scan(name: str) -> list[Hint]:
    return scan_source((FIX / name).read_text(), name)


def _line_of(name: str, needle: str) -> int:
    """1-based line of the first line containing needle (fixtures are ours; the needle must be unique)."""
    lines = (FIX / name).read_text().splitlines()
    hits = [i for i, line in enumerate(lines, 1) if needle in line]
    assert len(hits) == 1, (name, needle, hits)
    return hits[0]


def _found(hints: list[Hint]) -> set[tuple[str, int]]:
    return {(h.pattern, int(h.where.rsplit(":", 1)[1])) for h in hints}


# (fixture, [(pattern, text on the line the hint must point at)]): the complete expected set
ILLEGAL = [
    ("ttt_illegal_adapt.py", [("ttt_before_score", "loss.backward()")]),
    ("ttt_illegal_helper.py", [("ttt_before_score", "        train_epochs(model, x, y, opt, epochs)")]),
    ("min_illegal.py", [("min_over_passes", "torch.minimum(best_nll[indices], nll)"),
                        ("min_over_passes", "torch.min(torch.stack(per_pass_nll)"),
                        ("min_over_passes", "token_nll[start : start + nll.numel()] = nll")]),
    ("ngram_illegal.py", [("target_in_hash", "p_ngram = self.full_counts[full_key]"),
                          ("target_in_hash", "return self.full_counts[(ctx_hash * PRIME ^ targets)"),
                          ("target_in_hash", "full_counts = full_table[full_key].astype(np.float64)")]),
    ("slot_illegal.py", [("delta_vs_targets", "delta = torch.zeros(1, 1, dim, requires_grad=True)")]),
    ("calib_illegal.py", [("val_calibration", "q1 = gptq_quantize(model, calib)"),
                          ("train_loader_after_training", "hessians = collect_hessians(model, train_loader, 128)"),
                          ("train_loader_after_training", "    serialize(h, model)")]),
    ("gate_illegal.py", [("gate_on_target", "alpha = np.where(p_ngram > p_model, 0.9, 0.1)")]),
    # nested step_fn training loop + score-first TTT: only the training-data read after training
    ("nested_train_gptq.py", [("train_loader_after_training", "        serialize(h, base_model, device)")]),
]

LEGAL = ["baseline_like.py", "ttt_legal_score_first.py", "min_legal.py", "ngram_legal.py", "calib_legal.py",
         "gate_legal.py"]


@pytest.mark.parametrize("name, expected", ILLEGAL, ids=[n for n, _ in ILLEGAL])
def test_illegal_shapes_give_exactly_the_expected_hints(name, expected):
    hints = _scan(name)
    want = {(pattern, _line_of(name, needle)) for pattern, needle in expected}
    assert _found(hints) == want


@pytest.mark.parametrize("name", LEGAL)
def test_legal_shapes_give_no_hint(name):
    assert _scan(name) == []


@pytest.mark.parametrize("pattern, legal", [
    ("ttt_before_score", "ttt_legal_score_first.py"), ("delta_vs_targets", "ttt_legal_score_first.py"),
    ("min_over_passes", "min_legal.py"), ("target_in_hash", "ngram_legal.py"),
    ("val_calibration", "calib_legal.py"), ("train_loader_after_training", "calib_legal.py"),
    ("gate_on_target", "gate_legal.py"),
])
def test_each_pattern_has_an_illegal_fixture_that_fires_and_a_legal_one_that_does_not(pattern, legal):
    assert any(pattern in [p for p, _ in exp] for _, exp in ILLEGAL)
    assert not [h for h in _scan(legal) if h.pattern == pattern]


def test_hint_fields_name_the_rule_the_line_and_the_snippet():
    for name, _ in ILLEGAL:
        lines = (FIX / name).read_text().splitlines()
        for h in _scan(name):
            assert h.rule_id == RULES[h.pattern]
            file, line = h.where.rsplit(":", 1)
            assert file == name
            assert h.snippet == lines[int(line) - 1].strip()
            assert h.message.endswith(".") and "\n" not in h.message
            assert h.rule_id in h.message  # the one sentence names the rule it may break


def test_messages_carry_evidence():
    (ttt,) = _scan("ttt_illegal_adapt.py")
    assert "val_tokens" in ttt.message and f"line {_line_of('ttt_illegal_adapt.py', 'for epoch in')}" in ttt.message
    after = [h for h in _scan("calib_illegal.py") if h.pattern == "train_loader_after_training"]
    assert any("ShuffledSequenceLoader" in h.message for h in after)  # the chain through serialize()


# ------------------------------------------------------------------ smaller shapes, inline

def test_module_level_ttt_loop_without_functions():
    src = ("import torch\n"
           "val_tokens = torch.load('v.pt')\n"
           "for ep in range(3):\n"
           "    for i in range(0, val_tokens.numel() - 1, 64):\n"
           "        loss = model(val_tokens[i:i + 64], val_tokens[i + 1:i + 65])\n"
           "        loss.backward()\n"
           "        opt.step()\n"
           "with torch.no_grad():\n"
           "    loss_sum = score_all(model, val_tokens)\n")
    assert _found(scan_source(src)) == {("ttt_before_score", 6)}


def test_a_ttt_helper_nobody_calls_is_not_judged_alone():
    # whether training on a span is legal depends on the caller; dead code has none
    src = ("def ttt_train_span(model, opt, val_tokens, first, last):\n"
           "    for _ in range(2):\n"
           "        loss = model(val_tokens[first - 1:last], val_tokens[first:last + 1])\n"
           "        loss.backward()\n"
           "        opt.step()\n")
    assert scan_source(src) == []
    called = src + "def main(model, opt, val_tokens):\n    ttt_train_span(model, opt, val_tokens, 1, 100)\n"
    assert _found(scan_source(called)) == {("ttt_before_score", 4)}


def test_training_loop_on_train_data_is_not_ttt():
    src = ("def train(model, train_loader, opt, val_tokens):\n"
           "    for step in range(100):\n"
           "        x, y = train_loader.next_batch()\n"
           "        model(x, y).backward()\n"
           "        opt.step()\n"
           "    return evaluate(model, val_tokens)\n"
           "train(model, train_loader, opt, val_tokens)\n")
    assert [h for h in scan_source(src) if h.pattern == "ttt_before_score"] == []


def test_training_loop_with_inline_validation_after_the_step_is_not_ttt():
    # validation placed after the step, reusing the name `loss`: still the main training loop
    src = ("import torch\n"
           "def main(model, train_loader, opt, val_tokens, temperature_init):\n"
           "    temperature = torch.ones(1, requires_grad=True)\n"
           "    opt2 = torch.optim.Adam([temperature], lr=1e-3)\n"
           "    for step in range(1000):\n"
           "        x, y = train_loader.next_batch()\n"
           "        loss = torch.nn.functional.cross_entropy(model(x) / temperature, y)\n"
           "        loss.backward()\n"
           "        opt.step()\n"
           "        opt2.step()\n"
           "        if step % 100 == 0:\n"
           "            vx, vy = val_tokens[:-1], val_tokens[1:]\n"
           "            loss = model(vx, vy)\n"
           "            print(loss.item())\n"
           "main(model, train_loader, opt, val_tokens, 1.0)\n")
    assert scan_source(src) == []


def test_quantization_clip_search_minimum_is_not_min_over_passes():
    src = ("import torch\n"
           "def search_clip(w, ratios):\n"
           "    best_loss = torch.full((w.shape[0],), float('inf'))\n"
           "    for r in ratios:\n"
           "        q = (w / r).round() * r\n"
           "        loss = (q - w).pow(2).sum(-1)\n"
           "        best_loss = torch.minimum(best_loss, loss)\n"
           "    return best_loss\n")
    assert scan_source(src) == []


def test_config_class_built_after_training_is_not_a_training_read():
    src = ("import glob, os\n"
           "class Hyperparameters:\n"
           "    train_files = os.path.join(os.environ.get('DATA_PATH', '.'), 'fineweb_train_*.bin')\n"
           "    def __init__(self):\n"
           "        self.n_shards = len(glob.glob(self.train_files))\n"
           "def main(model, train_loader, opt):\n"
           "    for step in range(10):\n"
           "        x, y = train_loader.next_batch()\n"
           "        model(x, y).backward()\n"
           "        opt.step()\n"
           "    args = Hyperparameters()\n"
           "    print(f'train_files:{args.train_files}')\n"
           "    for x, y in train_loader:\n"
           "        pass\n")
    assert _found(scan_source(src)) == {("train_loader_after_training", 13)}


def test_calibration_function_reading_validation_itself():
    src = ("def collect_hessians(model, args):\n"
           "    toks = load_validation_tokens(args.val_files, 1024)\n"
           "    return {n: toks for n, _ in model.named_parameters()}\n")
    assert _found(scan_source(src)) == {("val_calibration", 2)}


def test_target_hash_read_through_dict_get_and_gate_through_max():
    src = ("def score(counts, ctx, tgt, probs, ngram_probs):\n"
           "    c = counts.get(hash((ctx, tgt)), 0)\n"
           "    p_model = probs[tgt]\n"
           "    p_ngram = ngram_probs[tgt]\n"
           "    best = max(p_ngram, p_model)\n"
           "    return c, best\n")
    assert _found(scan_source(src)) == {("target_in_hash", 2), ("gate_on_target", 5)}


def test_score_first_through_a_no_grad_decorated_helper_is_legal():
    src = ("import torch\n"
           "@torch.no_grad()\n"
           "def _forward(model, x, y):\n"
           "    return model(x, y)\n"
           "def ttt(model, val_tokens, opt):\n"
           "    for i in range(0, val_tokens.numel() - 1, 64):\n"
           "        x, y = val_tokens[i:i + 64], val_tokens[i + 1:i + 65]\n"
           "        nll = _forward(model, x, y)\n"
           "        model(x, y).backward()\n"
           "        opt.step()\n")
    assert scan_source(src) == []


# ------------------------------------------------------------------ sources that do not parse

def test_python312_fstrings_are_repaired_and_still_analysed():
    name = "pep701_ttt.py"
    hints = _scan(name)
    step = ("ttt_before_score", _line_of(name, "loss.backward()"))
    if sys.version_info >= (3, 12):
        assert _found(hints) == {step}
    else:
        unparsed = [h for h in hints if h.pattern == "unparsed"]
        assert len(unparsed) == 1 and "blanked" in unparsed[0].message
        assert unparsed[0].where == f"{name}:{_line_of(name, 'ttt:start')}"
        assert step in _found(hints)


def test_unparseable_source_falls_back_to_a_line_scan():
    src = ("def f(:\n"
           "    best = torch.minimum(best_nll, nll)\n"
           "    delta = torch.zeros(3, requires_grad=True)\n"
           "    h = gptq_calibrate(model, val_tokens[:4096])\n")
    hints = scan_source(src, "x.py")
    assert _found(hints) == {("unparsed", 1), ("min_over_passes", 2), ("delta_vs_targets", 3), ("val_calibration", 4)}
    assert "line scan" in hints[0].message


def test_compressed_wrapper_is_reported_not_scanned():
    payload = base64.b85encode(lzma.compress(b"for e in range(3):\n    loss.backward()\n")).decode()
    src = f"import lzma,base64\nexec(lzma.decompress(base64.b85decode({payload!r})))\n"
    hints = scan_source(src)
    assert [(h.pattern, h.where) for h in hints] == [("wrapped", "train_gpt.py:2")]


def test_pathologically_deep_source_does_not_crash():
    src = "x = a" + ".b" * 3000 + "\nbest = torch.minimum(best_nll, nll)\n"
    hints = scan_source(src)
    assert hints and hints[0].pattern == "unparsed"


def test_empty_and_binary_sources():
    assert scan_source("") == []
    hints = scan_source("\x00\x01garbage")
    assert [h.pattern for h in hints] == ["unparsed"]
    assert hints[0].where == "train_gpt.py:1"


# ------------------------------------------------------------------ robustness and speed

_ALL = sorted(Path(p).name for p in glob.glob(str(FIX / "*.py")))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(_ALL), data=st.data())
def test_mutilated_fixtures_never_crash(name, data):
    lines = (FIX / name).read_text().splitlines()
    start = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
    width = data.draw(st.integers(min_value=1, max_value=4))
    src = "\n".join(lines[:start] + lines[start + width:])  # often still parses: exercises the AST paths
    for h in scan_source(src, name):
        assert h.pattern in RULES and re.fullmatch(rf"{re.escape(name)}:\d+", h.where)


@settings(max_examples=100, deadline=None)
@given(src=st.text(max_size=300))
def test_arbitrary_text_never_crashes(src):
    assert all(isinstance(h, Hint) for h in scan_source(src))


def test_a_large_script_scans_quickly():
    parts = []
    for i in range(6):
        for name in _ALL:
            src = (FIX / name).read_text()
            defined = set(re.findall(r"\b(?:def|class) (\w+)", src))  # keep each copy's calls on its own defs
            src = re.sub(r"\b\w+\b", lambda m: f"{m.group(0)}_{i}" if m.group(0) in defined else m.group(0), src)
            parts.append(src)
    big = "\n".join(parts)
    assert len(big.splitlines()) > 3000
    t0 = time.perf_counter()
    hints = scan_source(big, "big.py")
    assert time.perf_counter() - t0 < 10.0  # ~0.4 s alone; generous for a shared 2-core machine
    assert {h.pattern for h in hints} >= {"ttt_before_score", "min_over_passes", "target_in_hash",
                                          "delta_vs_targets", "val_calibration", "gate_on_target"}


# ------------------------------------------------------------------ regressions from real records (2026-04)

# Unwrapped records are minified: several statements share a line. The GPTQ calibration read that follows
# the training call on the same line must be found (it was skipped, and a later line blamed instead).
_ONE_LINE_AFTER_TRAINING = '''
import torch
class Loader:
    def __init__(self, h):
        self.tokens = torch.from_file(h.train_files[0])
    def next_batch(self):
        return torch.zeros(4)
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
def calibrate(h, model):
    calib_loader = Loader(h)
    return calib_loader.next_batch()
def build(h):
    return Net()
def train(h, model, opt):
    train_loader = Loader(h)
    for step in range(10):
        x = train_loader.next_batch(); loss = model(x).sum(); loss.backward(); opt.step()
    return model
def main(h, model, opt):
    model = train(h, model, opt); calibrate(h, model); print("done")
    other = build(h)
'''


def test_train_read_on_the_same_line_as_the_training_call_is_found():
    hints = [h for h in scan_source(_ONE_LINE_AFTER_TRAINING, "t.py") if h.pattern == "train_loader_after_training"]
    line = next(i for i, t in enumerate(_ONE_LINE_AFTER_TRAINING.splitlines(), 1) if "calibrate(h, model);" in t)
    assert [int(h.where.rsplit(":", 1)[1]) for h in hints] == [line]
    assert "calibrate()" in hints[0].message
    # the snippet starts at the statement on a long line, not at the line's first statement
    assert hints[0].snippet.startswith("calibrate(h, model)") or "calibrate(h, model)" in hints[0].snippet


def test_a_class_calling_super_init_is_not_a_training_data_reader():
    # Net.__init__ and Loader.__init__ share the name __init__: Net() must not inherit Loader's read
    hints = scan_source(_ONE_LINE_AFTER_TRAINING, "t.py")
    assert not any("build()" in h.message or "Net()" in h.message for h in hints)


def test_long_minified_line_snippet_is_taken_at_the_flagged_statement():
    pad = ";".join(f"v{i}=0" for i in range(60))  # a >200-character line before the flagged call
    src = _ONE_LINE_AFTER_TRAINING.replace("    model = train(h, model, opt); calibrate",
                                           f"    {pad};model = train(h, model, opt); calibrate")
    hint = next(h for h in scan_source(src, "t.py") if h.pattern == "train_loader_after_training")
    assert hint.snippet.startswith("…calibrate(h, model)")


# A per-window bias fitted on the window's context (targets y[:s], scored by earlier windows) and applied to
# the tokens after it (y[s:]) is score-first adaptation, not SLOT; fitting on the scored slice is SLOT.
_CONTEXT_FIT = '''
import torch
import torch.nn.functional as F
def eval_val_sliding_bias(model, val_tokens, seq_len, stride, vocab):
    bias = torch.zeros(vocab)
    total = 0.0
    for ws in range(0, val_tokens.numel() - seq_len, stride):
        chunk = val_tokens[ws:ws + seq_len + 1]
        x = chunk[:-1].unsqueeze(0); y = chunk[1:].unsqueeze(0)
        with torch.inference_mode():
            logits = model(x).float().squeeze(0)
        s = 0 if ws == 0 else seq_len - stride
        if s > 0:
            b = bias.clone().detach().requires_grad_(True); opt = torch.optim.SGD([b], lr=0.1)
            ctx_logits = logits[:s].detach(); ctx_tgt = y.squeeze(0)[:s]
            for _ in range(3):
                opt.zero_grad(); loss = F.cross_entropy(ctx_logits + b, ctx_tgt); loss.backward(); opt.step()
            bias = b.detach()
        nll = F.cross_entropy(logits[s:] + bias, y.squeeze(0)[s:], reduction="none")
        total += float(nll.sum())
    return total
'''


def test_bias_fitted_on_the_scored_context_is_not_flagged():
    hints = scan_source(_CONTEXT_FIT, "etlb.py")
    assert not [h for h in hints if h.pattern in ("delta_vs_targets", "ttt_before_score")], hints


def test_bias_fitted_on_the_slice_it_scores_is_still_slot():
    slot = _CONTEXT_FIT.replace("ctx_tgt = y.squeeze(0)[:s]", "ctx_tgt = y.squeeze(0)[s:]") \
                       .replace("ctx_logits = logits[:s].detach()", "ctx_logits = logits[s:].detach()")
    hints = scan_source(slot, "slot.py")
    assert {h.pattern for h in hints} & {"delta_vs_targets", "ttt_before_score"}, hints
    whole = _CONTEXT_FIT.replace("ctx_tgt = y.squeeze(0)[:s]", "ctx_tgt = y.squeeze(0)")
    assert {h.pattern for h in scan_source(whole, "slot2.py")} & {"delta_vs_targets", "ttt_before_score"}
