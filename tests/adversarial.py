"""Attacks on the harness, generated from a legal reference submission (submissions/check_compliant): each
is the reference with one small illegal change (an evaluation that trains on the whole validation stream
before scoring it, a C3 violation), plus one trick to hide it. Used by tests/test_adversarial.py; run this
module to write every attack into a folder for a look (`python tests/adversarial.py OUT_DIR`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "submissions" / "check_compliant"

MAIN = "    args, rank, world_size, device, log0, luts = setup()\n"
EVAL = '    model.load_state_dict(read_artifact("final_model.int8.ptz"), strict=True)\n'
EXACT = '    log0(f"final_int8_sliding_window_exact val_loss:{s_loss:.8f} val_bpb:{s_bpb:.8f}")\n'

# train on every target of a stream before any of it is scored (score-after-train: C3)
TTT_ALL = """\
    _opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ttt_train_span(model, _opt, {val}, 1, {val}.numel() - 1, args.train_seq_len, 8, 1, device)
"""

# where each attack goes: (anchor, code inserted after it); {ttt} is TTT_ALL over the named stream
ATTACKS: dict[str, list[tuple[str, str]]] = {
    # rewrite the ledger files at exit (their folder used to be in $HARNESS_RUNTIME)
    "ledger_rewrite": [(EVAL, TTT_ALL.format(val="val_tokens") + """\
    import atexit, json as _json
    def _scrub():
        d = _json.loads(os.environ.get("HARNESS_RUNTIME", "{}")).get("ledger_dir") or "/nonexistent"
        for f in glob.glob(os.path.join(d, "ledger*.jsonl")):
            keep = [l for l in open(f) if '"kind":"update"' not in l]
            open(f, "w").writelines(keep)
    atexit.register(_scrub)
""")],
    # filter the ledger writer: drop every update event
    "emit_replaced": [(MAIN, """\
    from harness.runtime import context as _hctx
    _c = _hctx.get()
    if _c is not None:
        _orig = _c.emit
        _c.emit = lambda kind, *a, **k: 0 if kind == "update" else _orig(kind, *a, **k)
"""), (EVAL, TTT_ALL.format(val="val_tokens"))],
    # overwrite the harness's copy of the served stream and print a better val_bpb
    "val_tokens_overwrite": [(EVAL, """\
    import json as _json
    _out = _json.loads(os.environ.get("HARNESS_RUNTIME", "{}")).get("extra", {}).get("out_dir")
    for _d in [_out] + glob.glob("../../*/") + glob.glob("../*/"):
        if _d and os.path.isdir(_d):
            try:
                np.save(os.path.join(_d, "val_tokens.npy"), np.full(val_tokens.numel(), 5, dtype=np.uint16))
            except OSError:
                pass
"""), (EXACT.replace("s_bpb:.8f", "s_bpb * 0.8:.8f"), "")],
    # switch the tracer off by name around the training
    "tracer_uninstall": [(EVAL, """\
    from harness.runtime import context as _hctx, tracer as _htr
    _htr.uninstall()
""" + TTT_ALL.format(val="val_tokens") + """\
    _htr.install(_hctx.get())
""")],
    # leave the dispatch mode around the training
    "disable_modes": [(EVAL, """\
    from torch.utils._python_dispatch import _disable_current_modes
    with _disable_current_modes():
