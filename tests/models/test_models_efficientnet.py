"""efficientnet-lite0: the packaged ImageNet weights and the pinned normalisation classify real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gifsent_infer.contract import HeadInfo, ModelDocument, Normalization, SamplingSpec, TargetScale
from gifsent_models import (
    WeightsFormatError,
    create_encoder,
    create_head,
    load_checkpoint,
    save_checkpoint,
)

skimage_data = pytest.importorskip("skimage.data")

# ImageNet-1k indices of unambiguous answers for scikit-image's bundled photos.
EXPECTED = {
    "coffee": {967: "espresso", 968: "cup", 504: "coffee mug"},
    "chelsea": {281: "tabby", 282: "tiger cat", 285: "Egyptian cat"},
    "rocket": {657: "missile", 744: "projectile", 812: "space shuttle"},
}


def shorter_side_then_centre_crop(img: np.ndarray, size: int, crop: int) -> np.ndarray:
    """The contract's resize (shorter side to `size`, bilinear) and centre crop."""
    im = Image.fromarray(img).convert("RGB")
    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - crop) // 2, (h - crop) // 2
    return np.asarray(im.crop((left, top, left + crop, top + crop)))


@pytest.fixture(scope="module")
def lite0():
    base = create_encoder("efficientnet-lite0")
    spec = base.spec
    # Three photos as the three segments of one "GIF" (T = 1).
    three = SamplingSpec(
        segments=3, frames_per_segment=1, fps=spec.fps, size=spec.size, crop=spec.crop
    )
    return create_encoder("efficientnet-lite0", spec=three)


@pytest.fixture(scope="module")
def photos(lite0) -> torch.Tensor:
    s = lite0.spec
    imgs = [
        shorter_side_then_centre_crop(getattr(skimage_data, n)(), s.size, s.crop) for n in EXPECTED
    ]
    return torch.from_numpy(np.stack(imgs))[None]  # (1, 3, 224, 224, 3) uint8


def top5(encoder, frames) -> list[list[int]]:
    with torch.no_grad():
        logits = encoder.classify(frames)[0]  # (3, 1000)
    return logits.topk(5, dim=-1).indices.tolist()


def test_packaged_weights_load_strictly_with_the_pinned_spec(lite0):
    info = lite0.info()
    assert info.name == "efficientnet-lite0" and info.feature_dim == 1280
    assert info.weights == "efficientnet-lite0-57934424.pth" and len(info.weights_sha256) == 64
    assert not lite0.random_init
    n = sum(p.numel() for p in lite0.parameters())
    n_fc = sum(p.numel() for p in lite0._fc.parameters())
    assert n == 4_652_008 and n - n_fc == 3_371_008  # 1280-d features, classifier kept aside
    assert lite0.normalization == Normalization((127.0,) * 3, (128.0,) * 3, scale=1.0)
    default = create_encoder("efficientnet-lite0").spec
    assert (default.segments, default.frames_per_segment, default.size, default.crop) == (
        8,
        1,
        224,
        224,
    )


def test_imagenet_classes_of_real_photos_are_in_the_top_five(lite0, photos):
    for (name, expected), got in zip(EXPECTED.items(), top5(lite0, photos), strict=True):
        assert expected.keys() & set(got), f"{name}: expected one of {expected}, top five {got}"
        assert got[0] in expected, f"{name}: top-1 {got[0]} not in {expected}"


def test_features_are_the_pooled_vector_the_classifier_reads(lite0, photos):
    with torch.no_grad():
        feats = lite0(photos)
        assert feats.shape == (1, 3, 1280)
        torch.testing.assert_close(lite0._fc(feats), lite0.classify(photos))
    assert (feats >= 0).all() and (feats <= 6).all()  # ReLU6 before pooling


def test_the_check_can_fail_without_the_normalisation(photos):
    """Negative control: the same photos through un-normalised pixels lose their classes."""
    raw = create_encoder(
        "efficientnet-lite0",
        spec=SamplingSpec(segments=3, frames_per_segment=1, fps=12.5, size=224, crop=224),
    )
    raw.normalization = Normalization((0.0,) * 3, (1.0,) * 3)
    raw.pixel_mean.zero_()
    raw.pixel_std.fill_(1.0)
    hits = [got[0] in exp for exp, got in zip(EXPECTED.values(), top5(raw, photos), strict=True)]
    assert not all(hits)


def test_tiny_variant_shapes_and_wrong_weights(tmp_path):
    tiny = create_encoder("efficientnet-lite0-tiny")
    s = tiny.spec
    x = torch.randint(0, 256, (2, s.num_frames, s.crop, s.crop, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert tiny(x).shape == (2, s.segments, tiny.feature_dim)
    with pytest.raises(RuntimeError, match="no ImageNet classifier"):
        tiny.classify(x)
    wrong = tmp_path / "wrong.pth"
    torch.save(tiny.state_dict(), wrong)
    with pytest.raises(WeightsFormatError, match="does not match"):
        create_encoder("efficientnet-lite0", weights=wrong)


def test_checkpoint_refers_to_the_packaged_weights_and_survives_a_moved_venv(tmp_path):
    one = SamplingSpec(segments=2, frames_per_segment=1, fps=12.5, size=224, crop=224)
    enc = create_encoder("efficientnet-lite0", spec=one)
    head = create_head("rnn", enc.feature_dim, {"hidden": 8})
    doc = ModelDocument(
        sampling=enc.spec,
        normalization=enc.normalization,
        encoder=enc.info(),
        head=HeadInfo("rnn", {}),
        target=TargetScale("identity"),
    )
    path = tmp_path / "lite0-rnn.pt"
    save_checkpoint(
        path, encoder=enc, head_name="rnn", head_config={"hidden": 8}, head=head, document=doc
    )
    raw = torch.load(path, weights_only=True)
    # the head only (its LSTM and timeline readout, ~2.8 MB), not Lite0's ~19 MB of weights
    assert "state_dict" not in raw["encoder"] and path.stat().st_size < 5_000_000
    # As if written on another machine: the stored path no longer exists, so the loader
    # falls back to the packaged file, which it accepts because the sha256 matches.
    raw["encoder"]["weights"] = str(tmp_path / "gone" / "efficientnet-lite0-57934424.pth")
    torch.save(raw, path)
    loaded = load_checkpoint(path)
    assert loaded.encoder.weights_path == enc.weights_path
    s = enc.spec
    x = torch.randint(0, 256, (1, s.num_frames, s.crop, s.crop, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded.scorer(x), loaded.head(enc(x)))
