"""run_submission: run a submission's own train_gpt.py in a sandboxed child with the runtime injected.

Flow: fresh working copy -> served data -> environment -> launch (python, or torchrun for several
processes) -> watch (ledger phases, budgets at full scale, wall-clock cap, output flood) -> kill the
tree -> classify the end -> parent ledger events -> RunResult (run.json in the out folder).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.check.logs import pick_reported
from harness.check.score_lines import PrintedScore as ScoreLine
from harness.check.score_lines import carries_score, parse_line, script_times
from harness.config import Config
from harness import progress
from harness.errors import BadInput
from harness.fsutil import atomic_write_text
from harness.ledger import ChannelReader, LedgerWriter, channel_pair
from harness.run import py312, sandbox
from harness.run.ending import classify, summarize_budget
from harness.run.interpreter import resolve_python
from harness.run.monitor import PARENT_LEDGER, BudgetClock, BudgetLimits, LedgerTail, PhaseTracker, clear_ledger
from harness.run.py312 import SourceRewrite
from harness.run.requirements import missing_package_line
from harness.run.result import Reported, RunResult
from harness.run.scale import SCALES, env_overrides
from harness.run.serve import TRAIN_GLOB, VAL_GLOB, Served, block_length, serve_data
from harness.run.witness import Witness
from harness.run.workdir import Workdir, copy_caps, locate_script, prepare_workdir
from harness.runtime.context import ENV_VAR, RuntimeSettings, private_settings_fd

POLL_S = 0.2
DEFAULT_VAL_TOKENS = 4096 + 1
MAX_ARTIFACT_COPY = 64 * 1024 * 1024
SITE_DIR = Path(__file__).resolve().parent.parent / "runtime" / "site"


def default_out_dir(path: str | os.PathLike[str], run_cfg: dict[str, Any]) -> Path:
    base = Path(run_cfg.get("out_dir", "out")).expanduser()
    script, folder = locate_script(path)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", (folder or script).name)[:60] or "run"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return base / f"run-{stamp}-{name}-{uuid.uuid4().hex[:4]}"


def inferred_configuration(path: str | os.PathLike[str], infer_env: bool) -> tuple[Any, list[str]]:
    """The folder's inferred configuration (None for a lone script or --no-infer-env), and notes."""
    p = Path(path).expanduser()
    if not infer_env or not p.is_dir():
        return None, (["configuration inference off (--no-infer-env): the script's defaults apply"]
                      if not infer_env else [])
    from harness.check.configuration import infer_configuration

    try:
        script, _ = locate_script(p)
        return infer_configuration(p, script), []
    except Exception as e:  # noqa: BLE001 - inference is an aid: a failure is a note, never a crash
        return None, [f"configuration not inferred: {type(e).__name__}: {e}"]


def data_source(
    cfg: Config, scale: str, data_path: str | None, tokenizer: str | None, vocab_size: int | None,
    conf: Any = None,
) -> tuple[str | None, str | None, int | None]:
    """(data folder, tokenizer, vocab size): the user's, else the built-in data (harness.data.builtin):
    encoded with the record's own tokenizer when it ships one, at the vocabulary it names otherwise."""
    if data_path:
        tok = tokenizer
        if tok is None:
            models = sorted(Path(data_path).expanduser().glob("*.model"))
            tok = str(models[0].resolve()) if len(models) == 1 else None
        if tok is not None and not Path(tok).expanduser().is_file():
            raise BadInput(f"tokenizer not found: {tok}")
        if vocab_size is None and tok is not None:
            vocab_size = _tokenizer_vocab(tok)  # VOCAB_SIZE must match it (script defaults vary: 1024, 8192)
        return data_path, str(Path(tok).expanduser().resolve()) if tok else None, vocab_size
    if scale == "full":
        raise BadInput("--scale full needs --data-path (the real FineWeb shards and their tokenizer)")
    from harness.data.builtin import ensure_data, ensure_tokenizer_data

    if tokenizer is None and vocab_size is None and conf is not None and conf.tokenizer:
        paths = ensure_tokenizer_data(conf.tokenizer, cache_dir=cfg.get("run", "cache_dir"))
        return str(paths.data_dir), str(paths.tokenizer), int(paths.vocab_size)
    if vocab_size is None and conf is not None and conf.vocab_size:
        vocab_size = conf.vocab_size
    paths = ensure_data(vocab_size=vocab_size or 1024, cache_dir=cfg.get("run", "cache_dir"))
    tok = tokenizer or (str(paths.tokenizer) if getattr(paths, "tokenizer", None) else None)
    return str(paths.data_dir), tok, int(getattr(paths, "vocab_size", vocab_size or 1024))


