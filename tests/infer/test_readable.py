"""Scores people can read: schema-2 provenance and quantiles, percentiles, `top`, `--clip`, the demo warning."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math

import numpy as np
import pytest

from gifsent_infer.contract import (
    DEMO_WARNING,
    EMOTIONS,
    SCHEMA_VERSION,
    ContractError,
    ModelDocument,
    Provenance,
    ScoreQuantiles,
)
from gifsent_infer.running.readable import (
    PCT_COLUMNS,
    Readable,
    ReadableError,
    compute_quantiles,
    format_top,
    percentile,
    top_emotions,
)
from gifsent_infer.writing.outputs import INFO_COLUMNS
from tests.infer_support import build_model, gif_bytes, make_document, reference_scores

DEMO = Provenance(
    dataset_kind="procedural-demo",
    dataset_name="demo (gifsent-train demo-data, seed 0)",
    gifs=600,
    comparisons=81_600,
    train_gifs=480,
    encoder_weights="random init (no pretrained weights)",
    run_id="demo-run-1",
)


def quantiles_of(values: dict[str, list[float]], levels=(0, 25, 50, 75, 100)) -> ScoreQuantiles:
    full = {e: values.get(e, [0.0, 0.25, 0.5, 0.75, 1.0]) for e in EMOTIONS}
    return ScoreQuantiles(levels=levels, values=full, gifs=4)


# --- the contract ----------------------------------------------------------------------------


def test_schema_1_documents_still_load_without_the_new_fields():
    data = json.loads(make_document().to_json())
    data["schema_version"] = 1
    doc = ModelDocument.from_dict(data)
    assert doc.schema_version == 1 and doc.provenance is None and doc.score_quantiles is None
    assert not doc.is_demo
    data["provenance"] = DEMO.to_dict()  # a version-1 document cannot carry version-2 fields
    with pytest.raises(ContractError, match="unknown field"):
        ModelDocument.from_dict(data)


def test_schema_2_round_trips_provenance_and_quantiles():
    q = compute_quantiles(np.random.default_rng(0).random((50, 17)))
    doc = dataclasses.replace(make_document(), provenance=DEMO, score_quantiles=q)
    again = ModelDocument.from_json(doc.to_json())
    assert again == doc and again.schema_version == SCHEMA_VERSION
    assert again.is_demo and again.provenance.train_gifs == 480
    assert len(again.score_quantiles.levels) == 101 and again.score_quantiles.gifs == 50


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["provenance"].update(dataset_kind="imagenet"), "dataset_kind"),
        (lambda d: d["provenance"].update(gifs=-1), "non-negative"),
        (lambda d: d["score_quantiles"].update(levels=[0, 50, 50, 75, 100]), "strictly"),
        (lambda d: d["score_quantiles"]["values"].update(fear=[0, 0.5, 0.4, 0.8, 1]), "non-decr"),
        (lambda d: d["score_quantiles"]["values"].pop("fear"), "17 emotions"),
    ],
)
def test_bad_schema_2_fields_are_refused(mutate, message):
    doc = dataclasses.replace(make_document(), provenance=DEMO, score_quantiles=quantiles_of({}))
    data = json.loads(doc.to_json())
    mutate(data)
    with pytest.raises(ContractError, match=message):
        ModelDocument.from_dict(data)


# --- percentiles against hand-computed values ------------------------------------------------


def test_percentile_is_exact_at_quantiles_and_linear_between():
    q = quantiles_of({"happiness": [0.0, 0.2, 0.4, 0.8, 1.0]})
    expected = {
        0.0: 0.0,
        0.2: 25.0,
        0.4: 50.0,
        0.8: 75.0,
        1.0: 100.0,
        0.3: 37.5,  # halfway from 0.2 (25 %) to 0.4 (50 %)
        0.5: 56.25,  # a quarter of the way from 0.4 (50 %) to 0.8 (75 %)
        0.9: 87.5,
        -0.1: 0.0,  # below every training GIF
        1.07: 100.0,  # above every training GIF (scores can exceed 1)
    }
    for score, pct in expected.items():
        assert percentile(q, "happiness", score) == pytest.approx(pct, abs=1e-12), score
    assert math.isnan(percentile(q, "happiness", float("nan")))


def test_tied_quantiles_give_the_middle_of_their_levels():
    q = quantiles_of({"fear": [0.0, 0.0, 0.5, 1.0, 1.0]})
    assert percentile(q, "fear", 0.0) == 12.5  # levels 0 and 25 share the value 0
    assert percentile(q, "fear", 1.0) == 87.5  # levels 75 and 100 share the value 1
    assert percentile(q, "fear", 0.25) == 37.5  # between 0 (level 25) and 0.5 (level 50)


def test_quantiles_from_targets_give_back_whole_percentiles():
    # 11 training GIFs at 0, 0.1, ..., 1: numpy's linear percentile p of them is p / 100
    targets = np.tile(np.linspace(0.0, 1.0, 11)[:, None], (1, 17))
    q = compute_quantiles(targets)
    assert q.gifs == 11 and q.levels[37] == 37.0
    assert q.values["anger"][37] == pytest.approx(0.37)
    assert percentile(q, "anger", 0.37) == pytest.approx(37.0)
    assert percentile(q, "anger", 0.375) == pytest.approx(37.5)
    # and exactly the stored level at every stored (distinct) value, for random targets
    q = compute_quantiles(np.random.default_rng(1).normal(size=(500, 17)))
    for i in (0, 1, 10, 50, 93, 100):
        assert percentile(q, "pride", q.values["pride"][i]) == q.levels[i]


# --- top and clip ----------------------------------------------------------------------------


def _scores(**named: float) -> dict[str, float]:
    return {e: named.get(e, 0.1) for e in EMOTIONS}


def test_top_column_in_csv_and_json_forms():
    s = _scores(happiness=0.912, amusement=0.85, surprise=0.4)
    top = top_emotions(s, 3)
    assert top == [
        {"emotion": "happiness", "score": 0.912},
        {"emotion": "amusement", "score": 0.85},
        {"emotion": "surprise", "score": 0.4},
    ]
    assert format_top(top) == "happiness:0.91 amusement:0.85 surprise:0.40"
    assert [t["emotion"] for t in top_emotions(_scores(), 2)] == ["amusement", "anger"]  # ties


def test_decorate_clips_scores_but_takes_percentiles_from_the_raw_ones():
    q = quantiles_of({"happiness": [0.0, 0.2, 0.4, 0.8, 1.0]})
    r = Readable(top=2, percentiles=True, clip=True, quantiles=q)
    row = {"path": "a.gif", "status": "ok", **_scores(happiness=1.07, anger=-0.05, fear=0.3)}
    out = r.decorate(row)
    assert out["happiness"] == 1.0 and out["anger"] == 0.0 and out["fear"] == 0.3
    assert out["happiness_pct"] == 100.0 and out["anger_pct"] == 0.0
    assert out["fear_pct"] == 30.0  # fear has the default quantiles 0, .25, .5, .75, 1
    assert out["top"] == [{"emotion": "happiness", "score": 1.0}, {"emotion": "fear", "score": 0.3}]
    err = r.decorate({"path": "b.gif", "status": "error", "error": "bad"})
    assert err["top"] is None and all(err[c] is None for c in PCT_COLUMNS)
    cols = r.columns(("path", "status", *EMOTIONS))
    assert cols == ("path", "status", "top", *EMOTIONS, *PCT_COLUMNS)
    with pytest.raises(ReadableError, match="re-export"):
        Readable(percentiles=True, quantiles=None)


# --- through the command line and the library -------------------------------------------------


@pytest.fixture
def demo_model(tmp_path):
    q = quantiles_of({e: [0.0, 0.2, 0.4, 0.8, 1.0] for e in EMOTIONS})
    doc = dataclasses.replace(make_document(), provenance=DEMO, score_quantiles=q)
    return build_model(tmp_path / "demo.onnx", metadata=doc.to_json())


def _cli(capsys, *argv):
    from gifsent_infer.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exc.value.code or 0, out, err


def test_score_with_percentiles_top_and_clip_matches_hand_computation(demo_model, tmp_path, capsys):
    from gifsent_infer.reading.gifio import read_gif
    from tests.infer_support import SPEC

    gifs = tmp_path / "gifs"
    gifs.mkdir()
    for i in range(3):
        (gifs / f"g{i}.gif").write_bytes(gif_bytes(i))
    code, out, err = _cli(
        capsys, "score", gifs, "-m", demo_model, "-o", "-", "--percentiles", "--top", "2"
    )
    assert code == 0, err
    assert f"WARNING: {DEMO_WARNING}" in err
    assert "trained on: procedural-demo" in err and "run demo-run-1" in err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == (*INFO_COLUMNS, "top", *EMOTIONS, *PCT_COLUMNS)
    for row in rows:
        frames = read_gif(row["path"], SPEC).frames[None]
        ref = reference_scores(frames)[0]  # the model's function in numpy
        # hand: quantiles 0, .2, .4, .8, 1 at levels 0, 25, 50, 75, 100, linear between
        want_pct = np.interp(ref, [0.0, 0.2, 0.4, 0.8, 1.0], [0, 25, 50, 75, 100])
        got_pct = np.array([float(row[c]) for c in PCT_COLUMNS])
        assert np.allclose(got_pct, want_pct, atol=0.006)  # written with 2 decimals
        best = np.argsort(-ref, kind="stable")[:2]
        want_top = " ".join(f"{EMOTIONS[k]}:{ref[k]:.2f}" for k in best)
        assert row["top"] == want_top


def test_percentiles_need_a_schema_2_model(tmp_path, capsys):
    old = build_model(tmp_path / "old.onnx")  # no quantiles in its document
    (tmp_path / "a.gif").write_bytes(gif_bytes(0))
    code, _, err = _cli(capsys, "score", tmp_path / "a.gif", "-m", old, "--percentiles")
    assert code == 2 and "re-export" in err


def test_clip_keeps_scores_in_unit_range(tmp_path, capsys):
    # a target scale whose scores exceed 1 is not needed: clip is checked on decorate above;
    # here: --clip with JSON output gives scores in [0, 1] and a JSON list for `top`
    model = build_model(tmp_path / "m.onnx")
    (tmp_path / "a.gif").write_bytes(gif_bytes(1))
    code, out, err = _cli(capsys, "score", tmp_path / "a.gif", "-m", model, "-f", "json", "--clip")
    assert code == 0, err
    (row,) = json.loads(out)
    assert all(0.0 <= row[e] <= 1.0 for e in EMOTIONS)
    assert [t["emotion"] for t in row["top"]] == [
        e for e, _ in sorted(((e, row[e]) for e in EMOTIONS), key=lambda kv: -kv[1])[:3]
    ]
    assert "trained on: not recorded" in err and "WARNING" not in err


def test_info_shows_provenance_scale_and_the_demo_warning(demo_model, capsys):
    code, out, err = _cli(capsys, "info", demo_model)
    assert code == 0
    flat = " ".join(out.split())
    assert "procedural-demo" in flat and "81,600 comparisons" in flat
    assert "outside [0, 1]" in flat and "5 quantiles per emotion" in flat
    assert DEMO_WARNING in err


def test_library_exposes_provenance_and_percentiles(demo_model, tmp_path):
    from gifsent_infer import Scorer

    scorer = Scorer(demo_model, device="cpu")
    assert scorer.is_demo and scorer.provenance == DEMO
    (tmp_path / "a.gif").write_bytes(gif_bytes(2))
    result = scorer.score(tmp_path / "a.gif")
    pct = scorer.percentiles(result)
    want = np.interp(result.array, [0.0, 0.2, 0.4, 0.8, 1.0], [0, 25, 50, 75, 100])
    assert np.allclose([pct[e] for e in EMOTIONS], want, atol=1e-5)


def test_library_on_a_model_without_schema_2_fields(tmp_path):
    from gifsent_infer import Scorer

    data = json.loads(make_document().to_json())
    data["schema_version"] = 1  # an export from before provenance and quantiles
    scorer = Scorer(build_model(tmp_path / "v1.onnx", metadata=json.dumps(data)), device="cpu")
    assert scorer.document.schema_version == 1
    assert scorer.provenance is None and not scorer.is_demo
    (tmp_path / "a.gif").write_bytes(gif_bytes(3))
    result = scorer.score(tmp_path / "a.gif")
    assert result.ok
    with pytest.raises(ReadableError, match="re-export"):
        scorer.percentiles(result)
