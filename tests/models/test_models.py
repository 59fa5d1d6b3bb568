"""gifsent_models core: registry, tiny encoders, heads, the fused scorer, checkpoints."""

from __future__ import annotations

import dataclasses
import urllib.error
from pathlib import Path

import pytest
import torch
from support import model_document

from gifsent_infer.contract import (
    HeadInfo,
    ModelDocument,
    Normalization,
    SamplingSpec,
    TargetScale,
)
from gifsent_models import (
    CheckpointError,
    GifScorer,
    HeadConfigError,
    MaxPoolConfig,
    RNNConfig,
    UnknownEncoderError,
    WeightsUnavailableError,
    create_encoder,
    create_head,
    head_config,
    list_encoders,
    load_checkpoint,
    save_checkpoint,
)

TINY_ENCODERS = ("resnext3d-tiny", "efficientnet-lite0-tiny")


def frames_for(encoder, batch: int = 2, seed: int = 0) -> torch.Tensor:
    s = encoder.spec
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, s.num_frames, s.crop, s.crop, 3), generator=g).to(
        torch.uint8
    )


# -- registry ---------------------------------------------------------------------------------


def test_registry_lists_the_required_encoders():
    names = set(list_encoders())
    required = {"resnext101-kinetics", "resnext3d-tiny", "r3d_18", "mc3_18", "r2plus1d_18"}
    assert required | {"efficientnet-lite0", "efficientnet-lite0-tiny"} <= names


def test_unknown_encoder_names_the_available_ones():
    with pytest.raises(UnknownEncoderError, match="resnext3d-tiny"):
        create_encoder("resnext-9000")


def test_resnext101_refuses_random_weights_unless_asked():
    with pytest.raises(WeightsUnavailableError, match=r"resnext-101-kinetics\.pth.*random_init"):
        create_encoder("resnext101-kinetics")


def test_torchvision_weights_unavailable_offline_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    expected = tmp_path / "hub" / "checkpoints" / "r3d_18-b3b3357e.pth"
    with pytest.raises(WeightsUnavailableError) as info:
        create_encoder("r3d_18")
    message = str(info.value)
    assert "download.pytorch.org" in message and str(expected) in message
    assert "random_init" in message


def test_torchvision_weights_from_a_populated_cache(tmp_path, monkeypatch):
    """No network: a file put into torch's hub cache by hand is found and loaded strictly."""
    from torchvision.models.video import r3d_18

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(
        torch.hub,
        "load_state_dict_from_url",
        lambda *a, **k: pytest.fail("must not download when the file is cached"),
    )
    torch.manual_seed(1)
    reference = r3d_18(weights=None)
    cached = tmp_path / "hub" / "checkpoints" / "r3d_18-b3b3357e.pth"
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    encoder = create_encoder("r3d_18")
    assert encoder.weights_path == str(cached.resolve())
    assert encoder.info().weights == "R3D_18_Weights.KINETICS400_V1"
    assert len(encoder.weights_sha256) == 64 and not encoder.random_init
    assert torch.equal(encoder.net.layer4[1].conv2[0].weight, reference.layer4[1].conv2[0].weight)
    assert isinstance(encoder.net.fc, torch.nn.Identity) and encoder.feature_dim == 512
    # Kinetics normalisation on 0..1 pixels, expressed on 0..255 pixels.
    assert encoder.normalization.mean[0] == pytest.approx(0.43216 * 255)


def test_spec_override_keeps_network_fixed_fields():
    enc = create_encoder("resnext3d-tiny")
    spec = SamplingSpec(segments=5, frames_per_segment=8, fps=10.0, size=40, crop=32)
    assert create_encoder("resnext3d-tiny", spec=spec).spec == spec
    with pytest.raises(ValueError, match="frames_per_segment and crop are fixed"):
        create_encoder(
            "resnext3d-tiny",
            spec=SamplingSpec(segments=2, frames_per_segment=4, fps=10.0, size=32, crop=32),
        )
    assert enc.spec.segments == 2


# -- encoders -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TINY_ENCODERS)
def test_tiny_encoder_shapes_and_info(name):
    enc = create_encoder(name)
    x = frames_for(enc, batch=3)
    with torch.no_grad():
        y = enc(x)
    assert y.shape == (3, enc.spec.segments, enc.feature_dim) and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    info = enc.info()
    assert info.name == name and info.feature_dim == enc.feature_dim
    assert info.weights == "random" and "random initialisation" in info.description


