"""harness.testing: traced() judges a block with the real tracer and verdict, undoes every hook, never calls
what it could not see legal; load_submission_module imports a record without training; the pytest plugin
writes the report of a failing test; the strategies draw what they promise."""

from __future__ import annotations

import builtins
import io
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from conftest import ROOT  # noqa: E402
from harness.data import shards  # noqa: E402
from harness.results import Status  # noqa: E402
from harness.runtime import tracer  # noqa: E402
from harness.testing import RuleAssertion, load_submission_module, traced  # noqa: E402
from harness.testing import strategies as hst  # noqa: E402
from harness.testing.io_watch import leftovers  # noqa: E402

pytest_plugins = ("pytester",)

V = 16
STREAM = ((np.arange(19) * 5 + 3) % V).astype(np.uint16)


def table() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Embedding(V, V)  # logits of token t from token t-1


def chunked(model: torch.nn.Module, tokens: torch.Tensor, chunk: int, score_first: bool = True) -> torch.Tensor:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    total, n = torch.zeros((), dtype=torch.float64), 0
    for lo in range(0, tokens.numel() - 1, chunk):
        y = tokens[lo + 1: lo + chunk + 1]
        x = tokens[lo: lo + y.numel()]
        if not score_first:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        with torch.no_grad():
            total += F.cross_entropy(model(x), y, reduction="sum").double()
        n += y.numel()
        if score_first:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return total / n


def test_score_first_is_legal_and_train_first_violates_c3_with_evidence():
    with traced(STREAM, vocab_size=V) as t:
        t.report(chunked(table(), t.stream, 6))
    t.assert_legal()
    assert t.status("D1") is Status.NOT_RUN  # training is outside the block
    with pytest.raises(RuleAssertion, match="expected C3 to FAIL, it is PASS"):
        t.assert_violates("C3")

    with traced(STREAM, vocab_size=V) as bad:
        bad.report(chunked(table(), bad.stream, 6, score_first=False))
    bad.assert_violates("C3")
    with pytest.raises(RuleAssertion) as err:
        bad.assert_legal()
    msg = str(err.value)
    # the report's evidence: rule, first positions, the file:line of the update and of the score
    assert "C3 FAIL" in msg and "positions 1, 2, 3" in msg and "test_testing_api.py:" in msg
    assert bad.first_positions("C3")[:3] == [1, 2, 3]
    assert err.value.outcome is bad.outcome


def test_tracer_and_hooks_are_undone_even_when_the_block_raises():
    real = (builtins.open, io.open, socket.socket.connect, os.system, np.fromfile, torch.load, torch.Tensor.tolist)
    with pytest.raises(ZeroDivisionError):
        with traced(STREAM, vocab_size=V) as t:
            _ = t.stream + 1
            assert tracer.current() is not None and builtins.open is not real[0]
            1 / 0
    assert tracer.current() is None
    assert (builtins.open, io.open, socket.socket.connect, os.system, np.fromfile, torch.load,
            torch.Tensor.tolist) == real
    assert leftovers() == []
    with pytest.raises(RuntimeError, match="computed when the traced block exits"):
        t.assert_legal()
    with traced(STREAM, vocab_size=V) as again:  # a fresh block after a failed one works
        again.report(chunked(table(), again.stream, 9))
    again.assert_legal()


def test_what_the_tracer_cannot_see_is_never_legal():
    # a loss computed in Python from escaped numbers: no score the trace can follow
    with traced(STREAM, vocab_size=V) as t:
        ids = t.stream.tolist()
        t.report(float(np.mean([(a * 7 + b) % 5 for a, b in zip(ids, ids[1:])])))
    assert t.status("C1") is Status.INCONCLUSIVE
    with pytest.raises(RuleAssertion, match="C1 INCONCLUSIVE"):
        t.assert_legal()
    # the code scores its own copy of the stream, never the served one
    with traced(STREAM, vocab_size=V) as t1:
        own = torch.tensor(STREAM.astype(np.int64))
        t1.report(chunked(table(), own, 6))
    assert {t1.status(r) for r in ("C1", "C3", "C4")} == {Status.INCONCLUSIVE}
    # nothing reported
    with traced(STREAM, vocab_size=V) as t2:
        chunked(table(), t2.stream, 6)
    assert t2.status("C4") is Status.INCONCLUSIVE and any("t.report" in n for n in t2.notes)
    with pytest.raises(RuleAssertion):
        t2.assert_legal()
    # io hooks off: the data rules are not called clean
    with traced(STREAM, vocab_size=V, watch_io=False) as t3:
        t3.report(chunked(table(), t3.stream, 6))
    assert t3.status("D2") is Status.INCONCLUSIVE and t3.status("D3") is Status.INCONCLUSIVE
    with pytest.raises(RuleAssertion, match="D2"):
        t3.assert_legal()
    t3.assert_legal(rules=("C1", "C3", "C4"))


def test_data_rules_see_network_and_training_reads_in_the_block(tmp_path):
    train = shards.write_shard(tmp_path / "fineweb_train_000000.bin", STREAM)
    with traced(STREAM, vocab_size=V) as t:
        with pytest.raises(OSError):
            socket.create_connection(("203.0.113.7", 80), timeout=1)
        np.fromfile(train, dtype="<u2", offset=shards.HEADER_BYTES)
        t.report(chunked(table(), t.stream, 6))
    t.assert_violates("D3")
    t.assert_violates("D2")
    assert "203.0.113.7" in t.evidence("D3") and t.status("C3") is Status.PASS


