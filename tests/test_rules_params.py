"""Every parameter in rules/*.toml is read: overriding it from a harness.toml changes what the harness decides.

PARAMS is the table: (rule, parameter, override, observe, expected with the rules' value, expected with the
override). `observe(cfg, tmp)` runs the part of the harness that reads the parameter. A parameter added to
rules/*.toml without a row here fails test_every_rule_parameter_has_a_row, so the table stays complete.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest

from harness.check.folder import check_folder
from harness.check.options import CheckOptions
from harness.config import Config, load_config
from harness.errors import BadInput
from harness.probes.session import c2_budget, probe_params
from harness.results import Status
from harness.rules import load_rules, ruleset_version
from harness.verdict import judge
from harness.verdict.budgets import Timing, check_budget
from harness.verdict.handwritten import LedgerBuilder

ROOT = Path(__file__).resolve().parents[1]
SUB = ROOT / "submissions" / "check_compliant"
OVER_STRICT = ROOT / "submissions" / "check_over_cap_strict"

# ---------------------------------------------------------------- observers


def _check(rid: str, sub: Path = SUB, opts: CheckOptions = CheckOptions(hints=False)) -> Callable[..., Any]:
    def observe(cfg: Config, tmp: Path) -> Any:
        return {r.rule_id: r for r in check_folder(sub, cfg, opts).rules}[rid].status
    return observe


def _edited(tmp: Path, **claims: Any) -> Path:
    """check_compliant with submission.json changed."""
    dest = tmp / "sub"
    if not dest.exists():
        shutil.copytree(SUB, dest)
        data = json.loads((dest / "submission.json").read_text(encoding="utf-8"))
        for k, f in claims.items():
            data[k] = f(data[k])
        (dest / "submission.json").write_text(json.dumps(data), encoding="utf-8")
    return dest


def _check_edited(rid: str, **claims: Any) -> Callable[..., Any]:
    def observe(cfg: Config, tmp: Path) -> Any:
        return _check(rid, _edited(tmp, **claims))(cfg, tmp)
    return observe


def _s3(big: bool = False) -> Callable[..., Any]:
    """S3 on check_compliant, or (big) on a copy whose artifact inflates about 2x to 4 MiB: the ratio test
    only applies past the 1 MiB every artifact may inflate to."""
    def observe(cfg: Config, tmp: Path) -> Any:
        sub = SUB
        if big:
            import io
            import zlib

            import torch

            sub = tmp / "big"
            if not sub.exists():
                shutil.copytree(SUB, sub)
                w = torch.zeros(1 << 20, dtype=torch.int8)  # 1 MiB, half of it random bytes
                w[: 1 << 19] = torch.randint(-128, 128, (1 << 19,), dtype=torch.int8,
                                             generator=torch.Generator().manual_seed(0))
                buf = io.BytesIO()
                torch.save({"w": w, "w2": w.clone(), "w3": w.clone(), "w4": w.clone()}, buf)
                (sub / "final_model.int8.ptz").write_bytes(zlib.compress(buf.getvalue()))
        r = {r.rule_id: r for r in check_folder(sub, cfg, CheckOptions(hints=False)).rules}["S3"]
        return r.status, "bomb" in r.summary.lower() or "cap" in r.summary.lower()
    return observe


def _budget(rid: str, kind: str, seconds: float) -> Callable[..., Any]:
    def observe(cfg: Config, tmp: Path) -> Any:
        tm = Timing(train_s=seconds if kind == "train" else None, eval_s=seconds if kind == "eval" else None,
                    last_train_read_s=None, source="test")
        return check_budget(rid, kind, tm, cfg.rule_params(rid), "full", None).status
    return observe


def _late_reads(stated_s: float) -> Callable[..., Any]:
    """B2 with training reads after the script's clock stopped, and a claimed run stating `stated_s`."""
    def observe(cfg: Config, tmp: Path) -> Any:
        from harness.verdict.budgets import ClaimedTraining, LateReads

        tm = Timing(train_s=1.0, eval_s=None, last_train_read_s=None, source="test")
        late = LateReads(1.0, "step:20/20 train_time:1000ms", 2.0,
                         [{"kind": "train_read", "t": 1.5, "site": "train_gpt.py:90", "file": "fineweb_train_0.bin"}])
        claimed = ClaimedTraining(stated_s, "train.log", 7, f"stopping_early: train_time:{stated_s * 1000:.0f}ms")
        return check_budget("B2", "train", tm, cfg.rule_params("B2"), "tiny", None, late, claimed).status
    return observe


