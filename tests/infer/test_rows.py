"""rows.py: the one score row (columns, Arrow schema, result -> row) and the one resume rule."""

from __future__ import annotations

import numpy as np
import pytest

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.reading.gifio import SampleInfo
from gifsent_infer.running import rows
from gifsent_infer.running.scorer import ScoreResult
from gifsent_infer.writing import outputs


def test_resume_plan_keeps_untouched_and_ok_rows_of_this_model_only():
    previous = [
        {"path": "gone.gif", "status": "error", "model_id": "other", "sha256": "g"},
        {"path": "a.gif", "status": "ok", "model_id": "m1", "sha256": "sa"},
        {"path": "b.gif", "status": "ok", "model_id": "m2", "sha256": "sb"},  # another model
        {"path": "c.gif", "status": "error", "model_id": "m1", "sha256": "sc"},  # retried
        {"path": "d.gif", "status": "ok", "model_id": "m1", "sha256": None},  # unreadable before
    ]
    keep, done = rows.resume_plan(previous, {"a.gif", "b.gif", "c.gif", "d.gif"}, "m1")
    # rows of inputs this run does not touch stay whatever they are
    assert [r["path"] for r in keep] == ["gone.gif", "a.gif", "d.gif"]
    assert done == {"a.gif": "sa", "d.gif": ""}
    assert rows.resume_plan([], {"a.gif"}, "m1") == ([], {})


def test_score_row_from_raw_output_equals_the_scorer_row():
    info = SampleInfo(
        n_frames=7,
        duration_s=0.123456,
        width=10,
        height=8,
        segments=2,
        padded_frames=3,
        padding=3 / 32,
        format="gif",
    )
    raw = np.linspace(-0.25, 1.3, 17, dtype=np.float32)
    result = ScoreResult(
        path="x.gif",
        status="ok",
        sha256="s",
        model_id="m",
        info=info,
        scores={e: rows.f32(v) for e, v in zip(EMOTIONS, raw, strict=True)},
    )
    from_raw = rows.score_row("x.gif", "s", "m", "ok", "", info, raw)
    assert from_raw == result.to_row()
    assert tuple(from_raw) == rows.COLUMNS
    assert from_raw["duration"] == 0.1235 and from_raw["padding"] == 0.0938
    assert from_raw[EMOTIONS[0]] == -0.25  # the shortest float that round-trips the float32
    empty = rows.score_row("y.gif", "", "m", "error", "not a GIF", None, None)
    assert all(empty[c] is None for c in ("format", "frames", "duration", *EMOTIONS))


def test_arrow_schema_and_old_names():
    pa = pytest.importorskip("pyarrow")
    schema = rows.arrow_schema()
    assert schema.names == list(rows.COLUMNS)
    assert schema.field("frames").type == pa.int64()
    assert schema.field(EMOTIONS[3]).type == pa.float64()
    assert schema.field("format").type == pa.string()
    assert outputs.COLUMNS is rows.COLUMNS and outputs.INFO_COLUMNS is rows.INFO_COLUMNS
