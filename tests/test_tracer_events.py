"""Ledger events of the tracer: score ids and bags, consume, combine, update, stats."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.runtime.tracer import state as tracer_state
from test_tracer_util import V, Trace, scores, trace  # noqa: F401


def _nll(trace: Trace, n: int = 32, rows: int = 4, lo: int = 0, seed: int = 0):
    t = trace.ttokens(n + 1, lo=lo)
    torch.manual_seed(seed)
    emb = torch.nn.Embedding(V, V)
    logits = emb(t[:-1])
    nll = F.cross_entropy(logits, t[1:], reduction="none").view(rows, n // rows)
    return t, emb, nll


def _sid_pos(events: list[dict], sids: list[int]) -> list[int]:
    sc = scores(events)
    return sorted(sc[s]["pos"] for s in sids)


def test_score_ids_follow_slices_and_sums_to_item(trace: Trace) -> None:
    _, _, nll = _nll(trace)
    part = nll[:, 5:].float() * 1.0
    value = part.sum().item()
    ev = trace.close()
    cons = [e for e in ev if e["kind"] == "consume"]
    assert len(cons) == 1 and cons[0]["op"] == "item"
    assert _sid_pos(ev, cons[0]["sids"]) == sorted(8 * r + c + 1 for r in range(4) for c in range(5, 8))
    assert cons[0]["value"] == pytest.approx(value)
    sc = scores(ev)
    assert sum(sc[s]["nll"] for s in cons[0]["sids"]) == pytest.approx(value, rel=1e-5)


def test_accumulators_grow_their_bag(trace: Trace) -> None:
    t = trace.ttokens(49)
    emb = torch.nn.Embedding(V, V)
    loss_sum = torch.zeros((), dtype=torch.float64)
    for i in range(0, 48, 16):
        nll = F.cross_entropy(emb(t[i : i + 16]), t[i + 1 : i + 17], reduction="none")
        loss_sum += nll.to(torch.float64).sum()
    val = (loss_sum / 48).item()
    ev = trace.close()
    (c,) = [e for e in ev if e["kind"] == "consume"]
    assert _sid_pos(ev, c["sids"]) == list(range(1, 49))
    assert c["value"] == pytest.approx(val)
    assert not [e for e in ev if e["kind"] == "update"]  # a score accumulator is not state


def test_tolist_float_print_and_all_reduce_consume(trace: Trace, capsys: pytest.CaptureFixture[str]) -> None:
    import torch.distributed as dist

    _, _, nll = _nll(trace)
    _ = nll[0, :3].tolist()
    _ = float(nll[1, 0])
    print(nll[2, :2])
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        total = nll[3].sum()
        dist.all_reduce(total)
    finally:
        dist.destroy_process_group()
    ev = trace.close()
    cons = {e["op"]: e for e in ev if e["kind"] == "consume"}
    assert _sid_pos(ev, cons["tolist"]["sids"]) == [1, 2, 3] and cons["tolist"]["numel"] == 3
    assert _sid_pos(ev, cons["item"]["sids"]) == [9]
    assert _sid_pos(ev, cons["print"]["sids"]) == [17, 18]
    assert _sid_pos(ev, cons["all_reduce"]["sids"]) == list(range(25, 33))


def _two_passes(trace: Trace):
    t = trace.ttokens(17)
    torch.manual_seed(0)
    emb = torch.nn.Embedding(V, V)
    n1 = F.cross_entropy(emb(t[:-1]), t[1:], reduction="none")
    with torch.no_grad():
        emb.weight.mul_(1.5)
    n2 = F.cross_entropy(emb(t[:-1]), t[1:], reduction="none")
    return n1.detach(), n2.detach()


@pytest.mark.parametrize("how", ["minimum", "stack_min", "where", "np_minimum", "stack_mean"])
def test_min_over_passes_emits_combine(trace: Trace, how: str) -> None:
    n1, n2 = _two_passes(trace)
    if how == "minimum":
        m = torch.minimum(n1, n2)
    elif how == "stack_min":
        m = torch.stack([n1, n2]).min(0).values
    elif how == "where":
        m = torch.where(n1 < n2, n1, n2)
    elif how == "stack_mean":
        m = torch.stack([n1, n2]).mean(0)
    else:
        m = torch.from_numpy(np.minimum(n1.numpy(), n2.numpy()))
    value = m.mean().item()
    ev = trace.close()
    combos = [e for e in ev if e["kind"] == "combine"]
    assert combos, how
    sc = scores(ev)
    for e in combos:
        for p, (a, b) in zip(e["pos"], e["sids"]):
            assert a != b and sc[a]["pos"] == sc[b]["pos"] == p
    assert {p for e in combos for p in e["pos"]} == set(range(1, 17))
    (c,) = [e for e in ev if e["kind"] == "consume"]
    assert len(c["sids"]) == 32 and c["value"] == pytest.approx(value)


def test_no_combine_for_distinct_positions(trace: Trace) -> None:
    n1, _ = _two_passes(trace)
    _ = (n1[:8] + n1[8:]).sum().item()
    _ = torch.maximum(n1[:8], n1[8:]).sum().item()
    assert not [e for e in trace.close() if e["kind"] == "combine"]


def test_log_of_a_mixture_is_a_derived_score(trace: Trace) -> None:
    t = trace.ttokens(17)
    x, y = t[:-1], t[1:]
    probs = torch.nn.Embedding(V, V)(x).softmax(-1)
    p_model = probs.gather(-1, y[:, None]).squeeze(-1)  # a score (probability) per target
    table = torch.rand(4096)
    p_legal = table[(x * 31) % 4096]  # context only
    p_bad = table[(x * 31 + y * 7) % 4096]  # hashes the target
    nll_ok = -torch.log(0.8 * p_model + 0.2 * p_legal)
    nll_bad = -torch.log(0.8 * p_model + 0.2 * p_bad)
    v_ok = nll_ok.mean().item()
    _ = nll_bad.mean().item()
    ev = trace.close()
    sc = scores(ev)
    derived = {s: v for s, v in sc.items() if v["op"] == "log"}
    assert len(derived) == 32
    cons = [e for e in ev if e["kind"] == "consume"]
    ok_sids = cons[0]["sids"]
    assert all(sc[s]["op"] == "log" for s in ok_sids)  # the derived scores replaced the model's
    assert np.mean([sc[s]["nll"] for s in ok_sids]) == pytest.approx(v_ok, rel=1e-5)
    assert all(sc[s]["dep"] == sc[s]["pos"] - 1 for s in ok_sids)
    assert all(sc[s]["dep"] >= sc[s]["pos"] for s in cons[1]["sids"])  # C1 shows


@pytest.mark.parametrize("gate_on_target", [False, True])
def test_a_mixture_weight_chosen_by_looking_at_the_target_shows_in_dep(trace: Trace, gate_on_target: bool) -> None:
    t = trace.ttokens(17)
    x, y = t[:-1], t[1:]
    with torch.no_grad():
        lp = F.log_softmax(torch.nn.Embedding(V, V)(x), -1)
        p_model = lp.exp()
        row = torch.rand(V, V)[x]
        p_cache = row / row.sum(-1, keepdim=True)  # a proper distribution (not a softmax output)
        if gate_on_target:
            lam = torch.where(p_cache.gather(-1, y[:, None]) > p_model.gather(-1, y[:, None]), 0.4, 0.0)
        else:
            ent = -(p_model * lp).sum(-1, keepdim=True)  # the model's uncertainty only: legal
            lam = 0.4 * torch.sigmoid(ent - 3.0)
        p_mix = (1.0 - lam) * p_model + lam * p_cache
        nll = -torch.log(p_mix.gather(-1, y[:, None]).squeeze(-1))
        value = nll.mean().item()
    ev = trace.close()
    sc = scores(ev)
    (c,) = [e for e in ev if e["kind"] == "consume"]
    assert np.mean([sc[s]["nll"] for s in c["sids"]]) == pytest.approx(value, rel=1e-5)
    deps_ok = [sc[s]["dep"] < sc[s]["pos"] for s in c["sids"]]
    assert len(deps_ok) == 16 and all(deps_ok) != gate_on_target


def test_log_of_a_max_over_passes_keeps_the_combination_visible(trace: Trace) -> None:
    n1, n2 = _two_passes(trace)
    best = torch.maximum(torch.exp(-n1), torch.exp(-n2))
    _ = (-torch.log(best)).mean().item()
    ev = trace.close()
    sc = scores(ev)
    (c,) = [e for e in ev if e["kind"] == "consume"]
    linked = [e for e in ev if e["kind"] == "combine" and "combined" in e["op"]]
    assert linked and {s for e in linked for pair in e["sids"] for s in pair} & set(c["sids"])
    assert all(sc[s]["op"] == "log" for s in c["sids"])


def _score_then(trace: Trace, model: torch.nn.Module, t: torch.Tensor, i: int) -> torch.Tensor:
    with torch.no_grad():
        F.cross_entropy(model(t[i : i + 8]), t[i + 1 : i + 9], reduction="sum")
    return F.cross_entropy(model(t[i : i + 8]), t[i + 1 : i + 9])


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "plain_function", "custom_class"])
def test_optimizer_steps_emit_updates_after_scores(trace: Trace, opt_name: str) -> None:
    t = trace.ttokens(33)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(V, 8), torch.nn.Linear(8, V))

    class Signum(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})

        @torch.no_grad()
        def step(self):
            for g in self.param_groups:
                for p in g["params"]:
                    if p.grad is not None:
                        buf = self.state[p].setdefault("m", torch.zeros_like(p))
                        buf.mul_(0.9).add_(p.grad)
                        p.add_(buf.sign(), alpha=-g["lr"])

    opt = {
        "sgd": lambda: torch.optim.SGD(model.parameters(), lr=0.1),
        "adam": lambda: torch.optim.Adam(model.parameters(), lr=0.01),
        "custom_class": lambda: Signum(model.parameters()),
        "plain_function": lambda: None,
    }[opt_name]()
    for i in (0, 8, 16):
        loss = _score_then(trace, model, t, i)
        model.zero_grad()
        loss.backward()
        if opt is None:
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
        else:
            opt.step()
    ev = trace.close()
    ups = [e for e in ev if e["kind"] == "update"]
    assert {u["target"] for u in ups if u["target"] == "param"} == {"param"}
    # every update comes after the scores of the positions it touches
    scored_before: set[int] = set()
    for e in ev:
        if e["kind"] == "score":
            scored_before.update(e["pos"])
        elif e["kind"] == "update":
            assert set(range(e["lo"], e["hi"] + 1)) - {0} <= scored_before, (opt_name, e)
    highs = sorted({u["hi"] for u in ups if u["target"] == "param"})
    assert highs == [8, 16, 24]
    if opt_name in ("adam", "custom_class"):
        assert any(u["target"] == "optimizer_state" for u in ups)
    if opt_name in ("sgd", "adam"):  # coalesced: one event per (target, op, site) and interval per step
        per_step = [u for u in ups if u["target"] == "param" and u["hi"] == 8]
        assert len(per_step) == len({(u["op"], u["site"]) for u in per_step})


def test_training_before_scoring_shows_in_dep_and_updates(trace: Trace) -> None:
    t = trace.ttokens(33)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(V, 8), torch.nn.Linear(8, V))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(model(t[:32]), t[1:])  # trains on every validation token first
    loss.backward()
    opt.step()
    with torch.no_grad():
        F.cross_entropy(model(t[:32]), t[1:], reduction="sum")
    ev = trace.close()
    eval_scores = scores(ev, grad=False)
    assert all(s["dep"] >= 32 for s in eval_scores.values())
    first_update = next(i for i, e in enumerate(ev) if e["kind"] == "update")
    first_eval = next(i for i, e in enumerate(ev) if e["kind"] == "score" and not e["grad"])
    assert first_update < first_eval


def test_buffers_tables_temporaries_and_accumulators(trace: Trace) -> None:
    t = trace.ttokens(17)

    class Stats(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("running", torch.zeros(4))

    mod = Stats()
    table = torch.zeros(64)
    acc = torch.zeros(4)
    emb = torch.nn.Embedding(V, V)
    nll = F.cross_entropy(emb(t[:8]), t[1:9], reduction="none")  # first score: table/acc are old now
    key = (t[:8] * 3 + t[1:9]) % 64
    table.index_put_((key,), torch.ones(8), accumulate=True)
    table[key[:2]] += 1
    mod.running.mul_(0.5).add_(t[:4].float())
    tmp = torch.zeros(8)  # born after the last score: a temporary
    tmp[:4] = t[4:8].float()
    acc += nll[:4].detach()
    ev = trace.close()
    ups = [e for e in ev if e["kind"] == "update"]
    by = {}
    for u in ups:
        by.setdefault(u["target"], []).append(u)
    assert {u["op"] for u in by["table"]} == {"index_put_"}
    assert min(u["lo"] for u in by["table"]) == 0 and max(u["hi"] for u in by["table"]) == 8
    assert [(u["lo"], u["hi"]) for u in by["buffer"]] == [(0, 3)]
    assert set(by) == {"table", "buffer"}


def test_stats_periodic_and_at_uninstall(trace: Trace, monkeypatch: pytest.MonkeyPatch) -> None:
    trace.tr._next_stats = trace.tr.traced_ops + 5
    monkeypatch.setattr(tracer_state, "STATS_EVERY", 5)
    t = trace.ttokens(8).float()
    for _ in range(12):
        t = t + 1
    ev = trace.close()
    stats = [e for e in ev if e["kind"] == "stats"]
    assert len(stats) >= 3
    last = stats[-1]
    assert last["traced_ops"] >= 12 and set(last) >= {"unruled_ops", "escapes", "traced_ops", "rule_counts"}


def test_threads_are_traced(trace: Trace) -> None:
    t = trace.ttokens(6)
    out = {}

    def work() -> None:
        out["y"] = t.float() * 2 + 1

    th = threading.Thread(target=work)
    th.start()
    th.join()
    assert trace.prov(out["y"])[1].tolist() == list(range(6))


def test_tagging_a_tensor_in_place(trace: Trace) -> None:
    buf = torch.empty(6, dtype=torch.int16)
    assert trace.ctx.tag_validation(buf, 10, "val") is buf
    assert trace.prov(buf.long())[1].tolist() == list(range(10, 16))
    t2 = torch.zeros(4, dtype=torch.int16)
    trace.ctx.tag_validation(t2.numpy(), 50, "val")  # readinto(tensor.numpy()) style
    assert trace.prov(t2)[1].tolist() == [50, 51, 52, 53]


def test_saving_tensors_calibrated_on_tokens_is_a_state_change(trace: Trace) -> None:
    """AWQ/GPTQ-style calibration: scales from activations of validation tokens, folded into the weights that
    torch.save writes (to a buffer or a file): the saved state is built from those positions."""
    from harness.runtime.io_hooks.arrays import _note_serialized

    t = trace.ttokens(33)
    emb = torch.nn.Embedding(V, 8)
    lin = torch.nn.Linear(8, 8)
    _note_serialized({"clean": lin.weight.detach(), "model": lin})  # nothing seen from tokens yet
    with torch.no_grad():
        scale = emb(t[4:20]).abs().mean(dim=0) + 1e-3  # activation statistics over positions 4..19
        q = torch.round(lin.weight * scale).to(torch.int8)
    _note_serialized({"w": q, "meta": [torch.ones(2), {"s": scale.half()}], "n": 3})
    ups = [e for e in trace.close() if e["kind"] == "update"]
    assert [(u["target"], u["op"], u["lo"], u["hi"]) for u in ups] == [("serialized", "torch.save", 4, 19)]
    assert ups[0]["site"].startswith("test_tracer_events.py:")


def test_a_copy_onto_itself_is_no_write(trace: Trace) -> None:
    """The Triton interpreter on a CPU copies each argument's storage back onto itself after a launch (its
    host copy IS the device storage): that changes no value, so it neither widens provenance nor counts as
    a cache write, while a real copy into the same old tensor still does."""
    t = trace.ttokens(33)
    act = torch.empty(16, 8)  # a kernel's output buffer (torch.empty), filled, then alive past a score
    act.copy_(torch.nn.Embedding(V, 8)(t[:16]).detach())
    F.cross_entropy(torch.nn.Embedding(V, V)(t[:8]), t[1:9], reduction="none")
    before = trace.prov(act)[1].tolist()
    st = act.untyped_storage()
    st.copy_(st.cpu())  # what triton.runtime.interpreter does for every tensor argument
    assert trace.prov(act)[1].tolist() == before
    assert [e for e in trace.close() if e["kind"] == "update"] == []


def test_a_real_copy_into_an_old_tensor_is_still_a_write(trace: Trace) -> None:
    t = trace.ttokens(33)
    act = torch.zeros(16, 8)
    F.cross_entropy(torch.nn.Embedding(V, V)(t[:8]), t[1:9], reduction="none")
    act.copy_(torch.nn.Embedding(V, 8)(t[16:32]).detach())
    ups = [e for e in trace.close() if e["kind"] == "update"]
    assert [(u["target"], u["op"], u["lo"], u["hi"]) for u in ups] == [("table", "copy_", 16, 31)]


def test_the_last_read_of_a_throwaway_copy_is_recorded(trace: Trace) -> None:
    """A LoRA-style adapter trained on tokens, then left alone (a compile warmup; the graph of its last loss
    keeps it alive): its updates name the blocks they wrote; `release` records, per block, when the script
    last read it - before the later scores for the adapter, at the end for the kept model - and a freed
    block's record comes before the next event."""
    t = trace.ttokens(33)
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Embedding(V, 8), torch.nn.Linear(8, V))
    F.cross_entropy(base(t[:8]), t[1:9], reduction="none")  # a first score: state born before it is old
    warm = torch.nn.Linear(8, 8)
    opt = torch.optim.AdamW(warm.parameters(), lr=0.01)
    loss = F.cross_entropy(base[1](warm(base[0](t[16:24]))), t[17:25])
    loss.backward()
    opt.step()
    del opt  # its moments are freed now; `loss` keeps warm's parameters alive
    keep_opt = torch.optim.SGD(base.parameters(), lr=0.1)
    base.zero_grad()  # the warmup's gradients reached base too: a step on them would be a kept update
    F.cross_entropy(base(t[8:16]), t[9:17], reduction="none").sum().backward()
    keep_opt.step()
    F.cross_entropy(base(t[24:32]), t[25:33], reduction="none")
    ev = trace.close()
    seq_of_last_score = max(e["seq"] for e in ev if e["kind"] == "score")
    warm_ups = [e for e in ev if e["kind"] == "update" and e["hi"] == 24]
    assert warm_ups and all(e.get("states") for e in warm_ups)
    rec = {}
    for e in ev:
        if e["kind"] == "release":
            assert len(e["states"]) == len(e["last_read"]) == len(e["escapes"])
            rec.update({s: (e["seq"], lr, n) for s, lr, n in zip(e["states"], e["last_read"], e["escapes"])})
    warm_states = {s for e in warm_ups for s in e["states"]}
    assert warm_states <= set(rec)
    first_base_score = next(e["seq"] for e in ev if e["kind"] == "score" and 9 in e["pos"])
    assert all(rec[s][1] <= first_base_score for s in warm_states)  # unread after the warmup
    assert all(rec[s][2] == 0 for s in warm_states)
    freed = [s for s in warm_states if rec[s][0] < first_base_score]  # AdamW's moments: freed, written early
    assert freed
    kept = {s for e in ev if e["kind"] == "update" and e["hi"] == 16 for s in e.get("states", [])}
    assert kept and not kept & warm_states
    assert kept <= set(rec) and all(rec[s][1] >= seq_of_last_score for s in kept)  # read by the last forward
