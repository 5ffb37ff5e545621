"""Tracer overhead on real records at tiny scale: traced / untraced wall time from one paired run, and
where the traced child's time goes (cProfile).

    python bench/tracer_profile.py RECORD [RECORD ...] [--repeat 3] [--profile] [--top 25]
    python bench/tracer_profile.py main-2026-03-19_SlidingWindowEval --repeat 3

RECORD is a folder, or an id under ../shared/corpus/dev. Each run is one `harness run RECORD --out DIR`
(traced) or `... --no-trace` (untraced) in a subprocess, with the configuration the harness infers
from the folder (documented env applied automatically). Runs alternate A/B (untraced, traced,
untraced, ...) so that load on this shared machine hits both sides alike; the figure is the median
of --repeat pairs, and the ratio is median(traced) / median(untraced) of the child wall times
(run.json `wall_s`); the CPU ratio (user + sys of the script's own process, written at its exit by a
chained sitecustomize) is printed beside it, since on a loaded machine wall time also measures the
neighbours. Compare ratios, not seconds.

--profile adds one traced run with cProfile around the child (a chained sitecustomize on the child's
PYTHONPATH, see ``_PROFILE_SITE``) and prints the own time per tracer part (dispatch mode, op
table, op handlers by family, provenance store, events / ledger, traced numpy, patches, kernels)
and the top functions; --save keeps the raw stats. cProfile inflates Python-heavy parts several
times: use it for where, the CPU ratio for how much. `--env TRACER_TIMING=1` instead times the
dispatch mode and the op handlers (``apply``) in the child without a profiler (printed per run), and
prints the floor of any handler speed-up: the CPU ratio with the handlers' time taken out (the mode, its
fast path, the ops and everything outside the mode stay; the timing wrapper's own cost stays in it too).
--floor adds to each pair an untraced run under a dispatch mode that only calls each op (entered by the
chained sitecustomize): what any tracer that sees every op through a Python dispatch mode costs at least.
Each run's line also shows the script's user / sys / main-thread CPU and page faults.
"""

from __future__ import annotations

import argparse
import json
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "dev"

