"""torchvision's Kinetics-400 video classifiers as clip encoders (classifier removed, pooled features).

Weights come through torchvision's own mechanism: the published file is downloaded into
torch's hub cache (``torch.hub.get_dir()/checkpoints``) the first time, or read from there.
Without internet the cache can be populated by hand (copy the file named in the error), or
a local file in torchvision's state-dict format can be passed as ``weights``. Each spec
follows the weights' own evaluation transforms (resize, crop, mean/std on 0..1 pixels); the
clip length is what the models were trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gifsent_infer.contract import Normalization, SamplingSpec
from gifsent_infer.files import file_sha256
from gifsent_models.encoders.base import (
    Encoder,
    WeightsFormatError,
    WeightsUnavailableError,
)
from gifsent_models.registry import define_encoder

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class VideoModel:
    builder: str  # torchvision.models.video function name
    weights: str  # torchvision weights enum member, "Enum.MEMBER"
    classifier: str  # attribute replaced by Identity to expose the pooled features
    feature_dim: int
    spec: SamplingSpec
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# 16-frame clips at 15 fps (the torchvision reference recipe), 4 clips per GIF; resize and
# crop as in each weights' transforms (shorter side 128 -> crop 112, or 256 -> 224).
_CLIP112 = SamplingSpec(segments=4, frames_per_segment=16, fps=15.0, size=128, crop=112)
_CLIP224 = SamplingSpec(segments=4, frames_per_segment=16, fps=15.0, size=256, crop=224)

MODELS: dict[str, VideoModel] = {
    "r3d_18": VideoModel(
        "r3d_18", "R3D_18_Weights.KINETICS400_V1", "fc", 512, _CLIP112, KINETICS_MEAN, KINETICS_STD
    ),
    "mc3_18": VideoModel(
        "mc3_18", "MC3_18_Weights.KINETICS400_V1", "fc", 512, _CLIP112, KINETICS_MEAN, KINETICS_STD
    ),
    "r2plus1d_18": VideoModel(
        "r2plus1d_18",
        "R2Plus1D_18_Weights.KINETICS400_V1",
        "fc",
        512,
        _CLIP112,
        KINETICS_MEAN,
        KINETICS_STD,
    ),
    "s3d": VideoModel(
        "s3d",
        "S3D_Weights.KINETICS400_V1",
        "classifier",
        1024,
        _CLIP224,
        KINETICS_MEAN,
        KINETICS_STD,
    ),
    "mvit_v1_b": VideoModel(
        "mvit_v1_b",
        "MViT_V1_B_Weights.KINETICS400_V1",
        "head",
        768,
        _CLIP224,
        (0.45, 0.45, 0.45),
        (0.225, 0.225, 0.225),
    ),
    "swin3d_t": VideoModel(
        "swin3d_t",
        "Swin3D_T_Weights.KINETICS400_V1",
        "head",
        768,
        _CLIP224,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
    ),
}


def _weights_enum(model: VideoModel):
    from torchvision.models import video

    enum_name, member = model.weights.split(".")
    return getattr(getattr(video, enum_name), member)


def hub_checkpoint_path(url: str) -> Path:
    """Where torchvision keeps (or will download) the weights file at `url`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def fetch_torchvision_weights(name: str, url: str) -> Path:
    """The cached weights file, downloading it through torch.hub when absent."""
    path = hub_checkpoint_path(url)
    if path.is_file():
        return path
    try:
        # check_hash: torchvision's file names carry a sha256 prefix, verified on download.
        torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True, weights_only=True)
    except Exception as e:
        raise WeightsUnavailableError(
            f"{name}: could not download torchvision's Kinetics-400 weights from {url} ({e}). "
            f"Without internet, copy that file to {path} (torch's hub cache; set TORCH_HOME to "
            "move it), or pass --encoder-weights FILE (weights=FILE in Python) to a local copy. "
            "Use --random-init (random_init=True) only for tests."
        ) from e
    if not path.is_file():
        raise WeightsUnavailableError(f"{name}: torch.hub did not leave the weights at {path}")
    return path


class TorchvisionVideoEncoder(Encoder):
    layout = "ncthw"

    def __init__(self, name: str, model: VideoModel, spec: SamplingSpec) -> None:
        super().__init__(
            name=name,
            spec=spec,
            normalization=Normalization(
                mean=tuple(m * 255.0 for m in model.mean),
                std=tuple(s * 255.0 for s in model.std),
                scale=1.0,
            ),
            feature_dim=model.feature_dim,
            description=f"torchvision {model.builder} pretrained on Kinetics-400 "
            f"({model.weights}); {model.feature_dim}-d per {spec.frames_per_segment}-frame clip",
        )
        from torchvision.models import video

        self.model = model
        self.net = getattr(video, model.builder)(weights=None)

    def load_torchvision_state(self, path: Path) -> str:
        """Strictly load a state dict in torchvision's format (classifier included)."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise WeightsFormatError(f"{self.name}: cannot read {path}: {e}") from e
        try:
            self.net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise WeightsFormatError(
                f"{self.name}: {path} does not match {self.name}: {e}"
            ) from None
        return file_sha256(path)

    def drop_classifier(self) -> None:
        setattr(self.net, self.model.classifier, nn.Identity())

    def segment_features(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        if y.dim() > 2:  # s3d: pooled map (N, C, T', 1, 1) once its classifier is gone
            y = y.mean(dim=tuple(range(2, y.dim())))
        return y


for _name, _model in MODELS.items():
    define_encoder(
        _name,
        lambda name, spec, model=_model: TorchvisionVideoEncoder(name, model, spec),
        default_spec=_model.spec,
        load=TorchvisionVideoEncoder.load_torchvision_state,
        # torch.hub's cache, else a download: skipped when random weights are allowed
        default_weights=lambda name=_name, model=_model: fetch_torchvision_weights(
            name, _weights_enum(model).url
        ),
        default_source=_model.weights,
        default_downloads=True,
        finish=TorchvisionVideoEncoder.drop_classifier,
    )
