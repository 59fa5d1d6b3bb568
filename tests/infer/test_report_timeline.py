"""The report's timeline strip and interval whiskers, checked in a real browser (headless
Chromium): rows scored with --timeline --intervals 0.9 show both; rows without them neither."""

from __future__ import annotations

import re

import pytest

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.views.report import write_report
from gifsent_infer.writing.outputs import read_rows
from tests.browser import dump_dom, parse, require_browser
from tests.infer.test_timeline_intervals import new_document
from tests.infer_support import SPEC, build_model, gif_bytes


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    from typer.testing import CliRunner

    from gifsent_infer.cli import app

    require_browser()
    root = tmp_path_factory.mktemp("tlreport")
    gifs = root / "gifs"
    gifs.mkdir()
    for i in range(4):
        (gifs / f"g{i}.gif").write_bytes(gif_bytes(i, frames=6))
    model = build_model(root / "m.onnx", timeline=True, std=True, metadata=new_document().to_json())
    runner = CliRunner()
    out = {}
    for name, extra in (("with", ["--timeline", "--intervals", "0.9"]), ("without", [])):
        scores = root / f"{name}.csv"
        res = runner.invoke(app, ["score", str(gifs), "-m", str(model), "-o", str(scores), *extra])
        assert res.exit_code == 0, res.output
        page = write_report(scores, root / name / "report.html", model=model, top_n=2).out
        out[name] = (scores, parse(dump_dom(page.resolve().as_uri())))
    return out


def _pct(style: str, key: str) -> float:
    return float(re.search(rf"{key}:([0-9.]+)%", style).group(1))


def test_strip_and_whiskers_drawn_from_the_rows(pages):
    scores, dom = pages["with"]
    rows = {r["path"]: r for r in read_rows(scores).rows}
    cards = dom.find_all("figure", cls="card")
    assert len(cards) == 2 * len(EMOTIONS)
    for card in cards:
        row = rows[card.attrs["data-path"]]
        # whiskers: one per bar, from lo to hi (clipped to the bar's 0..1)
        bars = card.find_all("span", cls="bar")
        assert len(bars) == 17
        for k, bar in enumerate(bars):
            (wh,) = bar.find_all("b", cls="wh")
            e = EMOTIONS[k]
            lo, hi = (min(1.0, max(0.0, row[e + s])) * 100 for s in ("_lo", "_hi"))
            assert _pct(wh.attrs["style"], "bottom") == pytest.approx(lo, abs=0.06)
            assert _pct(wh.attrs["style"], "height") == pytest.approx(max(hi - lo, 0.5), abs=0.11)
            assert "interval" in bar.attrs["title"]
        # the strip: the GIF's 3 top emotions x S segments, in time order, peak darkest
        (strip,) = card.find_all("div", cls="strip")
        cells = strip.find_all("i")
        assert len(cells) == 3 * SPEC.segments
        tl = row["timeline"]
        top = sorted(EMOTIONS, key=lambda e: (-row[e], EMOTIONS.index(e)))[:3]
        assert [c.attrs["data-emotion"] for c in cells[:: SPEC.segments]] == top
        for r, e in enumerate(top):
            mine = cells[r * SPEC.segments : (r + 1) * SPEC.segments]
            for s, c in enumerate(mine):
                assert f"at {tl['start_s'][s]:.2f} s: {tl[e][s]:.3f}" in c.attrs["title"]
            peak = max(range(SPEC.segments), key=lambda s: tl[e][s])
            assert "opacity:1.00" in mine[peak].attrs["style"]


def test_rows_without_them_draw_neither(pages):
    _, dom = pages["without"]
    assert dom.find_all("figure", cls="card")
    assert not dom.find_all("div", cls="strip") and not dom.find_all("b", cls="wh")


def test_table_rows_draw_the_same_strip(pages):
    scores, dom = pages["with"]
    rows = {r["path"]: r for r in read_rows(scores).rows}
    trs = [tr for tr in dom.find_all("tr") if tr.attrs.get("data-path") in rows]
    assert trs  # the table's first page
    for tr in trs:
        row = rows[tr.attrs["data-path"]]
        (strip,) = tr.find_all("div", cls="strip")
        cells = strip.find_all("i")
        assert len(cells) == 3 * SPEC.segments
        top = sorted(EMOTIONS, key=lambda e: (-row[e], EMOTIONS.index(e)))[:3]
        assert [c.attrs["data-emotion"] for c in cells[:: SPEC.segments]] == top
        tl = row["timeline"]
        for s, c in enumerate(cells[: SPEC.segments]):
            assert f"at {tl['start_s'][s]:.2f} s: {tl[top[0]][s]:.3f}" in c.attrs["title"]