def test_code_that_reads_the_served_shard_itself_is_traced():
    with traced(STREAM, vocab_size=V) as t:
        header = np.fromfile(t.shard, dtype="<i4", count=256)
        tokens = np.fromfile(t.shard, dtype="<u2", count=int(header[2]), offset=shards.HEADER_BYTES)
        t.report(chunked(table(), torch.from_numpy(tokens.astype(np.int64)), 6))
    t.assert_legal()
    assert [e["hi"] for e in t.ledger.of("read") if e.get("how") != "harness.testing"] == [STREAM.size]


def test_failing_example_report_is_written(pytester):
    report_dir = pytester.path / "reports"
    pytester.makepyfile(test_user=textwrap.dedent("""
        import numpy as np, torch, torch.nn.functional as F, pytest

        @pytest.mark.harness(vocab_size=8)
        def test_two_passes(harness_trace):
            with harness_trace(np.arange(9) % 8) as t:
                x, y = t.stream[:-1], t.stream[1:]
                logits = torch.zeros(8, 8)
                a = F.cross_entropy(logits[x], y, reduction="none")
                t.report(torch.minimum(a, F.cross_entropy(logits[x] * 2, y, reduction="none")).mean())
            t.assert_legal()

        def test_plain_assert_after_a_block(harness_trace):  # not a RuleAssertion: the last block is reported
            with harness_trace(np.arange(9) % 8, vocab_size=8) as t:
                t.report(torch.zeros(()))  # a number no score produced
            assert t.status("C4").value == "PASS"
    """))
    res = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "--harness-report", str(report_dir))
    res.assert_outcomes(failed=2)
    res.stdout.fnmatch_lines(["*not legal: C4 FAIL*"])
    reports = {p.name: json.loads(p.read_text()) for p in report_dir.glob("*.json")}
    assert len(reports) == 2
    c4 = {name.split("test_user.py_")[-1]: {r["rule_id"]: r for r in rep["rules"]}["C4"]["status"]
          for name, rep in reports.items()}
    assert c4 == {"test_two_passes.json": "FAIL", "test_plain_assert_after_a_block.json": "INCONCLUSIVE"}, c4


SCRIPT = '''
import os, torch, torch.nn.functional as F
VOCAB = int(os.environ.get("VOCAB_SIZE", "8"))
DEVICE = torch.device("cuda")  # a record assumes a GPU: the shim maps it to the CPU
def eval_val(model, val_tokens):
    x, y = val_tokens[:-1].to(DEVICE), val_tokens[1:].to(DEVICE)
    with torch.no_grad():
        return F.cross_entropy(model(x), y)
def main():
    raise SystemExit("training ran on import")
main()
if __name__ == "__main__":
    main()
'''


def test_load_submission_module_runs_no_training_and_keeps_line_numbers(tmp_path):
    script = tmp_path / "rec" / "train_gpt.py"
    script.parent.mkdir()
    script.write_text(SCRIPT.replace('DEVICE = torch.device("cuda")', 'DEVICE = torch.device("cpu")')
                      + 'NAME = f"{"nested"}"\n')  # Python 3.12 syntax: rewritten on 3.11, lines kept
    lines = script.read_text().splitlines()
    line: dict[str, int] = {}
    for i, text in enumerate(lines, start=1):
        line.setdefault(text.strip(), i)
    before = os.environ.get("VOCAB_SIZE")
    mod = load_submission_module(script, env={"VOCAB_SIZE": "16"}, shim=False)
    info = mod.__harness_load__
    assert mod.VOCAB == 16 and os.environ.get("VOCAB_SIZE") == before and mod.NAME == "nested"
    assert info.skipped == [f"{line['main()']}: main()"]  # the unguarded call; the guarded one never runs
    assert info.rewritten_lines == ([len(lines)] if sys.version_info < (3, 12) else [])
    with traced(STREAM[:9], vocab_size=16, code=mod) as t:
        t.report(mod.eval_val(torch.nn.Embedding(16, 16), t.stream))
    t.assert_legal()
    # evidence cites the record's own file and lines
    sites = {e.get("site") for e in t.ledger.of("score")}
    assert sites == {f"train_gpt.py:{line['return F.cross_entropy(model(x), y)']}"}


def test_load_submission_module_with_the_cpu_shim_in_its_own_process(tmp_path):
    """The shim patches torch for the rest of a process: its test runs in a child."""
    script = tmp_path / "rec" / "train_gpt.py"
    script.parent.mkdir()
    script.write_text(SCRIPT)
    code = textwrap.dedent(f"""
        import numpy as np, torch
        from harness.testing import load_submission_module, traced
        mod = load_submission_module({str(script)!r})
        with traced(np.arange(9) % 8, vocab_size=8, code=mod) as t:
            t.report(mod.eval_val(torch.nn.Embedding(8, 8), t.stream))
        t.assert_legal()
        print("OK", mod.DEVICE, mod.__harness_load__.shim)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and "OK" in proc.stdout and "True" in proc.stdout, proc.stderr[-3000:]


@settings(max_examples=30, deadline=None)
@given(s=hst.eval_settings(vocab=20, max_len=60))
def test_strategies_draw_consistent_settings(s):
    tok = s.tokens
    assert tok.dtype == np.uint16 and tok.size > s.seq_len and tok.max() < 20 and tok[0] == shards.BOS_ID
    bos = np.flatnonzero(tok == shards.BOS_ID)
    assert (np.diff(bos) >= 2).all()  # documents of at least two tokens
    assert 1 <= s.stride <= s.seq_len and s.chunk >= 1 and s.epochs >= 1
    spans = hst.rank_spans(tok.size - 1, s.world_size)
    assert spans[0][0] == 0 and spans[-1][1] == tok.size - 1 and all(hi > lo for lo, hi in spans)
