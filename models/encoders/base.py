"""The encoder base class: uint8 frames in, one feature vector per segment out, preprocessing inside.

Every encoder maps the contract's graph input, uint8 ``[B, S*T, H, W, 3]`` RGB with
``H = W = spec.crop``, to float32 features ``[B, S, D]``. Casting, scaling, mean/std
normalisation and the layout change happen inside the module so that an exported graph
needs nothing from its caller but the sampled frames. All reshapes use S, T and the crop
from the spec and ``-1`` for the batch, so a traced or exported graph keeps a dynamic batch
axis and has no data-dependent control flow.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from gifsent_infer.contract import EncoderInfo, Normalization, SamplingSpec
from gifsent_infer.errors import GifsentError


class WeightsUnavailableError(GifsentError, RuntimeError):
    """Pretrained weights could not be found or downloaded; the message says how to get them."""


class WeightsFormatError(GifsentError, ValueError):
    """A weights file exists but does not match the network (format, keys or shapes)."""


def _exporting() -> bool:
    """True while torch traces or exports, where Python-side input checks must stay out of the graph."""
    compiler = getattr(torch, "compiler", None)
    return bool(
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or (compiler is not None and compiler.is_compiling())
        or torch.onnx.is_in_onnx_export()
    )


class Encoder(nn.Module):
    """Base class. Subclasses set up their network and implement ``segment_features``.

    ``layout`` is "ncthw" for clip (3D) networks, whose segment is a clip of T frames, and
    "nchw" for per-frame (2D) networks, which need T = 1.

    Provenance of the weights travels with the instance: ``weights_path`` is the local file
    they were read from ("" when none), ``weights_source`` a short human-readable origin
    ("random", a file name, a torchvision weights id), ``weights_sha256`` the file's hash,
    ``random_init`` whether the network was deliberately left at random initialisation.
    """

    layout: str = "ncthw"

    def __init__(
        self,
        *,
        name: str,
        spec: SamplingSpec,
        normalization: Normalization,
        feature_dim: int,
        description: str = "",
    ) -> None:
        super().__init__()
        if self.layout not in ("ncthw", "nchw"):
            raise ValueError(f"unknown encoder layout {self.layout!r}")
        if self.layout == "nchw" and spec.frames_per_segment != 1:
            raise ValueError(
                f"{name}: a per-frame (2D) encoder needs frames_per_segment == 1, "
                f"got {spec.frames_per_segment}"
            )
        self.name = name
        self.spec = spec
        self.normalization = normalization
        self.feature_dim = int(feature_dim)
        self.description = description
        self.weights_path = ""
        self.weights_source = "random"
        self.weights_sha256 = ""
        self.random_init = True
        self.loaded_fingerprint: torch.Tensor | None = None
        self.channels_last = False  # see set_channels_last
        # Non-persistent: they are derived from `normalization`, which the checkpoint stores,
        # and must not disturb strict loading of published backbone weights.
        self.register_buffer(
            "pixel_mean", torch.tensor(normalization.mean, dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(normalization.std, dtype=torch.float32), persistent=False
        )

    # -- provenance -------------------------------------------------------------------------

    def set_weights_provenance(
        self, *, path: str | Path = "", source: str, sha256: str = "", random_init: bool = False
    ) -> None:
        self.weights_path = str(path) if path else ""
        self.weights_source = source
        self.weights_sha256 = sha256
        self.random_init = random_init
        # What the weights file gave; a checkpoint may refer to the file only while it holds.
        self.loaded_fingerprint = self.weights_fingerprint() if self.weights_path else None

    @torch.no_grad()
    def weights_fingerprint(self) -> torch.Tensor:
        """Per-tensor sums and sums of squares (float64) of the state: detects changed weights."""
        parts = []
        for v in self.state_dict().values():
            # contiguous: the fingerprint must not depend on the memory format (channels-last)
            v = v.detach().to("cpu", torch.float64).contiguous()
            parts += [v.sum(), v.square().sum()]
        return torch.stack(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def info(self) -> EncoderInfo:
        return EncoderInfo(
            name=self.name,
            feature_dim=self.feature_dim,
            weights=self.weights_source,
            weights_sha256=self.weights_sha256,
            description=self.description,
        )

    # -- the forward path -------------------------------------------------------------------

    def check_frames(self, frames_u8: torch.Tensor) -> None:
        """Clear errors for wrong inputs in eager mode; skipped while tracing or exporting."""
        if _exporting():
            return
        s = self.spec
        want = (s.num_frames, s.crop, s.crop, 3)
        if frames_u8.dim() != 5 or tuple(frames_u8.shape[1:]) != want:
            raise ValueError(
                f"{self.name} expects frames [batch, {want[0]}, {want[1]}, {want[2]}, 3] "
                f"(S={s.segments} x T={s.frames_per_segment}, crop {s.crop}), "
                f"got {list(frames_u8.shape)}"
            )

    def preprocess(self, frames_u8: torch.Tensor) -> torch.Tensor:
        """uint8 [B, S*T, H, W, 3] -> float32 [B*S, 3, T, H, W] (ncthw) or [B*S, 3, H, W] (nchw)."""
        self.check_frames(frames_u8)
        s = self.spec
        n = self.normalization
        # Compute in the module's dtype (float32 unless converted with .half() for export).
        x = frames_u8.to(self.pixel_mean.dtype)
        # (x * scale - mean) / std per RGB channel, while channels are still last.
        if n.scale != 1.0:
            x = x * n.scale
        x = (x - self.pixel_mean) / self.pixel_std
        if self.layout == "ncthw":
            x = x.reshape(-1, s.frames_per_segment, s.crop, s.crop, 3)  # (B*S, T, H, W, C)
            x = x.permute(0, 4, 1, 2, 3)  # (B*S, C, T, H, W)
        else:
            x = x.reshape(-1, s.crop, s.crop, 3)  # (B*S, H, W, C), T == 1
            x = x.permute(0, 3, 1, 2)  # (B*S, C, H, W)
        # The permuted view already has channels-last strides; keep them when asked to.
        return x if self.channels_last else x.contiguous()

    def set_channels_last(self, enabled: bool = True) -> Encoder:
        """Run convolutions in channels-last memory format (often faster on CPUs); numerics unchanged."""
        self.channels_last = bool(enabled)
        if self.layout == "ncthw":
            fmt = torch.channels_last_3d if enabled else torch.contiguous_format
        else:
            fmt = torch.channels_last if enabled else torch.contiguous_format
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                m.weight.data = m.weight.data.contiguous(memory_format=fmt)
        return self

    def segment_features(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed segments [N, 3, (T,) H, W] -> features [N, D]. Subclasses implement it."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed segments (see `preprocess`) -> [B, S, D]."""
        return self.segment_features(x).reshape(-1, self.spec.segments, self.feature_dim)

    def forward(self, frames_u8: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.preprocess(frames_u8))

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"name={self.name!r}, S={s.segments}, T={s.frames_per_segment}, crop={s.crop}, "
            f"D={self.feature_dim}, weights={self.weights_source!r}"
        )
