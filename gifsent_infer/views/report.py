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
from gifsent_infer.writing.gifsave import save_gif

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
    """Score rows of a scores file or of a `gifsent-infer ray` Delta table (a local folder or
    an object-store URI; its latest snapshot)."""
    from gifsent_infer.scaleout.delta_table import is_score_table, is_uri, read_scores
    from gifsent_infer.writing.outputs import ScoresFileError, read_rows

    try:
        if is_score_table(source):
            return read_scores(source)
    except (ImportError, GifsentError) as e:  # no deltalake, or not a table of scores
        raise ReportError(str(e)) from None
    if is_uri(source):
        raise ReportError(f"{source} is not a Delta table of scores (no _delta_log there)")
    source = Path(source)
    if source.is_dir():
        raise ReportError(
            f"{source} is a folder but not a Delta table of scores (written by "
            "`gifsent-infer ray`); give a scores file or a table"
        )
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
    save_gif(frames, buf, durations, optimize=True)
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


def _bars(
    scores: list[float],
    pcts: list[float] | None,
    highlight: str = "",
    intervals: list[tuple[float, float]] | None = None,
) -> str:
    """A CSS bar chart of 17 emotions: bar height = score clipped to [0, 1]; with intervals,
    each bar carries its whisker (_whisker)."""
    out = ['<div class="bars" role="img" aria-label="emotion scores">']
    for k, (e, s) in enumerate(zip(EMOTIONS, scores, strict=True)):
        h = max(0.0, min(1.0, s)) * 100
        tip = f"{e} {s:.3f}" + (f" ({ordinal(pcts[k])} percentile)" if pcts else "")
        cls = "bar hl" if e == highlight else "bar"
        whisker = ""
        if intervals is not None:
            tip += f", interval {intervals[k][0]:.3f} to {intervals[k][1]:.3f}"
            whisker = _whisker(*intervals[k])
        out.append(
            f'<span class="{cls} e{k}" title="{_e(tip)}"><i style="height:{h:.1f}%"></i>'
            f"{whisker}</span>"
        )
    out.append("</div>")
    return "".join(out)


# --- timeline strip and interval whiskers (--timeline / --intervals rows) --------------------

STRIP_EMOTIONS = 3  # rows of a card's strip: the GIF's top emotions


def _intervals_of(row: dict[str, Any]) -> list[tuple[float, float]] | None:
    """[(lo, hi)] x 17 from a row's <emotion>_lo / _hi columns, or None."""
    got = [(_finite(row.get(e + "_lo")), _finite(row.get(e + "_hi"))) for e in EMOTIONS]
    if any(lo is None or hi is None for lo, hi in got):
        return None
    return got  # type: ignore[return-value]


def _timeline_of(row: dict[str, Any]) -> dict[str, list[float]] | None:
    tl = row.get("timeline")
    if isinstance(tl, str) and tl:
        try:
            tl = json.loads(tl)
        except ValueError:
            return None
    if not isinstance(tl, dict) or not isinstance(tl.get("start_s"), list):
        return None
    n = len(tl["start_s"])
    ok = all(isinstance(tl.get(e), list) and len(tl[e]) == n for e in EMOTIONS)
    return tl if ok and n > 0 else None


def _whisker(lo: float, hi: float) -> str:
    """A vertical line from lo to hi (clipped to the bar's [0, 1]) over a bar."""
    a, b = max(0.0, min(1.0, lo)) * 100, max(0.0, min(1.0, hi)) * 100
    return f'<b class="wh" style="bottom:{a:.1f}%;height:{max(b - a, 0.5):.1f}%"></b>'


def _strip_rows(
    timeline: dict[str, list[float]] | None, scores: list[float] | None
) -> list[tuple[int, list[float], list[float]]]:
    """The strip's rows: (emotion index, values, opacities) for the GIF's top emotions, each
    cell as dark as the segment's score relative to that emotion's range over the GIF."""
    if timeline is None or scores is None:
        return []
    top = sorted(range(len(EMOTIONS)), key=lambda k: (-scores[k], k))[:STRIP_EMOTIONS]
    rows = []
    for k in top:
        vals = [float(v) for v in timeline[EMOTIONS[k]]]
        lo, hi = min(vals), max(vals)
        rows.append(
            (k, vals, [0.15 + 0.85 * ((v - lo) / (hi - lo) if hi > lo else 1.0) for v in vals])
        )
    return rows


