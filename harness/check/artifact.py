"""Artifact integrity: what the compressed model file holds, found without running any code.

The artifact is peeled layer by layer (compression containers recognised by magic bytes, the
"BSHF" byte shuffle some records apply before compressing), every decompression capped so a bomb is
refused before it is expanded, and the final payload is loaded only with
``torch.load(weights_only=True)``. A pickle that weights_only refuses is never loaded another way:
its opcodes are scanned (never executed) to list the globals it wants.

The capped container decoders live in harness.check.containers (shared with harness.check.unwrap).
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.check.containers import StreamError, byte_unshuffle, decompress_capped, sniff
from harness.errors import BadInput

# ---------------------------------------------------------------- result

@dataclass
class ArtifactInfo:
    path: str
    file_bytes: int  # bytes on disk: the "compressed model bytes" of B1
    container: str  # outermost: zlib zstd xz lzma bz2 gzip brotli torch-zip raw-pickle unknown
    layers: list[str] = field(default_factory=list)  # containers peeled, outermost first
    decompressed_bytes: int | None = None  # the final payload handed to the loader
    tensor_count: int | None = None
    parameters: int | None = None  # total elements of all tensors
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype -> element count
    quant_format: str | None = None  # best guess, e.g. "int6 per-row + scales fp16"
    problem: str | None = None  # truncated bomb unsafe_pickle not_a_model unknown_container unreadable
    message: str = ""  # one line for the report
    unsafe_globals: list[str] = field(default_factory=list)  # module.name the pickle wants, not allowed
    notes: list[str] = field(default_factory=list)  # trailing bytes, trial-decoded brotli, ...


CONTAINERS = ("zlib", "zstd", "xz", "lzma", "bz2", "gzip", "brotli", "torch-zip", "raw-pickle", "unknown")
MAX_LAYERS = 8
MIN_CAP_BYTES = 1 << 20  # a few-KB file inflating to 1 MiB is no bomb; tiny test artifacts need room


def _cap(file_bytes: int, max_decompressed_bytes: int, max_ratio: float) -> int:
    return int(min(max_decompressed_bytes, max(max_ratio * file_bytes, MIN_CAP_BYTES)))


# ---------------------------------------------------------------- pickle scanning

def scan_pickle_globals(data: bytes, count: int = 1) -> tuple[list[str], bool]:
    """Every global (module.name) the first ``count`` consecutive pickles in ``data`` would import,
    found by reading opcodes only (torch's legacy format is five pickles in a row).

    Returns (names in first-seen order, complete) where complete is False when a stream ended
    before STOP (truncated) or was malformed. STACK_GLOBAL takes its two names from the preceding
    string pushes (tracked through the memo); one that cannot be resolved is listed as "?".
    """
    names: list[str] = []
    f = io.BytesIO(data)

    def add(mod: str, attr: str) -> None:
        # protocol <= 2 pickles use Python 2 names (__builtin__.set); the unpickler maps them
        mod, attr = _compat_pickle.NAME_MAPPING.get((mod, attr), (mod, attr))
        mod = _compat_pickle.IMPORT_MAPPING.get(mod, mod)
        name = f"{mod}.{attr}"
        if name not in names:
            names.append(name)

    for _ in range(count):
        memo: dict[int, Any] = {}
        stack: list[Any] = []  # coarse model: only the values STACK_GLOBAL needs are exact
        complete = False
        try:
            for op, arg, _pos in pickletools.genops(f):
                n = op.name
                if n in ("GLOBAL", "INST"):
                    mod, _, attr = str(arg).partition(" ")
                    add(mod, attr)
                    stack.append(None)
                elif n == "STACK_GLOBAL":
                    attr = stack.pop() if stack else None
                    mod = stack.pop() if stack else None
                    if isinstance(mod, str) and isinstance(attr, str):
                        add(mod, attr)
                    elif "?" not in names:
                        names.append("?")
                    stack.append(None)
                elif n in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
                           "BINSTRING", "SHORT_BINSTRING"):
                    stack.append(arg)
                elif n in ("BINPUT", "LONG_BINPUT", "PUT"):
                    memo[int(arg)] = stack[-1] if stack else None
                elif n == "MEMOIZE":
                    memo[len(memo)] = stack[-1] if stack else None
                elif n in ("BINGET", "LONG_BINGET", "GET"):
                    stack.append(memo.get(int(arg)))
                elif n == "STOP":
                    complete = True
                    break
                elif op.stack_after:
                    stack.append(None)
        except (ValueError, EOFError, struct.error, UnicodeDecodeError):
            pass
        if not complete:
            return names, False
    return names, True


def _numpy_safe_globals() -> list[Any]:
    """numpy's array/dtype/scalar reconstructors: pure data, allowed so a torch.save of numpy
    arrays loads under weights_only (still the restricted unpickler)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return []
    out: list[Any] = [np.ndarray, np.dtype]
    # BUILD on a dtype needs its class (numpy.dtypes.Float32DType, ...) allowlisted as well
    dtypes_mod = getattr(np, "dtypes", None)
    out += [c for n in dir(dtypes_mod) if n.endswith("DType") and isinstance(c := getattr(dtypes_mod, n), type)]
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    ma = getattr(core, "multiarray", None)
    for fn_name in ("_reconstruct", "scalar"):
        fn = getattr(ma, fn_name, None)
        if fn is not None:
            out.append(fn)
            # pickles written by numpy 1.x name numpy.core; numpy 2 writes numpy._core
            for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
                out.append((fn, f"{mod}.{fn_name}"))
    return out


def _allowed_global_names(extra: list[Any]) -> set[str] | None:
    """Names torch's weights_only unpickler accepts (private API; None if unavailable)."""
    try:
        from torch import _weights_only_unpickler as w

        names = set(w._get_allowed_globals()) | set(w._get_user_allowed_globals())
    except Exception:
        return None
    for item in extra:
        if isinstance(item, tuple):
            names.add(item[1])
        else:
            names.add(f"{item.__module__}.{item.__name__}")
    return names


# ---------------------------------------------------------------- counting

def _count(obj: Any) -> tuple[int, int, dict[str, int], list[tuple[str, Any]]]:
    """(tensors, elements, dtype -> elements, [(key path, tensor)]) through dicts/lists/tuples."""
    import numpy as np
    import torch

    tensors = 0
    elements = 0
    dtypes: dict[str, int] = {}
    leaves: list[tuple[str, Any]] = []
    seen: set[int] = set()
    todo: list[tuple[str, Any]] = [("", obj)]
    while todo:
        path, x = todo.pop()
        if id(x) in seen:
            continue
        if isinstance(x, (dict, list, tuple, torch.Tensor, np.ndarray)):
            seen.add(id(x))
        if isinstance(x, torch.Tensor):
            dt = str(x.dtype).removeprefix("torch.")
        elif isinstance(x, np.ndarray):
            dt = x.dtype.name
        elif isinstance(x, dict):
            todo.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(list(x.items())))
            continue
        elif isinstance(x, (list, tuple)):
            todo.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(x))))
            continue
        else:
            continue
        n = int(x.numel()) if isinstance(x, torch.Tensor) else int(x.size)
        tensors += 1
        elements += n
        dtypes[dt] = dtypes.get(dt, 0) + n
        leaves.append((path, x))
    return tensors, elements, dtypes, leaves


