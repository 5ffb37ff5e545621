"""The timeline picture of a traced run: when each validation position was scored, and when state
changes touched it.

x = event order (score and update events of the ledger, in order), y = validation position.
- the score frontier: the largest position the reported pass has scored so far (a line), with
  every score as a faint dot;
- each update as a vertical band over the positions [lo, hi] it used;
- the part of a band over positions the reported pass scores only later (a C3 violation: the update
  sits above the frontier) in red.
`timeline_svg` writes hand-made SVG text (no plotting library); `timeline_text` a small character
version for the console. Both read a verdict Analysis (harness.verdict) and compute nothing new
about legality: the red parts are exactly the positions C3 flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from harness.fsutil import atomic_write_text
from harness.verdict.analysis import Analysis

RED = "#d62728"
BLUE = "#4a7bd0"
FRONTIER = "#222222"
DOT = "#888888"


@dataclass
class Band:
    x: int
    lo: int
    hi: int
    red: tuple[int, int] | None  # positions [a, b] the reported pass scores only after this update
    site: str | None
    seq: int
    what: str


@dataclass
class Timeline:
    n_x: int  # x runs over 0..n_x-1
    y_max: int
    frontier: list[tuple[int, int]]  # (x, max position scored so far by the reported pass)
    dots: np.ndarray  # (k, 2): x, position (sampled when there are many)
    bands: list[Band]
    title: str
    pass_known: bool
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[Band]:
        return [b for b in self.bands if b.red is not None]


def timeline_data(an: Analysis, max_dots: int = 4000, max_bands: int = 3000) -> Timeline:
    tb = an.tables
    xs_orders = sorted(set(tb.order.tolist()) | {u.order for u in tb.updates})
    x_of = {o: i for i, o in enumerate(xs_orders)}
    n_x = max(len(xs_orders), 1)
    rows = an.pass_rows
    pass_known = rows is not None
    if rows is None:
        # no identified pass: draw the first grad-free score of each position as the frontier
        free = np.flatnonzero(~tb.grad)
        _, first = np.unique(tb.pos[free], return_index=True)
        rows = np.sort(free[first])
    # frontier over the pass, in event order
    frontier: list[tuple[int, int]] = []
    if rows.size:
        ordr = tb.order[rows]
        srt = np.argsort(ordr, kind="stable")
        run_max = np.maximum.accumulate(tb.pos[rows][srt])
        last_x = None
        for o, m in zip(ordr[srt].tolist(), run_max.tolist()):
            x = x_of[o]
            if last_x == x:
                frontier[-1] = (x, int(m))
            else:
                frontier.append((x, int(m)))
            last_x = x
    # all scores as faint dots, evenly sampled
    idx = np.arange(tb.n)
    if idx.size > max_dots:
        idx = np.linspace(0, tb.n - 1, max_dots).astype(np.int64)
    dots = np.stack([np.asarray([x_of[int(o)] for o in tb.order[idx]], dtype=np.int64), tb.pos[idx]], axis=1) \
        if idx.size else np.zeros((0, 2), dtype=np.int64)
    # bands; red = pass positions inside [lo, hi] scored after the update
    pts, inv = np.unique(tb.pos[rows], return_inverse=True) if rows.size else (np.zeros(0, np.int64), None)
    last_score = np.full(pts.size, -1, dtype=np.int64)
    if rows.size:
        np.maximum.at(last_score, inv, tb.order[rows])
    bands: list[Band] = []
    for u in tb.updates:
        a = int(np.searchsorted(pts, u.lo, side="left"))
        b = int(np.searchsorted(pts, u.hi, side="right"))
        red = None
        if a < b:
            late = np.flatnonzero(last_score[a:b] > u.order)
            if late.size:
                red = (int(pts[a + late[0]]), int(pts[a + late[-1]]))
        bands.append(Band(x_of[u.order], u.lo, u.hi, red, u.site, u.seq, u.what()))
    notes = []
    if len(bands) > max_bands:
        keep = [b for b in bands if b.red is not None]
        rest = [b for b in bands if b.red is None]
        step = max(1, len(rest) // max(1, max_bands - len(keep)))
        bands = sorted(keep + rest[::step], key=lambda b: b.x)
        notes.append(f"{len(tb.updates)} updates, {len(bands)} drawn")
    y_max = max([int(tb.pos.max()) if tb.n else 1] + [b.hi for b in bands] + [an.n_val - 1 if an.n_val else 1])
    title = "reported pass" if pass_known else "no reported pass identified: first score of each position"
    return Timeline(n_x, max(y_max, 1), frontier, dots, bands, title, pass_known, notes)


def _data(obj: Analysis | Timeline) -> Timeline:
    return obj if isinstance(obj, Timeline) else timeline_data(obj)


def frontier_at(tl: Timeline, x: int) -> int:
    """The frontier's value at event x (-1 before the first score of the pass)."""
    val = -1
    for fx, fy in tl.frontier:
        if fx > x:
            break
        val = fy
    return val