def _strip(timeline: dict[str, list[float]] | None, scores: list[float]) -> str:
    """The GIF's timeline as a strip: its top emotions x S segments (`_strip_rows`; title: time
    and score). The table's rows draw the same strip in the page's script (`_Item.as_json`)."""
    if timeline is None:
        return ""
    starts = timeline["start_s"]
    out = [
        f'<div class="strip" role="img" aria-label="timeline: {len(starts)} segments" '
        f'style="grid-template-columns:repeat({len(starts)},1fr)">'
    ]
    for k, vals, alphas in _strip_rows(timeline, scores):
        e = EMOTIONS[k]
        for t, v, a in zip(starts, vals, alphas, strict=True):
            tip = f"{e} at {float(t):.2f} s: {v:.3f}"
            out.append(
                f'<i class="e{k}" data-emotion="{e}" style="opacity:{a:.2f}" title="{_e(tip)}"></i>'
            )
    out.append("</div>")
    return "".join(out)


def _media(kind: str, src: str, name: str, cls: str = "") -> str:
    if not src or not kind:
        return f'<div class="nomedia {cls}">not shown</div>'
    if kind == "thumb":  # an embedded thumbnail: its CSS class carries the data: URI once
        return f'<div class="{cls} bg {_e(src)}" role="img" aria-label="{_e(name)}"></div>'
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


@dataclass
class _Item:
    """One row as the page shows it."""

    path: str
    name: str
    kind: str  # "img", "video", "thumb" (an embedded thumbnail, by CSS class) or ""
    src: str  # relative URL, or the thumbnail's CSS class for kind "thumb"
    status: str
    error: str
    scores: list[float] | None
    pcts: list[float] | None
    # --timeline / --intervals rows: the timeline dict and [(lo, hi)] x 17 (strip, whiskers)
    timeline: dict[str, list[float]] | None = None
    intervals: list[tuple[float, float]] | None = None

    def as_json(self) -> list[Any]:
        # [path, name, kind, src, status, error, scores (4 decimals) | null, pcts | null,
        #  strip | null]
        return [
            self.path,
            self.name,
            self.kind,
            self.src,
            self.status,
            self.error,
            [round(v, 4) for v in self.scores] if self.scores is not None else None,
            [round(v, 1) for v in self.pcts] if self.pcts is not None else None,
            self._strip_json(),
        ]

    def _strip_json(self) -> dict[str, Any] | None:
        """The row's timeline strip for the table (the cards draw it in HTML): segment starts
        and, per top emotion, [index, values, opacities]; None without a timeline."""
        rows = _strip_rows(self.timeline, self.scores)
        if not rows:
            return None
        return {
            "t": [round(float(t), 3) for t in self.timeline["start_s"]],  # type: ignore[index]
            "e": [
                [k, [round(v, 6) for v in vals], [round(a, 2) for a in al]] for k, vals, al in rows
            ],
        }


class _Thumbs:
    """Embedded thumbnails, each made once and shipped once: a CSS class per GIF whose
    background is the data: URI, used by every gallery card and table row showing it."""

    def __init__(self, on_thumb: Callable[[int, int], None] | None = None, total: int = 0):
        self.by_path: dict[str, str | None] = {}  # path -> CSS class, None when undecodable
        self.uris: dict[str, str] = {}  # CSS class -> data: URI
        self.on_thumb = on_thumb
        self.total = total

    def get(self, path: str, local: Path) -> str | None:
        if path not in self.by_path:
            uri = thumbnail_uri(local)
            cls = f"t{len(self.uris)}" if uri else None
            if cls and uri:
                self.uris[cls] = uri
            self.by_path[path] = cls
            if self.on_thumb is not None:
                self.on_thumb(len(self.by_path), self.total)
        return self.by_path[path]

    def css(self) -> str:
        return "".join(f".{c}{{background-image:url({u})}}" for c, u in self.uris.items())


