"""The `harness check` reference submissions (issue 2), built by build.py (formerly _build_check_refs.py).

Each folder is laid out like records/<track>/<name>/ and has an `expected.toml` naming its outcome; every
file in a check_* folder is built here. The builds are deterministic, but the bytes of torch.save and of
lzma may change with the torch or liblzma version for the same content: a committed artifact (or lzma
wrapper) that holds the same tensors (or the same script) as a fresh build is kept as committed, so a
rebuild or `--check` only sees a change of content.
"""

from __future__ import annotations

import base64
import io
import json
import lzma
import re
import zlib
from pathlib import Path

SEEDS = {1337: (2.06211, 1.22131), 42: (2.06087, 1.22058), 7: (2.06302, 1.22185)}


def tiny_artifact() -> bytes:
    import torch

    g = torch.Generator().manual_seed(0)
    sd = {}
    for name, shape in (("tok_emb.weight", (64, 32)), ("blocks.0.attn.qkv.weight", (96, 32)),
                        ("blocks.0.mlp.fc.weight", (64, 32))):
        w = torch.randn(shape, generator=g)
        scale = w.abs().amax(dim=1) / 127.0
        sd[name] = torch.round(w / scale[:, None]).to(torch.int8)
        sd[name + ".scale"] = scale.to(torch.float16)
    buf = io.BytesIO()
    torch.save(sd, buf)
    return zlib.compress(buf.getvalue(), 9)


def _same_tensors(a: bytes, b: bytes) -> bool:
    import torch

    try:
        da, db = (torch.load(io.BytesIO(zlib.decompress(x)), map_location="cpu", weights_only=True) for x in (a, b))
    except Exception:  # noqa: BLE001 - anything unreadable is simply not the same artifact
        return False
    return (isinstance(da, dict) and isinstance(db, dict) and list(da) == list(db)
            and all(da[k].dtype == db[k].dtype and torch.equal(da[k], db[k]) for k in da))


def keep_committed_artifact(fresh: bytes, committed: Path) -> bytes:
    if committed.is_file():
        old = committed.read_bytes()
        if old == fresh or _same_tensors(old, fresh):
            return old
    return fresh


WRAPPED = re.compile(r'^import lzma as L,base64 as B\nexec\(L\.decompress\(B\.b85decode\("([^"]*)"\)\)\)\n\Z')


def lzma_wrapped(src: str, committed: Path) -> str:
    """exec(lzma.decompress(b85decode(...))) of src; the committed wrapper when it already unwraps to src."""
    if committed.is_file():
        old = committed.read_text(encoding="utf-8")
        m = WRAPPED.match(old)
        try:
            if m and lzma.decompress(base64.b85decode(m[1])) == src.encode("utf-8"):
                return old
        except (ValueError, lzma.LZMAError):
            pass
    packed = base64.b85encode(lzma.compress(src.encode("utf-8"), preset=9)).decode("ascii")
    return f'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("{packed}")))\n'


def log_text(seed: int, val_loss: float, val_bpb: float, code: int, model: int, *, tag: str) -> str:
    lines = [
        "W1123 torch/distributed/run.py] Setting OMP_NUM_THREADS environment variable for each process to be 1",
        "val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path=data/tokenizers/fineweb_1024_bpe.model",
        "train_loader:dataset:fineweb10B_sp1024 train_shards:80",
        "model_params:17059912",
        "world_size:8 grad_accum_steps:1",
        f"seed:{seed}",
        "step:0/20000 val_loss:6.9370 val_bpb:4.0978 train_time:0ms step_avg:0.01ms",
        "step:1/20000 train_loss:6.9408 train_time:24ms step_avg:23.99ms",
        "step:4000/20000 val_loss:2.1718 val_bpb:1.2829 train_time:173903ms step_avg:43.48ms",
        "step:13780/20000 val_loss:2.0531 val_bpb:1.2160 train_time:599812ms step_avg:43.53ms",
        "stopping_early: wallclock_cap train_time:599812ms step:13780/20000",
        "peak memory allocated: 10184 MiB reserved: 10588 MiB",
        f"Serialized model int8+zlib: {model} bytes",
        f"Code size: {code} bytes",
        f"Total submission size int8+zlib: {model + code} bytes",
        f"{tag} val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f} eval_time:45123ms",
    ]
    return "\n".join(lines) + "\n"


def expected_toml(expected: str) -> str:
    status, code, *rules = expected.split()
    return f'verdict = "{status}"\nexit_code = {code}\nrules = {json.dumps(rules)}\n'