def _int_bits(t: Any) -> int | None:
    """Bits an int8 tensor really uses: values in [-31, 31] are int6 stored in int8."""
    import numpy as np
    import torch

    if isinstance(t, torch.Tensor):
        if t.dtype != torch.int8 or t.numel() == 0:
            return None
        lo, hi = int(t.min()), int(t.max())
    else:
        if t.dtype != np.int8 or t.size == 0:
            return None
        lo, hi = int(t.min()), int(t.max())
    span = max(-lo, hi + 1, 1)
    return min(8, (span - 1).bit_length() + 1)


_SHORT = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64"}
_SCALE_NAMES = {"scale", "scales", "qscale", "q_scale", "scale_fp16", "row_scale", "row_scales"}


def _parts(path: str) -> list[str]:
    return [p for p in path.replace("[", ".").replace("]", "").split(".") if p]


def _is_scale(path: str, t: Any) -> bool:
    parts = [p.lower() for p in _parts(path)]
    if not parts or str(t.dtype).removeprefix("torch.") not in _SHORT:
        return False
    return parts[0] in ("scales", "scale") or parts[-1] in _SCALE_NAMES


def guess_quant_format(obj: Any, dtypes: dict[str, int], leaves: list[tuple[str, Any]]) -> str | None:
    """Best-effort description of the quantization from dtypes, key names and int8 value ranges,
    e.g. "int8_clean_per_row_v1: int8 per-row + scales fp16", "int5/int6 (in int8) per-row + ..."."""
    if not dtypes:
        return None
    declared = None
    if isinstance(obj, dict):
        for key in ("__quant_format__", "quant_format", "format"):
            if isinstance(obj.get(key), str):
                declared = obj[key]
                break
    main = max(dtypes, key=lambda d: dtypes[d])
    scales = [t for p, t in leaves if _is_scale(p, t)]
    if main == "int8":
        bits = sorted({b for b in (_int_bits(t) for _p, t in leaves) if b is not None})
        desc = "/".join(f"int{b}" for b in bits) or "int8"
        if bits and max(bits) < 8:
            desc += " (in int8)"
    elif main == "uint8":
        packed = any("pack" in p.lower() for p, _ in leaves)
        desc = "bit-packed uint8" if packed else "uint8 (custom packing?)"
    else:
        desc = _SHORT.get(main, main)
        if main in ("float32", "float64"):
            desc += " (unquantized)"
    if scales and main in ("int8", "uint8"):
        ndims = {len(t.shape) for t in scales}
        kind = ("per-row" if ndims == {1} else "per-tensor" if ndims == {0}
                else "grouped" if ndims == {2} else "mixed")
        sdt = sorted({_SHORT[str(t.dtype).removeprefix("torch.")] for t in scales})
        desc += f" {kind} + scales {'/'.join(sdt)}"
    return f"{declared}: {desc}" if declared else desc


