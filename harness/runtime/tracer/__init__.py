"""Token-access tracer: when each validation position is scored, and what depends on it.

``install(ctx)`` (called by the runtime bootstrap when ``ctx.settings.trace``) replaces
``ctx.tag_validation`` so that validation tokens carry their stream positions, enters a
TorchDispatchMode in this thread and every new thread, and patches the numpy / Python boundaries.
``uninstall()`` undoes everything (tests run several traces in one process).

Provenance (see provenance.py): per stored element, the hull [lo, hi] of the validation positions
its value depends on, kept per memory block (torch storage / numpy root), so views are exact and
in-place writes through views update the base. Exact for index, slice, view, reshape, copy, dtype
and device moves; union for elementwise ops; union over the reduced dims for reductions and
matrix products (a product with an untraced weight keeps rows apart); a running union along the
sequence for causal attention (SDPA / flash-attention ops, and hand-written masked softmax: an
untraced -inf or 0 entry is a constant, so ``masked_fill(mask, -inf).softmax(-1) @ v`` comes out
causal); selection by a traced index includes the index's positions, except selecting the
target's entry from a vocabulary-sized row (nll_loss; gather/index on a dim of size
``settings.vocab_size`` / ``$VOCAB_SIZE``, or when unknown on a softmax/log_softmax output).
An op without a rule gives every output the union of every input (counted in ``stats``).

Events (fields in events.py and harness.ledger): ``score`` for every NLL computed for traced
targets (nll_loss ops; gather/index of a log_softmax / softmax output at the target; the log of a
value made of one position's scores: the *derived* score of a mixture such as model + n-gram,
which replaces the scores it was made from in the value's score ids); ``combine`` when one value
holds two scores of the same position; ``consume`` when scores leave torch/numpy (item, float,
tolist, print, iteration) or enter a collective; ``update`` for traced writes into parameters,
buffers, optimizer state, and tables (a tensor/array allocated by the script before the most
recent score; writes of score-carrying values - loss accumulators - excluded); ``stats``.

Known holes (what the trace cannot see; the behavioural probes cover them):
- values that left as Python numbers (``.item()``, ``.tolist()``, ``float()``, iterating a
  traced array, scalar indexing ``arr[i]``) lose their provenance: pure-Python loops, dicts keyed
  by tokens, Python-side n-gram counts are invisible (each escape is counted);
- implicit flows: a value chosen by a data-dependent Python branch, an ignored-target mask
  (``total_weight``), ``scale_grad_by_freq``, the set of rows an embedding gradient touches are
  not dependencies; 0*inf/NaN is treated as 0 when skipping products with exact zeros;
- numpy: copies made by numpy internals that neither a ufunc, a known function nor an overridden
  method produce are read as their source's union; ``np.asarray`` on a plain (non-traced) array
  of traced memory, ``np.frombuffer`` of traced bytes, and writes through a numpy array into
  memory later wrapped by ``torch.from_numpy`` (a snapshot) are not followed;
- NLL computed without log_softmax / softmax / nll_loss (e.g. ``logsumexp - logit[target]``) gives
  no score events (the verdict then lacks evidence: inconclusive, not pass);
- tables are recognised by birth (created before the last score); a table created and fully
  filled before any score (a cache over the whole stream) gives no ``update`` event, but its
  influence shows in later scores' ``dep`` (C1);
- several ranks: cross-rank flows follow only the hooked Python-level collectives; DDP's C++
  gradient all-reduce is not followed (trace at world size 1); score ids are per rank;
- compiled kernels bypass the dispatcher: ``torch.compile`` becomes the identity; Triton or
  custom C++/CUDA ops without an aten rule take the coarse union;
- the interval hull over-approximates an element depending on far-apart positions.
"""

from __future__ import annotations

from typing import Any

_TRACER: Any = None
_MODE: Any = None
_CTX: Any = None
_SAVED_TAG: Any = None


def install(ctx: Any) -> Any:
    """Start tracing in this process; returns the Tracer (idempotent)."""
    global _TRACER, _MODE, _CTX, _SAVED_TAG
    if _TRACER is not None:
        return _TRACER
    import numpy as np
    import torch

    from harness.runtime.tracer import numpy_trace, patches
    from harness.runtime.tracer.provenance import Prov
    from harness.runtime.tracer.state import Tracer
    from harness.runtime.tracer.torch_mode import TraceMode

    tr = Tracer(ctx)
    _TRACER, _CTX = tr, ctx

    def tag_validation(arr: Any, lo: int, file: str) -> Any:
        if isinstance(arr, torch.Tensor):
            pos = np.arange(lo, lo + arr.numel(), dtype=np.int64).astype(np.int32).reshape(tuple(arr.shape))
            with tr.lock:
                tr.store.write(tr.store.locate_tensor(arr), Prov(pos, pos.copy(), None))
            return arr
        if isinstance(arr, np.ndarray):
            return numpy_trace.tag_array(tr, arr, lo)
        return arr

    _SAVED_TAG = ctx.tag_validation
    ctx.tag_validation = tag_validation
    numpy_trace.install_patches(tr)
    patches.install_all(tr, lambda: TraceMode(tr))
    _MODE = TraceMode(tr)
    _MODE.__enter__()
    return tr


def uninstall() -> None:
    """Stop tracing: leave the dispatch mode, undo every patch, write a last stats event."""
    global _TRACER, _MODE, _CTX, _SAVED_TAG
    if _TRACER is None:
        return
    from harness.runtime.tracer import numpy_trace, patches

    tr = _TRACER
    try:
        _MODE.__exit__(None, None, None)
    finally:
        tr.emit_stats()
        patches.uninstall_all()
        numpy_trace.uninstall_patches()
        if _CTX is not None and _SAVED_TAG is not None:
            _CTX.tag_validation = _SAVED_TAG
        tr.store.clear()
        _TRACER = _MODE = _CTX = _SAVED_TAG = None


def current() -> Any:
    """The active Tracer, or None."""
    return _TRACER