@pytest.mark.parametrize("name", TINY_ENCODERS)
def test_preprocess_normalises_and_changes_layout(name):
    enc = create_encoder(name)
    s = enc.spec
    x = frames_for(enc, batch=2)
    got = enc.preprocess(x)
    mean = torch.tensor(enc.normalization.mean)
    std = torch.tensor(enc.normalization.std)
    ref = (x.double() * enc.normalization.scale - mean.double()) / std.double()
    # ref (B, S*T, H, W, C); segment s of batch b is row b*S + s of the output.
    ref = ref.reshape(2 * s.segments, s.frames_per_segment, s.crop, s.crop, 3)
    if enc.layout == "ncthw":
        assert got.shape == (2 * s.segments, 3, s.frames_per_segment, s.crop, s.crop)
        ref = ref.permute(0, 4, 1, 2, 3)
    else:
        assert got.shape == (2 * s.segments, 3, s.crop, s.crop)
        ref = ref[:, 0].permute(0, 3, 1, 2)
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=1e-4)
    # A pixel at (b=1, segment 1, frame 0, y=3, x=5, green) lands where it should.
    t = s.frames_per_segment
    idx = (1 * s.segments + 1, 1, 0, 3, 5) if enc.layout == "ncthw" else (s.segments + 1, 1, 3, 5)
    expected = (float(x[1, t, 3, 5, 1]) - enc.normalization.mean[1]) / enc.normalization.std[1]
    assert float(got[idx]) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("name", TINY_ENCODERS)
def test_tiny_encoder_is_deterministic_and_batch_independent(name):
    enc = create_encoder(name)
    x = frames_for(enc, batch=3)
    with torch.no_grad():
        a, b = enc(x), enc(x)
        single = enc(x[1:2])
    assert torch.equal(a, b)
    torch.testing.assert_close(single[0], a[1], rtol=1e-5, atol=1e-5)
    # Segments are encoded independently: changing segment 0 leaves segment 1 alone.
    x2 = x.clone()
    x2[:, : enc.spec.frames_per_segment] = 0
    with torch.no_grad():
        c = enc(x2)
    torch.testing.assert_close(c[:, 1:], a[:, 1:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(c[:, 0], a[:, 0])


@pytest.mark.parametrize("name", TINY_ENCODERS)
def test_tiny_encoder_gradients_reach_every_parameter(name):
    enc = create_encoder(name).train()
    enc(frames_for(enc)).pow(2).mean().backward()
    used = {n: p for n, p in enc.named_parameters() if not n.startswith("_fc.")}
    missing = [n for n, p in used.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert any(p.grad.abs().sum() > 0 for p in used.values())


@pytest.mark.parametrize("name", TINY_ENCODERS)
def test_channels_last_changes_nothing_numerically(name):
    enc = create_encoder(name)
    x = frames_for(enc)
    with torch.no_grad():
        ref = enc(x)
        got = enc.set_channels_last(True)(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", TINY_ENCODERS)
def test_half_precision_encoder_computes_in_half(name):
    """After .half() (for an fp16 export) preprocessing follows the module's dtype."""
    enc = create_encoder(name)
    x = frames_for(enc)
    with torch.no_grad():
        ref = enc(x)
        got = enc.half()(x)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), ref, rtol=1e-2, atol=1e-2 * float(ref.abs().max()))


def test_encoder_rejects_wrong_frame_shapes_clearly():
    enc = create_encoder("resnext3d-tiny")
    bad = torch.zeros(1, 15, 32, 32, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"expects frames \[batch, 16, 32, 32, 3\]"):
        enc(bad)


# -- heads --------------------------------------------------------------------------------------


def test_head_configs_defaults_and_the_studys_best_rnn():
    assert head_config("maxpool", None) == MaxPoolConfig(num_layers=2, hidden=256, dropout=0.1)
    assert head_config("rnn", {}) == RNNConfig(num_layers=2, hidden=64, dropout=0.1705)
    assert head_config("rnn", {"hidden": 32}).hidden == 32
    cfg = MaxPoolConfig(num_layers=3)
    assert head_config("maxpool", cfg) is cfg


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("maxpool", {"layers": 3}, r"unknown config key\(s\) \['layers'\]"),
        ("maxpool", {"num_layers": 1}, r"num_layers must be an integer in \[2, 8\], got 1"),
        ("maxpool", {"num_layers": 9}, r"num_layers must be an integer in \[2, 8\]"),
        ("maxpool", {"num_layers": 2.0}, "num_layers must be an integer"),
        ("maxpool", {"hidden": 0}, "hidden must be an integer"),
        ("rnn", {"dropout": 1.0}, r"dropout must be a number in \[0.0, 0.95\]"),
        ("rnn", {"dropout": float("nan")}, "dropout must be a number"),
        ("rnn", {"num_layers": True}, "num_layers must be an integer"),
        ("rnn", [1, 2], "config must be a dict or RNNConfig"),
        ("lstm", None, r"unknown head 'lstm'; available: maxpool, rnn"),
    ],
)
def test_head_config_rejects_bad_input(name, data, match):
    with pytest.raises(HeadConfigError, match=match):
        head_config(name, data)