# B5 on three seeds whose one-sided p against REF is about 0.1 (df = 2)
LOSSES = [1.00, 1.01, 1.02]
REF = 1.0259


def _b5(what: str) -> Callable[..., Any]:
    def observe(cfg: Config, tmp: Path) -> Any:
        from harness.check.decide import rule_b5

        st = SimpleNamespace(runs=[SimpleNamespace(final=SimpleNamespace(val_loss=v)) for v in LOSSES])
        row, res = rule_b5(cfg, st, CheckOptions(reference_val_loss=REF))
        if what == "status":
            return row.status
        if what == "threshold":
            return round(res.threshold, 4)
        return row.summary.split("; at the practised ")[-1]
    return observe


def _probe(name: str, device: str = "cpu") -> Callable[..., Any]:
    return lambda cfg, tmp: probe_params(cfg, device)[name]


def _c2_budget(cfg: Config, tmp: Path) -> int:
    return c2_budget(probe_params(cfg), 1000, 1.0)[0]  # 1000 candidates at 1 s each


# hand-written ledgers (as in tests/test_verdict.py)
N = 129
RNG = np.random.default_rng(7)
VT = RNG.integers(4, 1000, size=N)
PB = np.r_[0, RNG.integers(1, 5, size=N - 1)]
NLL = RNG.uniform(0.5, 4.0, size=N)


def _numbers(pos: Any, nll: Any, pb: np.ndarray = PB) -> tuple[float, float]:
    pos, nll = np.asarray(list(pos)), np.asarray(list(nll), dtype=float)
    return float(nll.mean()), float(nll.sum() / math.log(2.0) / pb[pos].sum())


def _params(cfg: Config) -> dict[str, Any]:
    return {rid: cfg.rule_params(rid) for rid in cfg.rules}


def _ledger(nll: np.ndarray = NLL, loss_off: float = 0.0, bpb_off: float = 0.0, early_read: bool = False):
    b = LedgerBuilder()
    b.run_start()
    if early_read:
        b.read(0, N, site="train_gpt.py:70")
    b.train_read(site="train_gpt.py:64")
    b.artifact_write(site="train_gpt.py:226")
    b.read(0, N, site="train_gpt.py:70")
    pos = list(range(1, N))
    for i in range(0, len(pos), 32):
        ps = pos[i: i + 32]
        b.consume(b.score(ps, [nll[p] for p in ps], site="train_gpt.py:188"), site="train_gpt.py:200")
    loss, bpb = _numbers(pos, nll[1:])
    b.reported("final", loss + loss_off, bpb + bpb_off)
    return b


def _judge(rid: str, **ledger: Any) -> Callable[..., Any]:
    def observe(cfg: Config, tmp: Path) -> Any:
        b = _ledger(**ledger)
        v = judge(b.ledger(), printed=b.printed(), val_tokens=VT, pos_bytes=PB, params=_params(cfg), seq_lens=[64])
        return v.result(rid).status
    return observe


def _c4_why(**ledger: Any) -> Callable[..., Any]:
    """Why C4 failed, in the words of its first FAIL finding."""
    def observe(cfg: Config, tmp: Path) -> Any:
        b = _ledger(**ledger)
        v = judge(b.ledger(), printed=b.printed(), val_tokens=VT, pos_bytes=PB, params=_params(cfg), seq_lens=[64])
        msg = next(f.message for f in v.result("C4").findings if f.status is Status.FAIL)
        return msg.rstrip(".").split(": ")[-1]
    return observe


