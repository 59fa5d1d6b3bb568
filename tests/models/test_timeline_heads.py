"""Named outputs of the heads and the fused scorer: the timeline (segment_scores) known by
construction, K-head ensembles equal to K separate heads, and both exported by name to ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import TINY_HEADS

from gifsent_infer.contract import NUM_EMOTIONS
from gifsent_models.heads import (
    EnsembleHead,
    create_head,
    head_outputs,
    readout_input,
    stored_head_config,
)
from gifsent_models.registry import create_encoder
from gifsent_models.scorer import GifScorer, NamedOutputs

NAMES = ("scores", "segment_scores")


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def _features(b=3, s=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, s, d, generator=g)


def test_linear_timeline_is_the_map_of_each_segment_known_by_construction():
    head = create_head("linear", 4).eval()
    w = torch.zeros(NUM_EMOTIONS, 4)
    w[0, 0], w[1, 1] = 1.0, 2.0  # amusement reads feature 0; anger twice feature 1
    head.set_affine(w, torch.zeros(NUM_EMOTIONS))
    x = torch.zeros(1, 4, 4)
    x[0, :, 0] = torch.tensor([0.1, 0.9, 0.3, 0.2])  # amusement peaks in segment 1
    x[0, :, 1] = torch.tensor([0.0, 0.0, 0.0, 0.5])  # anger only in the last segment
    out = head_outputs(head, x, NAMES)
    seg = out["segment_scores"][0]
    np.testing.assert_allclose(seg[:, 0], [0.1, 0.9, 0.3, 0.2], atol=1e-6)
    np.testing.assert_allclose(seg[:, 1], [0.0, 0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(out["scores"], seg.mean(0, keepdim=True), atol=1e-6)


def test_maxpool_shared_timeline_is_the_head_on_each_segment_alone():
    head = create_head("maxpool", 8, {**TINY_HEADS["maxpool"], "timeline": "shared"}).eval()
    assert head.readout is None
    x = _features()
    seg = head_outputs(head, x, NAMES)["segment_scores"]
    assert seg.shape == (3, 5, NUM_EMOTIONS)
    for s in range(5):  # a GIF made of segment s alone scores what the timeline says
        alone = head(x[:, s : s + 1])
        np.testing.assert_allclose(seg[:, s], alone.detach(), atol=1e-5)


def test_maxpool_mil_timeline_is_its_readout_on_each_segment_and_scores_ignore_it():
    torch.manual_seed(0)
    shared = create_head("maxpool", 8, {**TINY_HEADS["maxpool"], "timeline": "shared"}).eval()
    torch.manual_seed(0)
    head = create_head("maxpool", 8, TINY_HEADS["maxpool"]).eval()  # new heads: "mil"
    assert head.config.timeline == "mil" and head.readout is not None
    # the same seed builds the same score MLP in both kinds (the readout is built after it)
    assert all(
        torch.equal(a, b)
        for a, b in zip(shared.mlp.parameters(), head.mlp.parameters(), strict=True)
    )
    x = _features()
    out = head_outputs(head, x, NAMES)
    np.testing.assert_allclose(out["segment_scores"], head.readout(readout_input(x)), atol=1e-6)
    np.testing.assert_allclose(out["scores"], shared(x), atol=1e-6)
    with torch.no_grad():  # the scores never read the readout
        for p in head.readout.parameters():
            p.add_(1.0)
    np.testing.assert_allclose(head(x), shared(x), atol=1e-6)
    assert not torch.allclose(head.segment_scores(x), shared.segment_scores(x), atol=1e-3)


def test_maxpool_timeline_kind_is_checked():
    with pytest.raises(ValueError, match="timeline must be one of"):
        create_head("maxpool", 8, {"timeline": "soft"})


def test_rnn_timeline_is_the_running_estimate_in_order():
    head = create_head("rnn", 8, {**TINY_HEADS["rnn"], "timeline": "state"}).eval()
    x = _features()
    out = head_outputs(head, x, NAMES)
    seg = out["segment_scores"]
    for s in range(5):  # after segment s: the head on the first s + 1 segments
        np.testing.assert_allclose(seg[:, s], head(x[:, : s + 1]).detach(), atol=1e-5)
    np.testing.assert_allclose(out["scores"], head(x).detach(), atol=1e-6)
    reversed_seg = head_outputs(head, x.flip(1), NAMES)["segment_scores"]
    assert not torch.allclose(reversed_seg, seg.flip(1), atol=1e-4)  # order matters


def test_rnn_mil_timeline_is_a_readout_the_scores_never_read():
    """New LSTM heads get MaxPool's kind of readout for their timeline; the LSTM and its
    output layer are built first (the same seed: the same weights as a "state" head), and
    the scores never read the readout. A stored config without the field is "state"."""
    torch.manual_seed(0)
    state = create_head("rnn", 8, {**TINY_HEADS["rnn"], "timeline": "state"}).eval()
    torch.manual_seed(0)
    head = create_head("rnn", 8, TINY_HEADS["rnn"]).eval()
    assert head.config.timeline == "mil" and head.readout is not None and state.readout is None
    assert stored_head_config("rnn", {"hidden": 4}).timeline == "state"
    x = _features()
    np.testing.assert_allclose(head(x).detach(), state(x).detach(), atol=1e-6)
    out = head_outputs(head, x, NAMES)
    np.testing.assert_allclose(out["segment_scores"], head.readout(readout_input(x)), atol=1e-6)
    np.testing.assert_allclose(out["scores"], state(x).detach(), atol=1e-6)
    with torch.no_grad():
        for p in head.readout.parameters():
            p.add_(1.0)
    np.testing.assert_allclose(head(x).detach(), state(x).detach(), atol=1e-6)
    # any number of segments: the readout reads each segment and the GIF's mean segment
    assert head.segment_scores(_features()[:, :3]).shape[1] == 3


@pytest.mark.parametrize("name", ["maxpool", "rnn", "linear"])
def test_k_head_ensemble_equals_k_separate_heads(name):
    torch.manual_seed(0)
    heads = [create_head(name, 8, TINY_HEADS[name]).eval() for _ in range(3)]
    x = _features()
    ens = EnsembleHead(heads).eval()
    out = head_outputs(ens, x, ("scores", "segment_scores", "scores_std"))
    sep = torch.stack([h(x) for h in heads])
    sep_seg = torch.stack([head_outputs(h, x, NAMES)["segment_scores"] for h in heads])
    np.testing.assert_allclose(out["scores"], sep.mean(0).detach(), atol=1e-5)
    np.testing.assert_allclose(out["scores_std"], sep.std(0, unbiased=False).detach(), atol=1e-5)
    np.testing.assert_allclose(out["segment_scores"], sep_seg.mean(0).detach(), atol=1e-5)
    with pytest.raises(ValueError, match="scores_std"):
        head_outputs(heads[0], x, ("scores_std",))
    if name == "maxpool":  # each head's own readout, fused
        np.testing.assert_allclose(
            out["segment_scores"],
            torch.stack([h.readout(readout_input(x)) for h in heads]).mean(0),
            atol=1e-5,
        )


def test_an_ensemble_does_not_mix_timeline_kinds():
    a = create_head("maxpool", 8, TINY_HEADS["maxpool"])
    b = create_head("maxpool", 8, {**TINY_HEADS["maxpool"], "timeline": "shared"})
    with pytest.raises(ValueError, match="timeline kind"):
        EnsembleHead([a, b])


def test_named_outputs_export_by_name_and_match_pytorch(tmp_path):
    from gifsent_export.parity import open_graph
    from gifsent_models.onnx import encoder_example, export_proto

    torch.manual_seed(1)
    enc = create_encoder("resnext3d-tiny", random_init=True).eval()
    heads = [create_head("rnn", enc.feature_dim, TINY_HEADS["rnn"]).eval() for _ in range(2)]
    scorer = GifScorer(enc, EnsembleHead(heads)).eval()
    names = ("scores", "scores_std", "segment_scores")
    example = encoder_example(enc, batch=2)
    model = export_proto(NamedOutputs(scorer, names), example=example, output_names=names)
    engine = open_graph(model, backend="onnxruntime")
    with torch.no_grad():
        want = scorer.named_outputs(example, names)
        singles = [GifScorer(enc, h).named_outputs(example, NAMES) for h in heads]
    for n in names:
        got = engine.run(example.numpy(), n)
        np.testing.assert_allclose(got, want[n].numpy(), atol=1e-5)
    # the K-head graph equals K separate single-head graphs
    mean = torch.stack([s["scores"] for s in singles]).mean(0).numpy()
    np.testing.assert_allclose(engine.run(example.numpy(), "scores"), mean, atol=1e-5)
    assert [o.name for o in model.graph.output] == list(names)
    with pytest.raises(ValueError, match="start with"):
        NamedOutputs(scorer, ("segment_scores",))
    with pytest.raises(ValueError, match="scores_std"):
        NamedOutputs(GifScorer(enc, heads[0]), ("scores", "scores_std"))


@pytest.mark.parametrize("k", [1, 2])
def test_maxpool_mil_readout_exports_by_name_and_matches_pytorch(k):
    """The mil readout is in the fused graph's segment_scores (one head, or K heads fused each
    with its own readout), equal to PyTorch's to 1e-5 and not the score MLP's timeline."""
    from gifsent_export.parity import open_graph
    from gifsent_models.onnx import encoder_example, export_proto

    torch.manual_seed(2)
    enc = create_encoder("resnext3d-tiny", random_init=True).eval()
    heads = [
        create_head("maxpool", enc.feature_dim, TINY_HEADS["maxpool"]).eval() for _ in range(k)
    ]
    for h in heads:  # readouts that differ clearly from the score MLPs
        h.readout[-1].bias.add_(1.0)
    head = heads[0] if k == 1 else EnsembleHead(heads).eval()
    scorer = GifScorer(enc, head).eval()
    names = ("scores", "segment_scores", *(("scores_std",) if k > 1 else ()))
    example = encoder_example(enc, batch=2)
    model = export_proto(NamedOutputs(scorer, names), example=example, output_names=names)
    engine = open_graph(model, backend="onnxruntime")
    want = scorer.named_outputs(example, names)
    feats = enc(example)
    readouts = torch.stack([h.readout(readout_input(feats)) for h in heads]).mean(0)
    np.testing.assert_allclose(want["segment_scores"], readouts, atol=1e-6)
    for n in names:
        np.testing.assert_allclose(engine.run(example.numpy(), n), want[n].numpy(), atol=1e-5)
    shared = torch.stack([h.mlp(feats) for h in heads]).mean(0)
    assert not np.allclose(engine.run(example.numpy(), "segment_scores"), shared, atol=1e-3)


def _as_written_before_the_timeline_field(src, dst) -> None:
    """A checkpoint the way gifsent wrote MaxPool before `timeline` existed: no such key in the
    head config or in its contract document, only the score MLP's weights."""
    import io

    ckpt = torch.load(io.BytesIO(src.read_bytes()), map_location="cpu", weights_only=True)
    ckpt["head"]["config"].pop("timeline")
    ckpt["document"]["head"]["config"].pop("timeline")
    assert not any(k.startswith("readout.") for k in ckpt["head"]["state_dict"])
    torch.save(ckpt, dst)