def test_create_head_rejects_bad_in_dim():
    with pytest.raises(HeadConfigError, match="in_dim"):
        create_head("rnn", 0)


@pytest.mark.parametrize("name", ["maxpool", "rnn"])
@pytest.mark.parametrize("layers", [2, 4])
def test_head_shapes_gradients_and_determinism(name, layers):
    torch.manual_seed(0)
    head = create_head(name, 24, {"num_layers": layers, "hidden": 16, "dropout": 0.5})
    x = torch.randn(5, 3, 24, requires_grad=True)
    y = head(x)
    assert y.shape == (5, 17) and y.dtype == torch.float32
    y.sum().backward()
    # the score path's parameters: all of them but MaxPool's timeline readout, which the scores
    # never read (it trains on its own loss)
    ro = getattr(head, "readout", None)  # (MaxPool's and the LSTM's "mil" timeline)
    readout = set(map(id, ro.parameters())) if ro is not None else set()
    score_params = [p for p in head.parameters() if id(p) not in readout]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in score_params)
    assert all(p.grad is None for p in head.parameters() if id(p) in readout)
    assert x.grad.abs().sum() > 0
    head.eval()
    with torch.no_grad():
        assert torch.equal(head(x), head(x))
        single = head(x[2:3])
    torch.testing.assert_close(single[0], head(x)[2], rtol=1e-5, atol=1e-6)
    head.train()
    with torch.no_grad():
        assert not torch.equal(head(x), head(x))  # dropout is live in training mode


def test_maxpool_head_structure_and_segment_order_invariance():
    head = create_head("maxpool", 8, {"num_layers": 5, "hidden": 12}).eval()
    linears = [m for m in head.mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (8, 12),
        (12, 12),
        (12, 12),
        (12, 12),
        (12, 17),
    ]
    x = torch.randn(2, 4, 8)
    with torch.no_grad():
        torch.testing.assert_close(head(x.flip(1)), head(x))
        # Only the per-feature maximum over segments matters.
        torch.testing.assert_close(head(x.amax(1, keepdim=True)), head(x))


def test_rnn_head_uses_the_last_layers_final_output():
    head = create_head("rnn", 8, {"num_layers": 3, "hidden": 6}).eval()
    assert head.lstm.num_layers == 3 and head.lstm.batch_first
    assert head.lstm.dropout == pytest.approx(0.1705)
    x = torch.randn(2, 4, 8)
    with torch.no_grad():
        _, (h_n, _) = head.lstm(x)
        torch.testing.assert_close(head(x), head.fc(h_n[-1]))
        assert not torch.allclose(head(x.flip(1)), head(x))  # order matters to an LSTM
    assert create_head("rnn", 8, {"num_layers": 1}).lstm.dropout == 0.0


# -- fused scorer -------------------------------------------------------------------------------


@pytest.mark.parametrize("enc_name", TINY_ENCODERS)
@pytest.mark.parametrize("head_name", ["maxpool", "rnn"])
def test_scorer_is_encoder_then_head(enc_name, head_name):
    enc = create_encoder(enc_name)
    scorer = GifScorer(enc, create_head(head_name, enc.feature_dim)).eval()
    x = frames_for(enc, batch=2)
    with torch.no_grad():
        y = scorer(x)
        ref = scorer.head(enc(x))
    assert y.shape == (2, 17) and y.dtype == torch.float32
    assert torch.equal(y, ref)
    assert scorer.spec == enc.spec