# Chained by the harness's own sitecustomize (it runs the next sitecustomize on sys.path, after the
# runtime started): profiles the script's main thread and dumps the stats at exit into its working
# copy (the sandbox's only writable place; kept with --keep-workdir and fetched from there).
# Without TRACER_PROFILE it only writes the script process's own CPU seconds (bench_cpu.txt): the
# `harness run` parent also judges the ledger after the child exits, which is not the tracer's cost.
_PROFILE_SITE = '''
import atexit, os, resource
_p = None
if os.environ.get("TRACER_PROFILE"):
    import cProfile
    _p = cProfile.Profile()
    _p.enable()
_tm = None
if os.environ.get("TRACER_TIMING"):
    import time
    from harness.runtime.tracer import torch_mode as _tmod
    _tm = {"dispatch": 0.0, "apply": 0.0, "n": 0, "napply": 0, "fast": 0.0, "nfast": 0, "kind": {}, "size": {},
           "pre": 0.0}
    _raw, _apply = _tmod.TraceMode.__torch_dispatch__, _tmod.apply
    _applied = [False]
    _t_disp = [0.0]
    def _disp(self, *a, **k):
        _applied[0] = False
        t = _t_disp[0] = time.perf_counter()
        try:
            return _raw(self, *a, **k)
        finally:
            dt = time.perf_counter() - t
            _tm["dispatch"] += dt
            _tm["n"] += 1
            if not _applied[0]:  # the op touched no traced tensor: the mode's fast path and the op itself
                _tm["fast"] += dt
                _tm["nfast"] += 1
    def _numel(out):
        import torch
        xs = out if isinstance(out, (list, tuple)) else (out,)
        return sum(x.numel() for x in xs if isinstance(x, torch.Tensor))
    def _app(tr, func, args, kwargs, out):
        _applied[0] = True
        t = time.perf_counter()
        _tm["pre"] += t - _t_disp[0]  # a traced op before its handler: the op itself and the mode's checks
        try:
            return _apply(tr, func, args, kwargs, out)
        finally:
            dt = time.perf_counter() - t
            _tm["apply"] += dt
            _tm["napply"] += 1
            # where the handlers' time goes: by handler kind, and by output elements (log2 buckets)
            kind = _tmod._entry(func)[0].kind
            e = _tm["kind"].setdefault(kind, [0, 0.0]); e[0] += 1; e[1] += dt
            b = max(0, _numel(out) - 1).bit_length()
            e = _tm["size"].setdefault(b, [0, 0.0]); e[0] += 1; e[1] += dt
    _tmod.TraceMode.__torch_dispatch__ = _disp
    _tmod.apply = _app
    import gc
    _tm["gc"] = {}
    _gc_t0 = [0.0]
    def _gc_cb(phase, info):  # the cyclic collector's passes: their count and time, by generation
        if phase == "start":
            _gc_t0[0] = time.perf_counter()
        else:
            e = _tm["gc"].setdefault(info.get("generation"), [0, 0.0]); e[0] += 1; e[1] += time.perf_counter() - _gc_t0[0]
    gc.callbacks.append(_gc_cb)
if os.environ.get("TRACER_NOOP_MODE"):  # (an untraced run) a dispatch mode that only calls each op
    from torch.utils._python_dispatch import TorchDispatchMode as _TDM
    class _Nothing(_TDM):
        @classmethod
        def _should_skip_dynamo(cls):
            return False  # unwrapped, as the tracer's own mode on a CPU
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))
    _Nothing().__enter__()
def _dump():
    if _tm is not None:
        with open("bench_timing.txt", "w") as f:
            f.write(repr(_tm))
    if _p is not None:
        _p.disable()
        _p.dump_stats("tracer.prof")
    r = resource.getrusage(resource.RUSAGE_SELF)
    m = resource.getrusage(resource.RUSAGE_THREAD)
    with open("bench_cpu.txt", "w") as f:
        f.write(repr(r.ru_utime + r.ru_stime))
    with open("bench_cpu_detail.txt", "w") as f:
        f.write(f"user {r.ru_utime:.2f} sys {r.ru_stime:.2f} main-thread {m.ru_utime + m.ru_stime:.2f} "
                f"minflt {r.ru_minflt} dynamo {'torch._dynamo' in __import__('sys').modules}")
atexit.register(_dump)
'''

# tracer part by module path (first match wins)
_PARTS = [
    ("dispatch mode (torch_mode)", "tracer/torch_mode.py"),
    ("op table / op_info", "tracer/op_table.py"),
    ("OpCall / registry (ops/call)", "tracer/ops/call.py"),
    ("op handlers (ops/*)", "tracer/ops/"),
    ("provenance store", "tracer/provenance.py"),
    ("tracer state (unions, sids)", "tracer/state.py"),
    ("score book", "tracer/scores.py"),
    ("events", "tracer/events.py"),
    ("traced numpy", "tracer/traced_numpy/"),
    ("patches", "tracer/patches.py"),
    ("kernels (triton shadow)", "tracer/kernels.py"),
    ("ledger writer", "harness/ledger.py"),
    ("other harness runtime", "harness/runtime/"),
]


def _scratch() -> Path:
    """Where runs and the chained sitecustomize live: not under /tmp, which the sandbox replaces with a
    private one (a PYTHONPATH into the host's /tmp would not exist inside the child)."""
    d = ROOT / "out" / "bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


def resolve(rec: str) -> Path:
    p = Path(rec)
    if p.is_dir():
        return p
    q = CORPUS / rec
    if q.is_dir():
        return q
    raise SystemExit(f"no such record: {rec}")


