"""The fused scorer: uint8 frames [B, S*T, H, W, 3] -> scores [B, 17], everything numeric inside.

This is the module that is exported to ONNX: the encoder's preprocessing and network, then
the head. It has no data-dependent control flow; its batch axis is the only dynamic one.

Named outputs: `GifScorer.named_outputs(frames, names)` computes the outputs the fused graph
can carry, by name (`OUTPUTS`), from ONE encoder pass: `scores` [B, 17] always;
`segment_scores` [B, S, 17], the timeline (what it means per head:
gifsent_infer.contract.SEGMENT_MEANINGS); `scores_std` [B, 17] when the head is an
`EnsembleHead` of K heads (`scores` is then their mean). `NamedOutputs(scorer, names)` is the
module export traces: it returns those outputs as a tuple in `names` order, so the ONNX
graph's outputs are named and ordered by the same list. A new output is one more entry in
`OUTPUTS` and in `named_outputs`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gifsent_infer.contract import OUTPUT_NAME, SEGMENT_SCORES, STD_NAME
from gifsent_models.encoders.base import Encoder
from gifsent_models.heads import EnsembleHead, head_outputs

SCORES = OUTPUT_NAME
# name -> what it is; the fused graph carries any of them, `scores` always first
OUTPUTS = {
    SCORES: "float32 [batch, 17]: the 17 emotion scores (the mean of K heads for an ensemble)",
    SEGMENT_SCORES: "float32 [batch, S, 17]: the timeline, per-segment scores in time order",
    STD_NAME: "float32 [batch, 17]: spread of an ensemble's K heads (ensembles only)",
}
_HEAD_OUTPUTS = (SCORES, SEGMENT_SCORES, STD_NAME)


class GifScorer(nn.Module):
    def __init__(self, encoder: Encoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    @property
    def spec(self):
        return self.encoder.spec

    @property
    def available_outputs(self) -> tuple[str, ...]:
        """The names of OUTPUTS this scorer can give (scores_std needs an ensemble head)."""
        ensemble = isinstance(self.head, EnsembleHead)
        return tuple(n for n in OUTPUTS if n != STD_NAME or ensemble)

    def forward(self, frames_u8: torch.Tensor) -> torch.Tensor:
        features = self.encoder(frames_u8)  # (B, S, D)
        return self.head(features)  # (B, 17)

    def named_outputs(
        self, frames_u8: torch.Tensor, names: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """{name: tensor} for `names` (default: every available output), one encoder pass."""
        names = tuple(names or self.available_outputs)
        unknown = [n for n in names if n not in self.available_outputs]
        if unknown:
            raise ValueError(f"no output(s) {unknown}; available: {list(self.available_outputs)}")
        features = self.encoder(frames_u8)  # (B, S, D)
        out = head_outputs(self.head, features, [n for n in names if n in _HEAD_OUTPUTS])
        return {n: out[n] for n in names}


class NamedOutputs(nn.Module):
    """`scorer` returning the outputs `names` (of `OUTPUTS`) as a tuple, for export."""

    def __init__(self, scorer: GifScorer, names: Sequence[str] = (SCORES,)) -> None:
        super().__init__()
        names = tuple(names)
        unknown = [n for n in names if n not in scorer.available_outputs]
        if unknown or not names or names[0] != SCORES or len(set(names)) != len(names):
            raise ValueError(
                f"outputs must start with {SCORES!r} and be distinct names among "
                f"{list(scorer.available_outputs)}, got {list(names)}"
            )
        self.scorer = scorer
        self.names = names

    @property
    def spec(self):
        return self.scorer.spec

    def forward(self, frames_u8: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.scorer.named_outputs(frames_u8, self.names)
        return tuple(out[n] for n in self.names)