@pytest.mark.parametrize(
    ("enc_name", "head_name"), [("resnext3d-tiny", "rnn"), ("efficientnet-lite0-tiny", "maxpool")]
)
def test_scorer_exports_with_a_dynamic_batch(enc_name, head_name):
    """No data-dependent control flow, static reshapes: torch.export with a symbolic batch
    succeeds, and the graph exported at batch 2 gives the eager result at batch 3."""
    enc = create_encoder(enc_name)
    scorer = GifScorer(enc, create_head(head_name, enc.feature_dim)).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        program = torch.export.export(
            scorer, (frames_for(enc, batch=2),), dynamic_shapes=({0: batch},)
        )
        x3 = frames_for(enc, batch=3, seed=5)
        torch.testing.assert_close(program.module()(x3), scorer(x3), rtol=1e-5, atol=1e-5)


# -- checkpoints --------------------------------------------------------------------------------


@pytest.mark.parametrize("enc_name", TINY_ENCODERS)
@pytest.mark.parametrize("head_name", ["maxpool", "rnn"])
def test_checkpoint_round_trip_is_exact(tmp_path, enc_name, head_name):
    torch.manual_seed(3)
    enc = create_encoder(enc_name)
    cfg = {"num_layers": 3, "hidden": 20, "dropout": 0.2}
    head = create_head(head_name, enc.feature_dim, cfg)
    # Move BatchNorm statistics away from their initial values, as training would.
    enc.train()
    with torch.no_grad():
        enc(frames_for(enc, batch=4, seed=9))
    enc.eval()
    scorer = GifScorer(enc, head).eval()
    doc = model_document(enc, head_name, cfg)
    path = tmp_path / "run" / "model.pt"
    sha = save_checkpoint(
        path, encoder=enc, head_name=head_name, head_config=cfg, head=head, document=doc
    )
    import hashlib

    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left behind

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "gifsent-checkpoint" and raw["version"] == 1
    assert raw["encoder"]["random_init"] and "state_dict" in raw["encoder"]
    # every field stored, MaxPool's timeline kind included (a new head's: "mil")
    assert raw["head"]["config"] == dataclasses.asdict(head_config(head_name, cfg))
    assert raw["document"] == doc.to_dict()

    loaded = load_checkpoint(path)
    assert loaded.sha256 == sha and loaded.head_name == head_name
    assert loaded.head_config == head_config(head_name, cfg)
    assert loaded.document == doc and not loaded.scorer.training
    x = frames_for(enc, batch=3, seed=4)
    with torch.no_grad():
        assert torch.equal(loaded.scorer(x), scorer(x))


def tiny_hara_weights(path: Path, seed: int = 0) -> torch.nn.Module:
    """A resnext3d-tiny weights file in the published Hara format (module. prefix, fc)."""
    torch.manual_seed(seed)
    enc = create_encoder("resnext3d-tiny")
    for m in enc.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    state = {f"module.{k}": v for k, v in enc.state_dict().items()}
    state["module.fc.weight"] = torch.randn(400, enc.feature_dim)
    state["module.fc.bias"] = torch.randn(400)
    torch.save({"epoch": 1, "arch": "resnext-tiny", "state_dict": state}, path)
    return enc


