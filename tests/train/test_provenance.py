"""Export records what a model was trained on (dataset kind, counts, cut-off, run) and its training targets' quantiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from support import tiny_checkpoint as make_checkpoint

from gifsent_export.api import export_checkpoint
from gifsent_export.frames import generate_gifs
from gifsent_infer.contract import DEMO_WARNING, EMOTIONS, SCHEMA_VERSION, EncoderInfo
from gifsent_infer.running.readable import percentile
from gifsent_infer.running.session import read_document
from gifsent_train.bradley_terry import BTScores, minmax_target, write_scores_csv
from gifsent_train.provenance import dataset_kind, run_provenance
from gifsent_train.run import RunLayout

N_GIFS = 12
PER_GIF = 10  # comparisons each GIF took part in, per emotion


def make_run(root: Path, data_kind: str) -> RunLayout:
    """A run folder as the pipeline leaves it, over a data folder of the given kind."""
    data = root / "data"
    gifs = data / "gifs"
    paths = generate_gifs(gifs, N_GIFS, seed=5)
    ids = [p.stem for p in paths]
    votes_name = {
        "demo": "votes.csv.gz",
        "gifgif": "gifgif-dataset-20150121-v1.csv.gz",
        "custom": "my-votes.csv",
    }[data_kind]
    (data / votes_name).write_bytes(b"")
    if data_kind == "demo":
        (data / "demo.json").write_text(json.dumps({"format": "gifsent-demo-data", "seed": 3}))
    run = RunLayout(root / "runs" / f"{data_kind}-run").ensure()
    run.config.write_text(json.dumps({"data_dir": str(data)}))
    (run.root / "data.json").write_text(
        json.dumps({"votes": str(data / votes_name), "gifs": str(gifs)})
    )
    # strengths 0..11 for every emotion: scores k / 11 (min-max over all GIFs)
    strength = np.tile(np.arange(N_GIFS, dtype=np.float64)[:, None], (1, 17))
    write_scores_csv(
        run.scores,
        BTScores(
            ids=ids,
            strength=strength,
            stderr=np.full((N_GIFS, 17), 0.1),
            comparisons=np.full((N_GIFS, 17), PER_GIF, np.int64),
            target=minmax_target(strength),
        ),
    )
    run.splits.write_text(json.dumps({"train": ids[6:], "dev": ids[3:6], "test": ids[:3]}))
    make_checkpoint(run.checkpoint("rnn"), "rnn")
    return run


def test_dataset_kind_from_what_sits_beside_the_votes(tmp_path):
    for kind in ("demo", "gifgif", "custom"):
        run = make_run(tmp_path / kind, kind)
        votes = Path(json.loads((run.root / "data.json").read_text())["votes"])
        got, name, cutoff = dataset_kind(votes)
        assert got == {"demo": "procedural-demo"}.get(kind, kind)
        assert cutoff == ("2015-01-21" if kind == "gifgif" else "")
        if kind == "gifgif":
            assert "GIFGIF" in name
    p = run_provenance(run, EncoderInfo(name="x", feature_dim=1, weights="random"))
    assert p.dataset_kind == "custom" and p.dataset_name == "my-votes.csv"
    assert p.encoder_weights.startswith("random init")


def test_export_writes_provenance_and_training_quantiles(tmp_path, capsys):
    run = make_run(tmp_path, "demo")
    out = tmp_path / "m.onnx"
    export_checkpoint(run.checkpoint("rnn"), out, parity_count=2)
    doc = read_document(out)
    assert doc.schema_version == SCHEMA_VERSION and doc.is_demo
    p = doc.provenance
    assert p.dataset_kind == "procedural-demo" and "seed 3" in p.dataset_name
    assert (p.gifs, p.train_gifs, p.run_id) == (N_GIFS, 6, "demo-run")
    assert p.comparisons == N_GIFS * PER_GIF * 17 // 2  # each comparison has two GIFs
    assert p.encoder_weights.startswith("random init") and p.vote_cutoff == ""
    q = doc.score_quantiles
    # training GIFs score 6/11 .. 11/11; numpy's linear percentiles of them:
    train = np.arange(6, 12) / 11
    assert q.gifs == 6
    for level in (0, 10, 50, 90, 100):
        assert q.values["happiness"][level] == pytest.approx(np.percentile(train, level), abs=1e-6)
    assert percentile(q, "fear", 6 / 11) == 0.0 and percentile(q, "fear", 1.0) == 100.0
    assert percentile(q, "fear", 8.5 / 11) == pytest.approx(50.0, abs=1e-3)
    assert set(q.values) == set(EMOTIONS)

    from gifsent_infer.cli import main

    with pytest.raises(SystemExit):
        main(["info", str(out)])
    stdout, stderr = capsys.readouterr()
    assert "demo-run" in stdout and DEMO_WARNING in stderr
