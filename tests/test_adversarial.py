"""The adversarial suite: attacks on the harness, each a copy of a legal reference submission with a small
illegal change (tests/adversarial.py), and the layer that must catch it. None may get exit 0.

End to end (the real runner, default options) for a representative set; the layer directly for the rest, so
the suite stays near two minutes on two cores:

    attack                layer                                     how tested
    ledger_rewrite        ledger channel (parent-owned ledger)      harness check --run (exit 1)
    score_shaded          C4 at the printed precision               harness check --run (exit 1)
    tracer_uninstall      private switches (refused, recorded)      harness check --run (exit 1), in process
    raw_thread            _thread.start_new_thread enters the mode  in process
    val_tokens_overwrite  the parent's copy of the served stream    harness check --run (exit 1), serve + verdict
    emit_replaced         tamper check (+ the trace: C1)            harness run (exit 1)
    disable_modes         dispatch-mode guard (tamper)              harness run (exit 2)
    os_read               OS witness (inotify)                      harness run (exit 2)
    mmap_read, symlink    OS witness                                the witness on a real file (test_witness)
    tolist_launder        C1 future probe (default in check --run)  the probe stage, C1 only
    probe_aware           probes served as files of the main run    a probe variant's view equals the main run's
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.config import load_config
from harness.results import Status
from harness.run.judge import judge_run
from harness.run.runner import run_submission

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adversarial import ATTACKS, make_attack  # noqa: E402

EXIT = {"FAIL": 1, "INCONCLUSIVE": 2}


@pytest.fixture(scope="module")
def attacks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("attacks")
    for name in ATTACKS:
        make_attack(name, root / name)
    return root


def _rows(result) -> dict:
    return {r.rule_id: r for r in judge_run(result, load_config()).rules}


# (attack, exit code, the rule that must FAIL, words in it): attacks the trace itself then catches, so the
# cheap probes are skipped (a violation is already shown) and each costs one run
CHECKED = [
    ("ledger_rewrite", 1, "C3", "updated on before"),  # the deleted update events are in the parent's ledger
    ("score_shaded", 1, "C4", "precision printed"),
    ("tracer_uninstall", 1, "C3", "updated on before"),  # the switch was refused: the training stayed traced
    ("val_tokens_overwrite", 1, "C4", "wrong byte counting"),  # the recomputation uses the parent's copy
]


@pytest.mark.parametrize("name, code, rule, words", CHECKED)
def test_check_run_with_default_options_is_never_compliant(attacks: Path, tmp_path: Path, name: str, code: int,
                                                           rule: str, words: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["check", str(attacks / name), "--run", "--json", str(tmp_path / "r.json")])
    rep = json.loads((tmp_path / "r.json").read_text())
    rules = {r["rule_id"]: r for r in rep["rules"]}
    assert rc == code, {k: (v["status"], v["summary"]) for k, v in rules.items()}
    assert rules[rule]["status"] == "FAIL" and words in json.dumps(rules[rule]), rules[rule]
    assert any("probes not run: the trace already found a violation" in n for n in rep["notes"])


@pytest.mark.parametrize("name, status, rule, words", [
    ("emit_replaced", "FAIL", "C3", "emit was replaced"),
    ("disable_modes", "INCONCLUSIVE", "C3", "_disable_current_modes"),
    ("os_read", "INCONCLUSIVE", "D1", "open(s) of the served validation file"),
])
def test_harness_run_catches_it(attacks: Path, tmp_path: Path, name: str, status: str, rule: str, words: str):
    result = run_submission(attacks / name, load_config(), out_dir=tmp_path / "out")
    assert not result.failed, result.message
    rows = _rows(result)
    legality = [rows[r].status for r in ("C1", "C3", "C4", "D1") if r in rows]
    worst = "FAIL" if Status.FAIL in legality else "INCONCLUSIVE" if Status.INCONCLUSIVE in legality else "PASS"
    assert worst == status, {r: (rows[r].status, rows[r].summary) for r in rows}
    text = rows[rule].summary + " ".join(f.message for f in rows[rule].findings)
    assert rows[rule].status is not Status.PASS and words in text, (rows[rule].status, text)


# ------------------------------------------------------------------ layers, in process


def _submission_ctx(tmp_path: Path):
    """A runtime context whose 'submission' is tmp_path, and a way to run code as if from its train_gpt.py."""
    from harness.runtime import context

    sub = tmp_path / "sub"
    sub.mkdir()
    ctx = context.init(context.RuntimeSettings(ledger_dir=str(tmp_path / "ledger"), t0=time.time(), trace=True,
                                               submission_dir=str(sub), vocab_size=32))

    def run_as_script(code: str, env: dict) -> dict:
        exec(compile(code, str(sub / "train_gpt.py"), "exec"), env)
        return env

    return ctx, run_as_script


def _tamper_events(tmp_path: Path) -> list[dict]:
    from harness.ledger import read_ledger

    return [e for e in read_ledger(tmp_path / "ledger").events if e["kind"] == "tamper"]


def test_tracer_switches_refuse_the_script_and_say_so(tmp_path: Path):
    from harness.runtime import context, tracer

    ctx, run_as_script = _submission_ctx(tmp_path)
    tr = tracer._install(ctx)
    try:
        env = run_as_script("from harness.runtime import tracer as t\nt.uninstall()\ncur = t.current()\n", {})
        assert env["cur"] is None and tracer._TRACER is tr  # refused: still tracing
        import torch
        from torch.utils._python_dispatch import _disable_current_modes, _get_current_dispatch_mode_stack

        assert any("TraceMode" in type(m).__name__ for m in _get_current_dispatch_mode_stack())
        run_as_script("with _dcm():\n    x = torch.ones(2) + 1\n", {"_dcm": _disable_current_modes, "torch": torch})
        ctx.ledger.close()
        what = [(e["what"], e["detail"]) for e in _tamper_events(tmp_path)]
        assert ("tracer", "the script called harness.runtime.tracer.uninstall()") in what
        assert any(w == "dispatch_mode" and "_disable_current_modes" in d for w, d in what)
        assert all(e.get("site", "").startswith("train_gpt.py:") for e in _tamper_events(tmp_path))
    finally:
        tracer._uninstall()
        context._CTX = None


def test_a_raw_thread_runs_under_the_tracer_and_replaced_writers_are_found(tmp_path: Path):
    import _thread
    import threading

    from harness.runtime import context, tracer

    ctx, _ = _submission_ctx(tmp_path)
    tracer._install(ctx)
    try:
        seen: list[bool] = []
        done = threading.Event()

        def work() -> None:
            from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

            seen.append(any("TraceMode" in type(m).__name__ for m in _get_current_dispatch_mode_stack()))
            done.set()

        _thread.start_new_thread(work, ())
        assert done.wait(10) and seen == [True]
        assert ctx.tamper_check() == []
        orig = ctx.emit
        ctx.emit = lambda kind, *a, **k: 0 if kind == "update" else orig(kind, *a, **k)
        assert ("ledger", "the runtime context's emit was replaced") in ctx.tamper_check()
    finally:
        tracer._uninstall()
        context._CTX = None


def test_the_recomputation_uses_the_parents_copy_of_the_served_stream(tmp_path: Path):
    """The script overwrote val_tokens.npy while it ran: the parent writes its own copy after the run, and
    `harness verdict` on a saved run refuses a copy that is not the stream served (its hash in run.json)."""
    from harness.run.serve import serve_data

    out = tmp_path / "out"
    data = tmp_path / "data"
    data.mkdir()
    from harness.data.shards import write_shard

    # no BOS in the stream: no document cut, only the alignment to whole sequences
    write_shard(data / "fineweb_val_000000.bin", (np.arange(300) % 50 + 2).astype(np.uint16))
    served = serve_data(data, tmp_path / "root", out, tokenizer=None, vocab_size=64, val_tokens=129, align=64)
    assert served.val_tokens == 129 and served.val_sha256
    np.save(out / "val_tokens.npy", np.full(129, 5, dtype=np.uint16))  # the script's forgery
    served.save_tokens()
    assert np.array_equal(np.load(out / "val_tokens.npy"), served.stream)
    # a saved run whose copy was changed later: not used (val_bpb not recomputed), never trusted
    from harness.verdict.core import verdict_for_run

    (tmp_path / "ledger").mkdir()
    run = {"out_dir": str(out), "served": {"val_sha256": served.val_sha256}, "tokenizer": None}
    np.save(out / "val_tokens.npy", np.full(129, 5, dtype=np.uint16))
    v = verdict_for_run(tmp_path / "ledger", run, None)
    assert any("does not match the hash" in n for n in v.notes)
    # the byte table's source (the tokenizer) changed after it was served: no recomputation from it
    tok = tmp_path / "tok.model"
    tok.write_bytes(b"edited")
    run = {"out_dir": str(out), "tokenizer": str(tok), "served": {"tokenizer_sha256": "0" * 64}}
    v = verdict_for_run(tmp_path / "ledger", run, None)
    assert any("is not the one served" in n for n in v.notes)


def test_laundered_tokens_are_caught_by_the_default_c1_probe(attacks: Path, tmp_path: Path):
    """The trace loses provenance through .tolist(); check --run's default probes include C1 future
    perturbation, which sees the scores move when tokens after them change."""
    from harness.probes.stage import probe_rule_results

    cfg = load_config()
    cfg.raw.setdefault("rules", {}).setdefault("C1", {})["c1_perturbations"] = 1
    cfg.raw.setdefault("run", {})["val_tokens"] = 1025  # a shorter main stream: every variant gets its length
    rows, section = probe_rule_results(attacks / "tolist_launder", cfg, {"out_dir": str(tmp_path / "p")},
                                       which=("c1",), sampled=True)
    c1 = next(r for r in rows if r.rule_id == "C1")
    assert c1.status is Status.FAIL, (c1.summary, section.get("variants_failed"))
    assert section["executor"] == "harness run, one run per variant"  # served as files, no fork server
    assert section["replay"].startswith("run:")  # the cheap set replays only to confirm a move


def test_a_probe_variant_cannot_be_told_from_the_main_run(tmp_path: Path):
    """What a script can see (environment, runtime settings, the served files' names and sizes) is the same
    in the main run and in a probe variant."""
    from harness.probes.execute import HarnessExecutor, Variant

    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "train_gpt.py").write_text(
        "import json, os\n"
        "root = os.path.dirname(os.getcwd())\n"
        "skip = {'RUN_ID', 'HARNESS_RUNTIME', 'HARNESS_RUNTIME_OWNER', 'HARNESS_RUN_MARKER', 'PWD', 'OLDPWD',\n"
        "        'SHLVL', '_'}\n"
        "env = {k: v.replace(root, '<root>') for k, v in os.environ.items() if k not in skip}\n"
        "rt = json.loads(os.environ['HARNESS_RUNTIME'])\n"
        "rt = {k: v for k, v in rt.items() if k not in ('t0', 'ledger_fd', 'submission_dir')}\n"
        "files = sorted((os.path.relpath(os.path.join(d, f), root), os.path.getsize(os.path.join(d, f)))\n"
        "               for d, _, fs in os.walk(os.environ['DATA_DIR']) for f in fs)\n"
        "print('VIEW ' + json.dumps({'env': env, 'rt': json.dumps(rt).replace(root, '<root>'), 'files': files}))\n"
        "print('final val_loss:1.0 val_bpb:1.0')\n", encoding="utf-8")
    cfg = load_config()

    def view(stdout: str) -> dict:
        line = next(x for x in stdout.splitlines() if x.startswith("VIEW "))
        return json.loads(line[5:])

    main_run = run_submission(sub, cfg, out_dir=tmp_path / "main", trace=False)
    n = main_run.served["val_tokens"]
    ex = HarnessExecutor(sub, cfg, {"trace": False}, tmp_path / "session", fork=False)
    rng = np.random.default_rng(0)
    ex._single(Variant("c1_after9", rng.integers(4, 1000, size=n).astype(np.uint16), "c1"))
    probe_out = Path(ex.base_result.out_dir)
    a = view(Path(main_run.stdout_path).read_text())
    b = view((probe_out / "stdout.txt").read_text())
    assert "HARNESS_PROBE" not in b["env"] and "probe" not in b["rt"]
    assert a == b