def run_once(folder: Path, out: Path, traced: bool, timeout: float, env: list[str],
             profile_to: Path | None = None) -> tuple[float, float, dict, dict | None]:
    """(child wall s from run.json, the script process's CPU s, run.json, the TRACER_TIMING figures or None);
    ``profile_to``: cProfile it."""
    site = out.parent / "bench_site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(_PROFILE_SITE)
    cmd = [sys.executable, "-m", "harness", "run", str(folder), "--out", str(out), "--timeout", str(timeout),
           "--keep-workdir", "--env", f"PYTHONPATH={site}"]
    if not traced:
        cmd.append("--no-trace")
    if profile_to is not None:
        cmd += ["--env", "TRACER_PROFILE=1"]
    for kv in env:
        cmd += ["--env", kv]
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    outer = time.perf_counter() - t
    try:
        rj = json.loads((out / "run.json").read_text())
    except (OSError, ValueError):
        rj = {}
    run = rj.get("run", rj)
    cpu = float("nan")
    tm = None
    kept = run.get("workdir")
    if kept:
        found = sorted(Path(kept).rglob("bench_cpu.txt"))
        if found:
            cpu = float(found[0].read_text())
        timing = sorted(Path(kept).rglob("bench_timing.txt"))
        if timing:
            tm = _print_timing(timing[0].read_text())
        detail = sorted(Path(kept).rglob("bench_cpu_detail.txt"))
        if detail:
            print(f"    ({'traced' if traced else 'untraced'}: {detail[0].read_text()})", flush=True)
        prof = sorted(Path(kept).rglob("tracer.prof"))
        if profile_to is not None and prof:
            shutil.copyfile(prof[0], profile_to)
        shutil.rmtree(kept, ignore_errors=True)
    reason = run.get("reason")
    if reason not in (None, "ok"):
        raise RuntimeError(f"{folder.name} {'traced' if traced else 'untraced'} run failed: {reason}: "
                           f"{run.get('message')} (exit {p.returncode})")
    return float(run.get("wall_s") or outer), cpu, run, tm


def _print_timing(text: str) -> dict:
    """The child's TRACER_TIMING figures: the mode's fast path (ops on untraced tensors, op included), the
    handlers (``apply``, after the op) by kind and by output size."""
    import ast

    tm = ast.literal_eval(text)
    n, fast, napply, app = tm["n"], tm["fast"], tm["napply"], tm["apply"]
    print(f"    (timing: {n} ops in the mode, {tm['dispatch']:.2f} s with the ops; {tm['nfast']} untraced "
          f"{fast:.2f} s ({1e6 * fast / max(tm['nfast'], 1):.1f} us/op, op included); {napply} traced: "
          f"handlers {app:.2f} s ({1e6 * app / max(napply, 1):.1f} us/op), the ops themselves before them "
          f"{tm.get('pre', 0.0):.2f} s)", flush=True)
    for title, rows in (("by kind", sorted(tm["kind"].items(), key=lambda kv: -kv[1][1])[:8]),
                        ("by output elements", sorted(tm["size"].items()))):
        cells = [f"{(k if title == 'by kind' else '<=2^' + str(k))}: {c} ops {s:.2f} s" for k, (c, s) in rows]
        print(f"      handlers {title}: " + "; ".join(cells), flush=True)
    if tm.get("gc"):
        print("      cyclic GC by generation: " + "; ".join(f"gen {g}: {c} passes {t:.2f} s"
                                                         for g, (c, t) in sorted(tm["gc"].items())), flush=True)
    return tm


def paired(folder: Path, repeat: int, timeout: float, env: list[str], floor: bool = False) -> dict[str, list[float]]:
    res: dict[str, list[float]] = {"u": [], "t": [], "ucpu": [], "tcpu": [], "handlers": [], "ncpu": []}
    with tempfile.TemporaryDirectory(dir=_scratch()) as tmp:
        for i in range(repeat):
            order: tuple[bool | None, ...] = (False, True) if i % 2 == 0 else (True, False)  # ABBA: neither side
            if floor:  # always goes first; None: the untraced script under a dispatch mode that does nothing
                order = (None,) + order if i % 2 == 0 else order + (None,)
            for traced in order:
                if traced is None:
                    w, cpu, _, _ = run_once(folder, Path(tmp) / f"{i}n", False, timeout, env + ["TRACER_NOOP_MODE=1"])
                    res["ncpu"].append(cpu)
                    print(f"  no-op mode {w:7.2f} s wall, {cpu:7.2f} s CPU (script)", flush=True)
                    continue
                w, cpu, _, tm = run_once(folder, Path(tmp) / f"{i}{'t' if traced else 'u'}", traced, timeout, env)
                k = "t" if traced else "u"
                res[k].append(w)
                res[k + "cpu"].append(cpu)
                if traced and tm is not None:
                    res["handlers"].append(float(tm["apply"]))
                print(f"  {'traced  ' if traced else 'untraced'} {w:7.2f} s wall, {cpu:7.2f} s CPU (script)", flush=True)
    return res