def _tail(cfg: Config, tmp: Path) -> Any:
    vt, pb = np.r_[VT, VT[:10]], np.r_[PB, PB[1:11]]  # 10 targets past the scored 128
    b = _ledger()
    v = judge(b.ledger(), printed=b.printed(), val_tokens=vt, pos_bytes=pb, params=_params(cfg), seq_lens=[])
    return v.result("C4").status


NEGATIVE_NLL = NLL.copy()
NEGATIVE_NLL[40] = -0.01  # a probability above 1, by 0.01 nats

# ---------------------------------------------------------------- the table

PARAMS: list[tuple[str, str, Any, Callable[..., Any], Any, Any]] = [
    # S2 by consequence: a claim better than the logs (lower val_bpb) FAILs; a bytes disagreement is a WARN
    ("S2", "val_bpb_abs_tolerance", 0.01, _check_edited("S2", val_bpb=lambda x: x - 0.002), Status.FAIL, Status.PASS),
    ("S2", "bytes_abs_tolerance", 5, _check_edited("S2", bytes_total=lambda x: x + 3), Status.WARN, Status.PASS),
    ("S3", "max_decompressed_bytes", 1000, _s3(), (Status.PASS, False), (Status.FAIL, True)),
    ("S3", "max_ratio", 1.5, _s3(big=True), (Status.PASS, False), (Status.FAIL, True)),
    ("B1", "max_bytes", 20_000, _check("B1"), Status.PASS, Status.FAIL),
    ("B1", "decide_on", "strict", _check("B1", OVER_STRICT), Status.WARN, Status.FAIL),
    ("B2", "max_seconds", 500.0, _check("B2"), Status.PASS, Status.FAIL),
    ("B2", "compile_allowance_seconds", 10.0, _budget("B2", "train", 608.0), Status.FAIL, Status.PASS),
    ("B2", "grace_seconds", 0.0, _budget("B2", "train", 603.0), Status.PASS, Status.FAIL),
    ("B2", "near_cap_seconds", 5.0, _late_reads(597.0), Status.PASS, Status.FAIL),
    ("B3", "max_seconds", 40.0, _check("B3"), Status.PASS, Status.FAIL),
    ("B3", "grace_seconds", 0.0, _budget("B3", "eval", 603.0), Status.PASS, Status.FAIL),
    ("B5", "p_value", 0.25, _b5("status"), Status.WARN, Status.PASS),
    ("B5", "practice_p_value", 0.05, _b5("practice"), "p<0.25: significant", "p<0.05: not significant"),
    ("B5", "min_improvement_nats", 0.02, _b5("threshold"), round(REF - 0.005, 4), round(REF - 0.02, 4)),
    ("B5", "min_seeds", 4, _b5("status"), Status.WARN, Status.INCONCLUSIVE),
    ("C1", "c1_perturbations", 5, _probe("c1_perturbations"), 2, 5),
    ("C1", "c1_abs_tolerance", 0.25, _probe("c1_abs_tolerance"), 0.0, 0.25),
    ("C1", "c1_cuda_abs_tolerance", 0.5, _probe("c1_abs_tolerance", "cuda"), 1e-4, 0.5),
    ("C1", "echo_copies", 4, _probe("echo_copies"), 3, 4),
    ("C1", "echo_alpha", 0.05, _probe("echo_alpha"), 1e-3, 0.05),
    # past the tolerance the trace leaves C2 to the probes (NOT RUN here)
    ("C2", "normalization_tolerance", 0.1, _judge("C2", nll=NEGATIVE_NLL), Status.FAIL, Status.NOT_RUN),
    ("C2", "c2_candidates", 50, _c2_budget, 900, 50),
    ("C2", "c2_time_budget_s", 100, _c2_budget, 900, 100),
    ("C2", "c2_default_candidates", 4, _probe("c2_default_candidates"), 8, 4),
    ("C2", "c2_default_time_budget_s", 60, _probe("c2_default_time_budget_s"), 120, 60),
    ("C2", "c2_alpha", 0.05, _probe("c2_alpha"), 1e-3, 0.05),
    ("C2", "c2_sampled_tolerance", 0.2, _probe("c2_sampled_tolerance"), 0.05, 0.2),
    ("C2", "c2_confidence", 0.9, _probe("c2_confidence"), 0.99, 0.9),
    ("C2", "canary_alphabet", 16, _probe("canary_alphabet"), 32, 16),
    ("C2", "canary_doc_len", 128, _probe("canary_doc_len"), 64, 128),
    ("C2", "canary_alpha", 0.05, _probe("canary_alpha"), 1e-3, 0.05),
    # the abs tolerances find the reported pass; the printed precision then decides (a shaded score FAILs)
    ("C4", "val_loss_abs_tolerance", 0.01, _judge("C4", loss_off=0.003), Status.INCONCLUSIVE, Status.FAIL),
    ("C4", "val_bpb_abs_tolerance", 0.01, _c4_why(bpb_off=0.003), "wrong byte counting", "a shaded score"),
    ("C4", "tail_allowance_tokens", 20, _tail, Status.FAIL, Status.WARN),
    # a printed val_loss 3e-4 off (inside the search tolerance) is a shaded score unless the floor allows it
    ("C4", "printed_precision_floor", 0.01, _judge("C4", loss_off=0.0003), Status.FAIL, Status.PASS),
    ("D1", "early_read", "fail", _judge("D1", early_read=True), Status.WARN, Status.FAIL),
]