def _items(
    rows: Sequence[dict[str, Any]],
    out_dir: Path,
    bases: Sequence[Path],
    document: ModelDocument | None,
    thumbs: _Thumbs | None,
) -> list[_Item]:
    items = []
    for row in rows:
        path = str(row.get("path") or "")
        status = str(row.get("status") or "")
        scores = _scores(row) if status == "ok" else None
        # error rows show no picture: their file failed to decode (or is a bomb)
        kind = media_kind(path) if path and scores is not None else ""
        src = relative_src(path, out_dir, bases) if kind else ""
        name = Path(path).name if kind else path
        if thumbs is not None and kind == "img":
            local = Path(urllib.parse.unquote(src))
            cls = thumbs.get(path, local if local.is_absolute() else out_dir / local)
            if cls:
                kind, src = "thumb", cls
        pcts = _pcts(row, scores, document) if scores is not None else None
        more = (_timeline_of(row), _intervals_of(row)) if scores is not None else (None, None)
        items.append(
            _Item(path, name, kind, src, status, str(row.get("error") or ""), scores, pcts, *more)
        )
    return items


def _page_head(title: str, extra_css: str) -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode()
    # No network, no plugins, no other scripts: only ours (by hash), images and video from
    # files, relative paths or data: URIs (embedded thumbnails are CSS backgrounds).
    csp = (
        "default-src 'none'; img-src 'self' file: data:; media-src 'self' file: data:; "
        f"style-src 'unsafe-inline'; script-src 'sha256-{digest}'; base-uri 'none'; "
        "form-action 'none'"
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title>"
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">'
        f"<style>{_CSS}{_palette_css()}{extra_css}</style></head><body>"
    )


def _header_section(
    title: str,
    source_name: str,
    counts: tuple[int, int, int],
    warning: str | None,
    notes: Sequence[str],
) -> str:
    n_rows, n_ok, n_err = counts
    p = [f"<header><h1>{_e(title)}</h1>"]
    p.append(
        f'<p class="meta">{_e(source_name)} · <span id="n-rows">{n_rows}</span> rows, '
        f'<span id="n-ok">{n_ok}</span> scored, <span id="n-err">{n_err}</span> '
        f"error(s) · written {_e(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}</p>"
    )
    if warning:
        p.append(f'<p class="demo" id="demo-warning">{_e(warning)}</p>')
    p += [f'<p class="note">{_e(note)}</p>' for note in notes]
    p.append("</header>")
    return "".join(p)


