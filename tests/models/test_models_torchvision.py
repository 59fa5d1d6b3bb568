"""torchvision Kinetics-400 encoders: specs follow the weights' own transforms; features feed the classifier."""

from __future__ import annotations

import pytest
import torch

from gifsent_infer.contract import SamplingSpec
from gifsent_models import create_encoder
from gifsent_models.encoders.torchvision_video import MODELS, _weights_enum


@pytest.mark.parametrize("name", sorted(MODELS))
def test_spec_and_normalisation_follow_torchvisions_transforms(name):
    transforms = _weights_enum(MODELS[name]).transforms()
    model = MODELS[name]
    assert [model.spec.crop, model.spec.crop] == list(transforms.crop_size)
    assert model.spec.size == min(transforms.resize_size)
    assert model.mean == pytest.approx(tuple(transforms.mean))
    assert model.std == pytest.approx(tuple(transforms.std))


@pytest.mark.parametrize("name", ["r3d_18", "s3d"])
def test_features_are_what_the_kinetics_classifier_reads(name):
    """With the classifier put back, our features give torchvision's own logits."""
    from torchvision.models import video

    torch.manual_seed(0)
    model = MODELS[name]
    one_clip = SamplingSpec(
        segments=1,
        frames_per_segment=model.spec.frames_per_segment,
        fps=model.spec.fps,
        size=model.spec.size,
        crop=model.spec.crop,
    )
    enc = create_encoder(name, random_init=True, spec=one_clip)
    assert enc.random_init and enc.info().weights == "random"
    reference = getattr(video, model.builder)(weights=None).eval()
    missing, unexpected = reference.load_state_dict(enc.net.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(model.classifier) for k in missing)
    frames = torch.randint(0, 256, (1, one_clip.num_frames, one_clip.crop, one_clip.crop, 3))
    frames = frames.to(torch.uint8)
    with torch.no_grad():
        feats = enc(frames)
        assert feats.shape == (1, 1, model.feature_dim)
        logits = reference(enc.preprocess(frames))
        classifier = getattr(reference, model.classifier)
        if name == "s3d":  # Dropout + 1x1x1 Conv3d, then a mean: linear in the pooled vector
            conv = classifier[1]
            ours = conv(feats[0][:, :, None, None, None]).flatten(1)
        else:
            ours = classifier(feats[0])
    torch.testing.assert_close(ours, logits, rtol=1e-4, atol=1e-4)
