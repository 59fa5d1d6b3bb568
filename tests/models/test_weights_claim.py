"""Issue 26, point 6: a model's encoder weights are described by what is known of them."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from gifsent_models.registry import build_encoder, weights_claim


def test_claim_says_published_only_for_a_recorded_sha256():
    recorded = {"ab" * 32: "the published Kinetics-400 checkpoint (Hara et al.)"}
    assert "published Kinetics-400" in weights_claim("r.pth", "ab" * 32, recorded)
    other = weights_claim("resnext-101-kinetics.pth", "cd" * 32, recorded)
    assert "resnext-101-kinetics.pth" in other and "cdcdcdcdcdcd" in other
    assert "not a checkpoint whose sha256 gifsent has recorded as published" in other
    assert "Kinetics" not in other.replace("resnext-101-kinetics.pth", "")


def test_a_user_supplied_resnext_file_is_not_called_pretrained_on_kinetics(tmp_path):
    """A Hara-format file with random weights (as in a check) gets its name and sha256."""
    from gifsent_models.encoders import resnext3d
    from gifsent_models.registry import create_encoder

    tiny = create_encoder("resnext3d-tiny", random_init=True)
    weights = tmp_path / "resnext-101-kinetics.pth"
    import torch

    torch.save({"state_dict": tiny.state_dict()}, weights)
    enc = build_encoder(
        "resnext101-kinetics",
        lambda name, spec: resnext3d.ResNeXt3DEncoder(
            resnext3d.TINY, name=name, spec=spec, description="3D ResNeXt (test)"
        ),
        default_spec=resnext3d.TINY_SPEC,
        load=resnext3d.load_hara_checkpoint,
        weights=weights,
        published=resnext3d.RESNEXT101_PUBLISHED,
    )
    info = enc.info()
    assert "pretrained on Kinetics" not in info.description
    assert f"the file {weights.name} (sha256 {info.weights_sha256[:12]})" in info.description
    assert "not a checkpoint whose sha256 gifsent has recorded as published" in info.description
    recorded = {info.weights_sha256: "the published Kinetics-400 checkpoint of Hara et al."}
    enc2 = build_encoder(
        "resnext101-kinetics",
        lambda name, spec: resnext3d.ResNeXt3DEncoder(resnext3d.TINY, name=name, spec=spec),
        default_spec=resnext3d.TINY_SPEC,
        load=resnext3d.load_hara_checkpoint,
        weights=Path(weights),
        published=recorded,
    )
    assert "the published Kinetics-400 checkpoint of Hara et al." in enc2.info().description
