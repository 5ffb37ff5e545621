"""The score-order replay: a second traced run whose validation positions carry labels in the order the
first run's reported pass scored them, to decide what one interval per value left undecided.

Provenance keeps one interval hull per element. Phased or document-batched TTT trains on scored documents
scattered over the stream (batches sorted by length), so the hull of what its state depends on spans the
unscored documents between them, and C1/C3 stay INCONCLUSIVE. Any one-to-one relabeling of positions keeps
the tracer sound: a hull in label space still holds every label a value depends on. Labeling positions in
the order they were scored makes each scoring event one block of labels, the documents scored before a
state change one prefix, and a hull then shows that nothing scored later was used.

What the replay may do: decide rows run 1 left undecided (hull only), either clearing them or proving a
violation through a hull's end (a label the value surely used); rows run 1 decided stay as they were. It
counts only when it reproduced run 1: the same reported pass (every position, every score bit for bit),
the same numbers of traced ops, escapes, scores and updates, and every process traced with the labels. A
script that behaved differently in the replay would break that agreement and leave the rows undecided.

A document's opening BOS is a separator both runs read as that document's first input; positions that
depend on it only after that document began to be scored are cleared as a document boundary (WARN, with
their count), as the maintainers accepted phased TTT; nothing else is treated that way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.data.shards import BOS_ID
from harness.ledger import Ledger
from harness.runtime.tracer.provenance import position_labels
from harness.verdict.analysis import Analysis, analyze, earliest_cover
from harness.verdict.passes import Printed

NEVER = np.iinfo(np.int64).max  # score order of a position the pass never scored
_PAIR_BUDGET = 400_000_000  # rows x labels the C1 check may compare (tiny scale: a few million)


def first_score_orders(an: Analysis, n: int) -> np.ndarray:
    """Per stream position 0..n-1, the event order of the reported pass's first score of it (NEVER if none)."""
    sigma = np.full(n, NEVER, dtype=np.int64)
    if an.pass_rows is None or an.pass_rows.size == 0:
        return sigma
    upos, first = an._first_scores()
    keep = (upos >= 0) & (upos < n)
    sigma[upos[keep]] = first[keep]
    return sigma


def document_orders(sigma: np.ndarray, val_tokens: np.ndarray | None) -> np.ndarray:
    """When each position counts as scored at the document level: a document's opening BOS from the first
    score of its document (the position after it), if that came first; every other position at its own."""
    out = sigma.copy()
    if val_tokens is None or sigma.size < 2:
        return out
    bos = np.zeros(sigma.size, dtype=bool)
    m = min(sigma.size, val_tokens.shape[0])
    bos[:m] = np.asarray(val_tokens[:m]) == BOS_ID
    bos[-1] = False
    idx = np.nonzero(bos)[0]
    out[idx] = np.minimum(sigma[idx], sigma[idx + 1])
    return out


def score_order_runs(an: Analysis, n: int) -> list[list[int]]:
    """The relabeling as runs [first position, count] in label order: positions sorted by when their
    document-level score came (document_orders), then by position; never-scored positions last."""
    key = document_orders(first_score_orders(an, n), an.val_tokens)
    order = np.lexsort((np.arange(n), key))
    if order.size == 0:
        return []
    brk = np.nonzero(np.diff(order) != 1)[0] + 1
    starts = np.concatenate([[0], brk])
    ends = np.concatenate([brk, [order.size]])
    return [[int(order[s]), int(e - s)] for s, e in zip(starts, ends)]


def labels_from_runs(runs: Any, n: int | None = None) -> np.ndarray:
    """position -> label for the runs of score_order_runs (the tracer's own reading of them); ValueError
    unless they are a permutation of 0..n-1."""
    label = position_labels(runs)
    if n is not None and label.size != n:
        raise ValueError(f"relabel runs cover {label.size} positions, the stream has {n}")
    return label


@dataclass
class Replay:
    """What the score-order replay decided, in stream positions of run 1's reported pass."""

    used: bool
    why: str  # how it was used, or why not
    c1_clear: set[int] = field(default_factory=set)
    c1_boundary: set[int] = field(default_factory=set)  # cleared at the document level (opening BOS)
    c3_clear: set[int] = field(default_factory=set)
    c3_boundary: set[int] = field(default_factory=set)
    wall_s: float | None = None
    # proven in label space through a hull's end (a label the value surely used): position -> evidence line
    c1_proven: dict[int, str] = field(default_factory=dict)
    c3_proven: dict[int, str] = field(default_factory=dict)

    def line(self) -> str:
        return (f"score-order replay: {self.why}" + (f" ({self.wall_s:.0f} s)" if self.wall_s is not None else ""))