def test_checkpoint_stores_pretrained_encoders_by_reference(tmp_path):
    weights = tmp_path / "tiny-kinetics.pth"
    tiny_hara_weights(weights)
    enc = create_encoder("resnext3d-tiny", weights=weights)
    assert not enc.random_init and enc.weights_path == str(weights.resolve())
    head = create_head("maxpool", enc.feature_dim)
    doc = model_document(enc, "maxpool")
    path = tmp_path / "by-ref.pt"
    save_checkpoint(
        path, encoder=enc, head_name="maxpool", head_config=None, head=head, document=doc
    )
    raw = torch.load(path, weights_only=True)
    assert "state_dict" not in raw["encoder"]
    assert raw["encoder"]["weights_sha256"] == enc.weights_sha256
    x = frames_for(enc)
    with torch.no_grad():
        expected = GifScorer(enc, head).eval()(x)
        assert torch.equal(load_checkpoint(path).scorer(x), expected)

    # Weights changed after loading (fine-tuning, BatchNorm statistics): never by reference.
    tuned = create_encoder("resnext3d-tiny", weights=weights)
    with torch.no_grad():
        tuned.layer4[0].conv3.weight.mul_(1.01)
    tuned_kw = dict(encoder=tuned, head_name="maxpool", head_config=None, head=head, document=doc)
    with pytest.raises(CheckpointError, match="changed since they were loaded"):
        save_checkpoint(tmp_path / "x.pt", include_encoder_state=False, **tuned_kw)
    save_checkpoint(tmp_path / "tuned.pt", **tuned_kw)
    assert "state_dict" in torch.load(tmp_path / "tuned.pt", weights_only=True)["encoder"]
    resaved = load_checkpoint(tmp_path / "tuned.pt")
    save_checkpoint(
        tmp_path / "tuned2.pt",
        encoder=resaved.encoder,
        head_name="maxpool",
        head_config=None,
        head=resaved.head,
        document=doc,
    )
    assert "state_dict" in torch.load(tmp_path / "tuned2.pt", weights_only=True)["encoder"]

    # Weights moved: refused with a hint, then found through encoder_weights.
    moved = tmp_path / "elsewhere.pth"
    weights.rename(moved)
    with pytest.raises(CheckpointError, match="encoder_weights"):
        load_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(path, encoder_weights=moved).scorer(x), expected)

    # Different weights under the same name: the hash catches it.
    tiny_hara_weights(moved, seed=1)
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path, encoder_weights=moved)

    # Asking for the full state makes the checkpoint self-contained.
    full = tmp_path / "full.pt"
    save_checkpoint(
        full,
        encoder=enc,
        head_name="maxpool",
        head_config=None,
        head=head,
        document=doc,
        include_encoder_state=True,
    )
    moved.unlink()
    with torch.no_grad():
        assert torch.equal(load_checkpoint(full).scorer(x), expected)


def test_checkpoint_refuses_inconsistent_or_unrebuildable_models(tmp_path):
    enc = create_encoder("resnext3d-tiny")
    head = create_head("rnn", enc.feature_dim)
    doc = model_document(enc, "rnn")
    kwargs = dict(encoder=enc, head_name="rnn", head_config=None, head=head)
    with pytest.raises(CheckpointError, match="include_encoder_state=True"):
        save_checkpoint(tmp_path / "a.pt", document=doc, include_encoder_state=False, **kwargs)
    other_spec = SamplingSpec(segments=3, frames_per_segment=8, fps=12.5, size=32, crop=32)
    bad = ModelDocument(
        sampling=other_spec,
        normalization=Normalization((0, 0, 0), (1, 1, 1)),
        encoder=enc.info(),
        head=HeadInfo("maxpool", {}),
        target=TargetScale("identity"),
    )
    with pytest.raises(CheckpointError, match=r"sampling.*normalization.*head\.name"):
        save_checkpoint(tmp_path / "b.pt", document=bad, **kwargs)
    with pytest.raises(CheckpointError, match="unknown config key"):
        save_checkpoint(
            tmp_path / "c.pt",
            encoder=enc,
            head_name="rnn",
            head_config={"hiden": 3},
            head=head,
            document=doc,
        )
    assert list(tmp_path.iterdir()) == []

    not_ours = tmp_path / "other.pt"
    torch.save({"model": {}}, not_ours)
    with pytest.raises(CheckpointError, match="not a gifsent checkpoint"):
        load_checkpoint(not_ours)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_keeps_a_spec_override(tmp_path):
    spec = SamplingSpec(segments=6, frames_per_segment=8, fps=8.0, size=36, crop=32)
    enc = create_encoder("resnext3d-tiny", spec=spec)
    head = create_head("rnn", enc.feature_dim)
    path = tmp_path / "dense.pt"
    save_checkpoint(
        path,
        encoder=enc,
        head_name="rnn",
        head_config=None,
        head=head,
        document=model_document(enc, "rnn"),
    )
    loaded = load_checkpoint(path)
    assert loaded.encoder.spec == spec and loaded.document.sampling == spec