def timeline_svg(obj: Analysis | Timeline, width: int = 900, height: int = 360) -> str:
    tl = _data(obj)
    ml, mr, mt, mb = 64, 16, 34, 44
    pw, ph = width - ml - mr, height - mt - mb
    bw = min(8.0, max(1.5, 0.8 * pw / max(tl.n_x, 1)))
    pad = bw  # keeps the first and last bands inside the axes

    def X(x: float) -> float:
        return ml + pad + (x / max(tl.n_x - 1, 1)) * (pw - 2 * pad)

    def Y(p: float) -> float:
        return mt + ph - (p / tl.y_max) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<title>{escape("validation timeline: " + tl.title)}</title>',
        f'<rect class="background" x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        f'<text x="{ml}" y="16" font-size="13">Validation timeline ({escape(tl.title)})</text>',
        # axes
        f'<line class="axis" x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="black"/>',
        f'<line class="axis" x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="black"/>',
        f'<text x="{ml + pw / 2:.1f}" y="{height - 8}" text-anchor="middle">event order (scores and updates, '
        f'{tl.n_x} events)</text>',
        f'<text x="14" y="{mt + ph / 2:.1f}" transform="rotate(-90 14 {mt + ph / 2:.1f})" '
        f'text-anchor="middle">validation position</text>',
        f'<text x="{ml - 4}" y="{mt + 4}" text-anchor="end">{tl.y_max}</text>',
        f'<text x="{ml - 4}" y="{mt + ph}" text-anchor="end">0</text>',
    ]
    out.append('<g class="updates">')
    for b in tl.bands:
        y0, y1 = Y(b.hi), Y(b.lo)
        tip = escape(f"{b.what} at {b.site or '?'} (event #{b.seq}): positions {b.lo}..{b.hi}")
        out.append(f'<rect class="update" data-x="{b.x}" data-lo="{b.lo}" data-hi="{b.hi}" '
                   f'x="{X(b.x) - bw / 2:.2f}" y="{y0:.2f}" width="{bw:.2f}" height="{max(y1 - y0, 1.0):.2f}" '
                   f'fill="{BLUE}" fill-opacity="0.45"><title>{tip}</title></rect>')
    out.append("</g>")
    out.append('<g class="scores">')
    for x, p in tl.dots.tolist():
        out.append(f'<circle cx="{X(x):.2f}" cy="{Y(p):.2f}" r="1.2" fill="{DOT}" fill-opacity="0.35"/>')
    out.append("</g>")
    if tl.frontier:
        steps: list[tuple[int, int]] = []  # a step line: the frontier jumps at each scoring event
        for x, p in tl.frontier:
            if steps:
                steps.append((x, steps[-1][1]))
            steps.append((x, p))
        if steps[-1][0] < tl.n_x - 1:  # the frontier holds until the last event
            steps.append((tl.n_x - 1, steps[-1][1]))
        pts = " ".join(f"{X(x):.2f},{Y(p):.2f}" for x, p in steps)
        out.append(f'<polyline class="frontier" points="{pts}" fill="none" stroke="{FRONTIER}" stroke-width="1.6"/>')
    out.append('<g class="violations">')
    for b in tl.violations:
        assert b.red is not None
        a, z = b.red
        y0, y1 = Y(z), Y(a)
        tip = escape(f"{b.what} at {b.site or '?'} (event #{b.seq}) used positions {a}..{z} before they were "
                     f"scored (C3)")
        out.append(f'<rect class="violation" data-x="{b.x}" data-lo="{a}" data-hi="{z}" '
                   f'x="{X(b.x) - bw / 2:.2f}" y="{y0:.2f}" width="{bw:.2f}" height="{max(y1 - y0, 1.5):.2f}" '
                   f'fill="{RED}" fill-opacity="0.9"><title>{tip}</title></rect>')
    out.append("</g>")
    # legend, in the title row
    lx, ly = ml + pw - 330, 12
    out += [
        f'<line x1="{lx}" y1="{ly}" x2="{lx + 18}" y2="{ly}" stroke="{FRONTIER}" stroke-width="1.6"/>',
        f'<text x="{lx + 22}" y="{ly + 4}">score frontier</text>',
        f'<rect class="legend" x="{lx + 110}" y="{ly - 5}" width="10" height="10" fill="{BLUE}" fill-opacity="0.45"/>',
        f'<text x="{lx + 124}" y="{ly + 4}">update</text>',
        f'<rect class="legend" x="{lx + 175}" y="{ly - 5}" width="10" height="10" fill="{RED}"/>',
        f'<text x="{lx + 189}" y="{ly + 4}">update before score (C3)</text>',
        "</svg>",
    ]
    return "\n".join(out) + "\n"


