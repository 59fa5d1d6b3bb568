"""The fused scorer: uint8 frames [B, S*T, H, W, 3] -> named outputs, everything numeric inside.

This is the module that is exported to ONNX: the encoder's preprocessing and network, then
the head. It has no data-dependent control flow; its batch axis is the only dynamic one.

Its outputs are named (gifsent_infer.contract: `scores` [B, 17] always, `segment_scores`
[B, S, 17], `scores_std` [B, 17] for an ensemble head): `compute(frames, names)` gives a
dict, and `with_outputs(names)` is the same module whose forward returns those outputs as
a tuple in that order, which is what export hands to the ONNX exporter together with the
same names (the only place where a name meets a position). A new output is one more entry
in `OUTPUTS` below. `features` [B, D] is the encoder's per-segment features averaged over
segments (`pool_features`): the pooled vector the head reads, for embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gifsent_infer.contract import OUTPUT_NAME
from gifsent_models.encoders.base import Encoder
from gifsent_models.heads import HeadConfigError, head_output_names, head_outputs


def _head_part(scorer: GifScorer, features: torch.Tensor, names, cache: dict) -> dict:
    return head_outputs(scorer.head, features, names)


def _features_part(scorer: GifScorer, features: torch.Tensor, names, cache: dict) -> dict:
    # `features` [B, D]: the encoder's per-segment features averaged over the S segments,
    # the pooled vector the head reads (embeddings, similarity search)
    return {"features": pool_features(features)}


def pool_features(features: torch.Tensor) -> torch.Tensor:
    """[B, S, D] per-segment features -> [B, D]: the mean over segments."""
    return features.mean(dim=1)


# name -> who computes it from the encoder's features [B, S, D]; outputs sharing a computer
# are computed together (one LSTM pass for scores and segment_scores).
OUTPUTS = dict.fromkeys(("scores", "segment_scores", "scores_std"), _head_part)
OUTPUTS["features"] = _features_part


class GifScorer(nn.Module):
    def __init__(self, encoder: Encoder, head: nn.Module, outputs=(OUTPUT_NAME,)) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.output_names: tuple[str, ...] = ()
        self._set_outputs(outputs)

    def _set_outputs(self, names) -> None:
        names = tuple(names)
        bad = [n for n in names if n not in self.available_outputs]
        if not names or bad or len(set(names)) != len(names):
            raise HeadConfigError(
                f"cannot output {list(names)}: choose distinct names among "
                f"{list(self.available_outputs)}"
            )
        self.output_names = names

    @property
    def spec(self):
        return self.encoder.spec

    @property
    def available_outputs(self) -> tuple[str, ...]:
        by_head = head_output_names(self.head)
        return tuple(n for n, fn in OUTPUTS.items() if fn is not _head_part or n in by_head)

    def with_outputs(self, names) -> GifScorer:
        """The same modules (shared, not copied) with forward returning `names` in order."""
        twin = GifScorer(self.encoder, self.head, names)
        return twin.train(self.training)

    def compute(self, frames_u8: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        """{name: tensor} for `names` (default: this module's outputs); the encoder runs once."""
        names = tuple(names or self.output_names)
        features = self.encoder(frames_u8)  # (B, S, D)
        groups: dict = {}
        for n in names:
            groups.setdefault(OUTPUTS[n], []).append(n)
        out: dict[str, torch.Tensor] = {}
        cache: dict = {}
        for fn, group in groups.items():
            out.update(fn(self, features, group, cache))
        return {n: out[n] for n in names}

    def forward(self, frames_u8: torch.Tensor):
        if self.output_names == (OUTPUT_NAME,):
            return self.head(self.encoder(frames_u8))  # (B, 17): the plain scoring graph
        out = self.compute(frames_u8)
        return tuple(out[n] for n in self.output_names)

    # -- the same, by the names export's checks and the tests use -------------------------
    def named_outputs(
        self, frames_u8: torch.Tensor, names: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """{name: tensor} for `names` (default: every available output), one encoder pass."""
        return self.compute(frames_u8, tuple(names or self.available_outputs))


def NamedOutputs(scorer: GifScorer, names: Sequence[str] = (OUTPUT_NAME,)) -> GifScorer:
    """`scorer` (its modules shared) whose forward returns `names` as a tuple, `scores` first:
    the module export traces, with the same names as the graph's outputs."""
    names = tuple(names)
    if not names or names[0] != OUTPUT_NAME:
        raise ValueError(f"outputs must start with {OUTPUT_NAME!r}, got {list(names)}")
    return scorer.with_outputs(names)