def _tokenizer_vocab(path: str) -> int | None:
    try:
        import sentencepiece as spm

        return int(spm.SentencePieceProcessor(model_file=str(Path(path).expanduser())).vocab_size())
    except Exception:  # noqa: BLE001 - not a SentencePiece model: the script will say so
        return None


_CLOCK_LINE = re.compile(r"train_time\s*[:=]\s*[\d.]+\s*m?s\b|stopping_early")


class _Lines:
    """Score lines from both streams, with the harness-clock time they arrived; mirrored to the
    parent ledger as `stdout` events."""

    def __init__(self, ledger: LedgerWriter, t0: float) -> None:
        self.ledger = ledger
        self.t0 = t0
        self.lines: list[tuple[str, float]] = []  # every line carrying val_bpb, arrival order
        self._lock = threading.Lock()

    def on(self, stream: str) -> Any:
        def handle(line: str, now: float) -> None:
            if not carries_score(line):
                if _CLOCK_LINE.search(line):  # the script's training clock (B2: reads after it stopped)
                    self.ledger.emit("phase", name="train_clock", line=line.rstrip("\r\n")[:500], stream=stream)
                return
            text = line.rstrip("\r\n")[:2000]
            self.ledger.emit("stdout", line=text, stream=stream)
            with self._lock:
                self.lines.append((text, round(now - self.t0, 6)))

        return handle

    def scores(self) -> list[ScoreLine]:
        return [s for s in (parse_line(text, t) for text, t in self.lines) if s is not None]


def _user_paths(pythonpath: str | None) -> list[Path]:
    """The folders of a PYTHONPATH the user passed (--env PYTHONPATH=...: extra packages, a profiler's
    sitecustomize): bound back read-only, else the sandbox would hide them (a home folder, the checkout,
    the host's /tmp) and the child would run without them."""
    out = []
    for part in (pythonpath or "").split(os.pathsep):
        p = Path(part).expanduser()
        if part and p.is_absolute() and p.is_dir():
            out.append(p)
    return out


def run_submission(
    path: str | os.PathLike[str],
    cfg: Config,
    *,
    device: str = "cpu",
    nproc: int = 1,
    scale: str = "tiny",
    data_path: str | None = None,
    tokenizer: str | None = None,
    vocab_size: int | None = None,
    python: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    trace: bool = True,
    val_tokens: int | None = None,
    val_override: Any = None,
    keep_workdir: bool = False,
    score_tag: str | None = None,
    runtime_extra: dict[str, Any] | None = None,
    infer_env: bool = True,
    runtime_private: dict[str, Any] | None = None,
    place_files: dict[str, str] | None = None,
) -> RunResult:
    """Run the submission at `path` (a folder with train_gpt.py, or a script) and report how it went.

    Raises BadInput for unusable input (missing script, data, interpreter); every way the script
    itself can fail is a RunResult with a reason, never an exception.
    runtime_private: settings for the runtime that the script must not see (the score-order replay's
    relabeling); they travel in a private descriptor (private_settings_fd), not in the environment.
    place_files: files copied into the working copy before launch, relative path -> source (an evaluation-only
    rerun gets the artifact its training run wrote, where that run wrote it).
    """
    if device not in ("cpu", "cuda"):
        raise BadInput(f"unknown device {device!r} (expected cpu or cuda)")
    if scale not in SCALES:
        raise BadInput(f"unknown scale {scale!r} (expected tiny or full)")
    if nproc < 1:
        raise BadInput(f"--nproc must be at least 1, got {nproc}")
    run_cfg = cfg.section("run")
    locate_script(path)  # bad input before anything is created
    out = Path(out_dir) if out_dir else default_out_dir(path, run_cfg)
    out = out.expanduser().resolve()
    ledger_dir = out / "ledger"
    ledger_dir.mkdir(parents=True, exist_ok=True)
    clear_ledger(ledger_dir)
    exe, pyver = resolve_python(python or run_cfg.get("python"))
    if val_tokens is None and scale == "tiny":
        val_tokens = int(run_cfg.get("val_tokens", DEFAULT_VAL_TOKENS))
    conf, conf_notes = inferred_configuration(path, infer_env)
    src, tok, vocab = data_source(cfg, scale, data_path, tokenizer, vocab_size, conf)
    wd = prepare_workdir(path, run_cfg.get("work_root"), **copy_caps(run_cfg))
    try:
        placed = _place(wd, place_files or {})
        conf_notes = conf_notes + ([f"placed in the working copy before launch: {', '.join(placed)}"] if placed else [])
        rewrite, refused = _rewrite_for_host(wd, exe, pyver)
        if refused is not None:
            return _not_launched(wd, out, ledger_dir, exe, pyver, device, nproc, scale, "needs_python", refused)
        served = serve_data(
            src, wd.data, out, tokenizer=tok, vocab_size=vocab, val_tokens=val_tokens, val_override=val_override,
            byte_sidecar=bool(conf is not None and conf.needs_byte_sidecar),
            names=conf.data_names if conf is not None else (),
            align=block_length({**(run_cfg.get("tiny_env") or {}), **(env or {})}) if scale == "tiny" else 1,
        )
        return _launch(
            wd, served, cfg, run_cfg, out, ledger_dir, exe, pyver, device=device, nproc=nproc, scale=scale,
            env=env, timeout=timeout, trace=trace, vocab_for_env=vocab if (scale == "tiny" or vocab_size) else None,
            keep_workdir=keep_workdir, score_tag=score_tag, runtime_extra=runtime_extra, rewrite=rewrite,
            conf=conf, conf_notes=conf_notes, runtime_private=runtime_private,
        )
    finally:
        if not keep_workdir:
            wd.remove()