def write_timeline_svg(obj: Analysis | Timeline, path: str | os.PathLike[str]) -> Path:
    """Write timeline.svg (atomically); returns the path."""
    p = Path(path)
    atomic_write_text(p, timeline_svg(obj))
    return p


def timeline_text(obj: Analysis | Timeline, width: int = 60, height: int = 12) -> str:
    """A width x height character picture: '*' frontier, '.' score, '|' update, '!' update over
    positions scored only later (C3). Top row = highest position."""
    tl = _data(obj)
    if not tl.dots.size and not tl.bands:
        return "timeline: no scores or updates on validation were recorded"
    grid = [[" "] * width for _ in range(height)]

    def col(x: int) -> int:
        return min(width - 1, int(x * width / max(tl.n_x, 1)))

    def row(p: int) -> int:
        return height - 1 - min(height - 1, int(p * height / (tl.y_max + 1)))

    for x, p in tl.dots.tolist():
        grid[row(p)][col(x)] = "."
    for b in tl.bands:
        for r in range(row(b.hi), row(b.lo) + 1):
            grid[r][col(b.x)] = "|"
    for x, p in tl.frontier:
        grid[row(p)][col(x)] = "*"
    for b in tl.violations:
        assert b.red is not None
        for r in range(row(b.red[1]), row(b.red[0]) + 1):
            grid[r][col(b.x)] = "!"
    label_w = len(str(tl.y_max))
    lines = [f"timeline ({tl.title}): x = event order, y = validation position"]
    for i, cells in enumerate(grid):
        lab = str(tl.y_max) if i == 0 else ("0" if i == height - 1 else "")
        lines.append(f"{lab:>{label_w}} |{''.join(cells)}")
    lines.append(" " * label_w + " +" + "-" * width)
    n_red = len(tl.violations)
    lines.append(f"{'':>{label_w}}  * frontier  . score  | update  ! update before score (C3)"
                 + (f"  [{n_red} update(s) reach above the frontier: see C3]" if n_red else ""))
    return "\n".join(lines)
