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
Controls (the threat model): the switches are private (``_install``, ``_uninstall``); the public
``install`` / ``uninstall`` / ``current`` remain for the harness's own code and tests, and a call to them from
the submission's own files is refused (``current`` answers None) and recorded as a ``tamper`` event.
The dispatch-mode exits a script can reach by name (``_disable_current_modes``, ``_pop_mode``,
``_pop_mode_temporarily``, ``torch._C._pop_torch_dispatch_stack``, ``_unset_dispatch_mode``,
``_DisableTorchDispatch``) are wrapped: a call from the submission's files is recorded (the call still happens; the verdict makes C1/C3/C4 INCONCLUSIVE). Threads started with
``_thread.start_new_thread`` enter the mode like ``threading.Thread``. At exit the mode must still be on
the main thread's stack. What a script can still do in-process (reach the objects through ``gc``) is left
to the behavioural probes.
"""

from __future__ import annotations

import sys
from typing import Any

_TRACER: Any = None
_MODE: Any = None
_CTX: Any = None
_SAVED_TAG: Any = None


def _from_submission(ctx: Any, depth: int = 2) -> bool:
    """Whether the caller `depth` frames up is one of the submission's own files."""
    if ctx is None or not hasattr(ctx, "is_submission_file"):
        return False
    try:
        return bool(ctx.is_submission_file(sys._getframe(depth).f_code.co_filename))
    except (ValueError, OSError):
        return False


def _refused(name: str) -> bool:
    """A public switch called from the submission: recorded and refused."""
    from harness.runtime import context

    ctx = context.get()
    if not _from_submission(ctx, 3):
        return False
    ctx.tamper("tracer", f"the script called harness.runtime.tracer.{name}()", site=ctx.site(3))
    return True


def install(ctx: Any) -> Any:
    if _refused("install"):
        return None
    return _install(ctx)


def uninstall() -> None:
    if _refused("uninstall"):
        return None
    return _uninstall()


def current() -> Any:
    """The active Tracer, or None (always None to the submission's own code)."""
    if _refused("current"):
        return None
    return _TRACER


_DISPATCH_EXITS = (
    ("torch.utils._python_dispatch", ("_disable_current_modes", "_pop_mode", "_pop_mode_temporarily",
                                      "_pop_torch_dispatch_stack")),
    ("torch._C", ("_pop_torch_dispatch_stack", "_unset_dispatch_mode", "_DisableTorchDispatch",
                  "_disabled_torch_dispatch_impl")),
)


def _guard_dispatch_exits(ctx: Any, undo: list[Any]) -> None:
    """Wrap the named ways out of the dispatch mode: a call from the submission's files is recorded."""
    import importlib

    for modname, names in _DISPATCH_EXITS:
        mod = importlib.import_module(modname)
        for name in names:
            orig = getattr(mod, name, None)
            if orig is None or getattr(orig, "_harness_guard", False):
                continue

            def guard(*a: Any, __orig: Any = orig, __name: str = f"{modname}.{name}", **k: Any) -> Any:
                if _from_submission(ctx, 2):
                    ctx.tamper("dispatch_mode", f"the script called {__name}: ops inside leave the tracer",
                               site=ctx.site(2))
                return __orig(*a, **k)

            guard._harness_guard = True  # type: ignore[attr-defined]
            setattr(mod, name, guard)
            undo.append((mod, name, orig))


def _guard_raw_threads(mode_for_thread: Any, undo: list[Any]) -> None:
    """`_thread.start_new_thread` bypasses threading.Thread (whose start enters the mode): wrap it too."""
    import _thread

    orig = _thread.start_new_thread

    def start_new_thread(function: Any, args: Any, kwargs: Any = None) -> Any:
        def run(*a: Any, **k: Any) -> Any:
            with mode_for_thread():
                return function(*a, **k)

        return orig(run, args, kwargs or {})

    _thread.start_new_thread = start_new_thread  # type: ignore[assignment]
    undo.append((_thread, "start_new_thread", orig))


