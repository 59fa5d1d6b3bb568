"""The 3D ResNeXt of Hara et al. (Kinetics-pretrained ResNeXt-101, 2048-d per 16-frame clip), and a tiny twin.

Architecture and parameter names follow the published model key for key
(kenshohara/video-classification-3d-cnn-pytorch, ``models/resnext.py``, shortcut B,
cardinality 32), so ``resnext-101-kinetics.pth`` loads strictly once its ``module.`` prefix
is removed and its ``fc.`` classifier dropped. Features are the 2048-d vector after global
average pooling; for a 16x112x112 clip that equals the reference ``AvgPool3d((1, 4, 4))``.

Reference preprocessing: shorter side 112, centre crop 112, pixels in 0..255 minus the
ActivityNet mean [114.7748, 107.7354, 99.4750], std 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gifsent_infer.contract import Normalization, SamplingSpec
from gifsent_infer.files import file_sha256
from gifsent_infer.paths import home
from gifsent_models.encoders.base import (
    Encoder,
    WeightsFormatError,
    WeightsUnavailableError,
)
from gifsent_models.registry import define_encoder

HARA_NORMALIZATION = Normalization(
    mean=(114.7748, 107.7354, 99.4750), std=(1.0, 1.0, 1.0), scale=1.0
)

# S=4 clips of T=16 frames at 12.5 fps: each clip spans 1.28 s, the four together 5.12 s,
# about the length of a typical reaction GIF, so clips rarely overlap on real GIFs while
# short GIFs are loop-padded. 112 / 112 is the reference resize and crop.
RESNEXT101_SPEC = SamplingSpec(segments=4, frames_per_segment=16, fps=12.5, size=112, crop=112)
# Tiny: small enough for CPU tests in milliseconds, same code path.
TINY_SPEC = SamplingSpec(segments=2, frames_per_segment=8, fps=12.5, size=32, crop=32)

RESNEXT101_FILE = "resnext-101-kinetics.pth"
RESNEXT101_SOURCE = (
    "Hara et al., Kinetics-400 ResNeXt-101 (kenshohara/video-classification-3d-cnn-pytorch)"
)
# sha256 -> what the file is. Only a file whose sha256 is recorded here is described as the
# published Kinetics checkpoint; any other Hara-format file (a fine-tune, random weights in a
# check) is described by its name and sha256. None is recorded yet: the authors publish no
# checksum, and this project has not downloaded the file to take one. Add it when verified.
RESNEXT101_PUBLISHED: dict[str, str] = {}


@dataclass(frozen=True)
class ResNeXt3DConfig:
    layers: tuple[int, int, int, int] = (3, 4, 23, 3)  # ResNeXt-101
    planes: tuple[int, int, int, int] = (128, 256, 512, 1024)  # block widths before expansion
    stem_width: int = 64
    cardinality: int = 32  # groups of the 3x3x3 convolution
    expansion: int = 2  # block output = planes * expansion; 1024 * 2 = 2048-d features

    def mid_width(self, planes: int) -> int:
        # The reference: cardinality * int(planes / 32); equals `planes` for cardinality 32.
        return self.cardinality * (planes // 32)

    @property
    def feature_dim(self) -> int:
        return self.planes[-1] * self.expansion


RESNEXT101 = ResNeXt3DConfig()
TINY = ResNeXt3DConfig(layers=(1, 1, 1, 1), planes=(32, 64, 64, 64), stem_width=16, cardinality=8)


class ResNeXtBottleneck(nn.Module):
    """1x1x1 reduce, grouped 3x3x3 (carries the stride), 1x1x1 expand; projection shortcut (B)."""

    def __init__(self, inplanes: int, planes: int, cfg: ResNeXt3DConfig, stride: int = 1) -> None:
        super().__init__()
        mid = cfg.mid_width(planes)
        out = planes * cfg.expansion
        self.conv1 = nn.Conv3d(inplanes, mid, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = nn.Conv3d(
            mid, mid, kernel_size=3, stride=stride, padding=1, groups=cfg.cardinality, bias=False
        )
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = nn.Conv3d(mid, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


class ResNeXt3DEncoder(Encoder):
    """Clip encoder: [N, 3, T, H, W] -> [N, D]. Parameter names are the reference's, minus `fc`."""

    layout = "ncthw"

    def __init__(
        self,
        cfg: ResNeXt3DConfig,
        *,
        name: str,
        spec: SamplingSpec,
        normalization: Normalization = HARA_NORMALIZATION,
        description: str = "",
    ) -> None:
        super().__init__(
            name=name,
            spec=spec,
            normalization=normalization,
            feature_dim=cfg.feature_dim,
            description=description,
        )
        self.cfg = cfg
        # Stem: temporal stride 1, spatial stride 2; then a 3x3x3 max pool with stride 2.
        self.conv1 = nn.Conv3d(
            3, cfg.stem_width, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False
        )
        self.bn1 = nn.BatchNorm3d(cfg.stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        inplanes = cfg.stem_width
        stages = []
        for i, (n_blocks, planes) in enumerate(zip(cfg.layers, cfg.planes, strict=True)):
            blocks = []
            for b in range(n_blocks):
                stride = 2 if (i > 0 and b == 0) else 1
                blocks.append(ResNeXtBottleneck(inplanes, planes, cfg, stride))
                inplanes = planes * cfg.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def segment_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, D, T/16, H/32, W/32)
        return x.mean(dim=(2, 3, 4))  # global average pool -> (N, D)