# ---------------------------------------------------------------- loading

def _load_payload(data: bytes, container: str, cap: int, max_ratio: float, info: ArtifactInfo) -> None:
    """Fill tensor counts from a torch-zip or raw pickle payload, or set info.problem."""
    if container == "torch-zip":
        if b"PK\x05\x06" not in data[-(1 << 16) - 22:]:
            info.problem = "truncated"
            info.message = "torch zip archive is truncated (no end-of-central-directory record)"
            return
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                entries = zf.infolist()
                inflated = sum(e.file_size for e in entries)
                if inflated > cap or any(e.compress_size and e.file_size / e.compress_size > max_ratio
                                         and e.file_size > MIN_CAP_BYTES for e in entries):
                    info.problem = "bomb"
                    info.message = (f"torch zip entries inflate to {inflated:,} bytes, over the cap of "
                                    f"{cap:,} (decompression bomb)")
                    return
                bad = zf.testzip()
                if bad is not None:
                    info.problem = "unreadable"
                    info.message = f"torch zip archive is corrupt (CRC mismatch in {bad})"
                    return
                pkl = [e.filename for e in entries if e.filename.endswith("data.pkl")]
                if not pkl:
                    info.problem = "not_a_model"
                    info.message = "zip archive without data.pkl: not a torch.save file"
                    return
                pickle_bytes = zf.read(pkl[0])
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            info.problem = "unreadable"
            info.message = f"torch zip archive is unreadable: {e}"
            return
    else:
        pickle_bytes = data
    legacy = container == "raw-pickle" and data.startswith(_LEGACY_TORCH_MAGIC)
    names, complete = scan_pickle_globals(pickle_bytes, 5 if legacy else 1)
    if not complete:
        info.problem = "truncated"
        info.message = "pickle stream ends before its STOP opcode (truncated or corrupt)"
        return
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        info.problem = "unreadable"
        info.message = "torch is not installed: cannot load the payload"
        return
    extra = _numpy_safe_globals()
    allowed = _allowed_global_names(extra)
    if allowed is not None:
        unsafe = [n for n in names if n not in allowed]
        if unsafe:
            # weights_only would refuse these; the pickle is not handed to any unpickler at all
            info.problem = "unsafe_pickle"
            info.unsafe_globals = unsafe
            info.message = (f"pickle needs {len(unsafe)} global(s) outside torch's weights_only allowlist "
                            f"({', '.join(unsafe[:4])}{', ...' if len(unsafe) > 4 else ''}); never loaded")
            return
    obj = _weights_only_load(torch, data, pickle_bytes, container, extra, info,
                             [n for n in names if allowed is None or n not in allowed])
    if info.problem:
        return
    count, params, dtypes, leaves = _count(obj)
    info.tensor_count, info.parameters, info.dtypes = count, params, dict(sorted(dtypes.items()))
    if count == 0:
        info.problem = "not_a_model"
        info.message = f"payload loads ({type(obj).__name__}) but holds no tensors"
        return
    info.quant_format = guess_quant_format(obj, dtypes, leaves)


