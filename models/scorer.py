"""The fused scorer: uint8 frames [B, S*T, H, W, 3] -> scores [B, 17], everything numeric inside.

This is the module that is exported to ONNX: the encoder's preprocessing and network, then
the head. It has no data-dependent control flow; its batch axis is the only dynamic one.
"""

from __future__ import annotations

import torch
from torch import nn

from gifsent_models.encoders.base import Encoder


class GifScorer(nn.Module):
    def __init__(self, encoder: Encoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    @property
    def spec(self):
        return self.encoder.spec

    def forward(self, frames_u8: torch.Tensor) -> torch.Tensor:
        features = self.encoder(frames_u8)  # (B, S, D)
        return self.head(features)  # (B, 17)