def _model_section(document: ModelDocument | None, model_path: Path | None) -> str:
    p = ['<section id="model"><h2>Model</h2>']
    if document is None:
        p.append('<p class="note">No model document: provenance and percentiles unknown.</p>')
    else:
        p.append('<table class="kv">')
        for k, v in _contract_rows(document, model_path):
            p.append(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>")
        p.append("</table>")
    p.append('<p class="legend">')
    for k, e in enumerate(EMOTIONS):
        p.append(f'<span class="key"><i class="e{k}"></i>{_e(e)}</span> ')
    p.append("</p></section>")
    return "".join(p)


def _card(it: _Item, k: int, emotion: str) -> str:
    assert it.scores is not None
    pct = f" · {ordinal(it.pcts[k])} %ile" if it.pcts else ""
    return (
        f'<figure class="card" data-path="{_e(it.path)}" data-score="{it.scores[k]!r}">'
        f"{_media(it.kind, it.src, it.name, 'thumb')}"
        f'<figcaption><span class="name" title="{_e(it.path)}">{_e(it.name)}</span>'
        f'<span class="score">{it.scores[k]:.3f}{pct}</span></figcaption>'
        f"{_bars(it.scores, it.pcts, emotion, it.intervals)}{_strip(it.timeline, it.scores)}"
        "</figure>"
    )


def _galleries_section(ok: Sequence[_Item], top_n: int) -> str:
    p = [f'<section id="galleries"><h2>Top {top_n} GIFs per emotion</h2>']
    p.append(
        '<nav class="toc">' + " ".join(f'<a href="#g-{e}">{e}</a>' for e in EMOTIONS) + "</nav>"
    )
    for k, e in enumerate(EMOTIONS):
        ranked = sorted(ok, key=lambda it, k=k: (-it.scores[k], it.path))[:top_n]
        p.append(f'<section class="gallery" id="g-{e}" data-emotion="{e}"><h3>{e}</h3>')
        p.append('<div class="cards">')
        p += [_card(it, k, e) for it in ranked]
        if not ranked:
            p.append('<p class="note">no scored GIFs</p>')
        p.append("</div></section>")
    p.append("</section>")
    return "".join(p)


def column_label(emotion: str) -> str:
    """The table header's short label: 5 letters, 6 where 5 are shared ("contem"/"conten")."""
    for n in range(5, len(emotion) + 1):
        label = emotion[:n]
        if sum(1 for e in EMOTIONS if e.startswith(label)) == 1:
            return label
    return emotion


def _table_section() -> str:
    # filled by the script from the JSON data block
    p = ['<section id="all"><h2>All rows</h2>']
    p.append(
        '<div class="controls"><input id="filter" type="search" placeholder="filter by path or '
        'error…" aria-label="filter"> <select id="status" aria-label="status">'
        '<option value="">all</option><option value="ok">ok</option>'
        '<option value="error">errors</option></select> '
        '<button id="prev" type="button">◀ prev</button> <span id="pageinfo"></span> '
        '<button id="next" type="button">next ▶</button></div>'
    )
    p.append(
        '<div class="scroll"><table id="rows"><thead><tr><th>GIF</th><th data-key="path" class="sortable">path</th>'
    )
    p.append('<th data-key="status" class="sortable">status</th><th>top</th><th>emotions</th>')
    for e in EMOTIONS:
        p.append(f'<th data-key="{e}" class="sortable num" title="{e}">{column_label(e)}</th>')
    p.append("</tr></thead><tbody></tbody></table></div>")
    p.append('<noscript><p class="note">The table needs JavaScript.</p></noscript></section>')
    return "".join(p)


def _errors_section(errors: Sequence[_Item]) -> str:
    p = [f'<section id="errors"><h2>Errors ({len(errors)})</h2><ul class="errors">']
    for it in errors[:MAX_ERROR_ITEMS]:
        p.append(
            f'<li data-path="{_e(it.path)}"><span class="name">{_e(it.path)}</span>: '
            f'<span class="reason">{_e(it.error or it.status)}</span></li>'
        )
    p.append("</ul>")
    if len(errors) > MAX_ERROR_ITEMS:
        p.append(f'<p class="note">… and {len(errors) - MAX_ERROR_ITEMS} more: see the table.</p>')
    p.append("</section>")
    return "".join(p)


def _data_section(items: Sequence[_Item], page_size: int) -> str:
    data = {
        "emotions": list(EMOTIONS),
        "pageSize": page_size,
        "rows": [it.as_json() for it in items],
    }
    return (
        f'<script type="application/json" id="data">{_json_for_script(data)}</script>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


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
    demo: bool = False,
    on_thumb: Callable[[int, int], None] | None = None,
) -> tuple[str, int]:
    """The report's HTML and the number of embedded thumbnails.

    demo: show the demo warning even without a model document (the score file said so).
    on_thumb(done, total): after each thumbnail made (embed), for progress."""
    bases = list(bases) or [Path.cwd()]
    thumbs = _Thumbs(on_thumb, len({str(r.get("path")) for r in rows if r.get("status") == "ok"}))
    items = _items(rows, out_dir, bases, document, thumbs if embed else None)
    ok = [it for it in items if it.scores is not None]
    errors = [it for it in items if it.status not in ("ok", "skipped")]
    warning = demo_warning(document) if document is not None else None
    if warning is None and demo:
        from gifsent_infer.contract import DEMO_WARNING

        warning = f"WARNING: {DEMO_WARNING}"
    page = [
        _page_head(title, thumbs.css()),
        _header_section(title, source_name, (len(items), len(ok), len(errors)), warning, notes),
        _model_section(document, model_path),
        _galleries_section(ok, top_n),
        _table_section(),
        _errors_section(errors),
        _data_section(items, page_size),
    ]
    return "".join(page), len(thumbs.uris)


def write_report(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    top_n: int = DEFAULT_TOP_N,
    page_size: int = DEFAULT_PAGE_SIZE,
    embed: bool = False,
    title: str | None = None,
    on_thumb: Callable[[int, int], None] | None = None,
) -> ReportSummary:
    """Read `source` (scores file or Ray's Delta table), write the HTML report to `out`.

    The score file's own provenance (writing.provenance: its sidecar or Parquet metadata)
    says whether a demo model made it: the demo banner shows from that alone, model or not.
    on_thumb(done, total): after each embedded thumbnail (progress)."""
    from gifsent_infer.scaleout.delta_table import is_uri

    if top_n < 1 or page_size < 1:
        raise ReportError("top_n and page_size must be at least 1")
    rows = load_rows(source)
    remote = is_uri(source)
    source = Path(source) if not remote else Path(str(source).rstrip("/").rsplit("/", 1)[-1])
    model_path, document, note = find_model(rows, model)
    notes = [note] if note else []
    meta = None if remote else _score_file_metadata(source)
    if meta is not None and document is None:
        notes.append(score_file_note(meta))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bases = [Path.cwd()] if remote else [Path.cwd(), source if source.is_dir() else source.parent]
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
        demo=bool(meta and meta.get("is_demo")),
        on_thumb=on_thumb,
    )
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    n_ok = sum(1 for r in rows if r.get("status") == "ok")
    n_err = sum(1 for r in rows if r.get("status") not in ("ok", "skipped"))
    return ReportSummary(
        out, len(rows), n_ok, n_err, embedded, out.stat().st_size, model_path, notes
    )


