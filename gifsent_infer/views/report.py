"""A picture report of a scores file: one self-contained, offline HTML page to look at GIFs beside their scores.

    gifsent-infer report scores.csv -o report.html [--model M] [--embed] [--top-n 8]

Input: a CSV / JSON Lines / JSON scores file (gifsent_infer.writing.outputs.read_rows) or a Ray
output folder (gifsent_infer.scaleout.distributed.read_scores). Output: one HTML file with
  - the model's provenance and contract summary, and the demo warning when it applies;
  - per emotion, a gallery of the top-N GIFs (the animated GIFs themselves, by relative
    path, or as small embedded thumbnails with `embed=True`), each with score, percentile
    and a CSS bar chart of its 17 emotions;
  - a sortable, filterable, paginated table of all rows, each with its bar chart;
  - the error rows with their reasons.

Safety: every string from the data is HTML-escaped in the static parts; the table's data
travels as JSON inside <script type="application/json"> with <, > and & written as \\u
escapes, and the page's one script builds rows with textContent, never innerHTML. A
Content-Security-Policy allows only that script (by its sha256) and no network access, so
nothing in a file name can run. Speed: the table shows one page (50 rows) at a time and all
images are loading="lazy", so 10,000 rows open in about a second (BENCHMARKS.md).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import json
import math
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gifsent_infer.contract import EMOTIONS, ModelDocument
from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.reading.formats import by_suffix
from gifsent_infer.running.readable import PCT_SUFFIX, demo_warning, percentile, scale_note

DEFAULT_TOP_N = 8  # GIFs per emotion gallery
DEFAULT_PAGE_SIZE = 50  # table rows per page
MAX_ERROR_ITEMS = 1000  # error rows listed in full; the table holds all of them
THUMB_SIDE = 96  # pixels, longer side of an embedded thumbnail
THUMB_FRAMES = 16  # frames kept in an embedded thumbnail (evenly over the GIF's duration)

Warn = Callable[[str], None]


class ReportError(GifsentError, ValueError):
    """The input cannot be reported on (missing, not a scores file); the message says why."""

    exit_code = USAGE


# --- reading ---------------------------------------------------------------------------------


def load_rows(source: str | os.PathLike) -> list[dict[str, Any]]:
    """Score rows of a scores file or of a Ray output folder (part-*.parquet|jsonl shards)."""
    from gifsent_infer.writing.outputs import ScoresFileError, read_rows

    source = Path(source)
    if source.is_dir():
        from gifsent_infer.scaleout.distributed import list_shards, read_scores

        if not list_shards(source):
            raise ReportError(f"{source} is a folder without score shards (part-*.parquet|jsonl)")
        try:
            return read_scores(source)
        except ImportError as e:  # parquet shards need pyarrow
            raise ReportError(str(e)) from None
    if not source.is_file():
        raise ReportError(f"{source} does not exist")
    try:
        return read_rows(source).rows
    except ScoresFileError as e:
        raise ReportError(str(e)) from None


def find_model(
    rows: Sequence[dict[str, Any]], model: str | os.PathLike | None
) -> tuple[Path | None, ModelDocument | None, str]:
    """The model that scored `rows` (for provenance and percentiles): `model` when given,
    else the default model or a model in $GIFSENT_HOME/models whose sha256 is the rows'
    model_id. Returns (path, document, note); note explains a mismatch or absence."""
    from gifsent_infer import paths
    from gifsent_infer.files import file_sha256
    from gifsent_infer.running.session import ModelError, read_document, resolve_model

    ids = Counter(r.get("model_id") for r in rows if r.get("model_id"))
    want = ids.most_common(1)[0][0] if ids else ""
    if model is not None:
        try:
            path = resolve_model(model)
            doc = read_document(path)
        except ModelError as e:
            raise ReportError(str(e)) from None
        sha = file_sha256(path)
        note = ""
        if want and sha != want:
            note = (
                f"the rows were scored by model {want[:12]}, not by {path.name} ({sha[:12]}): "
                "its provenance may not apply to them"
            )
        return path, doc, note
    candidates: list[Path] = []
    with contextlib.suppress(ModelError):
        candidates.append(resolve_model(None))
    if paths.models_dir().is_dir():
        candidates += sorted(paths.models_dir().glob("*.onnx"))
    seen: set[Path] = set()
    for path in candidates:
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        if not want or file_sha256(path) == want:
            try:
                return path, read_document(path), ""
            except ModelError:
                continue
    note = (
        f"the model that scored these rows ({want[:12] or 'unknown'}) was not found; pass "
        "--model to show its provenance"
    )
    return None, None, note


# --- media -----------------------------------------------------------------------------------


def media_kind(path: str) -> str:
    """'img', 'video', or '' (not shown: a URL, bytes, or an unknown type)."""
    if "://" in path or path.startswith("<"):
        return ""  # remote inputs are never fetched by an offline report
    fmt = by_suffix(Path(path).suffix)  # the format registry: what a name usually holds
    if fmt is not None and fmt.kind == "video":
        return "video"
    return "img"  # GIFs are recognised by content, so any local name may be one


def relative_src(path: str, out_dir: Path, bases: Sequence[Path]) -> str:
    """A URL-quoted path to the GIF from the report's folder. A relative input path is
    resolved against the first of `bases` where it exists (scoring's cwd is unknown)."""
    p = Path(path)
    if not p.is_absolute():
        for base in bases:
            if (base / p).exists():
                p = base / p
                break
        else:
            p = bases[0] / p if bases else p
    # Lexical (abspath, not resolve): a browser resolves "../" in a URL lexically too, and
    # it saves two realpath walks per row (10,000 rows: 3 s -> 0.3 s)
    try:
        rel = os.path.relpath(os.path.abspath(p), os.path.abspath(out_dir))
    except ValueError:  # another drive on Windows
        rel = os.path.abspath(p)
    # quote everything but "/": ":" too, so a name like "javascript:x" stays a relative path
    return urllib.parse.quote(rel.replace(os.sep, "/"), safe="/")


def thumbnail_uri(path: str | os.PathLike, side: int = THUMB_SIDE) -> str | None:
    """A small animated GIF thumbnail as a data: URI (None when the file cannot be decoded).

    Decoded with gifsent's own reader (disposal, transparency, decompression-bomb limits),
    at most THUMB_FRAMES frames taken evenly over time, longer side `side` pixels."""
    import dataclasses

    import numpy as np
    from PIL import Image

    from gifsent_infer.reading.gifio import DEFAULT_LIMITS, decode_gif

    limits = dataclasses.replace(DEFAULT_LIMITS, max_decoded_pixels=200_000_000)
    try:
        decoded = decode_gif(Path(path), limits=limits)
    except Exception:  # a thumbnail is a nicety: never fail the report over one file
        return None
    n = len(decoded.frames)
    keep = sorted(set(np.linspace(0, n - 1, min(n, THUMB_FRAMES)).round().astype(int).tolist()))
    starts = np.concatenate([[0], np.cumsum(decoded.durations_ms)])  # ms at which frames show
    h, w = decoded.frames.shape[1:3]
    scale = min(1.0, side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    frames, durations = [], []
    for j, i in enumerate(keep):
        end = starts[keep[j + 1]] if j + 1 < len(keep) else starts[-1]
        img = Image.fromarray(decoded.frames[i]).resize(size, Image.Resampling.BILINEAR)
        frames.append(img.quantize(colors=64, method=Image.Quantize.MEDIANCUT))
        durations.append(max(20, int(end - starts[i])))
    buf = io.BytesIO()
    frames[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        optimize=True,
    )
    return "data:image/gif;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --- the page --------------------------------------------------------------------------------


@dataclass
class ReportSummary:
    out: Path
    rows: int
    ok: int
    errors: int
    embedded: int  # thumbnails embedded
    bytes: int
    model: Path | None
    notes: list[str] = field(default_factory=list)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _json_for_script(obj: Any) -> str:
    """JSON safe inside <script type="application/json">: no '<', '>' or '&' can close it."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _scores(row: dict[str, Any]) -> list[float] | None:
    vals = [_finite(row.get(e)) for e in EMOTIONS]
    return None if any(v is None for v in vals) else vals  # type: ignore[return-value]


def _pcts(row: dict[str, Any], scores: list[float] | None, doc: ModelDocument | None):
    got = [_finite(row.get(e + PCT_SUFFIX)) for e in EMOTIONS]
    if all(v is not None for v in got):
        return got
    if scores is not None and doc is not None and doc.score_quantiles is not None:
        return [
            percentile(doc.score_quantiles, e, s) for e, s in zip(EMOTIONS, scores, strict=True)
        ]
    return None


def ordinal(pct: float) -> str:
    """82.4 -> '82nd', 11 -> '11th', 3 -> '3rd' (rounded to a whole percentile)."""
    n = round(pct)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _bars(scores: list[float], pcts: list[float] | None, highlight: str = "") -> str:
    """A CSS bar chart of 17 emotions: bar height = score clipped to [0, 1]."""
    out = ['<div class="bars" role="img" aria-label="emotion scores">']
    for k, (e, s) in enumerate(zip(EMOTIONS, scores, strict=True)):
        h = max(0.0, min(1.0, s)) * 100
        tip = f"{e} {s:.3f}" + (f" ({ordinal(pcts[k])} percentile)" if pcts else "")
        cls = "bar hl" if e == highlight else "bar"
        out.append(
            f'<span class="{cls} e{k}" title="{_e(tip)}"><i style="height:{h:.1f}%"></i></span>'
        )
    out.append("</div>")
    return "".join(out)


def _media(kind: str, src: str, name: str, cls: str = "") -> str:
    if not src or not kind:
        return f'<div class="nomedia {cls}">not shown</div>'
    if kind == "video":
        return (
            f'<video class="{cls}" src="{_e(src)}" muted loop autoplay playsinline '
            f'preload="none" title="{_e(name)}"></video>'
        )
    return f'<img class="{cls}" src="{_e(src)}" alt="{_e(name)}" loading="lazy" decoding="async">'


def _metrics_line(metrics: dict[str, Any]) -> str:
    """'test RMSE 0.1390, EV 0.366 (60 GIFs); dev ...' from the document's metrics."""
    parts = []
    for split in ("test", "dev", "train"):
        m = metrics.get(split)
        if isinstance(m, dict) and _finite(m.get("rmse")) is not None:
            ev = f", EV {m['ev']:.3f}" if _finite(m.get("ev")) is not None else ""
            n = f" ({m['n']} GIFs)" if isinstance(m.get("n"), int) else ""
            parts.append(f"{split} RMSE {m['rmse']:.4f}{ev}{n}")
    if parts:
        return "; ".join(parts)
    return json.dumps(metrics, sort_keys=True) if metrics else "(none recorded)"


def _contract_rows(doc: ModelDocument, model_path: Path | None) -> list[tuple[str, str]]:
    from gifsent_infer.running.readable import provenance_line

    s = doc.sampling
    rows = [
        ("model", str(model_path) if model_path else "(not found)"),
        ("trained on", provenance_line(doc).removeprefix("trained on: ")),
        ("encoder", f"{doc.encoder.name} ({doc.encoder.feature_dim}-d per segment)"),
        ("head", f"{doc.head.name} {json.dumps(doc.head.config, sort_keys=True)}"),
        ("precision", doc.precision),
        (
            "sampling",
            f"{s.segments} segment(s) x {s.frames_per_segment} frame(s) at {s.fps:g} fps, "
            f"crop {s.crop}x{s.crop}",
        ),
        ("score scale", scale_note(doc)),
        ("metrics", _metrics_line(doc.metrics)),
        ("schema", f"{doc.schema_version} (gifsent {doc.library_version})"),
    ]
    return rows


def render(
    rows: Sequence[dict[str, Any]],
    *,
    out_dir: Path,
    source_name: str,
    document: ModelDocument | None = None,
    model_path: Path | None = None,
    notes: Sequence[str] = (),
    bases: Sequence[Path] = (),
    top_n: int = DEFAULT_TOP_N,
    page_size: int = DEFAULT_PAGE_SIZE,
    embed: bool = False,
    title: str = "gifsent report",
) -> tuple[str, int]:
    """The report's HTML and the number of embedded thumbnails."""
    bases = list(bases) or [Path.cwd()]
    items = []  # one per row: (path, name, kind, src, status, error, scores, pcts)
    thumbs: dict[str, str | None] = {}
    for row in rows:
        path = str(row.get("path") or "")
        status = str(row.get("status") or "")
        scores = _scores(row) if status == "ok" else None
        # error rows show no picture: their file failed to decode (or is a bomb)
        kind = media_kind(path) if path and scores is not None else ""
        src = relative_src(path, out_dir, bases) if kind else ""
        if embed and kind == "img" and status == "ok":
            local = Path(urllib.parse.unquote(src))
            local = local if local.is_absolute() else out_dir / local
            if path not in thumbs:
                thumbs[path] = thumbnail_uri(local)
            src = thumbs[path] or src
        name = Path(path).name if kind else path
        pcts = _pcts(row, scores, document) if scores is not None else None
        items.append((path, name, kind, src, status, str(row.get("error") or ""), scores, pcts))
    ok = [it for it in items if it[6] is not None]
    errors = [it for it in items if it[4] not in ("ok", "skipped")]
    embedded = sum(1 for v in thumbs.values() if v)

    p: list[str] = []
    w = p.append
    w("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>")
    w("<meta name='viewport' content='width=device-width, initial-scale=1'>")
    w(f"<title>{_e(title)}</title>")
    script = _SCRIPT
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    # No network, no plugins, no other scripts: only ours (by hash), images and video from
    # files, relative paths or data: URIs.
    csp = (
        "default-src 'none'; img-src 'self' file: data:; media-src 'self' file: data:; "
        f"style-src 'unsafe-inline'; script-src 'sha256-{digest}'; base-uri 'none'; "
        "form-action 'none'"
    )
    w(f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">')
    w(f"<style>{_CSS}{_palette_css()}</style></head><body>")
    w(f"<header><h1>{_e(title)}</h1>")
    w(
        f'<p class="meta">{_e(source_name)} · <span id="n-rows">{len(items)}</span> rows, '
        f'<span id="n-ok">{len(ok)}</span> scored, <span id="n-err">{len(errors)}</span> '
        f"error(s) · written {_e(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}</p>"
    )
    if document is not None and demo_warning(document):
        w(f'<p class="demo" id="demo-warning">{_e(demo_warning(document))}</p>')
    for note in notes:
        w(f'<p class="note">{_e(note)}</p>')
    w("</header>")

    # model
    w('<section id="model"><h2>Model</h2>')
    if document is None:
        w('<p class="note">No model document: provenance and percentiles unknown.</p>')
    else:
        w('<table class="kv">')
        for k, v in _contract_rows(document, model_path):
            w(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>")
        w("</table>")
    w('<p class="legend">')
    for k, e in enumerate(EMOTIONS):
        w(f'<span class="key"><i class="e{k}"></i>{_e(e)}</span> ')
    w("</p></section>")

    # galleries
    w(f'<section id="galleries"><h2>Top {top_n} GIFs per emotion</h2>')
    w('<nav class="toc">' + " ".join(f'<a href="#g-{e}">{e}</a>' for e in EMOTIONS) + "</nav>")
    for k, e in enumerate(EMOTIONS):
        ranked = sorted(ok, key=lambda it, k=k: (-it[6][k], it[0]))[:top_n]
        w(f'<section class="gallery" id="g-{e}" data-emotion="{e}"><h3>{e}</h3>')
        w('<div class="cards">')
        for path, name, kind, src, _, _, scores, pcts in ranked:
            pct = f" · {ordinal(pcts[k])} %ile" if pcts else ""
            w(
                f'<figure class="card" data-path="{_e(path)}" data-score="{scores[k]!r}">'
                f"{_media(kind, src, name, 'thumb')}"
                f'<figcaption><span class="name" title="{_e(path)}">{_e(name)}</span>'
                f'<span class="score">{scores[k]:.3f}{pct}</span></figcaption>'
                f"{_bars(scores, pcts, e)}</figure>"
            )
        if not ranked:
            w('<p class="note">no scored GIFs</p>')
        w("</div></section>")
    w("</section>")

    # table (filled by the script from the JSON below)
    w('<section id="all"><h2>All rows</h2>')
    w(
        '<div class="controls"><input id="filter" type="search" placeholder="filter by path or '
        'error…" aria-label="filter"> <select id="status" aria-label="status">'
        '<option value="">all</option><option value="ok">ok</option>'
        '<option value="error">errors</option></select> '
        '<button id="prev" type="button">◀ prev</button> <span id="pageinfo"></span> '
        '<button id="next" type="button">next ▶</button></div>'
    )
    w(
        '<div class="scroll"><table id="rows"><thead><tr><th>GIF</th><th data-key="path" class="sortable">path</th>'
    )
    w('<th data-key="status" class="sortable">status</th><th>top</th><th>emotions</th>')
    for e in EMOTIONS:
        w(f'<th data-key="{e}" class="sortable num" title="{e}">{e[:5]}</th>')
    w("</tr></thead><tbody></tbody></table></div>")
    w('<noscript><p class="note">The table needs JavaScript.</p></noscript></section>')

    # errors
    w(f'<section id="errors"><h2>Errors ({len(errors)})</h2><ul class="errors">')
    for path, _, _, _, status, error, _, _ in errors[:MAX_ERROR_ITEMS]:
        w(
            f'<li data-path="{_e(path)}"><span class="name">{_e(path)}</span>: '
            f'<span class="reason">{_e(error or status)}</span></li>'
        )
    w("</ul>")
    if len(errors) > MAX_ERROR_ITEMS:
        w(f'<p class="note">… and {len(errors) - MAX_ERROR_ITEMS} more: see the table.</p>')
    w("</section>")

    data = {
        "emotions": list(EMOTIONS),
        "pageSize": page_size,
        # [path, name, kind, src, status, error, scores (4 decimals) | null, pcts | null]
        "rows": [
            [
                path,
                name,
                kind,
                src,
                status,
                error,
                [round(s, 4) for s in scores] if scores is not None else None,
                [round(v, 1) for v in pcts] if pcts is not None else None,
            ]
            for path, name, kind, src, status, error, scores, pcts in items
        ],
    }
    w(f'<script type="application/json" id="data">{_json_for_script(data)}</script>')
    w(f"<script>{script}</script></body></html>\n")
    return "".join(p), embedded


def write_report(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    top_n: int = DEFAULT_TOP_N,
    page_size: int = DEFAULT_PAGE_SIZE,
    embed: bool = False,
    title: str | None = None,
) -> ReportSummary:
    """Read `source` (scores file or Ray output folder), write the HTML report to `out`."""
    if top_n < 1 or page_size < 1:
        raise ReportError("top_n and page_size must be at least 1")
    source = Path(source)
    rows = load_rows(source)
    model_path, document, note = find_model(rows, model)
    notes = [note] if note else []
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bases = [Path.cwd(), source if source.is_dir() else source.parent]
    text, embedded = render(
        rows,
        out_dir=out.parent,
        source_name=str(source),
        document=document,
        model_path=model_path,
        notes=notes,
        bases=bases,
        top_n=top_n,
        page_size=page_size,
        embed=embed,
        title=title or f"gifsent report: {source.name}",
    )
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    n_ok = sum(1 for r in rows if r.get("status") == "ok")
    n_err = sum(1 for r in rows if r.get("status") not in ("ok", "skipped"))
    return ReportSummary(
        out, len(rows), n_ok, n_err, embedded, out.stat().st_size, model_path, notes
    )


def _palette_css() -> str:
    # 17 distinguishable hues, one per emotion, for bars and the legend
    return "".join(
        f".e{k} i,i.e{k}{{background:hsl({round(k * 360 / len(EMOTIONS))},65%,50%)}}"
        for k in range(len(EMOTIONS))
    )


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#222;background:#fafafa}
h1{font-size:1.5em;margin:.6em 0 .2em}h2{margin-top:1.4em;border-bottom:1px solid #ccc}
h3{margin:.8em 0 .3em;font-size:1.05em}
.meta{color:#555}.note{color:#7a5a00}
.demo{background:#b00020;color:#fff;font-weight:bold;padding:.6em 1em;font-size:1.1em}
table.kv th{text-align:left;padding-right:1em;vertical-align:top;white-space:nowrap}
table.kv td{word-break:break-word}
.legend .key{display:inline-block;margin-right:.8em;white-space:nowrap}
.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.25em;vertical-align:-1px}
.toc a{margin-right:.6em}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{margin:0;width:132px;background:#fff;border:1px solid #ddd;padding:6px;border-radius:4px}
.card .thumb{width:132px;height:99px;object-fit:contain;background:#eee;display:block}
figcaption{display:flex;flex-direction:column;font-size:12px}
figcaption .name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.score{color:#333;font-variant-numeric:tabular-nums}
.bars{display:flex;align-items:flex-end;height:32px;gap:1px;margin-top:4px}
.bar{flex:1;height:100%;display:flex;align-items:flex-end;background:#f0f0f0}
.bar i{display:block;width:100%}.bar.hl{outline:1px solid #000}
.nomedia{color:#888;font-size:12px;width:64px}
.controls{margin:.5em 0}.scroll{overflow-x:auto}#filter{width:20em}
#rows{border-collapse:collapse;font-size:12px}
#rows th,#rows td{border-bottom:1px solid #e4e4e4;padding:2px 4px;text-align:left}
#rows td.num{text-align:right;font-variant-numeric:tabular-nums}
#rows th.sortable{cursor:pointer;text-decoration:underline dotted}
#rows th.asc::after{content:" ▲"}#rows th.desc::after{content:" ▼"}
#rows img.row,#rows video.row{width:64px;height:48px;object-fit:contain;background:#eee}
#rows td.path{max-width:22em;word-break:break-all}#rows .bars{width:120px;height:24px}
tr.error td{color:#b00020}
.errors .name{font-family:monospace}
"""

# The page's only script. It reads the JSON data block and builds the table with DOM calls
# and textContent (never innerHTML), so nothing in the data is parsed as HTML or run.
# State (sort, direction, filter, status, page) lives in the URL's #fragment.
_SCRIPT = r"""
(function(){
"use strict";
var D=JSON.parse(document.getElementById("data").textContent);
var E=D.emotions,R=D.rows,PS=D.pageSize;
var st={sort:"path",dir:"asc",q:"",status:"",page:1};
function isState(){return location.hash.indexOf("=")>=0;}  // not a #g-emotion anchor
function readHash(){
  if(!isState())return false;
  var h=new URLSearchParams(location.hash.slice(1));
  st.sort=h.get("sort")||"path";
  st.dir=h.get("dir")||(E.indexOf(st.sort)>=0?"desc":"asc");
  st.q=h.get("q")||"";st.status=h.get("status")||"";
  st.page=Math.max(1,parseInt(h.get("page")||"1",10)||1);
  return true;
}
function writeHash(){
  var h=new URLSearchParams();
  h.set("sort",st.sort);h.set("dir",st.dir);
  if(st.q)h.set("q",st.q);if(st.status)h.set("status",st.status);
  if(st.page>1)h.set("page",String(st.page));
  history.replaceState(null,"","#"+h.toString());
}
function key(r){
  var k=E.indexOf(st.sort);
  if(k>=0)return r[6]?r[6][k]:null;
  return st.sort==="status"?r[4]:r[0];
}
function view(){
  var q=st.q.toLowerCase(),out=[];
  for(var i=0;i<R.length;i++){
    var r=R[i];
    if(st.status==="ok"&&r[4]!=="ok")continue;
    if(st.status==="error"&&r[4]==="ok")continue;
    if(q&&r[0].toLowerCase().indexOf(q)<0&&r[5].toLowerCase().indexOf(q)<0)continue;
    out.push(r);
  }
  var s=st.dir==="desc"?-1:1;
  out.sort(function(a,b){
    var x=key(a),y=key(b);
    if(x===null&&y===null)return a[0]<b[0]?-1:a[0]>b[0]?1:0;
    if(x===null)return 1;if(y===null)return -1;   // rows without scores last
    if(x<y)return -s;if(x>y)return s;
    return a[0]<b[0]?-1:a[0]>b[0]?1:0;
  });
  return out;
}
function el(tag,cls,text){
  var e=document.createElement(tag);if(cls)e.className=cls;
  if(text!==undefined)e.textContent=text;return e;
}
function bars(sc,pc){
  var d=el("div","bars");
  for(var k=0;k<E.length;k++){
    var b=el("span","bar e"+k),i=el("i");
    i.style.height=(Math.max(0,Math.min(1,sc[k]))*100).toFixed(1)+"%";
    b.title=E[k]+" "+sc[k].toFixed(3)+(pc?" ("+ordinal(pc[k])+" percentile)":"");
    b.appendChild(i);d.appendChild(b);
  }
  return d;
}
function ordinal(p){
  var n=Math.round(p),t=n%100,u=n%10;
  return n+((t>=10&&t<=20)?"th":u===1?"st":u===2?"nd":u===3?"rd":"th");
}
function media(r){
  if(!r[2]||!r[3])return el("span","nomedia","not shown");
  var m;
  if(r[2]==="video"){m=el("video","row");m.muted=true;m.loop=true;m.preload="none";}
  else{m=el("img","row");m.loading="lazy";m.decoding="async";m.alt=r[1];}
  m.src=r[3];return m;
}
function top3(sc){
  var idx=E.map(function(_,k){return k;});
  idx.sort(function(a,b){return sc[b]-sc[a]||a-b;});
  return idx.slice(0,3).map(function(k){return E[k]+":"+sc[k].toFixed(2);}).join(" ");
}
function render(){
  var rows=view(),pages=Math.max(1,Math.ceil(rows.length/PS));
  if(st.page>pages)st.page=pages;
  var tb=document.querySelector("#rows tbody");
  tb.textContent="";
  var start=(st.page-1)*PS,page=rows.slice(start,start+PS);
  for(var i=0;i<page.length;i++){
    var r=page[i],tr=el("tr",r[4]==="ok"?"ok":"error");
    tr.dataset.path=r[0];
    var td=el("td");td.appendChild(media(r));tr.appendChild(td);
    tr.appendChild(el("td","path",r[0]));
    tr.appendChild(el("td","status",r[4]==="ok"?"ok":r[4]+": "+r[5]));
    tr.appendChild(el("td","top",r[6]?top3(r[6]):""));
    td=el("td");if(r[6])td.appendChild(bars(r[6],r[7]));tr.appendChild(td);
    for(var k=0;k<E.length;k++)tr.appendChild(el("td","num",r[6]?r[6][k].toFixed(3):""));
    tb.appendChild(tr);
  }
  var info=document.getElementById("pageinfo");
  info.textContent="page "+st.page+" of "+pages+" · rows "+(rows.length?start+1:0)+"–"+
    (start+page.length)+" of "+rows.length+(rows.length<R.length?" (filtered from "+R.length+")":"");
  info.dataset.count=String(rows.length);
  document.getElementById("prev").disabled=st.page<=1;
  document.getElementById("next").disabled=st.page>=pages;
  var ths=document.querySelectorAll("#rows th.sortable");
  for(var j=0;j<ths.length;j++){
    ths[j].classList.remove("asc","desc");
    if(ths[j].dataset.key===st.sort)ths[j].classList.add(st.dir);
  }
}
readHash();
document.getElementById("filter").value=st.q;
document.getElementById("status").value=st.status;
document.querySelector("#rows thead").addEventListener("click",function(ev){
  var th=ev.target.closest("th.sortable");if(!th)return;
  var k=th.dataset.key;
  if(st.sort===k)st.dir=st.dir==="asc"?"desc":"asc";
  else{st.sort=k;st.dir=E.indexOf(k)>=0?"desc":"asc";}
  st.page=1;writeHash();render();
});
var timer=null;
document.getElementById("filter").addEventListener("input",function(ev){
  clearTimeout(timer);
  timer=setTimeout(function(){st.q=ev.target.value;st.page=1;writeHash();render();},150);
});
document.getElementById("status").addEventListener("change",function(ev){
  st.status=ev.target.value;st.page=1;writeHash();render();
});
document.getElementById("prev").addEventListener("click",function(){st.page--;writeHash();render();});
document.getElementById("next").addEventListener("click",function(){st.page++;writeHash();render();});
window.addEventListener("hashchange",function(){if(readHash())render();});
render();
// ms from navigation start to the first table page on screen (benchmarks/bench_report.py)
document.body.dataset.readyMs=String(Math.round(performance.now()));
})();
"""
