"""Fancy-index layout with numpy semantics: which provenance parts a ``__getitem__`` /
``__setitem__`` key contributes, and whether the pick is a target selection.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.runtime.tracer.ops.common import exact, hull_prov, place, rows_distribution
from harness.runtime.tracer.provenance import Prov
from harness.runtime.tracer.traced_numpy.array import _raw


def _index_parts(tr: Any, src: np.ndarray, key: Any, orig_key: Any, shape: tuple[int, ...]) -> tuple[list[Prov | None], Prov | None, bool]:
    """Index provenance placed on the result (``shape``), and the excluded target index if any."""
    keys = key if isinstance(key, tuple) else (key,)
    okeys = orig_key if isinstance(orig_key, tuple) else (orig_key,)
    provs = [tr.aprov(k) if isinstance(k, np.ndarray) else None for k in okeys]
    if all(p is None for p in provs):
        return [], None, False
    # expand Ellipsis to know which source dim each key entry indexes
    n_consume = sum(0 if (k is None or k is Ellipsis) else (k.ndim if isinstance(k, np.ndarray) and k.dtype == bool else 1)
                    for k in keys)
    entries: list[tuple[int | None, Any, Prov | None]] = []
    d = 0
    for k, p in zip(keys, provs):
        if k is Ellipsis:
            d += src.ndim - n_consume
            continue
        if k is None:
            entries.append((None, k, p))
            continue
        entries.append((d, k, p))
        d += k.ndim if isinstance(k, np.ndarray) and k.dtype == bool else 1
    arrays = [(i, e) for i, e in enumerate(entries) if isinstance(e[1], np.ndarray) and e[1].ndim >= 0 and not np.isscalar(e[1])]
    coarse = any(isinstance(e[1], np.ndarray) and e[1].dtype == bool and e[2] is not None for _, e in arrays)
    adv_pos = [i for i, e in enumerate(entries) if isinstance(e[1], np.ndarray) or (arrays and isinstance(e[1], (int, np.integer)))]
    parts: list[Prov | None] = []
    target: Prov | None = None
    if coarse or not adv_pos:
        return [hull_prov(tr, [p for p in provs if p is not None], shape, "np.getitem")], None, False
    try:
        block = tuple(np.broadcast_shapes(*[np.shape(entries[i][1]) for i in adv_pos]))
    except ValueError:
        return [hull_prov(tr, [p for p in provs if p is not None], shape, "np.getitem")], None, False
    adjacent = adv_pos == list(range(adv_pos[0], adv_pos[-1] + 1))
    if adjacent:
        start = sum(1 for e in entries[: adv_pos[0]] if e[1] is None or isinstance(e[1], slice))
    else:
        start = 0
    if start + len(block) > len(shape):
        return [hull_prov(tr, [p for p in provs if p is not None], shape, "np.getitem")], None, False

    for i in adv_pos:
        dim, k, p = entries[i]
        if p is None:
            continue
        placed = place(p, start, block, shape)
        vocab = tr.vocab
        rowwise = dim == src.ndim - 1 and sum(1 for j in adv_pos if j != i and isinstance(entries[j][1], np.ndarray)) > 0
        if vocab is not None and rowwise and src.shape[dim] == vocab and exact(p):

            if rows_distribution(np.asarray(_raw(src))) is not None:
                target = placed
                continue
            tr.coarse["target_pick_from_unnormalized_row"] += 1
        parts.append(placed)
    return parts, target, True
