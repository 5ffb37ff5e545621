"""The timeline picture: a violating ledger puts a red band above the score frontier, a legal one
does not; the text version shows the same."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np

from harness.report.timeline import RED, frontier_at, timeline_data, timeline_svg, timeline_text, write_timeline_svg
from harness.verdict import judge
from harness.verdict.handwritten import LedgerBuilder

N = 257
RNG = np.random.default_rng(3)
NLL = RNG.uniform(0.5, 4.0, size=N)
PB = np.r_[0, RNG.integers(1, 4, size=N - 1)]
SVG = "{http://www.w3.org/2000/svg}"


def ttt_run(illegal: bool):
    """Chunks of 64 targets scored, then trained on (legal); or every chunk trained on first (illegal)."""
    b = LedgerBuilder()
    b.run_start()
    b.train_read()
    b.artifact_write()
    b.read(0, N)
    if illegal:
        b.update(0, N - 1, site="train_gpt.py:210")
    sids = []
    for c0 in range(1, N, 64):
        ps = list(range(c0, min(c0 + 64, N)))
        sids += b.score(ps, NLL[ps], site="train_gpt.py:188")
        if not illegal:
            b.update(c0 - 1, ps[-1], site="train_gpt.py:210")
    b.consume(sids)
    pos = np.arange(1, N)
    b.reported("legal_ttt_exact", float(NLL[pos].mean()), float(NLL[pos].sum() / math.log(2) / PB[pos].sum()))
    return judge(b.ledger(), printed=b.printed(), val_tokens=np.arange(N), pos_bytes=PB, seq_lens=[64]).analysis


def _frontier_points(root) -> list[tuple[float, float]]:
    poly = root.find(f".//{SVG}polyline[@class='frontier']")
    assert poly is not None
    return [tuple(map(float, p.split(","))) for p in poly.get("points").split()]


def _frontier_y_at(points: list[tuple[float, float]], x: float) -> float | None:
    """The frontier's pixel y at pixel x (step function: last point at or left of x); None before it."""
    y = None
    for px, py in points:
        if px <= x + 1e-6:
            y = py
    return y


def test_violating_ledger_draws_a_red_band_above_the_frontier():
    an = ttt_run(illegal=True)
    assert an.search is not None and an.search.match is not None
    svg = timeline_svg(an)
    root = ET.fromstring(svg)
    red = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "violation"]
    assert len(red) == 1 and red[0].get("fill") == RED
    assert (int(red[0].get("data-lo")), int(red[0].get("data-hi"))) == (1, N - 1)
    # geometry: the red band lies above the frontier drawn at its x (smaller pixel y = higher position)
    pts = _frontier_points(root)
    x_mid = float(red[0].get("x")) + float(red[0].get("width")) / 2
    fy = _frontier_y_at(pts, x_mid)
    top = float(red[0].get("y"))
    assert fy is None or top < fy  # before any score the whole band is above the (empty) frontier
    tl = timeline_data(an)
    band = tl.violations[0]
    assert frontier_at(tl, band.x) < band.red[1]


def test_legal_ledger_has_no_red_band_and_its_updates_stay_under_the_frontier():
    an = ttt_run(illegal=False)
    root = ET.fromstring(timeline_svg(an))
    assert not [r for r in root.iter(f"{SVG}rect") if r.get("class") == "violation"]
    assert not [r for r in root.iter(f"{SVG}rect") if r.get("fill") == RED and r.get("class") != "legend"]
    updates = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "update"]
    assert len(updates) == 4
    pts = _frontier_points(root)
    for r in updates:
        x_mid = float(r.get("x")) + float(r.get("width")) / 2
        fy = _frontier_y_at(pts, x_mid)
        assert fy is not None and float(r.get("y")) >= fy - 1e-6  # top of the band at or below the frontier
    tl = timeline_data(an)
    assert all(b.hi <= frontier_at(tl, b.x) for b in tl.bands)


def test_text_version_marks_violations_only_when_there_are_some():
    bad = timeline_text(ttt_run(illegal=True))
    good = timeline_text(ttt_run(illegal=False))
    assert "!" in bad.splitlines()[1] and "1 update(s) reach above the frontier" in bad
    grid = good.splitlines()[1:13]
    assert len(grid) == 12 and all(len(line.split("|", 1)[1]) == 60 for line in grid)
    assert not any("!" in line for line in grid) and "*" in "".join(grid) and "|" in "".join(
        line.split("|", 1)[1] for line in grid)
    small = timeline_text(ttt_run(illegal=False), width=30, height=5)
    assert len(small.splitlines()) == 1 + 5 + 2


def test_write_svg_and_a_run_without_a_found_pass(tmp_path):
    b = LedgerBuilder()
    b.run_start()
    b.read(0, N)
    b.score(range(1, 65), NLL[1:65])
    b.update(30, 100)
    b.score(range(65, 129), NLL[65:129])
    an = judge(b.ledger(), printed=None).analysis  # nothing printed: no reported pass
    path = write_timeline_svg(an, tmp_path / "out" / "timeline.svg")
    root = ET.parse(path).getroot()
    assert "no reported pass" in root.find(f"{SVG}title").text
    red = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "violation"]
    assert [(int(r.get("data-lo")), int(r.get("data-hi"))) for r in red] == [(65, 100)]
    assert timeline_text(judge(LedgerBuilder().ledger(), printed=None).analysis).startswith("timeline: no scores")


def test_many_scores_are_sampled():
    b = LedgerBuilder()
    b.run_start()
    b.read(0, 20001)
    for c in range(1, 20001, 500):
        b.score(range(c, c + 500), 1.0)
    an = judge(b.ledger(), printed=None).analysis
    tl = timeline_data(an, max_dots=1000)
    assert len(tl.dots) == 1000
    assert timeline_svg(tl).count("<circle") == 1000
