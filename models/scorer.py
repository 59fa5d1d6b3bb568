"""The fused scorer: uint8 frames [B, S*T, H, W, 3] -> scores [B, 17], everything numeric inside.

This is the module that is exported to ONNX: the encoder's preprocessing and network, then
the head. It has no data-dependent control flow; its batch axis is the only dynamic one.

Named outputs: `GifScorer.named_outputs(frames)` computes every output the fused graph can
carry from ONE encoder pass, by name (`OUTPUTS`): `scores` [B, 17], and `features` [B, D],
the encoder's per-segment features [B, S, D] averaged over the S segments (the pooled vector
the head reads; for embeddings and similarity search). `NamedOutputs(scorer, names)` is the
module export traces: it returns those outputs as a tuple in `names` order, so the ONNX
graph's outputs are named and ordered by the same list.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gifsent_models.encoders.base import Encoder

SCORES = "scores"
FEATURES = "features"
# name -> what it is; the fused graph carries any of them, `scores` always first
OUTPUTS = {
    SCORES: "float32 [batch, 17]: the 17 emotion scores",
    FEATURES: "float32 [batch, D]: the encoder's per-segment features, mean over segments",
}


def pool_features(features: torch.Tensor) -> torch.Tensor:
    """[B, S, D] per-segment features -> [B, D]: the mean over segments."""
    return features.mean(dim=1)


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

    def named_outputs(self, frames_u8: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output of `OUTPUTS`, from one encoder pass."""
        features = self.encoder(frames_u8)  # (B, S, D)
        return {SCORES: self.head(features), FEATURES: pool_features(features)}


class NamedOutputs(nn.Module):
    """`scorer` returning the outputs `names` (of `OUTPUTS`) as a tuple, for export."""

    def __init__(self, scorer: GifScorer, names: Sequence[str] = (SCORES, FEATURES)) -> None:
        super().__init__()
        unknown = [n for n in names if n not in OUTPUTS]
        if unknown or not names or names[0] != SCORES:
            raise ValueError(f"outputs must start with {SCORES!r} and be among {list(OUTPUTS)}")
        self.scorer = scorer
        self.names = tuple(names)

    @property
    def spec(self):
        return self.scorer.spec

    def forward(self, frames_u8: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.scorer.named_outputs(frames_u8)
        return tuple(out[n] for n in self.names)
