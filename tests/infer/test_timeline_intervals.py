"""--timeline and --intervals on the runtime side: the library's result fields, the CLI's
JSON/JSONL/CSV shapes, clear exit 2 for models that cannot give them, old documents loading."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
from infer_support import SPEC, build_model, gif_bytes, make_document, reference_timeline

from gifsent_infer.cli import main
from gifsent_infer.contract import (
    EMOTIONS,
    Intervals,
    ModelDocument,
    output_meanings,
)
from gifsent_infer.options import OptionsError, ScoreOptions
from gifsent_infer.reading.gifio import read_gif
from gifsent_infer.running.extras import ExtrasError
from gifsent_infer.running.scorer import Scorer
from gifsent_infer.writing.outputs import read_rows

LEVELS = (0.8, 0.9, 0.95)


def _intervals(normalized: bool) -> Intervals:
    q = {e: (0.1 + 0.01 * k, 0.2 + 0.01 * k, 0.3 + 0.01 * k) for k, e in enumerate(EMOTIONS)}
    norm = {e: normalized and k % 2 == 0 for k, e in enumerate(EMOTIONS)}
    return Intervals(levels=LEVELS, q=q, normalized=norm, heads=3 if normalized else 1, gifs=50)


def new_document(*, heads: int = 3, intervals: bool = True) -> ModelDocument:
    base = make_document()
    return dataclasses.replace(
        base,
        schema_version=3,
        outputs=output_meanings("rnn", heads),
        intervals=_intervals(heads > 1) if intervals else None,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    new = build_model(d / "new.onnx", timeline=True, std=True, metadata=new_document().to_json())
    old = build_model(d / "old.onnx")  # schema 2, `scores` only
    return {"new": new, "old": old}


def cli(capsys, *args):
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def test_library_result_carries_timeline_and_intervals(models):
    data = gif_bytes(5, frames=6)
    scorer = Scorer(models["new"], device="cpu", threads=1, timeline=True, intervals=0.9)
    r = scorer.score(data)
    assert r.ok, r.error
    frames = read_gif(data, SPEC).frames
    want = reference_timeline(frames[None])[0]  # [S, 17], known by construction
    assert list(r.timeline) == ["start_s", *EMOTIONS]
    got = np.array([r.timeline[e] for e in EMOTIONS]).T
    np.testing.assert_allclose(got, want, atol=1e-5)
    d = r.info.duration_s
    assert r.timeline["start_s"] == pytest.approx(
        [s * d / SPEC.segments for s in range(SPEC.segments)], abs=1e-4
    )
    doc = scorer.document
    for e in EMOTIONS:
        lo, hi = r.interval(e)
        q = doc.intervals.q[e][1]
        scale = max(0.1 * r.scores[e], 1e-3) if doc.intervals.normalized[e] else 1.0
        assert lo == pytest.approx(r.scores[e] - q * scale, abs=1e-6)
        assert hi == pytest.approx(r.scores[e] + q * scale, abs=1e-6)
        assert r.intervals[e + "_std"] == pytest.approx(0.1 * r.scores[e], rel=1e-5)
    row = r.to_row()
    assert (
        row["timeline"] is r.timeline
        and row["happiness_lo"] < row["happiness"] < row["happiness_hi"]
    )


def test_options_carry_the_new_fields(models):
    opts = ScoreOptions(model=str(models["new"]), timeline=True, intervals=0.8, device="cpu")
    scorer = Scorer.from_options(opts)
    assert scorer.row_extras.timeline and scorer.row_extras.level == 0.8
    assert ScoreOptions.flag("timeline") == "--timeline"
    with pytest.raises(OptionsError, match="--intervals"):
        ScoreOptions(intervals=1.5)


def test_old_model_still_scores_and_refuses_timeline_clearly(models, tmp_path, capsys):
    gif = tmp_path / "a.gif"
    gif.write_bytes(gif_bytes(1))
    code, out, _ = cli(capsys, "score", gif, "--model", models["old"], "-q", "-f", "json")
    assert code == 0 and "timeline" not in json.loads(out)[0]
    code, out, err = cli(capsys, "score", gif, "--model", models["old"], "-q", "--timeline")
    assert code == 2 and out == "" and "segment_scores" in err and "export it again" in err
    assert "Traceback" not in err
    code, _, err = cli(capsys, "score", gif, "--model", models["old"], "-q", "--intervals", "0.9")
    assert code == 2 and "calibrated" in err
    with pytest.raises(ExtrasError):
        Scorer(models["old"], device="cpu", timeline=True)


def test_uncalibrated_level_is_exit_2(models, tmp_path, capsys):
    gif = tmp_path / "a.gif"
    gif.write_bytes(gif_bytes(1))
    code, _, err = cli(capsys, "score", gif, "--model", models["new"], "-q", "--intervals", "0.7")
    assert code == 2 and "0.8, 0.9, 0.95" in err


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_cli_shapes(models, tmp_path, capsys, fmt):
    for i in range(2):
        (tmp_path / f"g{i}.gif").write_bytes(gif_bytes(i, frames=5))
    (tmp_path / "bad.gif").write_bytes(b"GIF89a broken")
    out = tmp_path / f"out.{fmt}"
    code, _, err = cli(
        capsys,
        "score",
        tmp_path,
        "--model",
        models["new"],
        "-q",
        "--timeline",
        "--intervals",
        "0.9",
        "-o",
        out,
    )
    assert code == 1, err  # the broken GIF fails, the others score
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in read_rows(out).rows}
    good, bad = rows["g0.gif"], rows["bad.gif"]
    assert good["status"] == "ok" and bad["status"] == "error"
    tl = good["timeline"]
    assert isinstance(tl, dict) and len(tl["start_s"]) == SPEC.segments
    assert all(len(tl[e]) == SPEC.segments for e in EMOTIONS)
    assert isinstance(good["amusement_lo"], float) and isinstance(good["amusement_std"], float)
    assert good["amusement_lo"] < good["amusement"] < good["amusement_hi"]
    assert bad["timeline"] is None and bad["amusement_lo"] is None
    if fmt == "csv":
        with open(out, newline="") as f:
            header = next(csv.reader(f))
        with open(out, newline="") as f:
            cell = next(r for r in csv.DictReader(f) if r["status"] == "ok")
        assert header[-1] == "timeline" and "surprise_hi" in header and "surprise_std" in header
        assert json.loads(cell["timeline"]) == tl and " " not in cell["timeline"]


def test_old_schema_document_loads_unchanged():
    old = make_document().to_dict()
    old["schema_version"] = 2
    doc = ModelDocument.from_dict(old)
    assert doc.outputs is None and doc.intervals is None and doc.describes("scores")
    assert not doc.describes("segment_scores")
    new = new_document()
    back = ModelDocument.from_json(new.to_json())
    assert back == new and back.describes("scores_std")
    with pytest.raises(ValueError, match="unknown field"):
        ModelDocument.from_dict({**old, "outputs": {"scores": "x"}})


def test_search_by_lower_puts_confident_gifs_first(tmp_path, capsys):
    from gifsent_infer.views.search import SearchError, rank_by_emotion

    def row(path, score, lo):
        r = {"path": path, "status": "ok", **dict.fromkeys(EMOTIONS, 0.1)}
        r.update({"happiness": score, "happiness_lo": lo})
        return r

    rows = [row("unsure.gif", 0.62, 0.30), row("sure.gif", 0.58, 0.52)]
    assert [h.path for h in rank_by_emotion(rows, "happiness")] == ["unsure.gif", "sure.gif"]
    by_lower = rank_by_emotion(rows, "happiness", by="lower")
    assert [h.path for h in by_lower] == ["sure.gif", "unsure.gif"] and by_lower[0].value == 0.52
    with pytest.raises(SearchError, match="--intervals"):
        rank_by_emotion(
            [{k: v for k, v in rows[0].items() if k != "happiness_lo"}], "happiness", by="lower"
        )
    f = tmp_path / "s.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = cli(capsys, "search", f, "-e", "happiness", "--by", "lower", "-f", "json")
    assert code == 0 and [h["path"] for h in json.loads(out)] == ["sure.gif", "unsure.gif"]
    assert json.loads(out)[0]["happiness_lo"] == 0.52
    code, _, err = cli(capsys, "search", f, "-e", "happiness", "--by", "upper")
    assert code == 2 and "--by" in err


def test_segments_gives_a_finer_timeline_and_keeps_the_scores(models, tmp_path, capsys):
    from infer_support import reference_scores

    from gifsent_infer.contract import HeadInfo

    doc = dataclasses.replace(new_document(), head=HeadInfo("maxpool", {}))
    model = build_model(tmp_path / "mp.onnx", timeline=True, std=True, metadata=doc.to_json())
    data = gif_bytes(7, frames=8)
    plain = Scorer(model, device="cpu", threads=1, timeline=True).score(data)
    fine = Scorer(model, device="cpu", threads=1, timeline=True, segments=6).score(data)
    assert fine.ok and fine.scores == plain.scores  # the model's own sampling
    fine_spec = dataclasses.replace(SPEC, segments=6)
    frames = read_gif(data, fine_spec).frames
    want = reference_timeline(frames[None], fine_spec)[0]  # [6, 17] by construction
    got = np.array([fine.timeline[e] for e in EMOTIONS]).T
    np.testing.assert_allclose(got, want, atol=1e-5)
    d = fine.info.duration_s
    assert fine.timeline["start_s"] == pytest.approx([s * d / 6 for s in range(6)], abs=1e-4)
    np.testing.assert_allclose(
        plain.array, reference_scores(read_gif(data, SPEC).frames[None])[0], rtol=1e-5
    )
    # an LSTM's running estimate cannot be cut into groups; N must be a multiple of S
    gif = tmp_path / "a.gif"
    gif.write_bytes(data)
    for model_path, n, words in (
        (models["new"], "6", "LSTM"),
        (model, "5", "multiple of 2"),
        (model, "4", "with --timeline"),
    ):
        extra = [] if words == "with --timeline" else ["--timeline"]
        code, _, err = cli(
            capsys, "score", gif, "--model", model_path, "-q", "--segments", n, *extra
        )
        assert code == 2 and words in err, err


def test_info_says_what_the_outputs_mean_and_clip_clips_the_bounds(models, tmp_path, capsys):
    code, out, _ = cli(capsys, "info", "--model", models["new"])
    assert code == 0 and "output segment_scores" in out and "split-conformal" in out
    code, out, _ = cli(capsys, "info", "--model", models["old"])
    assert code == 0 and "--intervals needs a model" in out
    gif = tmp_path / "a.gif"
    gif.write_bytes(gif_bytes(2))
    code, out, _ = cli(
        capsys,
        "score",
        gif,
        "--model",
        models["new"],
        "-q",
        "-f",
        "json",
        "--intervals",
        "0.95",
        "--clip",
    )
    row = json.loads(out)[0]
    assert code == 0 and all(0.0 <= row[e + s] <= 1.0 for e in EMOTIONS for s in ("_lo", "_hi"))
