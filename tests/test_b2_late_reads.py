"""Issue 12: B2 from training reads after the script's training clock, the claimed run's stated clock,
the cheap default probes of `check --run`, and the harness byte table validated against decoded text."""

from __future__ import annotations

from pathlib import Path

from harness.cli.options import CHEAP_PROBES, ProbeOptions, options_from
from harness.cli.parser import build_parser
from harness.config import load_config
from harness.ledger import Ledger
from harness.results import Status
from harness.verdict.budgets import Timing, check_budget, claimed_training, late_train_reads

PARAMS = {"max_seconds": 600.0, "grace_seconds": 5.0, "compile_allowance_seconds": 0.0, "near_cap_seconds": 2.0}


def _ledger(read_ts: list[float]) -> Ledger:
    evs = [{"seq": 0, "t": 0.0, "rank": 0, "kind": "run_start", "traced": True},
           {"seq": 1, "t": 1.0, "rank": 0, "kind": "train_read", "site": "train_gpt.py:65", "file": "fineweb_train_0.bin"},
           {"seq": 0, "t": 5.0, "rank": -1, "kind": "phase", "name": "train_clock", "line": "step:4/4 train_time:4000ms"}]
    evs += [{"seq": 2 + i, "t": t, "rank": 0, "kind": "train_read", "site": "train_gpt.py:90",
             "file": "fineweb_train_0.bin", "coalesced": 3} for i, t in enumerate(read_ts)]
    evs.append({"seq": 9, "t": 8.0, "rank": 0, "kind": "artifact_write", "site": "train_gpt.py:229", "path": "m.ptz"})
    evs.sort(key=lambda e: e["t"])
    return Ledger(evs)


def _log(tmp: Path, *lines: str) -> list[dict]:
    p = tmp / "train_seed1.log"
    p.write_text("\n".join(lines) + "\n")
    from harness.check.logs import parse_log

    return [parse_log(p)]


TM = Timing(4.0, None, None, "test")


def test_reads_after_the_clock_at_the_cap_fail_b2(tmp_path: Path):
    late = late_train_reads(_ledger([6.0, 6.5]))
    assert late is not None and late.count == 6 and late.by_site()[0][:2] == ("train_gpt.py:90", 6)
    claimed = claimed_training(_log(tmp_path, "stopping_early: wallclock_cap train_time:600036ms step:9/9"))
    assert claimed is not None and claimed.line_no == 1 and abs(claimed.train_s - 600.036) < 1e-9
    r = check_budget("B2", "train", TM, PARAMS, "tiny", None, late, claimed)
    assert r.status is Status.FAIL and "train_seed1.log:1" in r.summary
    assert any(ev.where == "train_gpt.py:90" for f in r.findings for ev in f.evidence)


def test_reads_inside_a_stated_reserve_pass_with_the_reason(tmp_path: Path):
    late = late_train_reads(_ledger([6.0]))
    claimed = claimed_training(_log(tmp_path, "gptq:reserving 14000ms from training budget, effective=586000ms",
                                    "stopping_early: wallclock_cap train_time:586100ms step:9/9",
                                    "gptq:calibrated 66 layers in 6.8s"))
    assert claimed is not None and claimed.reserve_s == 14.0 and claimed.after_s == 6.8
    r = check_budget("B2", "train", TM, PARAMS, "tiny", None, late, claimed)
    assert r.status is Status.PASS and "inside a reserved budget" in r.summary


def test_no_claimed_run_warns_and_no_late_read_passes(tmp_path: Path):
    r = check_budget("B2", "train", TM, PARAMS, "tiny", None, late_train_reads(_ledger([6.0])), None)
    assert r.status is Status.WARN and r.severity == "info"
    r = check_budget("B2", "train", TM, PARAMS, "tiny", None, late_train_reads(_ledger([])), None)
    assert r.status is Status.PASS and "no training-data read between" in r.summary


def test_check_run_runs_the_cheap_probes_unless_told_not_to():
    cfg = load_config()
    opts = lambda *a: options_from(build_parser().parse_args(["check", "x", *a]), cfg)  # noqa: E731
    assert opts("--run").probes == CHEAP_PROBES and CHEAP_PROBES.sampled
    assert opts("--run", "--no-probes").probes is None
    assert opts("--run", "--probes").probes == ProbeOptions()
    assert opts().probes is None


def test_sampled_c2_never_passes():
    from harness.probes.outcome import ProbeOutcome
    from harness.probes.stage import _sampled_c2_cannot_pass

    o = _sampled_c2_cannot_pass(ProbeOutcome("c2", "C2", Status.PASS, "estimated Z = 1.0"))
    assert o.status is Status.INCONCLUSIVE and "cannot pass" in o.message
    o = _sampled_c2_cannot_pass(ProbeOutcome("c2", "C2", Status.FAIL, "Z = 3"))
    assert o.status is Status.FAIL


def test_byte_table_validated_against_decoded_text():
    from harness.data import bpb
    from harness.data.builtin import ensure_data

    paths = ensure_data(vocab_size=1024)
    val = paths.read_val()[:20000]
    tables = bpb.byte_tables(paths.tokenizer, 1024)
    good = bpb.validate_tables(paths.tokenizer, val, bpb.stream_bytes(tables, val))
    assert good.ok and good.documents > 0 and "validated" in good.line()
    bad = bpb.stream_bytes(tables, val) + 1  # one byte too many per target
    assert not bpb.validate_tables(paths.tokenizer, val, bad).ok