""" + "\n".join("    " + ln if ln else ln for ln in TTT_ALL.format(val="val_tokens").splitlines()) + "\n")],
    # read the validation shard around the hooks (os.open / os.read) and train on it during training
    "os_read": [(MAIN, """\
    _f = sorted(glob.glob(args.val_files))[0]
    _fd = os.open(_f, os.O_RDONLY)
    _raw = b"".join(iter(lambda: os.read(_fd, 1 << 20), b""))
    os.close(_fd)
    _val = torch.from_numpy(np.frombuffer(_raw, dtype="<u2", offset=1024).astype(np.int64))
    _val = _val[: (_val.numel() - 1) // args.train_seq_len * args.train_seq_len + 1]
    time.sleep(2.5)  # away from the hooked read (the witness matches an open with a read near it)
"""), (EVAL, TTT_ALL.format(val="_val"))],
    # the same through mmap
    "mmap_read": [(MAIN, """\
    import mmap as _mmap
    with open(sorted(glob.glob(args.val_files))[0], "rb") as _fh:
        _mm = _mmap.mmap(_fh.fileno(), 0, access=_mmap.ACCESS_READ)
        _val = torch.from_numpy(np.frombuffer(_mm[1024:], dtype="<u2").astype(np.int64))
    _val = _val[: (_val.numel() - 1) // args.train_seq_len * args.train_seq_len + 1]
    time.sleep(2.5)  # away from the hooked read (the witness matches an open with a read near it)
"""), (EVAL, TTT_ALL.format(val="_val"))],
    # the same through a symlink under another name
    "symlink_read": [(MAIN, """\
    os.symlink(os.path.abspath(sorted(glob.glob(args.val_files))[0]), "notes.bin")
    _val = torch.from_numpy(np.fromfile("notes.bin", dtype="<u2", offset=1024).astype(np.int64))
    _val = _val[: (_val.numel() - 1) // args.train_seq_len * args.train_seq_len + 1]
    time.sleep(2.5)  # away from the hooked read (the witness matches an open with a read near it)
"""), (EVAL, TTT_ALL.format(val="_val"))],
    # launder the tokens through Python ints: the values lose their provenance
    "tolist_launder": [(EVAL, "    _val = torch.tensor([int(v) for v in val_tokens.tolist()])\n"
                        + TTT_ALL.format(val="_val"))],
    # train in a thread started with _thread (not threading.Thread)
    "raw_thread": [(EVAL, """\
    import _thread, threading as _threading
    _done = _threading.Event()
    def _work():
        try:
""" + "\n".join("            " + ln.strip() if ln else ln for ln in TTT_ALL.format(val="val_tokens").splitlines()) + """
        finally:
            _done.set()
    _thread.start_new_thread(_work, ())
    _done.wait()
""")],
    # train on validation only when not probed (a probe told by its environment or its stream length)
    "probe_aware": [(EVAL, """\
    _probed = bool(os.environ.get("HARNESS_PROBE")) or "probe" in os.environ.get("HARNESS_RUNTIME", "")
    if not _probed and val_tokens.numel() > 1100:
        _val = torch.tensor([int(v) for v in val_tokens.tolist()])
""" + "\n".join("    " + ln if ln else ln for ln in TTT_ALL.format(val="_val").splitlines()) + "\n")],
    # the printed val_loss shaded by less than the 5e-4 search tolerance
    "score_shaded": [(EXACT.replace("s_loss:.8f", "s_loss - 3e-4:.8f"), "")],
}


def make_attack(name: str, dest: Path) -> Path:
    """A copy of the reference submission with the attack `name` applied; returns the folder."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(REFERENCE, dest, ignore=shutil.ignore_patterns("expected.toml"))
    script = dest / "train_gpt.py"
    src = script.read_text(encoding="utf-8")
    for anchor, code in ATTACKS[name]:
        if code == "":  # a replacement of the line itself
            orig = anchor.replace("s_bpb * 0.8:.8f", "s_bpb:.8f").replace("s_loss - 3e-4:.8f", "s_loss:.8f")
            assert src.count(orig) == 1, (name, orig)
            src = src.replace(orig, anchor)
        else:
            assert src.count(anchor) == 1, (name, anchor)
            src = src.replace(anchor, anchor + code)
    compile(src, str(script), "exec")
    script.write_text(src, encoding="utf-8")
    return dest


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "adversarial_out")
    for n in ATTACKS:
        print(make_attack(n, out / n))