def _score_file_metadata(source: Path) -> dict[str, Any] | None:
    from gifsent_infer.writing.provenance import read_score_metadata

    return read_score_metadata(source)


def score_file_note(meta: dict[str, Any]) -> str:
    """What the score file says about the model that made it (when the model is not here)."""
    return (
        f"per the score file: scored by {meta.get('model_file', '?')} "
        f"(id {str(meta.get('model_id', ''))[:12]}), trained on {meta.get('provenance', '?')}; "
        f"{meta.get('backend', '?')} {meta.get('precision', '?')}, gifsent "
        f"{meta.get('gifsent_version', '?')}, {meta.get('written', '')}"
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
.bar{position:relative}.bar b.wh{position:absolute;left:45%;width:10%;min-width:1px;background:#000}
.strip{display:grid;gap:1px;margin-top:3px;height:18px}.strip i{display:block;min-height:4px}
.nomedia{color:#888;font-size:12px;width:64px}
.bg{background-size:contain;background-repeat:no-repeat;background-position:center}
#rows .bg.row{display:inline-block;width:64px;height:48px;background-color:#eee}
.controls{margin:.5em 0}.scroll{overflow-x:auto}#filter{width:20em}
#rows{border-collapse:collapse;font-size:12px}
#rows th,#rows td{border-bottom:1px solid #e4e4e4;padding:2px 4px;text-align:left}
#rows td.num{text-align:right;font-variant-numeric:tabular-nums}
#rows th.sortable{cursor:pointer;text-decoration:underline dotted}
#rows th.asc::after{content:" ▲"}#rows th.desc::after{content:" ▼"}
#rows img.row,#rows video.row{width:64px;height:48px;object-fit:contain;background:#eee}
#rows td.path{max-width:22em;word-break:break-all}#rows .bars{width:120px;height:24px}#rows .strip{width:120px;height:12px}
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
function strip(s){
  var d=el("div","strip"),n=s.t.length;
  d.setAttribute("role","img");d.setAttribute("aria-label","timeline: "+n+" segments");
  d.style.gridTemplateColumns="repeat("+n+",1fr)";
  for(var r=0;r<s.e.length;r++){
    var k=s.e[r][0];
    for(var j=0;j<n;j++){
      var c=el("i","e"+k);c.dataset.emotion=E[k];c.style.opacity=s.e[r][2][j].toFixed(2);
      c.title=E[k]+" at "+s.t[j].toFixed(2)+" s: "+s.e[r][1][j].toFixed(3);d.appendChild(c);
    }
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
  if(r[2]==="thumb"){m=el("span","row bg "+r[3]);m.setAttribute("role","img");m.title=r[1];return m;}
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
    td=el("td");if(r[6])td.appendChild(bars(r[6],r[7]));if(r[8])td.appendChild(strip(r[8]));
    tr.appendChild(td);
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