def _toml(value: Any) -> str:
    return json.dumps(value)  # str, int, float, bool: JSON literals are TOML literals


def _override(tmp: Path, rule: str, name: str, value: Any) -> Config:
    p = tmp / "harness.toml"
    p.write_text(f"[rules.{rule}]\n{name} = {_toml(value)}\n", encoding="utf-8")
    return load_config(p)


def test_every_rule_parameter_has_a_row():
    in_toml = {(rid, k) for rid, r in load_rules().items() for k in r.parameters}
    in_table = {(rid, k) for rid, k, *_ in PARAMS}
    assert in_toml - in_table == set(), "rule parameters with no row in PARAMS (add one: override it, see it act)"
    assert in_table - in_toml == set(), "rows for parameters rules/*.toml does not define"


@pytest.mark.parametrize("rule, name, value, observe, before, after", PARAMS,
                         ids=[f"{r}.{n}" for r, n, *_ in PARAMS])
def test_overriding_a_parameter_changes_the_outcome(tmp_path, rule, name, value, observe, before, after):
    default = _override(tmp_path, "B1", "decide_on", "practised")  # a no-op override: the rules' values
    assert load_rules()[rule].parameters[name] != value, "the override must differ from the rules' value"
    assert observe(default, tmp_path) == before
    assert observe(_override(tmp_path, rule, name, value), tmp_path) == after


def test_a_missing_parameter_is_a_clear_error_naming_rule_and_parameter(tmp_path):
    rd = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rd)
    f = rd / "budgets.toml"
    f.write_text(f.read_text(encoding="utf-8").replace("max_bytes = 16_000_000\n", ""), encoding="utf-8")
    cfg = Config({"harness": {"rules_dir": str(rd)}})
    with pytest.raises(BadInput, match=r"rule B1: parameter 'max_bytes' is not defined"):
        check_folder(SUB, cfg, CheckOptions(hints=False))
    with pytest.raises(BadInput, match=r"rule B1: parameter 'max_bytes'"):
        load_rules(str(rd))["B1"].param("max_bytes")


def test_an_unknown_override_is_a_clear_error(tmp_path):
    p = tmp_path / "harness.toml"
    p.write_text("[rules.B1]\nmax_byts = 1\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"B1 has no parameter max_byts"):
        load_config(p)
    p.write_text("[rules.Z9]\nx = 1\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"no rule Z9"):
        load_config(p)
    p.write_text("[probes]\nc2_candidates = 4\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"c2_candidates is a C2 rule parameter"):
        probe_params(load_config(p))


def test_ruleset_version_is_defined_once():
    v = ruleset_version()
    assert v and v[0].isdigit()
    defined = [f.name for f in (ROOT / "rules").glob("*.toml") if "[ruleset]" in f.read_text(encoding="utf-8")]
    assert defined == ["ruleset.toml"]
