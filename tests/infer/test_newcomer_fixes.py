"""Issue 26, points 6 and 7: the small things a new user trips over, each with its test."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from infer_support import build_model, write_gifs

from gifsent_infer.contract import EMOTIONS


def _cli(*args, stdin: bytes | None = None) -> tuple[int, bytes, str]:
    proc = subprocess.run(
        [sys.executable, "-c", "from gifsent_infer.cli import main; main()", *map(str, args)],
        capture_output=True,
        timeout=180,
        input=stdin,
    )
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")


def test_table_headers_are_distinct_for_every_emotion():
    from gifsent_infer.views.report import column_label, render

    labels = [column_label(e) for e in EMOTIONS]
    assert len(set(labels)) == 17
    assert column_label("contempt") == "contem" and column_label("contentment") == "conten"
    assert column_label("happiness") == "happi"  # 5 letters where they are enough
    html, _ = render([], out_dir=Path("."), source_name="x")
    assert ">contem</th>" in html and ">conten</th>" in html and ">conte</th>" not in html


def test_rate_is_shown_only_when_it_means_something():
    from gifsent_infer.cli.common import rate_note

    assert rate_note(0, 0.0) == "" and rate_note(0, 30.0) == ""  # nothing scored
    assert rate_note(3, 0.0) == ""  # no time measured
    assert rate_note(10, 2.0) == " (5.0 GIFs/s)"


def test_a_refused_url_summary_has_no_rate(tmp_path):
    model = build_model(tmp_path / "m.onnx")
    code, _, err = _cli("http://127.0.0.1:9/x.gif", "-o", tmp_path / "s.csv", "-m", model)
    assert code == 1, err
    summary = next(line for line in err.splitlines() if line.startswith("scored "))
    assert "scored 0, failed 1" in summary and "GIFs/s" not in summary, err


@pytest.mark.parametrize("seed", range(12))
def test_random_bytes_on_stdin_are_a_usage_error_not_names(tmp_path, seed):
    model = build_model(tmp_path / "m.onnx")
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(100))
    code, _, err = _cli("-", "-o", tmp_path / "s.csv", "-m", model, stdin=data)
    assert code == 2 and "binary data" in err, err
    assert "no such file" not in err


def test_a_list_of_odd_names_on_stdin_stays_a_list():
    from gifsent_infer.reading.inputs import looks_binary

    names = b"bad\xff.gif\ncr\r.gif\ntab\tname.gif\n\xe9t\xe9.gif\nplain.gif\nbell\x07.gif\n"
    assert not looks_binary(names)
    assert looks_binary(b"abc\0def")
    assert not looks_binary(b"")


def test_search_table_never_splits_a_long_path_when_piped(tmp_path):
    """The cause of the flaky non-UTF-8 test: rich folded the table at 80 columns when stdout
    was a pipe, so a long temp path came out split across lines."""
    model = build_model(tmp_path / "m.onnx")
    folder = tmp_path / ("a-very-long-folder-name-" * 6)
    (gif,) = write_gifs(folder, 1)
    scores = tmp_path / "s.csv"
    code, _, err = _cli(gif, "-o", scores, "-m", model, "-q")
    assert code == 0, err
    code, out, err = _cli("search", scores, "-e", "happiness", "-f", "table")
    assert code == 0, err
    assert len(str(gif)) > 150
    assert any(str(gif) in line for line in out.decode().splitlines())


def test_readme_resume_snippet_says_where_previous_rows_come_from():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    at = readme.index("keep, done = resume_plan(previous_rows")
    before = readme[max(0, at - 600) : at]
    assert "previous_rows = " in before
