"""Provenance op handlers for aten ops (``op_table`` says which op gets which handler kind).

Every handler gets an ``OpCall`` after the op ran (inputs not written by the op still hold their
values) and assigns provenance to the op's non-view outputs. Conventions: a ``Prov`` of None is
untraced; unions are hulls [min lo, max hi]; the score-id channel follows values exactly where the
handler can say so and otherwise becomes a bag of every score involved.

Layout (importing this package registers every handler in ``HANDLERS``):
  call.py          OpCall, OpInfo / op_info, the HANDLERS registry and the @handler decorator
  common.py        helpers shared with the traced numpy side, and the provenance-channel codec
  basic.py         view, noop, unruled (the coarse union), overwrite, factory_like, copy, escape
  pointwise.py     pointwise (value-aware unions, derived scores)
  movement.py      movement (the op replayed on encoded provenance channels)
  indexing.py      gather, index, index_select, take, masked_select, embedding(_backward)
  index_writes.py  write_index (index_put_, scatter*, index_add_, ...)
  reductions.py    reduce, along, scan
  linalg.py        matmul
  attention.py     attention, attention_bshd, attention_backward
  norms.py         layer_norm, rms_norm and their backward
  losses.py        nll, nll_backward
  foreach.py       foreach, foreach_reduce, fused_optim
  counting.py      bincount, set_membership
"""

from __future__ import annotations

from harness.runtime.tracer.ops import (  # noqa: F401 - imported to register their handlers
    attention, basic, counting, foreach, index_writes, indexing, linalg, losses, movement, norms, pointwise,
    reductions,
)
from harness.runtime.tracer.ops.basic import h_unhandled
from harness.runtime.tracer.ops.call import HANDLERS, OpCall, OpInfo, handler, op_info

__all__ = ["HANDLERS", "OpCall", "OpInfo", "h_unhandled", "handler", "op_info"]