def profile(folder: Path, timeout: float, env: list[str], top: int, save: str | None = None) -> None:
    with tempfile.TemporaryDirectory(dir=_scratch()) as tmp:
        prof = Path(tmp) / "tracer.prof"
        w, _, run, _tm = run_once(folder, Path(tmp) / "prof", True, timeout, env, profile_to=prof)
        if not prof.is_file():
            print("  no profile written (the child could not write it, or died)")
            return
        if save:
            Path(save).write_bytes(prof.read_bytes())
        st = pstats.Stats(str(prof))
        total = max(v[3] for v in st.stats.values())  # type: ignore[attr-defined]
        own: dict[str, float] = {}
        for (file, _line, _fn), (_cc, _nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
            part = next((name for name, key in _PARTS if key in file), None)
            if part is None:
                part = "torch / numpy internals" if ("torch/" in file or "numpy/" in file or file == "~") else "script + rest"
            own[part] = own.get(part, 0.0) + tt
        print(f"  profiled traced run: {w:.1f} s wall (cProfile inflates Python-heavy parts); own time by part:")
        for part, s in sorted(own.items(), key=lambda kv: -kv[1]):
            print(f"    {part:34} {s:8.2f} s  {100 * s / max(total, 1e-9):5.1f} %")
        print(f"  top {top} functions by own time:")
        st.sort_stats("tottime").print_stats(top)
        print(f"  top {top} tracer functions by cumulative time:")
        st.sort_stats("cumulative").print_stats("tracer", top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", nargs="+")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--env", action="append", default=[], metavar="K=V")
    ap.add_argument("--profile", action="store_true", help="one extra traced run under cProfile")
    ap.add_argument("--no-ratio", action="store_true", help="profile only")
    ap.add_argument("--floor", action="store_true",
                    help="each pair also runs the untraced script under a dispatch mode that does nothing")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--save", metavar="FILE", help="keep the raw cProfile stats here")
    args = ap.parse_args(argv)
    rows = []
    for rec in args.records:
        folder = resolve(rec)
        print(f"{folder.name}:", flush=True)
        if not args.no_ratio:
            try:
                r = paired(folder, args.repeat, args.timeout, args.env, args.floor)
            except RuntimeError as e:
                print(f"  {e}")
                continue
            mu, mt = statistics.median(r["u"]), statistics.median(r["t"])
            cu, ct = statistics.median(r["ucpu"]), statistics.median(r["tcpu"])
            rows.append((folder.name, mu, mt, cu, ct))
            print(f"  median untraced {mu:.2f} s, traced {mt:.2f} s, traced/untraced {mt / mu:.2f}x wall, "
                  f"{ct / cu:.2f}x CPU", flush=True)
            if r["handlers"]:
                # what no handler speed-up can go below: the traced run's CPU without its handlers' time
                # (left: the dispatch mode, its fast path, the ops themselves, everything outside the mode)
                h = statistics.median(r["handlers"])
                print(f"  handlers {h:.2f} s of the traced run's {ct:.2f} s CPU; with handlers that cost nothing "
                      f"the ratio would be {(ct - h) / cu:.2f}x CPU (the floor of any handler speed-up)", flush=True)
            if r["ncpu"]:
                print(f"  under a dispatch mode that does nothing: {statistics.median(r['ncpu']) / cu:.2f}x CPU (the floor "
                      "of any tracer that sees every op through a Python dispatch mode)", flush=True)
        if args.profile:
            profile(folder, args.timeout, args.env, args.top, args.save)
    if rows:
        print(f"\n{'record':64} {'untraced s':>10} {'traced s':>9} {'wall x':>6} {'CPU x':>6}")
        for name, mu, mt, cu, ct in rows:
            print(f"{name[:64]:64} {mu:10.2f} {mt:9.2f} {mt / mu:6.2f} {ct / cu:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
