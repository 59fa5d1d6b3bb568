"""The voting page, the progress page and the small messages, as server-rendered HTML.

Everything from outside (GIF ids, emotion names) goes through ``html.escape``; the only
script is ``VOTE_JS``, served from the app's own origin (the Content-Security-Policy allows no
inline script).
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f4;color:#222}
header{display:flex;gap:1.5em;padding:.6em 1.2em;background:#222;color:#eee;font-size:.9em}
header a{color:#9cf}
main{max-width:1100px;margin:0 auto;padding:1em}
h1{text-align:center;font-weight:500;margin:.6em 0}
h1 em{font-style:normal;font-weight:700;color:#b03a2e}
.pair{display:flex;gap:1.2em;justify-content:center}
.pick{flex:1;max-width:520px;background:#fff;border:2px solid #ccc;border-radius:10px;
padding:.6em;cursor:pointer;font-size:1em}
.pick:hover,.pick:focus{border-color:#b03a2e}
.pick img{width:100%;height:380px;object-fit:contain;background:#eee;display:block}
.pick span,.neither{display:block;margin-top:.4em;color:#555}
.neither{margin:1em auto;padding:.5em 1.4em;background:#fff;border:1px solid #bbb;
border-radius:8px;cursor:pointer}
kbd{border:1px solid #999;border-radius:3px;padding:0 .3em;background:#f0f0f0}
table{border-collapse:collapse;width:100%;background:#fff}
td,th{padding:.35em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:middle}
td img{height:48px;margin-right:4px}
.note{color:#666;font-size:.9em}
"""

# Keys: left/right arrows (or 1 / 2), down arrow, space or 0 for "neither". One answer per
# page: a second key press while the next page loads is ignored.
VOTE_JS = """
(function () {
  var sent = false;
  var keys = {ArrowLeft: 'left', '1': 'left', ArrowRight: 'right', '2': 'right',
              ArrowDown: 'neither', ' ': 'neither', '0': 'neither'};
  document.addEventListener('keydown', function (e) {
    var choice = keys[e.key];
    if (!choice || e.repeat || e.altKey || e.ctrlKey || e.metaKey) return;
    e.preventDefault();
    if (sent) return;
    var button = document.getElementById('choose-' + choice);
    if (!button) return;
    sent = true;
    button.click();
  });
  var form = document.getElementById('vote');
  if (form) {
    form.addEventListener('submit', function () { sent = true; });
    form.dataset.keys = 'on';  // the shortcuts work from now on
  }
})();
"""


def _page(title: str, body: str, votes: int | None = None) -> str:
    mine = "" if votes is None else f"<span>your votes: {votes}</span>"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        "<header><strong>gifsent votes</strong><a href='/'>vote</a>"
        f"<a href='/progress'>progress</a>{mine}</header><main>{body}</main></body></html>"
    )


def gif_src(gif_id: str) -> str:
    return "/gif/" + quote(gif_id, safe="")


def vote_page(*, shown_id: int, emotion: str, left: str, right: str, csrf: str, votes: int) -> str:
    e = escape(emotion)
    body = (
        f"<form id='vote' method='post' action='/vote' data-shown='{shown_id}'>"
        f"<input type='hidden' name='shown' value='{shown_id}'>"
        f"<input type='hidden' name='csrf' value='{escape(csrf)}'>"
        f"<h1>Which expresses more <em>{e}</em>?</h1><div class='pair'>"
        f"<button class='pick' id='choose-left' name='choice' value='left'>"
        f"<img src='{escape(gif_src(left))}' alt='left GIF'>"
        "<span><kbd>←</kbd> this one</span></button>"
        f"<button class='pick' id='choose-right' name='choice' value='right'>"
        f"<img src='{escape(gif_src(right))}' alt='right GIF'>"
        "<span>this one <kbd>→</kbd></span></button></div>"
        "<button class='neither' id='choose-neither' name='choice' value='neither'>"
        "neither / can't say <kbd>↓</kbd></button></form>"
        "<p class='note'>Go with your first impression. Keys: <kbd>←</kbd> left, "
        "<kbd>→</kbd> right, <kbd>↓</kbd> or <kbd>space</kbd> neither.</p>"
        "<script src='/vote.js'></script>"
    )
    return _page(f"Which expresses more {emotion}?", body, votes)


def message_page(title: str, text: str, votes: int | None = None) -> str:
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>", votes)


def progress_page(rows: list[dict], total: int, sync: dict | None = None) -> str:
    """rows: emotion, decisive, neither, covered, gifs, settled, top [(id, strength, n)];
    sync: the vote feed's state where several servers share the database."""
    lines = []
    for r in rows:
        tops = "".join(
            f"<img src='{escape(gif_src(g))}' alt='{escape(g)}' title='{escape(g)}: "
            f"{s:+.2f} ({n} votes)' loading='lazy'>"
            for g, s, n in r["top"]
        )
        lines.append(
            f"<tr><td>{escape(r['emotion'])}</td><td>{r['decisive']}</td><td>{r['neither']}</td>"
            f"<td>{r['covered']} / {r['gifs']}</td><td>{r['settled']:.2f}</td><td>{tops}</td></tr>"
        )
    body = (
        f"<h1>Progress: {total} votes</h1><table><tr><th>emotion</th><th>decisive</th>"
        "<th>neither</th><th>GIFs with a vote</th><th>settled</th><th>top GIFs</th></tr>"
        + "".join(lines)
        + "</table><p class='note'>settled: the expected Spearman correlation between the "
        "current ranking and the true one under the Bradley-Terry posterior (1 = settled). "
        "Machine-readable: <a href='/progress.json'>progress.json</a>.</p>"
    )
    if sync is not None:
        body += (
            "<p class='note'>Votes are from every server on this database; the top GIFs and "
            f"how settled each ranking is include the other servers' votes up to "
            f"{float(sync['every_s']):g} s old.</p>"
        )
    return _page("gifsent votes: progress", body)
