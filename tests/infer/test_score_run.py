"""gifsent_infer.writing.run.score_to_file: the library call behind `gifsent-infer score`, usable by
apps embedding Scorer (resume included) without any CLI code."""

from __future__ import annotations

import pytest
from infer_support import build_model, write_gifs

from gifsent_infer.reading.inputs import expand_inputs
from gifsent_infer.running.scorer import Scorer
from gifsent_infer.writing.outpath import check_output
from gifsent_infer.writing.outputs import partial_path, read_rows
from gifsent_infer.writing.run import ScoreRunError, score_to_file


def test_score_to_file_then_resume_skips_ok_rows_and_retries_errors(tmp_path):
    model = build_model(tmp_path / "m.onnx")
    gifs = tmp_path / "gifs"
    write_gifs(gifs, 3, frames=4, size=(32, 24))
    (gifs / "broken.gif").write_text("not a gif")
    items = expand_inputs([str(gifs)]).items
    scorer = Scorer(model, device="cpu", threads=1)
    out = tmp_path / "scores.csv"
    started = []
    first = score_to_file(scorer, items, check_output(out), "csv", on_start=started.append)
    assert (first.ok, first.failed, first.skipped, started) == (3, 1, 0, [4])
    assert first.failures[0][0].endswith("broken.gif")
    rows = read_rows(out).rows
    assert len(rows) == 4 and not partial_path(out).exists()

    seen = []
    again = score_to_file(
        scorer,
        items,
        check_output(out),
        "csv",
        resume=True,
        on_resume=lambda prev, n_done: seen.append((prev.source, n_done)),
    )
    assert seen == [(out, 3)]
    assert (again.ok, again.failed, again.skipped) == (0, 1, 3)  # the error row is retried
    assert sorted(r["path"] for r in read_rows(out).rows) == sorted(r["path"] for r in rows)


def test_an_unreadable_previous_output_is_a_usage_error(tmp_path):
    model = build_model(tmp_path / "m.onnx")
    out = tmp_path / "scores.json"
    out.write_text("[not json")
    scorer = Scorer(model, device="cpu", threads=1)
    with pytest.raises(ScoreRunError, match="cannot resume") as info:
        score_to_file(scorer, [], check_output(out), "json", resume=True)
    assert info.value.exit_code == 2