_GUARDS: list[Any] = []


def _install(ctx: Any) -> Any:
    """Start tracing in this process; returns the Tracer (idempotent)."""
    global _TRACER, _MODE, _CTX, _SAVED_TAG
    if _TRACER is not None:
        return _TRACER
    import numpy as np
    import torch

    from harness.runtime.tracer import patches, traced_numpy
    from harness.runtime.tracer.provenance import Prov, apply_labels, position_labels
    from harness.runtime.tracer.state import Tracer
    from harness.runtime.tracer.torch_mode import TraceMode

    tr = Tracer(ctx)
    _TRACER, _CTX = tr, ctx
    runs = (getattr(getattr(ctx, "settings", None), "extra", None) or {}).get("relabel")
    tr.labels = position_labels(runs) if runs else None  # the score-order replay (harness.verdict.relabel)

    def tag_validation(arr: Any, lo: int, file: str) -> Any:
        if isinstance(arr, torch.Tensor):
            pos = apply_labels(np.arange(lo, lo + arr.numel(), dtype=np.int64), tr.labels)
            pos = pos.astype(np.int32).reshape(tuple(arr.shape))
            with tr.lock:
                loc = tr.store.locate_tensor(arr)
                fresh = loc is not None and loc.key not in tr.store.entries
                tr.store.write(loc, Prov(pos, pos.copy(), None))
                _note_read(tr, loc, pos, arr, fresh)
            return arr
        if isinstance(arr, np.ndarray):
            return traced_numpy.tag_array(tr, arr, lo)
        return arr

    def _note_read(tr: Tracer, loc: Any, pos: Any, arr: Any, fresh: bool) -> None:
        """The read's tokens by position, and its block as raw (its traced elements are the tokens themselves)
        when no other traced value shares the block."""
        if tr.labels is not None or loc is None or arr.dtype.is_floating_point or arr.dtype.is_complex:
            return
        from harness.runtime.tracer.provenance import _covers_block
        from harness.runtime.tracer.state import np_values

        with tr.internal():
            tr.note_tokens(pos, np_values(arr))
        if arr.element_size() >= 2 and (fresh or _covers_block(loc)):
            tr.store.raw.add(loc.key)

    _SAVED_TAG = ctx.tag_validation
    ctx.tag_validation = tag_validation
    traced_numpy.install_patches(tr)
    patches.install_all(tr, lambda: TraceMode(tr))
    _MODE = TraceMode(tr)
    _MODE.__enter__()
    _guard_raw_threads(lambda: TraceMode(tr), _GUARDS)
    if hasattr(ctx, "tamper"):
        _guard_dispatch_exits(ctx, _GUARDS)
    mode = _MODE

    def mode_still_on() -> list[tuple[str, str]]:
        from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

        if _TRACER is tr and not any(m is mode for m in _get_current_dispatch_mode_stack()):
            return [("dispatch_mode", "the tracer's dispatch mode was no longer active at exit")]
        return []

    if hasattr(ctx, "exit_checks"):
        ctx.exit_checks.append(mode_still_on)
    return tr


def _uninstall() -> None:
    """Stop tracing: leave the dispatch mode, undo every patch, write a last stats event."""
    global _TRACER, _MODE, _CTX, _SAVED_TAG
    if _TRACER is None:
        return
    from harness.runtime.tracer import patches, traced_numpy

    tr = _TRACER
    try:
        _MODE.__exit__(None, None, None)
    finally:
        tr.emit_stats(final=True)
        patches.uninstall_all()
        traced_numpy.uninstall_patches()
        if _CTX is not None and _SAVED_TAG is not None:
            _CTX.tag_validation = _SAVED_TAG
        tr.store.clear()
        while _GUARDS:
            mod, name, orig = _GUARDS.pop()
            setattr(mod, name, orig)
        _TRACER = _MODE = _CTX = _SAVED_TAG = None