def _launch(
    wd: Workdir, served: Served, cfg: Config, run_cfg: dict[str, Any], out: Path, ledger_dir: Path,
    exe: str, pyver: str, *, device: str, nproc: int, scale: str, env: dict[str, str] | None,
    timeout: float | None, trace: bool, vocab_for_env: int | None, keep_workdir: bool, score_tag: str | None,
    runtime_extra: dict[str, Any] | None, rewrite: SourceRewrite | None = None, conf: Any = None,
    conf_notes: list[str] | None = None, runtime_private: dict[str, Any] | None = None,
) -> RunResult:
    run_id = f"harness_{uuid.uuid4().hex[:8]}"
    marker = uuid.uuid4().hex
    scale_notes: list[str] = list(conf_notes or [])
    sources: dict[str, str] = {}
    overrides = env_overrides(
        run_cfg, scale, data_dir=served.data_dir, tokenizer=served.tokenizer_link or served.tokenizer,
        data_root=served.data_root or None, vocab_size=vocab_for_env,
        run_id=run_id, device=device, nproc=nproc, user_env=env,
        inferred=conf.applied_env() if conf is not None else None,
        defaults=conf.defaults() if conf is not None else None, notes=scale_notes, sources=sources,
    )
    configuration = _configuration_section(conf, overrides, sources)
    limits = BudgetLimits.from_config(cfg)
    enforce = scale == "full"
    if timeout is None:
        key = "wall_clock_limit_s" if scale == "tiny" else "full_wall_clock_limit_s"
        default = 300.0 if scale == "tiny" else limits.train_s + limits.eval_s + 600.0
        timeout = float(run_cfg.get(key, default))
    soft = int(run_cfg.get("stdout_limit_bytes", 20_000_000))
    hard = int(run_cfg.get("stdout_kill_bytes", soft * 5))
    mem = run_cfg.get("memory_limit_mb", 8192)
    box_limits = sandbox.Limits(
        memory_mb=int(mem) if (mem and device == "cpu") else None,
        nofile=int(run_cfg.get("nofile_limit", 4096)),
        file_size_mb=int(run_cfg.get("file_size_limit_mb", 8192)) or None,
    )
    isolate = bool(run_cfg.get("net_namespace", True))

    cmd = [exe, wd.script.name]
    if nproc > 1:
        cmd = [exe, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", wd.script.name]
    # programs the script itself may start: nvidia-smi always (74% of scripts log it), plus the user's
    allow = sorted({"nvidia-smi", *run_cfg.get("allow_subprocess", [])})

    t0 = time.time()
    # the child's ledger: a socket it inherits (read here, written to ledger_dir by the parent); the child
    # is told neither the ledger folder nor the out folder
    chan_parent, chan_child = channel_pair()
    # every run has one (empty in most): what it holds is read and closed before the script starts
    private_fd = private_settings_fd(runtime_private)
    settings = RuntimeSettings(
        ledger_dir="", ledger_fd=chan_child.fileno(), private_fd=private_fd, t0=t0, device=device,
        bf16_as_fp32=bool(run_cfg.get("bf16_as_fp32", True)),
        trace=trace, submission_dir=str(wd.work), vocab_size=served.vocab_size, val_glob=VAL_GLOB,
        train_glob=TRAIN_GLOB,
        extra={
            "scale": scale, "nproc": nproc, "data_dir": served.data_root or served.data_dir,
            "val_tokens": served.val_tokens,
            "allow_subprocess": allow, **(runtime_extra or {}),
        },
    )
    pythonpath = [str(SITE_DIR), str(wd.pylib)]
    if device == "cpu":  # importable flash_attn / flash_attn_interface (SDPA-based) for the CPU shim
        pythonpath.append(str(wd.pylib / "harness" / "runtime" / "flash_attn_fallback"))
    child_env = sandbox.scrubbed_env(wd.work, wd.tmp, device=device, pythonpath=pythonpath)
    user_pp = overrides.pop("PYTHONPATH", None)
    child_env.update(overrides)
    if user_pp:
        child_env["PYTHONPATH"] += os.pathsep + user_pp
    if device == "cpu":  # Triton kernels run in Triton's CPU interpreter (the `triton` extra), unless the user says
        child_env.setdefault("TRITON_INTERPRET", "1")
    child_env[ENV_VAR] = settings.to_env()
    child_env[sandbox.MARKER_ENV] = marker
    # the launcher: PID / mount / network namespaces where the system allows (harness/run/nsinit.py)
    box = sandbox.Box.prepare(run_cfg, wd.work, wd.data, [Path(settings.ledger_dir)] if settings.ledger_dir else [],
                              exe, child_env, net=isolate, ro=(wd.pylib, *_user_paths(user_pp)))

    parent = LedgerWriter(ledger_dir / PARENT_LEDGER, rank=-1, t0=t0)
    lines = _Lines(parent, t0)
    killed: tuple[str, str] | None = None
    tracker = PhaseTracker()
    tail = LedgerTail(ledger_dir)
    clock = BudgetClock(limits)
    reader = ChannelReader(chan_parent, ledger_dir)
    reader.start()
    witness = Witness(served.val_files, t0)  # the OS's record of opens of the served validation files
    witness.start()
    proc = subprocess.Popen(
        box.argv(cmd), cwd=wd.work, env=child_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True, preexec_fn=sandbox.make_preexec(box_limits, box.preexec_net),
        pass_fds=(chan_child.fileno(), private_fd, *box.pass_fds),
    )
    box.started(proc.pid)
    os.close(private_fd)  # the child has its copy
    chan_child.close()  # the child holds its end: the stream ends when every process holding it exits
    assert proc.stdout is not None and proc.stderr is not None
    pumps = {
        "stdout": sandbox.OutputPump(proc.stdout, out / "stdout.txt", soft, hard, lines.on("stdout")),
        "stderr": sandbox.OutputPump(proc.stderr, out / "stderr.txt", soft, hard, lines.on("stderr")),
    }
    for p in pumps.values():
        p.start()
    usage: Any = None  # the child's resource usage, from the kernel when this process reaps it
    try:
        while True:
            usage = sandbox.reap(proc, POLL_S) or usage
            tracker.feed(tail.poll())
            box.poll()
            now = time.time() - t0
            progress.run_phase(tracker, now)  # the live phase line (terminal only)
            if proc.returncode is not None:
                break
            flooded = next((n for n, p in pumps.items() if p.flooded.is_set()), None)
            if flooded:
                killed = ("stdout_flood", f"{flooded} passed {hard} bytes (the hard cap); killed")
            elif enforce and (over := clock.exceeded(tracker, now)) is not None:
                killed = over
            elif now > timeout:
                killed = ("timeout", f"still running after {timeout:.0f} s (the wall-clock cap); killed")
            if killed:
                parent.emit("phase", name="killed", reason=killed[0])
                sandbox.terminate(proc, marker)
                break
    except BaseException:
        sandbox.terminate(proc, marker)
        raise
    finally:
        exit_t = round(time.time() - t0, 6)
        progress.done("run")
        sandbox.kill_tree(proc.pid, marker)  # grandchildren that outlived the child
        box.finish(parent.emit)  # what the launcher set up; network attempts the namespace refused
        for p in pumps.values():
            p.join(timeout=10)
        reader.finish()
        tracker.feed(tail.poll())
        parent.emit("channel", **reader.summary())
        parent.emit("witness", **witness.stop())
        served.save_tokens()  # the parent's copy, over anything the child wrote there
    rc = proc.returncode

    stdout_all = _read_text(out / "stdout.txt") + "\n" + _read_text(out / "stderr.txt")
    tag = score_tag if score_tag is not None else str(cfg.get("check", "score_tag", "") or "")
    if not tag and conf is not None and conf.score_tag and any(
            s.tag == conf.score_tag for s in lines.scores()):
        tag = conf.score_tag  # the line whose value the submission claims (its logs); --score-tag overrides
        configuration["score_tag_used"] = tag
    rep = pick_reported(lines.lines, tag)
    stderr_tail = pumps["stderr"].tail(20000)
    reason, message = classify(rc, killed, tracker, stderr_tail, {wd.script.name}, rep is not None)
    if reason == "crash":
        missing = missing_package_line(stderr_tail, wd.work)
        if missing is not None:
            reason, message = "missing_package", missing
    if reason == "ok" and rep is not None:
        message = f"exited 0; reported {rep.tag} val_loss:{rep.val_loss} val_bpb:{rep.val_bpb}"
    times = script_times(stdout_all, rep)

    reported = None
    if rep is not None:
        reported = Reported(rep.tag, rep.val_loss, rep.val_bpb, rep.line, rep.t, rep.eval_time_ms)
        parent.emit("reported", tag=rep.tag, val_loss=rep.val_loss, val_bpb=rep.val_bpb, line=rep.line, t=rep.t)
    phases: dict[str, float | None] = {
        "start": 0.0,
        "run_start": tracker.run_start,
        "first_train_read": tracker.first_train_read,
        "last_train_read": tracker.last_train_read,
        "artifact_write": tracker.artifact_write,
        "last_artifact_write": tracker.last_artifact_write,
        "artifact_read": tracker.artifact_read,
        "checkpoint_write": tracker.checkpoint_write,
        "first_val_read": tracker.first_val_read,
        "reported": rep.t if rep is not None else None,
        "exit": exit_t,
        "train_start": tracker.first_train_read if tracker.first_train_read is not None else 0.0,
        "train_end": tracker.line,
        "eval_start": tracker.line,
        "eval_end": exit_t if tracker.line is not None else None,
    }
    for name, t in phases.items():
        if t is not None:
            parent.emit("phase", name=name, t=t)
    wall = round(time.time() - t0, 3)
    parent.emit("run_end", rc=rc, wall_s=wall, reason=reason, message=message)
    parent.close()

    budgets = summarize_budget(tracker, exit_t, limits, enforce, times)
    artifacts = _collect_artifacts(tracker, wd, out)
    traced = trace and bool(tracker.runtime) and all(  # "incomplete": started, blind to a kernel's outputs
        str(parts.get("tracer")).startswith(("ok", "incomplete")) for parts in tracker.runtime.values()
    )
    result = RunResult(
        out_dir=str(out),
        ledger_dir=str(ledger_dir),
        rc=rc,
        reason=reason,
        message=message,
        wall_s=wall,
        cpu_s=None if usage is None else round(usage.ru_utime + usage.ru_stime, 3),
        stdout_path=str(out / "stdout.txt"),
        stderr_path=str(out / "stderr.txt"),
        stdout_tail=pumps["stdout"].tail(4000),
        reported=reported,
        phases=phases,
        script_times=times,
        env_overrides=overrides,
        command=cmd,
        stderr_tail=pumps["stderr"].tail(4000),
        device=device,
        nproc=nproc,
        scale=scale,
        python=pyver,
        traced=traced,
        runtime=tracker.runtime,
        budgets=budgets,
        served=served.to_dict(),
        artifacts=artifacts,
        net_attempts=tracker.net + box.net_events,
        subprocesses=tracker.subprocesses,
        needs_gpu=tracker.needs_gpu,
        output={n: vars(p.stats) for n, p in pumps.items()},
        sandbox={"net_isolation": box.net_isolation, "limits": vars(box_limits),
                 "protections": box.protections(box_limits, tracker.runtime), "copy_skipped": wd.skipped,
                 "timeout_s": timeout, "allow_subprocess": allow},
        tokenizer=served.tokenizer,
        vocab_size=served.vocab_size,
        workdir=str(wd.root) if keep_workdir else None,
        score_lines=[vars(s) for s in lines.scores()],
        notes=(rewrite.notes() if rewrite else []) + scale_notes,
        source_rewrite=rewrite.to_dict() if rewrite and rewrite.files else {},
        configuration=configuration,
    )
    atomic_write_text(out / "run.json", result.to_json())
    return result


def _configuration_section(conf: Any, overrides: dict[str, str], sources: dict[str, str]) -> dict[str, Any]:
    """The inferred configuration and the environment applied, each value with its source."""
    applied = conf.applied() if conf is not None else {}
    env: dict[str, dict[str, str]] = {}
    for k, v in overrides.items():
        src = sources.get(k, "harness")
        if src == "inferred" and k in applied:
            a = applied[k]
            src = f"{a.source} {a.where}"
        elif src.startswith("tiny (scaled") and k in applied:
            src += f"; record {applied[k].source} {applied[k].where}"
        env[k] = {"value": v, "source": src}
    d = conf.to_dict() if conf is not None else {"inferred": False}
    d["applied_env"] = env
    return d


def _rewrite_for_host(wd: Workdir, exe: str, pyver: str) -> tuple[SourceRewrite | None, str | None]:
    """(what was rewritten, or None; the one-line refusal, or None): Python 3.12 syntax in the working
    copy re-spelled for this older host (harness.run.py312). Nothing on a 3.12+ host or under --python."""
    if not py312.host_needs_rewrite(exe, pyver):
        return None, None
    try:
        return py312.rewrite_workdir(wd.work, wd.script), None
    except py312.NeedsPython312 as e:
        return None, f"needs Python 3.12: {e}; run it with --python python3.12"


def _not_launched(
    wd: Workdir, out: Path, ledger_dir: Path, exe: str, pyver: str, device: str, nproc: int, scale: str,
    reason: str, message: str,
) -> RunResult:
    """The RunResult of a run refused before its launch (one line; the CLI exits 4)."""
    for name in ("stdout.txt", "stderr.txt"):
        atomic_write_text(out / name, "")
    parent = LedgerWriter(ledger_dir / PARENT_LEDGER, rank=-1, t0=time.time())
    parent.emit("run_end", rc=None, wall_s=0.0, reason=reason, message=message)
    parent.close()
    result = RunResult(
        out_dir=str(out), ledger_dir=str(ledger_dir), rc=None, reason=reason, message=message, wall_s=0.0,
        stdout_path=str(out / "stdout.txt"), stderr_path=str(out / "stderr.txt"), stdout_tail="",
        reported=None, phases={"start": 0.0}, script_times={}, env_overrides={}, command=[exe, wd.script.name],
        device=device, nproc=nproc, scale=scale, python=pyver,
    )
    atomic_write_text(out / "run.json", result.to_json())
    return result


def _read_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _place(wd: Workdir, files: dict[str, str]) -> list[str]:
    """Copy each source file to its relative path in the working copy (BadInput for a path leaving it)."""
    done = []
    for rel, src in sorted(files.items()):
        dest = (wd.work / rel).resolve()
        if os.path.isabs(rel) or wd.work.resolve() not in dest.parents:
            raise BadInput(f"a file to place must stay inside the working copy: {rel!r}")
        if not Path(src).is_file():
            raise BadInput(f"a file to place is missing: {src}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        done.append(rel)
    return done


def _collect_artifacts(tracker: PhaseTracker, wd: Workdir, out: Path) -> list[dict[str, Any]]:
    """Copy what the script wrote as its artifact out of the working copy before it is removed."""
    found = []
    for rel, info in sorted(tracker.artifacts.items()):
        entry = dict(info)
        src = (wd.work / rel) if not os.path.isabs(rel) else Path(rel)
        try:
            size = src.stat().st_size
        except OSError:
            entry["copied_to"] = None
            found.append(entry)
            continue
        entry["bytes"] = size
        # only a regular file is an artifact to keep (Triton's compiler on a GPU writes its cache under tmp/)
        if src.is_file() and not src.is_symlink() and size <= MAX_ARTIFACT_COPY and wd.work in src.resolve().parents:
            dest = out / "artifacts" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            entry["copied_to"] = str(dest)
        else:
            entry["copied_to"] = None
        found.append(entry)
    return found
