"""The HTML report: what it reads, what it escapes, and what a real browser (headless Chromium) shows."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from gifsent_infer.contract import DEMO_WARNING, EMOTIONS, Provenance, ScoreQuantiles
from gifsent_infer.views.report import ReportError, load_rows, ordinal, render, write_report
from gifsent_infer.writing.outputs import read_rows
from tests.browser import dump_dom, parse, require_browser, screenshot
from tests.infer_support import build_model, gif_bytes, make_document

# Names that would run script if they reached the page as HTML. A path may hold "/" only
# as a separator, so the <script> element spans a folder and a file name.
XSS_FILE = "<img src=x onerror=\"document.title='pwned'\">&amp;.gif"
XSS_DIR = "<script>document.title='pwned';<"
XSS_NESTED = "script>.gif"
TITLE = "report under test"


def _cli(capsys, *argv):
    from gifsent_infer.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exc.value.code or 0, out, err


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A scored folder: 8 GIFs (two with script in their names), 1 broken file, a demo model
    with quantiles; scores in CSV and JSONL."""
    from typer.testing import CliRunner

    from gifsent_infer.cli import app

    root = tmp_path_factory.mktemp("report")
    gifs = root / "gifs"
    gifs.mkdir()
    for i in range(6):
        (gifs / f"g{i}.gif").write_bytes(gif_bytes(i, frames=3))
    (gifs / XSS_FILE).write_bytes(gif_bytes(10, frames=3))
    (gifs / XSS_DIR).mkdir()
    (gifs / XSS_DIR / XSS_NESTED).write_bytes(gif_bytes(11, frames=3))
    (gifs / "broken.gif").write_bytes(b"GIF89a\x10\x00\x10\x00")  # header, then nothing
    q = ScoreQuantiles(levels=(0, 50, 100), values={e: (0.0, 0.5, 1.0) for e in EMOTIONS}, gifs=3)
    prov = Provenance("procedural-demo", "demo", gifs=3, comparisons=30, run_id="r1")
    doc = dataclasses.replace(make_document(), provenance=prov, score_quantiles=q)
    model = build_model(root / "demo.onnx", metadata=doc.to_json())
    runner = CliRunner()
    for ext in ("csv", "jsonl"):
        res = runner.invoke(
            app, ["score", str(gifs), "-m", str(model), "-o", str(root / f"s.{ext}")]
        )
        assert res.exit_code == 1, res.output  # the broken file fails
    return {"root": root, "gifs": gifs, "model": model, "csv": root / "s.csv"}


def _ok_rows(path: Path) -> list[dict]:
    return [r for r in read_rows(path).rows if r["status"] == "ok"]


# --- without a browser -----------------------------------------------------------------------


