"""C2 proven by the trace: a score is marked ``norm`` only when it is -log of the target token's own entry
(the index is the token as read, moved by integer copies only) in a normalized full-vocabulary row; the
verdict PASSes C2 when every score of the reported pass is so marked and C1 passed."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_tracer_util import V, Trace, trace  # noqa: F401
from harness.probes.results import merge_rule_results
from harness.results import RuleResult, Status
from harness.verdict import judge
from harness.verdict.handwritten import LedgerBuilder


def _norms(tr: Trace) -> list[bool]:
    return [bool(e.get("norm")) for e in tr.events("score")]


def _logits(x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(x.numel(), V) + x[:, None].float() * 0.01  # row t depends on x_t (the input) only


def test_log_softmax_nll_gather_and_index_picks_by_the_token_are_normalized(trace: Trace) -> None:
    toks = trace.ttokens(17)
    x, y = toks[:-1], toks[1:]
    logits = _logits(x)
    a = F.cross_entropy(logits, y, reduction="none")
    b = -torch.log(F.softmax(logits, -1).gather(-1, y[:, None]).squeeze(-1))
    c = -F.log_softmax(logits, -1)[torch.arange(16), y]
    (a.sum() + b.sum() + c.sum()).item()
    ev = trace.events("score")
    assert {e["op"] for e in ev} >= {"nll_loss", "gather", "log", "index"}
    assert all(e.get("norm") is True for e in ev)


def test_windows_copied_into_a_fresh_buffer_stay_the_token(trace: Trace) -> None:
    toks = trace.ttokens(33)
    y = torch.zeros(2, 16, dtype=torch.int64)
    x = torch.zeros(2, 16, dtype=torch.int64)
    for i in range(2):
        chunk = toks[16 * i: 16 * i + 17].to(torch.int32).to(torch.int64)
        x[i], y[i] = chunk[:-1], chunk[1:]
    F.cross_entropy(_logits(x.reshape(-1)), y.reshape(-1)).item()
    assert _norms(trace) == [True]


def test_a_padded_window_scores_its_valid_targets_as_normalized_picks(trace: Trace) -> None:
    """Per-document windows pad their tail: y = torch.where(valid, window, 0), valid from the window's length
    (plain integers). The padding is no token (no score); every valid target stays the token itself."""
    toks = trace.ttokens(17)
    x, y = toks[:-1], toks[1:]
    valid = torch.arange(16) < 11
    yp = torch.where(valid, y, 0)
    F.cross_entropy(_logits(x), yp, reduction="none")[:11].sum().item()
    ev = trace.events("score")
    assert ev and all(e.get("norm") is True for e in ev)
    assert sum(len(e["pos"]) if isinstance(e["pos"], list) else 1 for e in ev) == 11


# a transform of the target index before the pick: the first keep the token, the others are functions of it
_SAME: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "clone": lambda y: y.clone(),
    "int32": lambda y: y.to(torch.int32).long(),
    "cat": lambda y: torch.cat([y[:8], y[8:]]),
    "flip2": lambda y: y.flip(0).flip(0),
    "index": lambda y: y[torch.arange(y.numel())],
    # a window padded by a condition no token shaped (every element valid here)
    "where_pad": lambda y: torch.where(torch.arange(y.numel()) < y.numel(), y, 0),
    "masked_fill": lambda y: y.masked_fill(torch.arange(y.numel()) >= y.numel(), 0),
}
_CHANGED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hash": lambda y: (y * 7 + 3) % V,
    "clamp": lambda y: y.clamp(max=V // 2),
    "plus0": lambda y: y + 0,
    "float": lambda y: y.float().long(),
    "inplace": lambda y: y.clone().mul_(1),
    "by_values": lambda y: torch.arange(V)[y],  # an index picked by the tokens: the same values, not a copy
    # a select whose condition the tokens shaped, or whose other side is computed: the same values here
    "where_by_token": lambda y: torch.where(y >= 0, y, 0),
    "where_other": lambda y: torch.where(torch.arange(y.numel()) < y.numel(), y, y * 1),
    "masked_by_token": lambda y: y.masked_fill(y < 0, 0),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chain=st.lists(st.sampled_from(sorted(_SAME) + sorted(_CHANGED)), min_size=0, max_size=3),
       how=st.sampled_from(["nll", "gather"]))
def test_the_pick_is_normalized_iff_the_index_is_the_token_itself(tmp_path_factory: Any, chain: list[str],
                                                                   how: str) -> None:
    tr = Trace(tmp_path_factory.mktemp("c2"))
    try:
        toks = tr.ttokens(17)
        x, y = toks[:-1], toks[1:]
        for name in chain:
            y = {**_SAME, **_CHANGED}[name](y)
        logits = _logits(x)
        if how == "nll":
            F.cross_entropy(logits, y, reduction="sum").item()
        else:
            (-torch.log(F.softmax(logits, -1).gather(-1, y[:, None]))).sum().item()
        norms = [bool(e.get("norm")) for e in tr.events("score") if e["op"] in ("nll_loss", "gather")]
    finally:
        tr.close()
    expect = not any(n in _CHANGED for n in chain)
    assert norms and all(n == expect for n in norms), (chain, norms)


def test_an_unnormalized_or_partial_row_is_not_normalized(trace: Trace) -> None:
    toks = trace.ttokens(17)
    x, y = toks[:-1], toks[1:]
    logits = _logits(x)
    p = F.softmax(logits, -1)
    half = -torch.log((0.5 * p + 0.5).gather(-1, y[:, None]))  # a row summing to V/2 + 0.5
    narrow = F.cross_entropy(logits[:, : V // 2], y.clamp(max=V // 2 - 1))  # not the whole vocabulary
    (half.sum() + narrow).item()
    assert not any(_norms(trace))


def test_a_log_of_the_pick_changed_after_picking_is_not_the_picks_score(trace: Trace) -> None:
    toks = trace.ttokens(17)
    x, y = toks[:-1], toks[1:]
    pick = F.softmax(_logits(x), -1).gather(-1, y[:, None]).squeeze(-1)
    floored = torch.maximum(pick, torch.full_like(pick, 1e-30))  # equal at every target, not for others
    pick2 = F.softmax(_logits(x), -1).gather(-1, y[:, None]).squeeze(-1)
    pick2.clamp_(min=1e-30)  # in place, on the picked block itself
    (-torch.log(floored)).sum().item()
    (-torch.log(pick2)).sum().item()
    logs = [e for e in trace.events("score") if e["op"] == "log"]
    assert logs and not any(e.get("norm") for e in logs)


def test_a_read_sharing_its_block_with_other_traced_values_is_not_raw(trace: Trace) -> None:
    buf = np.zeros(40, np.uint16)
    buf[:] = np.arange(40) % V
    a = trace.ctx.tag_validation(buf[:20], 0, "fineweb_val_000000.bin")
    # arithmetic in place drops the block; a second read tagged into it then shares it with that value
    a += 0
    y = torch.from_numpy(np.asarray(trace.ctx.tag_validation(buf[20:], 20, "fineweb_val_000000.bin")
                                    ).astype(np.int64))
    F.cross_entropy(_logits(y[:-1]), y[1:]).item()
    assert _norms(trace) == [False]


# ------------------------------------------------------------------------------------------ verdict

N = 65
VT = np.random.default_rng(3).integers(4, 1000, size=N)
PB = np.r_[0, np.full(N - 1, 3)]


def _c2(norm: list[bool], dep_shift: int = 1, artifact: bool = True, twice: bool = False,
        update_first: bool = False, early_read: bool = False, cut: int = 0) -> RuleResult:
    """C2 of a hand-written pass of two score events (positions 1..32, 33..64).
    twice: a second pass over the same positions adds to the printed number (C4 FAIL);
    update_first: a TTT step on the first chunk before its score (C3 FAIL); no artifact: D1 undecided;
    early_read: validation loaded before the artifact, used by no update (D1 WARN);
    cut: the last `cut` targets left unscored, no sequence length explaining it (C4 WARN)."""
    return _judge(norm, dep_shift, artifact, twice, update_first, early_read, cut).result("C2")


def _judge(norm: list[bool], dep_shift: int = 1, artifact: bool = True, twice: bool = False,
           update_first: bool = False, early_read: bool = False, cut: int = 0) -> Any:
    b = LedgerBuilder()
    b.run_start()
    b.train_read(site="train_gpt.py:64")
    if early_read:
        b.read(0, N, site="train_gpt.py:66")
    if artifact:
        b.artifact_write(site="train_gpt.py:226")
    b.read(0, N, site="train_gpt.py:70")
    nll = np.random.default_rng(5).uniform(0.5, 4.0, size=N)
    for _ in range(2 if twice else 1):
        for k, flag in enumerate(norm):
            ps = list(range(1 + 32 * k, 33 + 32 * k - (cut if k == len(norm) - 1 else 0)))
            if update_first and k == 0:
                b.update(0, 32, site="train_gpt.py:210")
            s = b.score(ps, [nll[p] for p in ps], dep=[p - dep_shift for p in ps], site="train_gpt.py:188",
                        norm=flag)
            b.consume(s, site="train_gpt.py:200")
    pos = np.concatenate([np.arange(1, 1 + 32 * len(norm) - cut)] * (2 if twice else 1))
    b.reported("final", float(nll[pos].mean()), float(nll[pos].sum() / np.log(2.0) / PB[pos].sum()))
    return judge(b.ledger(), printed=b.printed(), val_tokens=VT, pos_bytes=PB, seq_lens=[32])


def test_verdict_passes_c2_only_when_every_reported_score_is_normalized() -> None:
    ok = _c2([True, True])
    assert ok.status is Status.PASS and ok.checker == "trace" and ok.findings and ok.findings[0].evidence
    assert _c2([True, False]).status is Status.NOT_RUN
    assert _c2([False, False]).status is Status.NOT_RUN


def test_the_c2_proof_needs_each_premise() -> None:
    assert _c2([True, True], dep_shift=0).status is not Status.PASS  # the row saw its target (C1 FAIL)
    assert _c2([True, True], twice=True).status is not Status.PASS  # two passes summed (C4)
    assert _c2([True, True], update_first=True).status is not Status.PASS  # trained on it first (C3)
    assert _c2([True, True], artifact=False).status is not Status.PASS  # D1 undecided


def test_a_premise_warned_on_an_accepted_shape_keeps_the_proof() -> None:
    """Real accepted records load validation before training (D1 WARN) and cut or re-score the tail (C4
    WARN); neither changes a score's row, so C2 still PASSes, and says which premise warned."""
    for kw, rule in (({"early_read": True}, "D1"), ({"cut": 4}, "C4")):
        v = _judge([True, True], **kw)
        assert v.result(rule).status is Status.WARN, (rule, v.result(rule).summary)
        c2 = v.result("C2")
        assert c2.status is Status.PASS and f"{rule} WARN" in c2.summary
    v = _judge([True, True], early_read=True, update_first=True)  # a WARN elsewhere does not hide a FAIL
    assert v.result("C3").status is Status.FAIL and v.result("C2").status is not Status.PASS


