"""CUDA device arguments mapped to the CPU at the source.

`torch.device("cuda", r)` itself returns the CPU device, so device objects the script builds compare equal
to its tensors' devices (caches keyed on device stay warm). Strings ("cuda", "cuda:1") and bare ints (a
CUDA index in torch's API) are mapped where they enter: factory functions, Tensor.to/.cuda/.new_*,
Module.to/.cuda/.to_empty, torch.Generator, torch.load, set_default_device. pin_memory becomes a no-op.

Monkeypatches, not a TorchFunctionMode: a mode is per thread (loader threads would escape it) and costs
on every op; these patches cost a few attribute checks on calls that take a device.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from harness.runtime.shim import state

CPU = "cpu"

# factories of the torch namespace that take device= (and some pin_memory=)
_FACTORIES = (
    "zeros", "ones", "empty", "full", "arange", "range", "linspace", "logspace", "eye", "tensor",
    "as_tensor", "asarray", "rand", "randn", "randint", "randperm", "normal", "zeros_like", "ones_like",
    "empty_like", "full_like", "rand_like", "randn_like", "randint_like", "empty_strided",
    "empty_permuted", "tril_indices", "triu_indices", "scalar_tensor", "sparse_coo_tensor",
    "sparse_csr_tensor", "hann_window", "hamming_window", "blackman_window", "bartlett_window",
    "kaiser_window", "from_file", "polar", "complex",
)
_NEW_METHODS = ("new_empty", "new_zeros", "new_ones", "new_full", "new_tensor", "new_empty_strided")


def install(torch: ModuleType) -> None:
    real_device = torch.device
    # bare ints are CUDA ordinals in torch's API (device=0 is cuda:0)

    def is_cuda(d: Any) -> bool:
        cls = d.__class__
        if cls is str:
            return d.startswith("cuda")
        if cls is int:
            return True
        if cls is real_device:
            return d.type == "cuda"
        return False

    def map_kw(kwargs: dict[str, Any]) -> None:
        d = kwargs.get("device")
        if d is not None and is_cuda(d):
            kwargs["device"] = CPU
        if kwargs.get("pin_memory"):
            kwargs["pin_memory"] = False

    # torch.device ---------------------------------------------------------------------------
    class _DeviceMeta(type):
        def __instancecheck__(cls, obj: object) -> bool:
            return isinstance(obj, real_device)

        def __subclasscheck__(cls, sub: type) -> bool:
            return issubclass(sub, real_device)

    class device(metaclass=_DeviceMeta):  # noqa: N801 - stands in for torch.device
        """torch.device, with CUDA devices mapped to the CPU (harness CPU shim)."""

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # returns a real torch.device
            if args and is_cuda(args[0]):
                return real_device(CPU)
            t = kwargs.get("type")
            if t is not None and is_cuda(t):
                return real_device(CPU)
            return real_device(*args, **kwargs)

    device.__module__ = "torch"  # pickle finds torch.device by name: it must be this object
    device.__qualname__ = device.__name__ = "device"
    torch.device = device
    state.note("torch.device")

    # torch.Generator(device=...) --------------------------------------------------------------
    real_gen = torch.Generator

    class _GenMeta(type):
        def __instancecheck__(cls, obj: object) -> bool:
            return isinstance(obj, real_gen)

        def __subclasscheck__(cls, sub: type) -> bool:
            return issubclass(sub, real_gen)

    class Generator(metaclass=_GenMeta):
        def __new__(cls, device: Any = CPU) -> Any:
            return real_gen(CPU if is_cuda(device) else device)

    Generator.__module__ = "torch"
    torch.Generator = Generator
    state.note("torch.Generator")

    # factories ------------------------------------------------------------------------------
    def wrap_factory(fn: Any) -> Any:
        @functools.wraps(fn)
        def factory(*args: Any, **kwargs: Any) -> Any:
            if kwargs:
                map_kw(kwargs)
            return fn(*args, **kwargs)

        return factory

    for name in _FACTORIES:
        fn = getattr(torch, name, None)
        if fn is not None:
            setattr(torch, name, wrap_factory(fn))
    state.note("torch factories")

    Tensor = torch.Tensor
    for name in _NEW_METHODS:
        meth = getattr(Tensor, name, None)
        if meth is not None:
            setattr(Tensor, name, wrap_factory(meth))

    # Tensor.to / .cuda / pin_memory / type / record_stream ----------------------------------
    orig_to = Tensor.to

    @functools.wraps(orig_to)
    def to(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args and is_cuda(args[0]):
            args = (CPU,) + args[1:]
        if kwargs:
            d = kwargs.get("device")
            if d is not None and is_cuda(d):
                kwargs["device"] = CPU
        return orig_to(self, *args, **kwargs)

    Tensor.to = to

    def cuda(self: Any, device: Any = None, non_blocking: bool = False, **_: Any) -> Any:
        return self if self.device.type == CPU else orig_to(self, CPU, non_blocking=non_blocking)

    Tensor.cuda = cuda
    Tensor.pin_memory = lambda self, device=None: self
    Tensor.is_pinned = lambda self, device=None: False
    Tensor.record_stream = lambda self, stream: None

    orig_type = Tensor.type

    @functools.wraps(orig_type)
    def type_(self: Any, dtype: Any = None, non_blocking: bool = False, **kwargs: Any) -> Any:
        if isinstance(dtype, str):
            dtype = dtype.replace("torch.cuda.", "torch.")
        elif isinstance(dtype, type) and dtype.__module__ == "torch.cuda":
            dtype = getattr(torch, dtype.__name__)
        if dtype is None:
            return orig_type(self)
        return orig_type(self, dtype, non_blocking, **kwargs)

    Tensor.type = type_
    state.note("Tensor.to/cuda/pin_memory/type")

    # Tensor.is_cuda: the script asked for CUDA and got CPU tensors; its own guards (`if not x.is_cuda:
    # raise ...` before a Triton kernel, which then runs under the interpreter) must see what it asked for.
    # torch's, Triton's and the harness's code keep the truth, so no library takes a CUDA-only path.
    real_is_cuda = torch._C.TensorBase.is_cuda

    def is_cuda_(self: Any) -> bool:
        if real_is_cuda.__get__(self):
            return True
        return self.device.type == CPU and state.script_frame(1)

    Tensor.is_cuda = property(is_cuda_)
    state.note("Tensor.is_cuda (the script's frames)")

    # nn.Module.to / cuda / to_empty ----------------------------------------------------------
    Module = torch.nn.Module
    orig_mod_to = Module.to

    @functools.wraps(orig_mod_to)
    def mod_to(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args and is_cuda(args[0]):
            args = (CPU,) + args[1:]
        d = kwargs.get("device")
        if d is not None and is_cuda(d):
            kwargs["device"] = CPU
        return orig_mod_to(self, *args, **kwargs)

    Module.to = mod_to
    Module.cuda = lambda self, device=None: self

    orig_to_empty = Module.to_empty

    @functools.wraps(orig_to_empty)
    def to_empty(self: Any, *, device: Any, recurse: bool = True) -> Any:
        return orig_to_empty(self, device=CPU if is_cuda(device) else device, recurse=recurse)

    Module.to_empty = to_empty
    state.note("Module.to/cuda/to_empty")

    # torch.load: every storage comes back to the CPU ------------------------------------------
    orig_load = torch.load

    @functools.wraps(orig_load)
    def load(*args: Any, **kwargs: Any) -> Any:
        if len(args) >= 2:
            args = (args[0], CPU) + args[2:]
        else:
            kwargs["map_location"] = CPU
        return orig_load(*args, **kwargs)

    torch.load = load

    orig_set_default = torch.set_default_device

    @functools.wraps(orig_set_default)
    def set_default_device(d: Any) -> None:
        orig_set_default(CPU if d is not None and is_cuda(d) else d)

    torch.set_default_device = set_default_device
    state.note("torch.load/set_default_device")


def install_flex_attention(mod: ModuleType) -> None:
    """create_block_mask defaults to device="cuda"."""
    orig = getattr(mod, "create_block_mask", None)
    if orig is None:
        return

    @functools.wraps(orig)
    def create_block_mask(*args: Any, **kwargs: Any) -> Any:
        if len(args) > 5:  # (mask_mod, B, H, Q_LEN, KV_LEN, device, ...)
            args = args[:5] + (CPU,) + args[6:]
        else:
            kwargs["device"] = CPU
        return orig(*args, **kwargs)

    mod.create_block_mask = create_block_mask
    state.note("flex_attention.create_block_mask")
