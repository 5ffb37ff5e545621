"""numpy and torch entry points that turn shard bytes into arrays, and torch's save / load.

Installed when numpy / torch finish importing (see imports.py), so a script that never imports them
pays nothing and a Python without them still starts.
- np.fromfile, np.memmap (creation and slices), np.frombuffer (of bytes read from a shard),
  np.load; torch.frombuffer.
- torch.save / torch.load with a path: `artifact_write` / `artifact_read` (torch writes through its
  own C++ file, not through open()).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from harness.runtime.io_hooks.state import HookState


def _fspath(x: Any) -> str | None:
    if isinstance(x, (str, bytes, os.PathLike)):
        try:
            return os.fsdecode(os.fspath(x))
        except TypeError:
            return None
    return None


def _file_and_pos(f: Any) -> tuple[str | None, int]:
    p = _fspath(f)
    if p is not None:
        return p, 0
    name = getattr(f, "name", None)
    if isinstance(name, str) and hasattr(f, "tell"):
        try:
            return name, int(f.tell())
        except (OSError, ValueError):
            return name, 0
    return None, 0


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


def install_numpy(st: HookState, np: Any) -> None:
    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # numpy < 2
        byte_bounds = np.byte_bounds

    real_fromfile = np.fromfile

    @functools.wraps(real_fromfile)
    def fromfile(file: Any, *args: Any, **kwargs: Any) -> Any:
        if st.quiet():
            return real_fromfile(file, *args, **kwargs)
        path, base = _file_and_pos(file)
        kind = st.cls.kind(path)
        if kind not in ("train", "val"):
            return real_fromfile(file, *args, **kwargs)
        with st.quietly():
            arr = real_fromfile(file, *args, **kwargs)
        assert path is not None
        if kind == "train":
            st.train_read(path, "fromfile")
            return arr
        sep = _arg(args, kwargs, 2, "sep", "")
        offset = int(_arg(args, kwargs, 3, "offset", 0) or 0)
        if sep:  # text parsing: byte extent unknown, count the whole file
            return st.val_read(path, 0, os.path.getsize(path), "fromfile_text")
        return st.val_read(path, base + offset, arr.nbytes, "fromfile", arr=arr, itemsize=arr.dtype.itemsize)

    np.fromfile = fromfile

    real_frombuffer = np.frombuffer

    @functools.wraps(real_frombuffer)
    def frombuffer(buffer: Any, *args: Any, **kwargs: Any) -> Any:
        arr = real_frombuffer(buffer, *args, **kwargs)
        if st.quiet():
            return arr
        origin = st.buffer_origin(buffer)
        if origin is None:
            return arr
        path, byte_lo = origin
        offset = int(_arg(args, kwargs, 2, "offset", 0) or 0)
        return st.val_read(
            path, byte_lo + offset, arr.nbytes, "frombuffer", arr=arr, itemsize=arr.dtype.itemsize
        )

    np.frombuffer = frombuffer

    memmap = np.memmap
    real_new = memmap.__new__
    real_getitem = memmap.__getitem__

    def mm_new(subtype: Any, filename: Any, *args: Any, **kwargs: Any) -> Any:
        if st.quiet():
            return real_new(subtype, filename, *args, **kwargs)
        with st.quietly():
            mm = real_new(subtype, filename, *args, **kwargs)
        path = getattr(mm, "filename", None) or _file_and_pos(filename)[0]
        kind = st.cls.kind(path)
        if kind not in ("train", "val") or path is None:
            return mm
        offset = int(_arg(args, kwargs, 2, "offset", 0) or 0)
        m = getattr(mm, "_mmap", None)
        if m is not None:
            st.maps[id(m)] = (kind, path, int(mm.ctypes.data), offset)
        if kind == "train":
            st.train_read(path, "memmap")
            return mm
        # mapping is not reading: the span is recorded as lazy; slices report what they touch
        return st.val_read(path, offset, mm.nbytes, "memmap", arr=mm, itemsize=mm.dtype.itemsize, lazy=True)

    def mm_getitem(self: Any, index: Any) -> Any:
        res = real_getitem(self, index)
        m = getattr(self, "_mmap", None)
        info = st.maps.get(id(m)) if m is not None else None
        if info is None or st.quiet() or not isinstance(res, np.ndarray) or res.size == 0:
            return res
        kind, path, addr0, off0 = info
        if kind == "train":
            st.train_read(path, "memmap_slice")
            return res
        lo, hi = byte_bounds(res)
        b_lo = lo - addr0 + off0
        contiguous = res.ndim == 1 and res.flags.c_contiguous
        return st.val_read(
            path, b_lo, hi - lo, "memmap_slice", arr=res if contiguous else None,
            itemsize=res.dtype.itemsize if contiguous else 0,
        )

    memmap.__new__ = staticmethod(mm_new)
    memmap.__getitem__ = mm_getitem

    real_load = np.load

    @functools.wraps(real_load)
    def load(file: Any, *args: Any, **kwargs: Any) -> Any:
        if st.quiet():
            return real_load(file, *args, **kwargs)
        path, _ = _file_and_pos(file)
        kind = st.cls.kind(path)
        if kind not in ("train", "val") or path is None:
            return real_load(file, *args, **kwargs)  # artifacts: the open hook reports them
        with st.quietly():
            out = real_load(file, *args, **kwargs)
        if kind == "train":
            st.train_read(path, "np.load")
        else:  # not a challenge shard layout: whole stream, untagged
            st.val_read(path, 0, os.path.getsize(path), "np.load")
        return out

    np.load = load


def _note_serialized(obj: Any) -> None:
    """Tell the tracer (when one runs) which token positions the saved tensors depend on: to a file or to a
    buffer that becomes the artifact, the saved state is then the script's, built from those positions."""
    from harness.runtime import tracer

    tr = tracer._TRACER  # noqa: SLF001 - the public accessor refuses callers below the script's frames
    if tr is not None:
        tr.note_serialized(obj, "torch.save")


def install_torch(st: HookState, torch: Any) -> None:
    real_save = torch.save
    real_load = torch.load

    @functools.wraps(real_save)
    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
        path = _fspath(f)
        if not st.quiet():
            _note_serialized(obj)
        if path is None or st.quiet():
            return real_save(obj, f, *args, **kwargs)  # file objects: the open hook sees them
        with st.quietly():
            out = real_save(obj, f, *args, **kwargs)
        if st.cls.kind(path) == "artifact":
            st.artifact("artifact_write", path, "torch.save")
        return out

    @functools.wraps(real_load)
    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        path = _fspath(f)
        if path is None or st.quiet():
            return real_load(f, *args, **kwargs)
        kind = st.cls.kind(path)
        if kind == "artifact":
            st.artifact("artifact_read", path, "torch.load")
        with st.quietly():
            return real_load(f, *args, **kwargs)

    torch.save = save
    torch.load = load

    real_frombuffer = getattr(torch, "frombuffer", None)
    if real_frombuffer is not None:

        @functools.wraps(real_frombuffer)
        def frombuffer(buffer: Any, *args: Any, **kwargs: Any) -> Any:
            t = real_frombuffer(buffer, *args, **kwargs)
            if st.quiet():
                return t
            origin = st.buffer_origin(buffer)
            if origin is None:
                return t
            path, byte_lo = origin
            offset = int(kwargs.get("offset", 0) or 0)
            nbytes = t.numel() * t.element_size()
            return st.val_read(path, byte_lo + offset, nbytes, "torch.frombuffer", arr=t, itemsize=t.element_size())

        torch.frombuffer = frombuffer
