"""Score files: partial files flushed row by row, atomic finish, torn lines, resume sources, search."""

from __future__ import annotations

import io
import json

import pytest

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.views.search import (
    SearchError,
    parse_profile,
    rank_by_emotion,
    rank_by_profile,
    search,
)
from gifsent_infer.writing.outputs import (
    COLUMNS,
    FileSink,
    ScoresFileError,
    StreamSink,
    detect_format,
    load_previous,
    partial_path,
    read_rows,
)


def row(path: str, status: str = "ok", **scores: float) -> dict:
    r = {
        "path": path,
        "sha256": "s" + path,
        "model_id": "m",
        "status": status,
        "error": "" if status == "ok" else "bad",
        "format": "gif" if status == "ok" else None,
        "frames": 3 if status == "ok" else None,
        "duration": 0.3 if status == "ok" else None,
        "segments": 2 if status == "ok" else None,
        "padding": 0.25 if status == "ok" else None,
    }
    for e in EMOTIONS:
        r[e] = scores.get(e, 0.5) if status == "ok" else None
    return r


def test_format_from_extension_or_flag():
    assert detect_format("x.csv") == "csv" and detect_format("x.JSONL") == "jsonl"
    assert detect_format("x.json") == "json" and detect_format("-") == "csv"
    assert detect_format("x.txt", "jsonl") == "jsonl"
    with pytest.raises(ValueError, match="--format"):
        detect_format("x.txt")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_rows_are_in_the_partial_file_before_finish_and_round_trip(tmp_path, fmt):
    out = tmp_path / f"scores.{fmt}"
    sink = FileSink(out, fmt)
    rows = [row("a.gif", happiness=0.125), row("b.gif", "error"), row("c.gif", surprise=0.75)]
    sink.write(rows[0])
    sink.write(rows[1])
    # already on disk while the run goes on, without the final file
    assert not out.exists()
    assert [r["path"] for r in read_rows(partial_path(out)).rows] == ["a.gif", "b.gif"]
    sink.write(rows[2])
    sink.finish()
    assert out.exists() and not partial_path(out).exists()
    back = read_rows(out).rows
    assert back == rows
    if fmt == "json":
        data = json.loads(out.read_text())
        assert isinstance(data, list) and list(data[0]) == list(COLUMNS)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_torn_last_line_is_dropped(tmp_path, fmt):
    out = tmp_path / f"scores.{fmt}"
    sink = FileSink(out, fmt)
    sink.write(row("a.gif"))
    sink.write(row("b.gif"))
    sink.abort()
    p = partial_path(out)
    text = p.read_text()
    p.write_text(text[:-30])  # killed in the middle of writing b.gif's line
    prev = load_previous(out, fmt)
    assert [r["path"] for r in prev.rows] == ["a.gif"] and prev.dropped == 1 and prev.source == p


def test_resume_prefers_the_partial_file_and_dedupes_on_finish(tmp_path):
    out = tmp_path / "scores.json"
    first = FileSink(out, "json")
    first.write(row("a.gif"))
    first.write(row("b.gif", "error"))
    first.finish()
    prev = load_previous(out, "json")
    assert prev.source == out and len(prev.rows) == 2
    second = FileSink(out, "json", keep=prev.rows)
    assert load_previous(out, "json").source == partial_path(out)
    second.write(row("b.gif", happiness=0.9))  # rescored: the newer row wins
    second.finish()
    rows = read_rows(out).rows
    assert [(r["path"], r["status"]) for r in rows] == [("a.gif", "ok"), ("b.gif", "ok")]


def test_stream_sink_json_is_a_valid_array():
    buf = io.StringIO()
    sink = StreamSink(buf, "json")
    sink.write(row("a.gif"))
    sink.write(row("b.gif"))
    sink.finish()
    assert [r["path"] for r in json.loads(buf.getvalue())] == ["a.gif", "b.gif"]
    empty = io.StringIO()
    StreamSink(empty, "json").finish()
    assert json.loads(empty.getvalue()) == []


def test_not_a_scores_file(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(ScoresFileError, match="not a gifsent scores file"):
        read_rows(p)


def test_search_orders_by_emotion_and_by_profile(tmp_path):
    out = tmp_path / "scores.csv"
    sink = FileSink(out, "csv")
    sink.write(row("mid.gif", happiness=0.5, surprise=0.5))
    sink.write(row("happy.gif", happiness=0.95, surprise=0.1))
    sink.write(row("broken.gif", "error"))
    sink.write(row("both.gif", happiness=0.85, surprise=0.65))
    sink.write(row("sad.gif", happiness=0.05, surprise=0.2))
    sink.finish()
    rows = read_rows(out).rows
    assert [h.path for h in rank_by_emotion(rows, "happiness", top=3)] == [
        "happy.gif",
        "both.gif",
        "mid.gif",
    ]
    hits = rank_by_profile(rows, parse_profile("happiness=0.9,surprise=0.6"), top=None)
    assert [h.path for h in hits] == ["both.gif", "mid.gif", "happy.gif", "sad.gif"]
    assert hits[0].value == pytest.approx(((0.85 - 0.9) ** 2 + (0.65 - 0.6) ** 2) ** 0.5)
    assert [h.path for h in search(out, emotion="surprise", top=1)] == ["both.gif"]
    with pytest.raises(SearchError, match="did you mean happiness"):
        parse_profile("hapiness=0.9")
    with pytest.raises(SearchError, match="emotion=score"):
        parse_profile("happiness")
    with pytest.raises(SearchError, match="exactly one"):
        search(out)
