"""Export of the timeline and of a K-head ensemble: named outputs, the contract's `outputs` and
`intervals`, the K-head graph equal to K separate single-head graphs, and --timeline and
--intervals through the runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from support import TINY_HEADS, tiny_checkpoint  # noqa: E402

from gifsent_export.api import ExportError, export_checkpoint  # noqa: E402
from gifsent_export.frames import generate_gifs  # noqa: E402
from gifsent_infer.contract import EMOTIONS  # noqa: E402
from gifsent_infer.reading.gifio import read_gif  # noqa: E402
from gifsent_infer.running.engine import open_engine  # noqa: E402
from gifsent_infer.running.scorer import Scorer  # noqa: E402
from gifsent_models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from gifsent_models.heads import create_head, head_config, readout_input  # noqa: E402
from gifsent_train.conformal import calibrate  # noqa: E402
from gifsent_train.run import RunLayout  # noqa: E402

K = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder holding best-rnn.pt, two seed refits on the same encoder, and the
    conformal calibration of K = 1 and K = 3 in metrics.json."""
    root = tmp_path_factory.mktemp("run")
    lay = RunLayout(root / "r1").ensure()
    tiny_checkpoint(lay.checkpoint("rnn"), "rnn", seed=0)
    best = load_checkpoint(lay.checkpoint("rnn"))
    cfg = head_config("rnn", TINY_HEADS["rnn"])
    for r in range(1, K):
        torch.manual_seed(100 + r)
        head = create_head("rnn", best.encoder.feature_dim, cfg)
        save_checkpoint(
            lay.seed_checkpoint("rnn", r),
            encoder=best.encoder,
            head_name="rnn",
            head_config=cfg,
            head=head,
            document=best.document,
        )
    rng = np.random.default_rng(0)
    y, pred = rng.random((40, 17)), rng.random((40, 17))
    std = rng.uniform(0.05, 0.2, (40, 17))
    metrics = {
        "intervals": {
            "rnn": {
                "k1": {"calibration": calibrate(y, pred).to_dict()},
                f"k{K}": {"calibration": calibrate(y, pred, std, heads=K).to_dict()},
            }
        }
    }
    lay.metrics.write_text(json.dumps(metrics))
    gifs = generate_gifs(root / "gifs", 6, seed=3)
    return {"lay": lay, "gifs": gifs, "root": root}


def test_single_head_graph_has_the_timeline(run):
    out = run["root"] / "single.onnx"
    lay = run["lay"]
    res = export_checkpoint(lay.checkpoint("rnn"), out, parity_gifs=run["gifs"], run=lay)
    doc = res.document
    assert doc.schema_version == 3 and set(doc.outputs) == {"scores", "segment_scores", "features"}
    assert "timeline readout beside the LSTM" in doc.outputs["segment_scores"]  # new heads: mil
    assert doc.intervals is not None and doc.intervals.heads == 1
    names = [o.name for o in open_engine(out, backend="onnxruntime", device="cpu").outputs]
    assert names == ["scores", "segment_scores", "features"]


@pytest.mark.slow  # four exports: about a minute on 2 busy cores
def test_k_head_graph_equals_k_separate_heads(run, tmp_path):
    lay = run["lay"]
    ens = tmp_path / "ens.onnx"
    res = export_checkpoint(
        lay.checkpoint("rnn"), ens, parity_gifs=run["gifs"], run=lay, ensemble=True
    )
    doc = res.document
    assert set(doc.outputs) == {"scores", "segment_scores", "scores_std", "features"}
    assert doc.intervals.heads == K and "mean of 3 rnn heads" in doc.outputs["scores"]
    singles = []
    for i, ckpt in enumerate(lay.seed_checkpoints("rnn")):
        p = tmp_path / f"s{i}.onnx"
        export_checkpoint(ckpt, p, parity_gifs=run["gifs"], run=lay)
        singles.append(p)
    spec = doc.sampling
    frames = np.stack([read_gif(g, spec).frames for g in run["gifs"]])
    engine = open_engine(ens, backend="onnxruntime", device="cpu")
    got = {n: engine.run(frames, n) for n in ("scores", "scores_std", "segment_scores")}
    sep = [open_engine(p, backend="onnxruntime", device="cpu") for p in singles]
    scores = np.stack([e.run(frames, "scores") for e in sep])
    seg = np.stack([e.run(frames, "segment_scores") for e in sep])
    np.testing.assert_allclose(got["scores"], scores.mean(0), atol=1e-5)
    np.testing.assert_allclose(got["scores_std"], scores.std(0), atol=1e-5)
    np.testing.assert_allclose(got["segment_scores"], seg.mean(0), atol=1e-5)
    # and through the runtime: intervals scaled by the spread, the std columns
    r = Scorer(ens, device="cpu", threads=1, intervals=0.9, timeline=True).score(run["gifs"][0])
    assert r.ok and set(r.timeline) == {"start_s", *EMOTIONS}
    assert all(r.intervals[e + "_lo"] <= r.scores[e] <= r.intervals[e + "_hi"] for e in EMOTIONS)
    assert r.intervals["amusement_std"] >= 0


def test_ensemble_without_seed_refits_says_so(tmp_path):
    ckpt = tmp_path / "lone.pt"
    tiny_checkpoint(ckpt, "maxpool")
    gifs = generate_gifs(tmp_path / "g", 2, seed=1)
    with pytest.raises(ExportError, match="seed refits"):
        export_checkpoint(ckpt, tmp_path / "x.onnx", parity_gifs=gifs, ensemble=True)


def test_maxpool_mil_readout_is_exported_and_described(tmp_path):
    """A new MaxPool checkpoint (timeline "mil"): the graph's segment_scores is its readout,
    equal to PyTorch's to 1e-5, and the contract says so in a user's words."""
    ckpt = tmp_path / "mp.pt"
    tiny_checkpoint(ckpt, "maxpool")
    loaded = load_checkpoint(ckpt)
    assert loaded.head.readout is not None
    gifs = generate_gifs(tmp_path / "g", 3, seed=2)
    out = tmp_path / "mp.onnx"
    doc = export_checkpoint(ckpt, out, parity_gifs=gifs).document
    assert doc.head.config["timeline"] == "mil"
    assert "timeline readout" in doc.outputs["segment_scores"]
    frames = np.stack([read_gif(g, doc.sampling).frames for g in gifs])
    got = open_engine(out, backend="onnxruntime", device="cpu").run(frames, "segment_scores")
    with torch.no_grad():
        feats = loaded.encoder(torch.from_numpy(frames))
        want = loaded.head.readout(readout_input(feats)).numpy()
        shared = loaded.head.mlp(feats).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got, shared, atol=1e-3)
