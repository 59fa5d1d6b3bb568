"""resnext101-kinetics: Hara et al.'s architecture key for key, strict loading of the published format."""

from __future__ import annotations

import pytest
import torch

from gifsent_infer.contract import SamplingSpec
from gifsent_models import WeightsFormatError, create_encoder

# Written from the published architecture (ResNeXt-101: blocks [3, 4, 23, 3], widths
# 128/256/512/1024 with expansion 2, cardinality 32, a projection shortcut on the first block
# of each stage), independently of gifsent_models, to pin the checkpoint's key names/shapes.
STAGES = ((3, 128), (4, 256), (23, 512), (3, 1024))


def bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}


def reference_keys() -> dict[str, tuple[int, ...]]:
    """Parameter/buffer names and shapes of resnext-101-kinetics.pth after dropping `module.`."""
    keys = {"conv1.weight": (64, 3, 7, 7, 7), **bn("bn1", 64)}
    inplanes = 64
    for stage, (blocks, planes) in enumerate(STAGES, start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            keys[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1, 1)
            keys.update(bn(f"{p}.bn1", planes))
            keys[f"{p}.conv2.weight"] = (planes, planes // 32, 3, 3, 3)
            keys.update(bn(f"{p}.bn2", planes))
            keys[f"{p}.conv3.weight"] = (planes * 2, planes, 1, 1, 1)
            keys.update(bn(f"{p}.bn3", planes * 2))
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (planes * 2, inplanes, 1, 1, 1)
                keys.update(bn(f"{p}.downsample.1", planes * 2))
            inplanes = planes * 2
    keys["fc.weight"] = (400, 2048)
    keys["fc.bias"] = (400,)
    return keys


@pytest.fixture(scope="module")
def resnext101():
    torch.manual_seed(0)
    enc = create_encoder("resnext101-kinetics", random_init=True)
    for m in (enc.bn1, enc.layer3[7].bn2, enc.layer4[2].bn3):
        # Non-trivial statistics, so that a buffer silently left at its default would show.
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2)
    return enc


def test_architecture_matches_the_reference_key_for_key(resnext101):
    ours = {
        k: tuple(v.shape)
        for k, v in resnext101.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    ref = {k: v for k, v in reference_keys().items() if not k.startswith("fc.")}
    assert ours == ref


def test_parameter_count_and_spec(resnext101):
    n = sum(p.numel() for p in resnext101.parameters())
    assert n == pytest.approx(47.5e6, abs=0.05e6)
    assert resnext101.feature_dim == 2048
    s = resnext101.spec
    assert (s.frames_per_segment, s.size, s.crop) == (16, 112, 112)
    norm = resnext101.normalization
    assert norm.mean == (114.7748, 107.7354, 99.4750) and norm.std == (1.0, 1.0, 1.0)
    assert norm.scale == 1.0
    assert resnext101.info().weights == "random" and resnext101.random_init


@pytest.mark.parametrize("legacy", [True, False], ids=["pytorch0.3-format", "modern-format"])
def test_loads_a_hara_format_checkpoint_strictly(tmp_path, resnext101, legacy):
    """The published file: {"state_dict": {"module.<key>": ...}, "arch", "epoch", "optimizer"};
    2017 files have no BatchNorm `num_batches_tracked`."""
    state = {
        f"module.{k}": v.clone()
        for k, v in resnext101.state_dict().items()
        if not (legacy and k.endswith("num_batches_tracked"))
    }
    state["module.fc.weight"] = torch.randn(400, 2048)
    state["module.fc.bias"] = torch.randn(400)
    path = tmp_path / "resnext-101-kinetics.pth"
    torch.save(
        {"epoch": 200, "arch": "resnext-101", "state_dict": state, "optimizer": {"state": {}}},
        path,
    )
    spec = SamplingSpec(segments=1, frames_per_segment=16, fps=12.5, size=112, crop=112)
    enc = create_encoder("resnext101-kinetics", weights=path, spec=spec)
    assert not enc.random_init and enc.info().weights == "resnext-101-kinetics.pth"
    assert len(enc.info().weights_sha256) == 64
    mine = resnext101.state_dict()
    for k, v in enc.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, mine[k]), k
    if legacy:
        return  # one forward pass of the 47.5M-parameter network is enough
    frames = torch.randint(0, 256, (1, 16, 112, 112, 3), dtype=torch.uint8)
    with torch.no_grad():
        out = enc(frames)
    assert out.shape == (1, 1, 2048)  # [B, S, D]: one 2048-d vector per 16-frame clip
    assert torch.isfinite(out).all() and (out >= 0).all()  # pooled after a ReLU


def hara_state(enc, prefix="module."):
    state = {f"{prefix}{k}": v.clone() for k, v in enc.state_dict().items()}
    state[f"{prefix}fc.weight"] = torch.zeros(400, enc.feature_dim)
    state[f"{prefix}fc.bias"] = torch.zeros(400)
    return state


def test_tiny_shares_the_loader_and_its_strictness(tmp_path):
    src = create_encoder("resnext3d-tiny")
    good = tmp_path / "good.pth"
    torch.save({"state_dict": hara_state(src)}, good)
    loaded = create_encoder("resnext3d-tiny", weights=good)
    x = torch.randint(0, 256, (2, 16, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded(x), src(x))

    bare = tmp_path / "bare.pth"  # a plain state dict without the DataParallel prefix
    torch.save(hara_state(src, prefix=""), bare)
    create_encoder("resnext3d-tiny", weights=bare)

    missing = hara_state(src)
    del missing["module.layer2.0.conv2.weight"]
    extra = hara_state(src) | {"module.layer5.0.conv1.weight": torch.zeros(1)}
    shape = hara_state(src)
    shape["module.conv1.weight"] = torch.zeros(16, 3, 3, 7, 7)
    for label, state, match in [
        ("missing", missing, "layer2.0.conv2.weight"),
        ("extra", extra, "layer5.0.conv1.weight"),
        ("shape", shape, "conv1.weight"),
    ]:
        path = tmp_path / f"{label}.pth"
        torch.save({"state_dict": state}, path)
        with pytest.raises(WeightsFormatError, match=match):
            create_encoder("resnext3d-tiny", weights=path)

    wrong_net = tmp_path / "wrong-net.pth"
    torch.save({"state_dict": hara_state(src)}, wrong_net)
    with pytest.raises(WeightsFormatError, match="does not match the resnext101-kinetics"):
        create_encoder("resnext101-kinetics", weights=wrong_net)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFormatError, match="cannot read"):
        create_encoder("resnext3d-tiny", weights=junk)


def functional_resnext(state: dict[str, torch.Tensor], clips: torch.Tensor) -> torch.Tensor:
    """An independent functional forward from a Hara-style state dict, as the paper's code
    computes it: stem (7x7x7, stride (1,2,2)), 3x3x3 max pool stride 2, bottlenecks with the
    stride on the grouped 3x3x3 conv and a projection shortcut, ReLU after the sum, global
    average pool."""
    import torch.nn.functional as F

    def bn(x, p):
        return F.batch_norm(
            x, state[f"{p}.running_mean"], state[f"{p}.running_var"],
            state[f"{p}.weight"], state[f"{p}.bias"], False, 0.0, 1e-5,
        )  # fmt: skip

    x = F.relu(bn(F.conv3d(clips, state["conv1.weight"], stride=(1, 2, 2), padding=3), "bn1"))
    x = F.max_pool3d(x, 3, 2, 1)
    for stage in range(1, 5):
        b = 0
        while f"layer{stage}.{b}.conv1.weight" in state:
            p = f"layer{stage}.{b}"
            stride = 2 if stage > 1 and b == 0 else 1
            w2 = state[f"{p}.conv2.weight"]
            y = F.relu(bn(F.conv3d(x, state[f"{p}.conv1.weight"]), f"{p}.bn1"))
            groups = w2.shape[0] // w2.shape[1]
            y = F.relu(bn(F.conv3d(y, w2, stride=stride, padding=1, groups=groups), f"{p}.bn2"))
            y = bn(F.conv3d(y, state[f"{p}.conv3.weight"]), f"{p}.bn3")
            if f"{p}.downsample.0.weight" in state:
                x = bn(
                    F.conv3d(x, state[f"{p}.downsample.0.weight"], stride=stride),
                    f"{p}.downsample.1",
                )
            x = F.relu(y + x)
            b += 1
    return x.mean(dim=(2, 3, 4))


def test_tiny_forward_matches_an_independent_functional_reference():
    torch.manual_seed(2)
    enc = create_encoder("resnext3d-tiny")
    for m in enc.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    frames = torch.randint(0, 256, (2, 16, 32, 32, 3), dtype=torch.uint8)
    # Reference preprocessing: 0..255 pixels minus the mean, std 1, clips as (N, C, T, H, W).
    mean = torch.tensor([114.7748, 107.7354, 99.4750])
    clips = (frames.float() - mean).reshape(4, 8, 32, 32, 3).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        want = functional_resnext(enc.state_dict(), clips).reshape(2, 2, -1)
        torch.testing.assert_close(enc(frames), want, rtol=1e-4, atol=1e-4)