_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def _refusal_reason(e: BaseException) -> str:
    """The one informative line of torch's long weights_only error."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error" in ln:
            tail = ln.split("WeightsUnpickler error:", 1)[-1].strip()
            return (tail or (lines[i + 1] if i + 1 < len(lines) else ln))[:200]
    return (lines[-1] if lines else type(e).__name__)[:200]


def _weights_only_load(torch: Any, data: bytes, pickle_bytes: bytes, container: str, extra: list[Any],
                       info: ArtifactInfo, suspects: list[str]) -> Any:
    """torch.load(weights_only=True) for torch files; torch's restricted unpickler for a plain
    pickle. Whatever refuses is reported; nothing is ever loaded another way."""
    import pickle
    import warnings

    ctx = getattr(torch.serialization, "safe_globals", None)

    def guarded(fn: Callable[[], Any]) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol warnings; the outcome is reported instead
            if ctx is None:
                return fn()
            with ctx(extra):
                return fn()

    plain = container == "raw-pickle" and not data.startswith(_LEGACY_TORCH_MAGIC)
    try:
        if plain:
            from torch import _weights_only_unpickler as w

            return guarded(lambda: w.Unpickler(io.BytesIO(pickle_bytes), encoding="utf-8").load())
        return guarded(lambda: torch.load(io.BytesIO(data), weights_only=True, map_location="cpu"))
    except pickle.UnpicklingError as e:
        reason = _refusal_reason(e)
        if reason.startswith("Unsupported operand"):
            # torch's restricted unpickler reads protocol 2 only; a protocol 3-5 plain pickle is
            # not unsafe by itself, it just cannot be read safely here
            info.problem = "unreadable"
            info.message = (f"plain pickle (protocol {pickle_bytes[1]}) that torch's weights_only unpickler "
                            f"cannot read ({reason}); not loaded any other way")
        else:
            info.problem = "unsafe_pickle"
            info.unsafe_globals = suspects
            info.message = f"torch.load(weights_only=True) refused the payload: {reason}; never loaded otherwise"
    except ImportError:
        info.problem = "unreadable"
        info.message = "plain pickle payload and no restricted unpickler available to load it"
    except Exception as e:  # noqa: BLE001 - any loader failure is a finding, not a crash
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        info.problem = "unreadable"
        info.message = f"{'plain pickle' if plain else 'torch.load'} failed: {type(e).__name__}: {first}"
    return None


# ---------------------------------------------------------------- entry points

_WEAK_TRIALS = ("brotli", "lzma-raw")  # no magic bytes: tried when nothing else matched


def artifact_caps(cfg: Any = None) -> dict[str, Any]:
    """S3's inspection caps (max_decompressed_bytes, max_ratio): from cfg (rules/*.toml overridden by
    harness.toml [rules.S3]), or from the rules alone when cfg is None."""
    if cfg is not None:
        s3 = cfg.rule_params("S3")
    else:
        from harness.rules import load_rules

        s3 = load_rules()["S3"].params()
    return {"max_decompressed_bytes": int(s3["max_decompressed_bytes"]), "max_ratio": float(s3["max_ratio"])}


def inspect_artifact(path: str | Path, *, max_decompressed_bytes: int | None = None,
                     max_ratio: float | None = None) -> ArtifactInfo:
    """Peel the artifact's containers (capped), then load the payload with weights_only=True.

    Caps left None come from rule S3's parameters (artifact_caps). Never runs code from the artifact.
    Problems are reported in the result, not raised; only a missing/unopenable path raises BadInput.
    """
    if max_decompressed_bytes is None or max_ratio is None:
        caps = artifact_caps()
        max_decompressed_bytes = caps["max_decompressed_bytes"] if max_decompressed_bytes is None \
            else max_decompressed_bytes
        max_ratio = caps["max_ratio"] if max_ratio is None else max_ratio
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{p}: artifact file not found")
    if not p.is_file():
        raise BadInput(f"{p}: artifact is not a regular file")
    file_bytes = p.stat().st_size
    info = ArtifactInfo(path=str(p), file_bytes=file_bytes, container="unknown")
    cap = _cap(file_bytes, max_decompressed_bytes, max_ratio)
    if file_bytes > max_decompressed_bytes:
        info.problem = "unreadable"
        info.message = f"file is {file_bytes:,} bytes, over the inspection cap of {max_decompressed_bytes:,}"
        return info
    try:
        data = p.read_bytes()
    except OSError as e:
        info.problem = "unreadable"
        info.message = f"cannot read the artifact: {e.strerror or e}"
        return info
    _peel(data, cap, max_ratio, info)
    if info.layers:
        first = {"lzma-raw": "lzma"}.get(info.layers[0], info.layers[0])
        info.container = first if first in CONTAINERS else "unknown"
    if not info.problem:
        info.message = _summary(info)
    elif len(info.layers) > 1:
        info.message = f"{' > '.join(info.layers)}: {info.message}"
    return info


class _Stop(Exception):
    """Peeling ends with info.problem set."""


def _decode_layer(data: bytes, kind: str | None, cap: int, info: ArtifactInfo) -> bytes | None:
    """Decode one compression layer: the sniffed codec first, then the magic-less trials.
    Returns the output (layer recorded in info), None when nothing decodes, raises _Stop on a
    bomb / truncation / corruption (info.problem set)."""
    tried: list[str] = [kind] if kind and kind not in ("torch-zip", "raw-pickle") else []
    tried += [t for t in _WEAK_TRIALS if t != kind]
    for codec in tried:
        # lzma-alone's header is a heuristic and brotli / raw LZMA2 have none: their failures
        # mean "not this format" unless the output they produced is recognisable
        weak = codec in _WEAK_TRIALS or codec == "lzma"
        try:
            decoded = decompress_capped(codec, data, cap)
        except StreamError as e:
            real = not weak or sniff(e.head) is not None
            if e.kind == "bomb" or (e.kind == "truncated" and real) or (
                    e.kind == "corrupt" and not weak and e.produced):
                info.layers.append(codec)
                info.problem = "unreadable" if e.kind == "corrupt" else e.kind
                info.message = str(e)
                raise _Stop from None
            continue
        info.layers.append(codec)
        if codec in _WEAK_TRIALS:
            info.notes.append(f"{codec} has no magic bytes: identified by trial decoding")
        if decoded.trailing.strip(b"\0"):
            info.notes.append(f"{len(decoded.trailing):,} trailing bytes after the {codec} stream ignored")
        return decoded.data
    return None


def _peel(data: bytes, cap: int, max_ratio: float, info: ArtifactInfo) -> None:
    try:
        for _ in range(MAX_LAYERS):
            kind = sniff(data)
            if kind == "raw-pickle" and not scan_pickle_globals(data)[1]:
                # 0x80 0x02..0x05 is a weak magic: an incomplete "pickle" may be brotli or raw LZMA2
                out = _decode_layer(data, None, cap, info)
                if out is not None:
                    data = out
                    continue
            if kind in ("torch-zip", "raw-pickle"):
                info.layers.append(kind)
                info.decompressed_bytes = len(data)
                _load_payload(data, kind, cap, max_ratio, info)
                return
            if kind == "byte-shuffle":
                info.layers.append("byte-shuffle")
                data = byte_unshuffle(data)
                continue
            out = _decode_layer(data, kind, cap, info)
            if out is None:
                if not info.layers:
                    info.problem = "unknown_container"
                    brotli_note = "" if _has_brotli() else "; brotli not installed, so brotli was not tried"
                    info.message = (f"unrecognised container (first bytes {data[:8].hex(' ')}); "
                                    f"not zlib/zstd/xz/lzma/bz2/gzip/torch-zip/pickle, nor brotli or raw "
                                    f"LZMA2 by trial{brotli_note}")
                else:
                    info.problem = "not_a_model"
                    info.decompressed_bytes = len(data)
                    info.message = (f"decompressed to {len(data):,} bytes that are not a torch.save/pickle "
                                    f"payload (first bytes {data[:8].hex(' ')}; custom format?)")
                return
            data = out
    except _Stop:
        return
    info.problem = "unreadable"
    info.message = f"more than {MAX_LAYERS} nested containers; stopped peeling"


def _has_brotli() -> bool:
    try:
        import brotli  # noqa: F401
    except ImportError:
        return False
    return True


def _summary(info: ArtifactInfo) -> str:
    parts = [" > ".join(info.layers), f"{info.file_bytes:,} B on disk"]
    if info.decompressed_bytes is not None and info.layers[0] not in ("torch-zip", "raw-pickle"):
        parts.append(f"{info.decompressed_bytes:,} B payload")
    parts.append(f"{info.tensor_count} tensors, {info.parameters:,} parameters")
    if info.quant_format:
        parts.append(info.quant_format)
    msg = ", ".join(parts)
    if info.notes:
        msg += f" ({'; '.join(info.notes)})"
    return msg


# ---------------------------------------------------------------- finding the artifact

_COMPRESSED_SUFFIXES = {".ptz", ".zst", ".zstd", ".xz", ".lzma", ".br", ".bz2", ".gz", ".zlib", ".brotli"}
_SKIP_SUFFIXES = {".py", ".md", ".json", ".txt", ".log", ".model", ".vocab", ".csv", ".toml", ".yaml",
                  ".yml", ".sh", ".cfg", ".ipynb", ".png", ".jpg", ".svg", ".html", ".jsonl", ".cpp",
                  ".h", ".cu", ".c"}
_SHARD_MAGIC = 20240520


def _is_data_shard(p: Path) -> bool:
    if p.name.startswith("fineweb_"):
        return True
    try:
        with p.open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return len(head) == 4 and struct.unpack("<i", head)[0] == _SHARD_MAGIC


_QUANT_SUFFIX = re.compile(r"\.(int|q|fp|bf)\d+\w*")


def _artifact_rank(p: Path) -> int | None:
    """Lower is likelier the artifact B1 counts (compressed, quantized); None: not a candidate."""
    name = p.name.lower()
    suffix = p.suffix.lower()
    if suffix in _SKIP_SUFFIXES:
        return None
    suffixes = [s.lower() for s in p.suffixes]
    quant = any(_QUANT_SUFFIX.fullmatch(s) for s in suffixes)
    compressed = any(s in _COMPRESSED_SUFFIXES for s in suffixes)
    final = name.startswith("final_model")
    if final and (compressed or quant):
        return 0
    if compressed or quant:
        return 1
    if suffix == ".bin":
        return None if _is_data_shard(p) else 2
    if final:
        return 3
    if suffix in (".pt", ".pth", ".ckpt"):
        return 4
    return None


def find_artifact(folder: str | Path) -> Path | None:
    """The compressed model file in a submission folder (top level), or None.

    Preference: final_model.* compressed/quantized (final_model.int8.ptz) > other compressed or
    quantized files (*.ptz, *.int6.*, *.zst, ...) > non-shard *.bin > final_model.* > *.pt/*.pth.
    """
    f = Path(folder)
    if not f.is_dir():
        raise BadInput(f"{f}: not a folder")
    ranked: list[tuple[int, str, Path]] = []
    for p in f.iterdir():
        if not p.is_file() or p.name.startswith("."):
            continue
        r = _artifact_rank(p)
        if r is not None:
            ranked.append((r, p.name, p))
    if not ranked:
        return None
    ranked.sort()
    return ranked[0][2]