def test_a_probe_that_cannot_decide_keeps_the_traces_c2_pass_and_a_probe_fail_wins() -> None:
    trace_rows = [RuleResult("C2", "", Status.PASS, "proven", checker="trace")]
    undecided = [RuleResult("C2", "", Status.INCONCLUSIVE, "a sample", checker="probe")]
    failed = [RuleResult("C2", "", Status.FAIL, "sum 1.4", checker="probe")]
    assert merge_rule_results(trace_rows, undecided)[0][0].status is Status.PASS
    assert merge_rule_results(trace_rows, failed)[0][0].status is Status.FAIL
    c1 = [RuleResult("C1", "", Status.PASS, "x", checker="trace")]
    c1_probe = [RuleResult("C1", "", Status.INCONCLUSIVE, "y", checker="probe")]
    assert merge_rule_results(c1, c1_probe)[0][0].status is Status.INCONCLUSIVE  # only C2 has the proof


def test_a_score_computed_from_its_own_target_fails_c2_from_the_trace() -> None:
    """A row that depends on the target beyond the pick (a gate or a key on x_t) was not fixed before x_t was
    looked at: C2 FAIL with C1's evidence; a dependence on later tokens alone is C1's matter, not C2's."""
    c2 = _c2([True, True], dep_shift=0)
    assert c2.status is Status.FAIL and c2.checker == "trace"
    f = c2.findings[0]
    assert f.evidence[0].positions[:2] == [1, 2] and "its own target x_1" in f.message
    assert f.evidence[0].where  # file:line of the score
    assert _c2([True, True], dep_shift=-1).status is Status.NOT_RUN  # later tokens only: not C2's to decide
    # positions an update held before their score may owe the dependence to training (C3's): left out
    trained = _c2([True, True], dep_shift=0, update_first=True)
    assert trained.status is Status.FAIL and trained.findings[0].evidence[0].positions[0] == 33
    assert _c2([True, True], dep_shift=1).status is Status.PASS