def test_an_old_maxpool_checkpoint_loads_with_its_shared_timeline_unchanged(tmp_path):
    from support import model_document

    from gifsent_models.checkpoint import load_checkpoint, save_checkpoint
    from gifsent_models.heads import config_dict, head_config

    torch.manual_seed(3)
    enc = create_encoder("resnext3d-tiny", random_init=True)
    cfg = head_config("maxpool", {**TINY_HEADS["maxpool"], "timeline": "shared"})
    head = create_head("maxpool", enc.feature_dim, cfg).eval()
    doc = model_document(enc, "maxpool", config_dict(cfg))
    save_checkpoint(tmp_path / "new.pt", encoder=enc, head_name="maxpool", head_config=cfg,
                    head=head, document=doc)  # fmt: skip
    _as_written_before_the_timeline_field(tmp_path / "new.pt", tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt")
    assert old.head_config.timeline == "shared" and old.head.readout is None
    x = _features(d=enc.feature_dim)
    want = head.mlp(x)  # what the timeline was before: the score MLP on each segment
    np.testing.assert_array_equal(head_outputs(old.head, x, NAMES)["segment_scores"], want)
    np.testing.assert_array_equal(old.head(x), head(x))
    # a new default checkpoint records its kind, and its timeline is the readout
    mil_cfg = head_config("maxpool", TINY_HEADS["maxpool"])
    mil = create_head("maxpool", enc.feature_dim, mil_cfg).eval()
    save_checkpoint(tmp_path / "mil.pt", encoder=enc, head_name="maxpool", head_config=mil_cfg,
                    head=mil, document=model_document(enc, "maxpool", TINY_HEADS["maxpool"]))  # fmt: skip
    back = load_checkpoint(tmp_path / "mil.pt")
    assert back.head_config.timeline == "mil" and back.document.head.config["timeline"] == "mil"
    np.testing.assert_array_equal(back.head.segment_scores(x), mil.readout(readout_input(x)))
