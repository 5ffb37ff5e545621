"""numpy provenance: the traced ndarray, tables, escapes, and the torch<->numpy boundary."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.runtime.tracer.traced_numpy import TracedArray
from test_tracer_util import V, Trace, scores, trace  # noqa: F401


def test_tagged_arrays_views_and_copies(trace: Trace) -> None:
    a = trace.tokens(12, lo=100)
    assert isinstance(a, TracedArray)
    assert trace.prov(a.reshape(3, 4).T[1])[1].tolist() == [101, 105, 109]
    assert trace.prov(a[::-2])[1].tolist() == list(range(111, 99, -2))
    for c in (a.astype(np.int64), a.copy(), np.array(a, dtype=np.float32), np.asarray(a), a.reshape(3, 4).T.flatten()):
        lo, hi = trace.prov(c)
        assert isinstance(c, TracedArray) and np.array_equal(np.sort(hi.ravel()), np.arange(100, 112))
    assert trace.prov(a.reshape(3, 4).T.flatten())[1].tolist() == np.arange(100, 112).reshape(3, 4).T.ravel().tolist()


def test_torch_roundtrip_shares_provenance(trace: Trace) -> None:
    a = trace.tokens(8, lo=5)
    t = torch.from_numpy(a.astype(np.int64))
    assert trace.prov(t)[1].tolist() == list(range(5, 13))
    back = (t[2:6] * 2).numpy()
    assert isinstance(back, TracedArray) and trace.prov(back)[1].tolist() == [7, 8, 9, 10]
    t2 = torch.as_tensor(a[1:3].astype(np.float32))
    assert trace.prov(t2)[1].tolist() == [6, 7]
    t3 = torch.tensor(a[:2])
    assert trace.prov(t3)[1].tolist() == [5, 6]


def test_ufuncs_reduce_accumulate_outer(trace: Trace) -> None:
    a = trace.tokens(8).astype(np.float64)
    assert trace.prov(a[:4] + a[4:] * 2)[0].tolist() == [0, 1, 2, 3]
    assert trace.prov(a[:4] + a[4:] * 2)[1].tolist() == [4, 5, 6, 7]
    m = a.reshape(2, 4)
    assert trace.prov(m.sum(axis=1))[1].tolist() == [3, 7]
    assert trace.prov(np.add.reduce(m, axis=0))[0].tolist() == [0, 1, 2, 3]
    assert trace.prov(np.cumsum(a))[0].tolist() == [0] * 8
    assert trace.prov(np.cumsum(a))[1].tolist() == list(range(8))
    assert trace.prov(np.multiply.outer(a[:2], a[6:]))[1].tolist() == [[6, 7], [6, 7]]
    assert trace.prov(a * np.array([0.0] * 4 + [1.0] * 4))[1].tolist() == [-1] * 4 + [4, 5, 6, 7]
    s = a.mean()
    assert isinstance(s, TracedArray) and s.ndim == 0 and trace.prov(s)[1] == 7


def test_fancy_indexing_includes_the_key(trace: Trace) -> None:
    a = trace.tokens(10).astype(np.int64)
    table = np.random.rand(64)
    key = (a[:5] * 3 + a[1:6]) % 64
    lo, hi = trace.prov(table[key])
    assert lo.tolist() == [0, 1, 2, 3, 4] and hi.tolist() == [1, 2, 3, 4, 5]
    assert trace.prov(a[[9, 0]])[1].tolist() == [9, 0]
    mask = a[:5] > 10  # traced boolean mask: every selected element depends on it
    sel = a[:5][mask]
    assert (trace.prov(sel)[1] == 4).all()
    raw = np.random.rand(5, V)
    probs = raw / raw.sum(-1, keepdims=True)
    tgt = a[1:6]
    assert (trace.prov(probs[np.arange(5), tgt])[1] == -1).all()  # the target's pick from a distribution
    assert trace.prov(raw[np.arange(5), tgt])[1].tolist() == [1, 2, 3, 4, 5]  # not normalized: counts
    counts = np.random.rand(5, 100)
    assert trace.prov(counts[np.arange(5), tgt])[1].tolist() == [1, 2, 3, 4, 5]  # not a vocab row


def test_add_at_and_setitem_on_tables_emit_updates(trace: Trace) -> None:
    a = trace.tokens(20).astype(np.int64)
    ctx_t = np.zeros(64, dtype=np.uint32)  # created by a submission file (this test file): traced table
    full_t = np.zeros(64, dtype=np.uint32)
    assert isinstance(ctx_t, TracedArray)
    t = torch.from_numpy(a)
    torch.nn.functional.cross_entropy(torch.nn.Embedding(V, V)(t[:9]), t[1:10], reduction="none")  # a score
    key = (a[:9] * 7) % 64
    np.add.at(ctx_t, key, 1)
    full_t[(a[:9] * 7 + a[1:10]) % 64] += 1
    lo, hi = trace.prov(ctx_t)
    assert hi.max() == 8 and (hi[np.unique(key)] >= 0).all()
    tmp = np.zeros(5)  # born after the last score: a temporary
    tmp[:3] = a[:3]
    ev = trace.close()
    ups = [e for e in ev if e["kind"] == "update"]
    assert {u["op"] for u in ups} == {"np.add.at", "np.setitem"}
    assert all(u["target"] == "array" and u["hi"] <= 9 for u in ups)


def test_bincount_and_where(trace: Trace) -> None:
    a = trace.tokens(6).astype(np.int64) % 4
    c = np.bincount(a, minlength=4)
    lo, hi = trace.prov(c)
    for v in range(4):
        idx = np.nonzero(a.view(np.ndarray) == v)[0]
        assert hi[v] == (idx.max() if idx.size else -1)
    w = np.where(np.array([True, False, True]), a[:3], np.zeros(3))
    assert trace.prov(w)[1].tolist() == [0, -1, 2]


def test_unruled_functions_widen_and_are_counted(trace: Trace) -> None:
    a = trace.tokens(8).astype(np.float64)
    med = np.median(a[2:6])
    assert trace.prov(med)[0] == 2 and trace.prov(med)[1] == 5
    srt = np.sort(a[:4])
    assert (trace.prov(srt)[1] == 3).all() and (trace.prov(srt)[0] == 0).all()
    conv = np.convolve(a[4:7], np.ones(2))  # a C routine on plain arrays: widened to every input
    assert isinstance(conv, TracedArray) and (trace.prov(conv)[0] == 4).all() and (trace.prov(conv)[1] == 6).all()
    st_ = trace.events("stats")[-1]
    assert st_["unruled_ops"].get("np.convolve") == 1


def test_copies_by_methods_without_a_rule_are_widened_not_lost(trace: Trace) -> None:
    a = trace.tokens(8).astype(np.int64)
    c = a[2:6].compress([True, False, True, True])  # an ndarray method this module does not override
    lo, hi = trace.prov(c)
    assert (lo == 2).all() and (hi == 5).all()
    c[0] = 7  # a partial write keeps the widened provenance of the rest
    lo, hi = trace.prov(c)
    assert hi.tolist() == [-1, 5, 5]
    assert trace.events("stats")[-1]["coarse"]["numpy:unruled-method"] >= 1


def test_escapes_and_consumes(trace: Trace) -> None:
    t = trace.ttokens(9)
    nll = torch.nn.functional.cross_entropy(torch.nn.Embedding(V, V)(t[:-1]), t[1:], reduction="none")
    arr = nll.detach().numpy()
    seg = arr[2:5].astype(np.float64)
    total = float(seg.sum())
    _ = arr[0].item() if hasattr(arr[0], "item") else arr[0]
    _ = [x for x in arr[5:7]]
    ev = trace.close()
    cons = [e for e in ev if e["kind"] == "consume"]
    sc = scores(ev)
    f = [c for c in cons if c["op"] == "float"][0]
    assert sorted(sc[s]["pos"] for s in f["sids"]) == [3, 4, 5] and f["value"] == pytest.approx(total)
    assert [sorted(sc[s]["pos"] for s in c["sids"]) for c in cons if c["op"] == "iter"] == [[6, 7]]
    assert any(c["op"] == "getitem" and [sc[s]["pos"] for s in c["sids"]] == [1] for c in cons)


def test_constructors_are_traced_only_for_submission_code(trace: Trace, tmp_path: Path) -> None:
    lib = tmp_path / "somelib.py"
    lib.write_text("import numpy as np\n\ndef make():\n    return np.zeros(3)\n")
    spec = importlib.util.spec_from_file_location("somelib_tracer_test", lib)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    assert type(mod.make()) is np.ndarray
    assert isinstance(np.zeros(3), TracedArray) and isinstance(np.full(2, 1.0), TracedArray)
    sys.modules.pop("somelib_tracer_test", None)


def test_ngram_mixture_pattern(trace: Trace) -> None:
    """The shape of a score-first n-gram eval: per-segment NLL in numpy, tables updated after."""
    toks = trace.tokens(65)
    val = torch.from_numpy(toks.astype(np.int64))
    val_np = val.numpy()
    emb = torch.nn.Embedding(V, V)
    ctx_tab = np.zeros(256, dtype=np.uint32)
    full_tab = np.zeros(256, dtype=np.uint32)
    loss_sum, count = 0.0, 0
    nll_by_hash = {}
    for hashed_target in (False, True):
        for s in range(0, 64, 16):
            with torch.no_grad():
                nll = torch.nn.functional.cross_entropy(emb(val[s : s + 16]), val[s + 1 : s + 17], reduction="none")
            p = np.exp(-nll.double().numpy())
            j = np.arange(s + 1, s + 17)
            ck = (val_np[j - 1].astype(np.uint64) * np.uint64(31)) % np.uint64(256)
            if hashed_target:
                fk = (ck ^ val_np[j].astype(np.uint64) * np.uint64(7)) % np.uint64(256)
                png = np.minimum(full_tab[fk.astype(np.int64)], ctx_tab[ck.astype(np.int64)]) / np.maximum(
                    ctx_tab[ck.astype(np.int64)], 1.0)
            else:
                png = (ctx_tab[ck.astype(np.int64)] > 0) / V
            mixed = 0.9 * p + 0.1 * png
            seg = -np.log(np.clip(mixed, 1e-12, 1.0))
            np.add.at(ctx_tab, ck.astype(np.int64), 1)
            if hashed_target:
                np.add.at(full_tab, fk.astype(np.int64), 1)
            loss_sum += float(seg.sum())
            count += seg.size
        nll_by_hash[hashed_target] = loss_sum / count
        loss_sum, count = 0.0, 0
    ev = trace.close()
    sc = scores(ev)
    cons = [e for e in ev if e["kind"] == "consume" and e["op"] == "float"]
    legal, bad = cons[:4], cons[4:]
    legal_sids = [s for c in legal for s in c["sids"]]
    assert sorted(sc[s]["pos"] for s in legal_sids) == list(range(1, 65))
    assert all(sc[s]["op"] == "np.log" and sc[s]["dep"] < sc[s]["pos"] for s in legal_sids)
    assert np.mean([sc[s]["nll"] for s in legal_sids]) == pytest.approx(nll_by_hash[False], rel=1e-6)
    bad_sids = [s for c in bad for s in c["sids"]]
    assert all(sc[s]["dep"] >= sc[s]["pos"] for s in bad_sids)
    ups = [e for e in ev if e["kind"] == "update"]
    assert ups and all(u["target"] == "array" for u in ups)


@settings(max_examples=40, deadline=None)
@given(
    r0=st.integers(0, 4), r1=st.integers(1, 5), step=st.sampled_from([1, 2, -1]), transpose=st.booleans(),
    picks=st.lists(st.integers(0, 5), min_size=1, max_size=4),
)
def test_property_numpy_views_and_fancy_picks(tmp_path_factory, r0: int, r1: int, step: int, transpose: bool,
                                             picks: list[int]) -> None:
    tr = Trace(tmp_path_factory.mktemp("np"))
    try:
        a = tr.tokens(30).reshape(6, 5)
        ref = np.arange(30).reshape(6, 5)
        sl = slice(r0, r0 + r1, step) if step > 0 else slice(r0 + r1, r0, -1)
        v, r = a[sl], ref[sl]
        if transpose:
            v, r = v.T, r.T
        assert np.array_equal(tr.prov(v)[1], r)
        f = a[picks]
        assert np.array_equal(tr.prov(f)[0], ref[picks])
        c = (v * 1).astype(np.float32)
        assert np.array_equal(tr.prov(c)[1], r)
    finally:
        tr.close()