def load_hara_checkpoint(encoder: ResNeXt3DEncoder, path: str | Path) -> str:
    """Load a checkpoint in the published format strictly; returns the file's sha256.

    Format: ``{"state_dict": {"module.conv1.weight": ..., ..., "module.fc.weight": ...}, ...}``
    (``arch``, ``epoch``, ``optimizer`` may be present and are ignored). A bare state dict and
    keys without the ``module.`` prefix are accepted too; every other key must match exactly.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"{encoder.name}: weights file {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsFormatError(
            f"{encoder.name}: cannot read {path} as a torch checkpoint: {e}"
        ) from e
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state:
        raise WeightsFormatError(
            f"{encoder.name}: {path} holds no state dict (expected a dict with 'state_dict')"
        )
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        if key.startswith("fc."):
            continue  # the Kinetics-400 classifier; gifsent uses the pooled features
        cleaned[key] = value
    # Checkpoints from PyTorch < 0.4 have no BatchNorm `num_batches_tracked`; loading without
    # `_metadata` (as here) lets BatchNorm fill it in, and all other keys stay strict.
    try:
        encoder.load_state_dict(cleaned, strict=True)
    except RuntimeError as e:
        raise WeightsFormatError(
            f"{encoder.name}: {path} does not match the {encoder.name} architecture: {e}"
        ) from None
    return file_sha256(path)


def default_weights_path() -> Path:
    """Where resnext101-kinetics looks when no weights path is given."""
    return home() / "weights" / RESNEXT101_FILE


def _default_weights() -> Path:
    path = default_weights_path()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"resnext101-kinetics needs the published Kinetics weights {RESNEXT101_FILE} "
            f"({RESNEXT101_SOURCE}; linked from that repository's README). Pass "
            f"--encoder-weights FILE (weights=FILE in Python) or put the file at {path}. "
            "Use --random-init (random_init=True) only for tests."
        )
    return path


define_encoder(
    "resnext101-kinetics",
    lambda name, spec: ResNeXt3DEncoder(
        RESNEXT101,
        name=name,
        spec=spec,
        description="3D ResNeXt-101 (cardinality 32, shortcut B; Hara et al. 2018's network); "
        "2048-d per 16x112x112 clip",
    ),
    default_spec=RESNEXT101_SPEC,
    load=load_hara_checkpoint,
    default_weights=_default_weights,
    published=RESNEXT101_PUBLISHED,
)
define_encoder(
    "resnext3d-tiny",
    lambda name, spec: ResNeXt3DEncoder(
        TINY,
        name=name,
        spec=spec,
        description="tiny 3D ResNeXt for tests (the resnext101-kinetics code path); "
        "no pretrained weights exist: random initialisation",
    ),
    default_spec=TINY_SPEC,
    load=load_hara_checkpoint,
)