def test_load_rows_reads_csv_jsonl_json_and_ray_tables(scored, tmp_path):
    csv_rows = load_rows(scored["csv"])
    assert len(csv_rows) == 9
    jsonl_rows = load_rows(scored["root"] / "s.jsonl")
    key = lambda r: r["path"]  # noqa: E731
    assert [r["path"] for r in sorted(jsonl_rows, key=key)] == [
        r["path"] for r in sorted(csv_rows, key=key)
    ]
    for a, b in zip(sorted(jsonl_rows, key=key), sorted(csv_rows, key=key), strict=True):
        assert a["happiness"] == b["happiness"] and a["top"] == b["top"]
    if importlib.util.find_spec("deltalake") is not None:  # the `ray` extra's table
        from gifsent_infer.scaleout.delta_table import TableWriter, ensure_table

        table = tmp_path / "ray-out"
        writer = TableWriter(ensure_table(table), 5, 3600.0, set())
        writer.add(reversed(jsonl_rows))
        writer.flush()
        from_ray = load_rows(table)
        assert [r["path"] for r in from_ray] == sorted(r["path"] for r in csv_rows)
        for r in from_ray:
            want = next(c for c in csv_rows if c["path"] == r["path"])
            assert r["happiness"] == want["happiness"] and r["status"] == want["status"]
    with pytest.raises(ReportError, match="does not exist"):
        load_rows(tmp_path / "nope.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="not a Delta table"):
        load_rows(tmp_path / "empty")


def test_every_string_from_the_data_is_escaped(scored, tmp_path):
    out = tmp_path / "r.html"
    write_report(scored["csv"], out, model=scored["model"])
    text = out.read_text(encoding="utf-8")
    # the only raw <script> tags are the page's own two (JSON data and the script)
    assert text.count("<script") == 2 and text.count("</script>") == 2
    assert "<img src=x" not in text and 'onerror="document' not in text
    assert (
        "&lt;img src=x onerror=&quot;document.title=&#x27;pwned&#x27;&quot;&gt;&amp;amp;.gif"
        in text
    )
    data = text.split('<script type="application/json" id="data">')[1].split("</script>")[0]
    assert "<" not in data and ">" not in data and "&" not in data
    rows = json.loads(data)["rows"]
    assert any(r[0].endswith(XSS_FILE) for r in rows)
    assert "Content-Security-Policy" in text and "script-src &#x27;sha256-" in text


def test_ordinal_percentiles():
    assert [ordinal(p) for p in (0, 1, 2, 3, 4, 11, 12, 13, 21, 22, 81.6, 100)] == [
        "0th",
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "82nd",
        "100th",
    ]


def test_render_without_model_and_with_url_rows(tmp_path):
    rows = [
        {"path": "https://example.com/a.gif", "status": "ok", **dict.fromkeys(EMOTIONS, 0.5)},
        {"path": "missing.gif", "status": "error", "error": "not a GIF: <b>"},
    ]
    text, embedded = render(rows, out_dir=tmp_path, source_name="x.csv")
    assert embedded == 0
    assert 'src="https://example.com' not in text  # an offline report never fetches
    assert "not a GIF: &lt;b&gt;" in text and "No model document" in text


def test_cli_report_writes_the_file_and_prints_its_path(scored, tmp_path, capsys):
    out = tmp_path / "sub" / "report.html"
    code, stdout, err = _cli(capsys, "report", scored["csv"], "-o", out, "-m", scored["model"])
    assert code == 0, err
    assert stdout.strip() == str(out) and out.is_file()
    assert "9 rows (8 scored, 1 errors)" in err
    code, _, err = _cli(capsys, "report", tmp_path / "none.csv", "-o", out)
    assert code == 2 and "does not exist" in err


def test_embed_makes_small_animated_thumbnails(scored, tmp_path):
    from PIL import Image

    out = tmp_path / "e.html"
    s = write_report(scored["csv"], out, model=scored["model"], embed=True)
    assert s.embedded == 8
    text = out.read_text(encoding="utf-8")
    # each thumbnail once (a CSS class), however many cards and table rows show its GIF
    assert text.count("data:image/gif;base64,") == 8
    uri = text.split("url(data:image/gif;base64,")[1].split(")")[0]
    import base64
    import io

    img = Image.open(io.BytesIO(base64.b64decode(uri)))
    assert max(img.size) <= 96 and getattr(img, "n_frames", 1) == 3  # all 3 frames kept


# --- in a real browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_page(scored):
    require_browser()
    out_dir = scored["root"] / "out"  # beside, not in, the GIF folder: relative paths ../gifs
    s = write_report(
        scored["csv"],
        out_dir / "report.html",
        model=scored["model"],
        top_n=3,
        page_size=4,
        title=TITLE,
    )
    return s.out


def _url(path: Path, fragment: str = "") -> str:
    return path.resolve().as_uri() + (f"#{fragment}" if fragment else "")


def test_browser_dom_galleries_counts_order_and_escaping(scored, report_page):
    dom = parse(dump_dom(_url(report_page)))
    ok = _ok_rows(scored["csv"])
    # title untouched: no script from a file name ran
    assert dom.find_all("title")[0].text == TITLE
    assert not [n for n in dom.iter() if "onerror" in n.attrs or n.attrs.get("src") == "x"]
    assert len(dom.find_all("script")) == 2
    # the demo warning and the provenance
    assert DEMO_WARNING in dom.by_id("demo-warning").text
    assert "procedural-demo" in dom.by_id("model").text
    # one gallery per emotion, top 3 each, highest score first
    galleries = dom.find_all("section", cls="gallery")
    assert [g.attrs["data-emotion"] for g in galleries] == list(EMOTIONS)
    for g in galleries:
        e = g.attrs["data-emotion"]
        want = sorted(ok, key=lambda r: (-r[e], r["path"]))[:3]
        cards = g.find_all("figure", cls="card")
        assert [c.attrs["data-path"] for c in cards] == [r["path"] for r in want]
        for c, r in zip(cards, want, strict=True):
            assert f"{r[e]:.3f}" in c.text
            pct = 100 * r[e] if r[e] <= 1 else 100.0  # quantiles 0, .5, 1 at 0, 50, 100 %
            assert f"{ordinal(pct)} %ile" in c.text
            assert len(c.find_all("span", cls="bar")) == 17
            src = c.find_all("img")[0].attrs["src"]
            assert (report_page.parent / urllib.parse.unquote(src)).resolve() == Path(r["path"])
    # the XSS names are shown as text
    names = [n.text for n in dom.find_all("span", cls="name")]
    assert any(t == XSS_FILE for t in names) or any(
        t.endswith(XSS_FILE) for t in (n.text for n in dom.find_all("td", cls="path"))
    )
    # the table: page 1 of 3 with 4 rows, 9 rows in all
    info = dom.by_id("pageinfo")
    assert info.attrs["data-count"] == "9" and "page 1 of 3" in info.text
    assert len(dom.by_id("rows").find_all("tbody")[0].find_all("tr")) == 4
    # the error row, with its reason
    errors = dom.by_id("errors").find_all("li")
    assert len(errors) == 1 and errors[0].attrs["data-path"].endswith("broken.gif")
    assert errors[0].find_all("span", cls="reason")[0].text


def test_browser_table_sorts_and_filters_from_the_url(scored, report_page):
    ok = _ok_rows(scored["csv"])
    by_happiness = [r["path"] for r in sorted(ok, key=lambda r: (-r["happiness"], r["path"]))]
    dom = parse(dump_dom(_url(report_page, "sort=happiness&dir=desc&page=2")))
    rows = dom.by_id("rows").find_all("tbody")[0].find_all("tr")
    assert [r.attrs["data-path"] for r in rows] == by_happiness[4:8]
    head = next(th for th in dom.find_all("th") if th.attrs.get("data-key") == "happiness")
    assert "desc" in head.classes()
    # the XSS file name in a table cell, as text
    dom = parse(dump_dom(_url(report_page, "q=onerror")))
    cells = dom.by_id("rows").find_all("td", cls="path")
    assert [c.text for c in cells] == [str(scored["gifs"] / XSS_FILE)]
    assert dom.find_all("title")[0].text == TITLE
    dom = parse(dump_dom(_url(report_page, "status=error")))
    (row,) = dom.by_id("rows").find_all("tbody")[0].find_all("tr")
    assert row.attrs["data-path"].endswith("broken.gif") and "error" in row.classes()


def test_browser_screenshot_is_not_blank(report_page, tmp_path):
    from PIL import Image

    png = screenshot(_url(report_page), tmp_path / "shot.png", size=(1000, 900))
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[:2] == (900, 1000)
    colours = len(np.unique(img.reshape(-1, 3), axis=0))
    assert img.std() > 20 and colours > 50, (img.std(), colours)  # text, bars and GIFs drawn


def test_browser_ten_thousand_rows_render_one_page(tmp_path):
    require_browser()
    rng = np.random.default_rng(0)
    rows = [
        {
            "path": f"/nowhere/g{i:05d}.gif",
            "status": "ok",
            "error": "",
            **dict(zip(EMOTIONS, rng.random(17).round(4).tolist(), strict=True)),
        }
        for i in range(10_000)
    ]
    text, _ = render(rows, out_dir=tmp_path, source_name="big.jsonl")
    page = tmp_path / "big.html"
    page.write_text(text, encoding="utf-8")
    assert os.path.getsize(page) < 8e6
    dom = parse(dump_dom(_url(page, "sort=fear&dir=desc")))
    tr = dom.by_id("rows").find_all("tbody")[0].find_all("tr")
    assert len(tr) == 50 and dom.by_id("pageinfo").attrs["data-count"] == "10000"
    want = sorted(rows, key=lambda r: (-r["fear"], r["path"]))[:50]
    assert [t.attrs["data-path"] for t in tr] == [r["path"] for r in want]