def folder(name: str, script: str, *, expected: str, extra: dict[str, bytes] | None = None,
           model_bytes: int | None = None, artifact: bytes | None = None, claims_edit=None,
           claims: bool = True, logs: bool = True, readme: str = "", seeds=SEEDS) -> dict[str, bytes]:
    """The files of one folder, {path under submissions/: bytes}."""
    out: dict[str, bytes] = {f"{name}/train_gpt.py": script.encode("utf-8")}
    code = len(script.encode("utf-8"))
    if artifact is not None:
        out[f"{name}/final_model.int8.ptz"] = artifact
    mb = model_bytes if model_bytes is not None else len(artifact or b"")
    for fname, data in (extra or {}).items():
        out[f"{name}/{fname}"] = data
    if logs:
        for seed, (loss, bpb) in seeds.items():
            out[f"{name}/logs/train_seed{seed}.log"] = log_text(
                seed, loss, bpb, code, mb, tag="final_int8_zlib_roundtrip_exact").encode()
    if claims:
        n = len(SEEDS)
        c = {
            "author": "harness reference", "github_id": "harness", "name": name,
            "blurb": readme.splitlines()[0] if readme else name, "date": "2026-11-23",
            "track": "10min_16mb",
            "val_loss": round(sum(v[0] for v in SEEDS.values()) / n, 8),
            "val_bpb": round(sum(v[1] for v in SEEDS.values()) / n, 8),
            "seeds": sorted(SEEDS),
            "seed_results": {str(s): {"val_loss": v[0], "val_bpb": v[1], "artifact_bytes": mb + code}
                             for s, v in SEEDS.items()},
            "bytes_total": mb + code, "bytes_code": code, "hardware": "8xH100 80GB SXM",
        }
        if claims_edit is not None:
            claims_edit(c)
        out[f"{name}/submission.json"] = (json.dumps(c, indent=2) + "\n").encode()
    out[f"{name}/README.md"] = f"# {name}\n\n{readme}\n\nExpected: {expected}\n".encode()
    out[f"{name}/expected.toml"] = expected_toml(expected).encode()
    return out


def build_check_refs(src: str, helper_src: str, committed: Path) -> dict[str, bytes]:
    """src: the compliant script (base.py); helper_src: the same importing tokenizer_helpers
    (variants/check_over_cap_strict.py); committed: submissions/, for the artifact and wrapper kept as is."""
    art = keep_committed_artifact(tiny_artifact(), committed / "check_compliant" / "final_model.int8.ptz")
    files: dict[str, bytes] = {}
    files |= folder("check_compliant", src, expected="PASS 0", artifact=art,
                    readme="Complete and compliant: script, README, submission.json, three seed logs, artifact.")
    # strict total over the cap, as practised under: a 40 kB helper file the script loads is not counted
    # in practice; the model is 15,990,000 bytes as the logs state (no artifact shipped, like most records).
    files |= folder("check_over_cap_strict", helper_src, expected="WARN 0 B1",
                    model_bytes=16_000_000 - len(helper_src.encode()) - 10,
                    extra={"tokenizer_helpers.py": (b"# helper tables the script imports\nTABLE = [\n"
                                                    + b"    0,\n" * 6000 + b"]\n")},
                    readme="Over the cap when the imported helper module counts (strict), under as practised.")

    def disagree(c):
        c["val_bpb"] = 1.1000
        c["seeds"] = [1337, 42, 2024]
        c["seed_results"]["42"]["val_bpb"] = 1.1899

    # paperwork: a claim better than the logs support is S2 FAIL, shown as a paperwork WARN (exit 0)
    files |= folder("check_claims_disagree", src, expected="FAIL 0 S2", artifact=art, claims_edit=disagree,
                    readme="submission.json claims a better mean val_bpb and a seed the logs do not have.")
    files |= folder("check_truncated_artifact", src, expected="FAIL 3 S3", artifact=art[: len(art) // 2],
                    model_bytes=len(art),
                    readme="The artifact is cut in half: the zlib stream ends early.")
    wrapped = lzma_wrapped(src, committed / "check_wrapped_code" / "train_gpt.py")
    files |= folder("check_wrapped_code", wrapped, expected="PASS 0", artifact=art,
                    readme="train_gpt.py shipped as exec(lzma.decompress(b85decode(...))) of the compliant script.")
    # paperwork: missing logs and submission.json are S1 FAIL, never bad input; the artifact decides B1
    files |= folder("check_missing_files", src, expected="FAIL 0 S1", artifact=art, logs=False, claims=False,
                    readme="No train logs and no submission.json.")
    return files