def _counts(an: Analysis) -> tuple[int, int, int, int]:
    return (an.stats.traced_ops, an.stats.escapes, an.tables.n,
            len(an.tables.updates) + len(an.discarded) + len(an.doubtful))


def reproduced(an1: Analysis, an2: Analysis) -> str | None:
    """Why the replay is not the same computation as run 1 (None: it is, as far as both ledgers show)."""
    r1, r2 = an1.pass_rows, an2.pass_rows
    if r1 is None or r2 is None or r1.size == 0:
        return "the replay's reported pass was not found"
    p1, p2 = an1.tables.pos[r1], an2.tables.pos[r2]
    o1, o2 = np.lexsort((an1.tables.nll[r1], p1)), np.lexsort((an2.tables.nll[r2], p2))
    if not (np.array_equal(p1[o1], p2[o2]) and np.array_equal(an1.tables.nll[r1][o1], an2.tables.nll[r2][o2])):
        return "the replay's reported pass scored other positions or other values than run 1"
    c1, c2 = _counts(an1), _counts(an2)
    if c1 != c2:
        return (f"the replay traced another computation (ops, escapes, scores, updates: {c1} in run 1, "
                f"{c2} in the replay)")
    return None


def _c1(an2: Analysis, label: np.ndarray, sigma: np.ndarray, doc: np.ndarray
        ) -> tuple[set[int], set[int], dict[int, str]]:
    """Pass rows of the replay with no dependence on a position at or after theirs that was not scored
    before them (clear), or only on opening BOS tokens of documents scored before them (boundary)."""
    tb = an2.tables
    rows = an2.pass_rows
    assert rows is not None
    n = label.size
    q_of = np.empty(n, dtype=np.int64)
    q_of[label] = np.arange(n)
    s_strict, s_doc = sigma[q_of], doc[q_of]
    pos, order, dep = tb.pos[rows], tb.order[rows], tb.dep[rows]
    clear: set[int] = set()
    boundary: set[int] = set()
    proven: dict[int, str] = {}
    # the hull's max is a label the score surely depends on: at or after the position, scored only later
    # (at the document level: an opening BOS counts from its document's first score), a proven look ahead
    ends = np.nonzero((dep >= 0) & (dep < n))[0]
    for i in ends.tolist():
        q = int(q_of[dep[i]])
        if q >= pos[i] and s_doc[dep[i]] >= order[i]:
            e = an2.event(int(order[i]))
            proven[int(pos[i])] = (f"position {int(pos[i])} was scored at {e.get('site') or '?'} from a value that "
                                   f"depends on position {q}" + (" (its own target)" if q == pos[i] else
                                                                 ", not scored before it"))
    todo = np.nonzero((dep >= 0) & (dep < n))[0]
    if todo.size * n > _PAIR_BUDGET:
        return clear, boundary, proven
    k = np.arange(n)
    for a in range(0, todo.size, 256):
        i = todo[a:a + 256]
        within = k[None, :] <= dep[i, None]
        later = q_of[None, :] >= pos[i, None]
        strict = (within & later & (s_strict[None, :] >= order[i, None])).any(axis=1)
        loose = (within & later & (s_doc[None, :] >= order[i, None])).any(axis=1)
        clear.update(int(p) for p in pos[i][~strict])
        boundary.update(int(p) for p in pos[i][strict & ~loose])
    return clear - set(proven), boundary - set(proven), proven


