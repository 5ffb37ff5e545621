"""Token-access tracer: when each validation position is scored, and what depends on it.

``install(ctx)`` (called by the runtime bootstrap when ``ctx.settings.trace``) replaces
``ctx.tag_validation`` (a numpy array comes back as the traced subclass; a tensor, or a numpy view
of a tensor's memory, is tagged in place), enters a TorchDispatchMode in this thread and in every
new thread, and patches the numpy / Python boundaries. ``uninstall()`` undoes all of it.

Provenance (provenance.py): per stored element, the hull [lo, hi] of the validation positions its
value depends on, kept per memory block (torch storage / numpy root), so views are exact and
in-place writes through views update the base. Exact for index, slice, view, reshape, copy, dtype
and device moves; union for elementwise ops; union over the reduced dims for reductions and matrix
products (with an untraced weight the rows stay apart); a running union along the sequence for
causal attention (SDPA and flash-attention ops, and attention written by hand: an untraced -inf or
exact 0 is a constant, so ``masked_fill(mask, -inf).softmax(-1) @ v`` comes out causal, and a
choice between two equal constants does not depend on its condition). Selection by a traced index
includes the index's positions, except the target's pick from a vocabulary row: nll_loss, and
gather / ``x[rows, y]`` along a last dim of size ``settings.vocab_size`` (else ``$VOCAB_SIZE``; when
unknown, only on softmax / log_softmax outputs). An op without a handler gives every output the union
of every input and is counted (``stats``); so is a handler that fails (it widens, never crashes).

Scores (events.py has the fields): nll_loss ops; the target's pick from a log_softmax / softmax
output or from any vocabulary row that is a normalized distribution (a mixture with a cache); and
the log of a value made of one position's scores (the *derived* score: ``-log((1-a) p + a q)``),
which replaces the scores it came from in that value's score ids. A score's ``dep`` is the largest
position its row depends on, and also every position whose score went into that row: a mixing
weight chosen by comparing probabilities at the target shows as ``dep >= pos``.

Known holes (what the trace cannot see; the behavioural probes cover them):
- values that left as Python numbers (``.item()``, ``.tolist()``, ``float()``, iterating a
  traced array, scalar indexing ``arr[i]``) lose their provenance: pure-Python loops, dicts keyed
  by tokens, Python-side n-gram counts are invisible (each escape is counted);
- implicit flows: a value chosen by a data-dependent Python branch, the ignored-target count of a
  mean nll_loss, ``scale_grad_by_freq``, which rows an embedding gradient touches; 0*inf/NaN is
  treated as 0 where exact zeros are skipped;
- numpy: copies made inside numpy by routes this module does not intercept are read as the union
  of their source; ``np.frombuffer`` of traced bytes and numpy writes into memory later wrapped by
  ``torch.from_numpy`` (a snapshot) are not followed;
- NLL computed without log_softmax / softmax / nll_loss and without a normalized row to pick from
  (``logsumexp - logit[y]``) gives no score events: the verdict lacks evidence (inconclusive);
- an indexed write with traced keys into a persistent table (``np.add.at``, ``index_put_``,
  ``scatter_add_``, ``table[key] = v``) also widens every element of that table by the keys'
  positions: a count left at 0 still says what the tokens were not (a cache filled with the future
  cannot hide behind rows the future did not touch); a causal cache stays causal;
- tables are recognised by birth (allocated before the most recent score); a table built whole
  before any score (a cache over the full stream) gives no ``update`` event, but its influence
  shows in the later scores' ``dep`` (C1); indexed accumulation of score-carrying values into a
  table keeps only the last score ids per cell;
- several ranks: cross-rank flows follow only the hooked Python-level collectives (all_reduce,
  broadcast, all_gather(_into_tensor), reduce_scatter_tensor); DDP's C++ gradient all-reduce is not
  followed (trace at world size 1); score ids are per rank;
- compiled kernels bypass the dispatcher: ``torch.compile`` becomes the identity; Triton kernels
  and custom ops without a handler take the coarse union;
- the interval hull over-approximates an element that depends on far-apart positions.
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

    from harness.runtime.tracer import patches, traced_numpy
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
            return traced_numpy.tag_array(tr, arr, lo)
        return arr

    _SAVED_TAG = ctx.tag_validation
    ctx.tag_validation = tag_validation
    traced_numpy.install_patches(tr)
    patches.install_all(tr, lambda: TraceMode(tr))
    _MODE = TraceMode(tr)
    _MODE.__enter__()
    return tr


def uninstall() -> None:
    """Stop tracing: leave the dispatch mode, undo every patch, write a last stats event."""
    global _TRACER, _MODE, _CTX, _SAVED_TAG
    if _TRACER is None:
        return
    from harness.runtime.tracer import patches, traced_numpy

    tr = _TRACER
    try:
        _MODE.__exit__(None, None, None)
    finally:
        tr.emit_stats()
        patches.uninstall_all()
        traced_numpy.uninstall_patches()
        if _CTX is not None and _SAVED_TAG is not None:
            _CTX.tag_validation = _SAVED_TAG
        tr.store.clear()
        _TRACER = _MODE = _CTX = _SAVED_TAG = None


def current() -> Any:
    """The active Tracer, or None."""
    return _TRACER
