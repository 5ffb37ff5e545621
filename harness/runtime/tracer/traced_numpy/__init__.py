"""numpy provenance: a traced ndarray subclass and the numpy entry points around it.

Provenance lives in the same per-memory-block store as torch's (an array's block is the root of
its view chain, or the torch storage under ``t.numpy()``), so views, slices, reshapes and
transposes are exact for free. What a subclass must intercept is everything that *copies*:
- ``__array_ufunc__``: elementwise union (value-aware for x*0 and x+inf), ``reduce`` /
  ``accumulate`` / ``outer`` / ``reduceat`` and ``at`` (``np.add.at(table, key, 1)`` -> update);
  ``log`` of a value made of one position's scores is a new (derived) score;
- ``__array_function__``: data-movement functions are replayed on the provenance channels,
  ``where`` / ``bincount`` / ``dot`` / ``isin`` / ``copyto`` have handlers, and any other function
  whose result carries no provenance gets the union of every traced input (counted as unruled);
- ``__getitem__`` (fancy indexing includes the index's provenance, except target selection from a
  vocabulary-sized row) and ``__setitem__`` (fancy keys: indexed write, ``update`` into tables);
- copying methods (astype, copy, flatten, ravel, reshape, take, repeat, dot, sort, argsort, ...);
- escapes: ``item``, ``tolist``, ``float()``/``int()``/``bool()``, formatting, printing, iterating.
A copy made by a numpy method not listed here is marked as derived from its source and read as
the source's union (counted as ``numpy:unruled-method``).

numpy constructors (zeros, ones, empty, full and their ``_like``) called from the submission's own
files return the traced subclass, with a birth epoch: a table created before the last score and
written with traced keys or values is persistent state (``update`` target ``array``).

Layout:
  array.py      TracedArray, the active tracer, store reads / writes, the widening guard, as_traced
  indexing.py   fancy-index layout (numpy semantics) and target selection
  ufuncs.py     __array_ufunc__ handlers (elementwise, reduce / accumulate / outer / reduceat, at)
  functions.py  __array_function__ handlers (replayed data movement, where, bincount, dot, isin, ...)
  patching.py   numpy constructor / converter patches, install_patches / uninstall_patches, tag_array
"""

from __future__ import annotations

from harness.runtime.tracer.traced_numpy import functions, indexing, ufuncs
from harness.runtime.tracer.traced_numpy.array import TracedArray, active, as_traced, bind_handlers, traced_type
from harness.runtime.tracer.traced_numpy.patching import install_patches, tag_array, uninstall_patches

# the handler modules import array.py; array.py reaches them only through what is bound here
bind_handlers(meta=functions._META, flat_arrays=functions._flat_arrays, coarse_write=functions._np_coarse_write,
              array_function=functions.array_function, index_parts=indexing._index_parts, ufunc=ufuncs.ufunc_handler)

__all__ = ["TracedArray", "active", "as_traced", "install_patches", "tag_array", "traced_type", "uninstall_patches"]