def _c3(an2: Analysis, label: np.ndarray, sigma: np.ndarray, doc: np.ndarray
        ) -> tuple[set[int], set[int], dict[int, str]]:
    """Pass positions no update touched (in label space) before their score (clear), or only after their
    document began to be scored when they are its opening BOS (boundary)."""
    tb = an2.tables
    rows = an2.pass_rows
    assert rows is not None
    pos = tb.pos[rows]
    lab = label[pos]
    points = np.unique(lab)
    first = earliest_cover(points, tb.updates)[np.searchsorted(points, lab)]
    orders = np.asarray([u.order for u in tb.updates] or [0], dtype=np.int64)
    u_order = np.where(first >= 0, orders[np.maximum(first, 0)], NEVER)
    bad = u_order < tb.order[rows]
    clear = {int(p) for p in pos[~bad]}
    vt = an2.val_tokens
    boundary: set[int] = set()
    if vt is not None:
        for p, uo in zip(pos[bad].tolist(), u_order[bad].tolist()):
            if 0 <= p < label.size - 1 and p < vt.shape[0] and int(vt[p]) == BOS_ID and sigma[p + 1] < uo:
                boundary.add(int(p))
    # an update whose range ends at a label (surely used) scored only after it (document level) proves a use;
    # the positions it covers and scored after it are violations, as in run 1's proof through an end
    q_of = np.empty(label.size, dtype=np.int64)
    q_of[label] = np.arange(label.size)
    proven: dict[int, str] = {}
    pos_order = {int(p): int(o) for p, o in zip(pos.tolist(), tb.order[rows].tolist())}
    for u in tb.updates:
        used = [int(q_of[e]) for e in (u.lo, u.hi)  # never scored (NEVER): no proof, as in run 1
                if 0 <= e < label.size and u.order < doc[q_of[e]] < NEVER]
        if not used:
            continue
        lo, hi = (int(np.searchsorted(points, u.lo, "left")), int(np.searchsorted(points, u.hi, "right")))
        for lab in points[lo:hi].tolist():
            p = int(q_of[lab])
            if p in pos_order and pos_order[p] > u.order and p not in proven:
                proven[p] = (f"{u.what()} at {u.site or '?'} (t={u.t:.2f}s) surely used position {used[0]} before "
                             f"it was scored, and its range in scoring order holds position {p}, scored after it")
    return clear, boundary - set(proven), proven


def decide(an1: Analysis, ledger2: Ledger, runs: Any, printed2: Printed | None, pos_bytes: np.ndarray | None,
           tol_loss: float, tol_bpb: float, wall_s: float | None = None) -> Replay:
    """The replay's decisions for run 1's undecided rows, from the replay's ledger (labels as positions)."""
    n = an1.n_val
    if n is None or an1.val_tokens is None:
        return Replay(False, "run 1's served stream is unknown", wall_s=wall_s)
    try:
        label = labels_from_runs(runs, n)
    except ValueError as e:
        return Replay(False, str(e), wall_s=wall_s)
    p1 = an1.printed
    if printed2 is None or p1 is None or (printed2.tag, printed2.val_loss, printed2.val_bpb) != (
            p1.tag, p1.val_loss, p1.val_bpb):
        return Replay(False, "the replay did not print run 1's score", wall_s=wall_s)
    stats = ledger2.of("stats")
    if not stats or not all(ev.get("relabeled") is True for ev in stats):
        # a process traced without the labels (a descendant started by exec gets no private settings) mixes
        # positions with labels: nothing it shows can be read in scoring order
        return Replay(False, "a process of the replay traced without the relabeling", wall_s=wall_s)
    an2 = analyze(ledger2, printed2, an1.val_tokens, pos_bytes, tol_loss, tol_bpb, label=label)
    why = reproduced(an1, an2)
    if why is not None:
        return Replay(False, why, wall_s=wall_s)
    sigma = first_score_orders(an2, n)
    doc = document_orders(sigma, an1.val_tokens)
    c1_clear, c1_boundary, c1_proven = _c1(an2, label, sigma, doc)
    c3_clear, c3_boundary, c3_proven = _c3(an2, label, sigma, doc)
    return Replay(True, "reproduced run 1 (every score, op and update count)", c1_clear, c1_boundary,
                  c3_clear, c3_boundary, wall_s, c1_proven, c3_proven)


def undecided(an: Analysis) -> int:
    """Rows of the reported pass that C1 or C3 leave undecided only because of one interval per value (what
    the replay can decide); 0 when a violation is already proven (nothing for a replay to add)."""
    rows = an.pass_rows
    if rows is None or rows.size == 0 or an.multi_rank:
        return 0
    tb = an.tables
    dep, pos = tb.dep[rows], tb.pos[rows]
    bad = rows[(dep >= 0) & (dep >= pos)]
    proven = an.dependence_proven(bad)
    if proven.any():
        return 0
    upd = an.updated_before_scored()
    if np.isin(upd, an.updated_before_scored_surely()).any():
        return 0
    return int(bad.size + upd.size)
