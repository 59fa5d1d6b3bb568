"""The heads, [B, S, D] segment features -> [B, 17] scores: the study's `maxpool` and `rnn` (LSTM), and `linear`.

`linear` is the ridge baseline made a first-class head: mean over segments, then one
affine map. Its weights are not trained by gradient descent but solved in closed form
(gifsent_train.metrics.RidgeBaseline, penalty chosen on dev) and loaded with
`LinearHead.set_affine`, so it exports, fuses and scores like the other heads.

Each head's config is a small dataclass that owns its defaults and limits; `head_config`
turns a plain dict (from a search space, a JSON run config or a checkpoint) into one,
rejecting unknown keys and out-of-range values, and `create_head` builds the module.
Named outputs (the fused graph's, see gifsent_models.scorer): every head gives `scores`
[B, 17] and `segment_scores` [B, S, 17], the timeline (what each value means per head is
gifsent_infer.contract.SEGMENT_MEANINGS; MaxPool's is a readout of its own unless its config
says `timeline="shared"`, see MaxPoolConfig); an `EnsembleHead` of K heads on one encoder adds
`scores_std` [B, 17], the spread of its heads. `head_outputs(head, x, names)` computes any
of them from one pass over the features.

Outputs are linear: the targets are min-max scaled Bradley-Terry strengths trained with
MSE, and a squashing output would make the already "too conservative" predictions worse.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

from gifsent_infer.contract import (
    HEADS,
    NUM_EMOTIONS,
    OUTPUT_NAME,
    SEGMENT_SCORES,
    STD_NAME,
)
from gifsent_infer.errors import USAGE, GifsentError


class HeadConfigError(GifsentError, ValueError):
    """A head name or config value gifsent cannot use; the message says which and why."""

    exit_code = USAGE


@dataclass(frozen=True)
class MaxPoolConfig:
    """FC-MaxPool: max over segments, then `num_layers` fully connected layers (the last -> 17)."""

    # The study searched 2..8 fully connected layers, the last one being the output layer.
    num_layers: int = 2
    # Width of every hidden layer; 256 keeps the head small next to a 2048-d input, which
    # matters with ~5k training GIFs.
    hidden: int = 256
    # Dropout after each hidden activation; the training set is small, so some is needed.
    dropout: float = 0.1
    # What its timeline (`segment_scores`) is. "mil": the readout, a second MLP with the same
    # layers (its input twice as wide), applied to each segment's features beside their
    # difference from the GIF's mean segment (what stands out in that segment) and trained
    # beside the head (no shared weights) so that the max of its per-segment outputs explains
    # each GIF's label (multiple-instance learning): the timeline peaks where the emotion is,
    # and the score path trains exactly as without it. "shared": the score MLP itself on each
    # segment (what the max pools over), the only meaning before this field existed: a stored
    # config without it is "shared" (`stored_head_config`). New heads get "mil".
    timeline: str = "mil"

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "num_layers": (2, 8),
        "hidden": (1, 8192),
        "dropout": (0.0, 0.95),
    }
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"timeline": ("mil", "shared")}


@dataclass(frozen=True)
class RNNConfig:
    """LSTM over the segment sequence; the last layer's final output -> one FC layer -> 17."""

    # The study's best model: 2 layers, 64 hidden units, dropout 0.1705 between layers
    # (test RMSE 0.0761, explained variance 0.408).
    num_layers: int = 2
    hidden: int = 64
    # Between stacked LSTM layers (PyTorch's `dropout`); unused when num_layers == 1.
    dropout: float = 0.1705
    # What its timeline (`segment_scores`) is. "mil": a readout beside the LSTM, as MaxPool's
    # (MaxPoolConfig.timeline; MaxPool's default layers: 2, 256 wide, dropout 0.1), trained so
    # that the max of its per-segment outputs explains each GIF's label: it peaks where the
    # emotion is, and the LSTM and its scores train exactly as without it. "state": the FC
    # layer on the LSTM state after each segment, the running estimate (its last value is the
    # score; its level stays up after a moment, so only its rises say where), the only
    # meaning before this field existed: a stored config without it is "state". New heads
    # get "mil".
    timeline: str = "mil"

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "num_layers": (1, 8),
        "hidden": (1, 4096),
        "dropout": (0.0, 0.95),
    }
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"timeline": ("mil", "state")}


@dataclass(frozen=True)
class LinearConfig:
    """Ridge regression on segment-mean features: mean over segments -> one Linear -> 17."""

    # The ridge penalty the weights were solved with (on standardised features), chosen on
    # dev from a log grid; recorded for provenance, it does not change the forward pass.
    alpha: float = 1.0

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"alpha": (0.0, 1e12)}


CONFIGS: dict[str, type] = {"maxpool": MaxPoolConfig, "rnn": RNNConfig, "linear": LinearConfig}
assert tuple(CONFIGS) == HEADS


def _validate(name: str, cfg: Any) -> None:
    choices = getattr(cfg, "CHOICES", {})
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in choices:
            if value not in choices[f.name]:
                raise HeadConfigError(
                    f"{name} head: {f.name} must be one of {list(choices[f.name])}, got {value!r}"
                )
            continue
        lo, hi = cfg.LIMITS[f.name]
        if f.type in ("int", int):
            ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
            kind = "an integer"
        else:
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
                and lo <= value <= hi
            )
            kind = "a number"
        if not ok:
            raise HeadConfigError(
                f"{name} head: {f.name} must be {kind} in [{lo}, {hi}], got {value!r}"
            )


def head_config(name: str, data: dict[str, Any] | Any | None = None):
    """Resolve a head config: defaults filled in, unknown keys and bad values rejected."""
    if name not in CONFIGS:
        raise HeadConfigError(f"unknown head {name!r}; available: {', '.join(HEADS)}")
    cls = CONFIGS[name]
    if data is None:
        cfg = cls()
    elif isinstance(data, cls):
        cfg = data
    elif isinstance(data, dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HeadConfigError(
                f"{name} head: unknown config key(s) {unknown}; known: {sorted(known)}"
            )
        cfg = cls(**data)
    else:
        raise HeadConfigError(
            f"{name} head: config must be a dict or {cls.__name__}, got {type(data).__name__}"
        )
    _validate(name, cfg)
    return cfg


def config_dict(cfg: Any) -> dict[str, Any]:
    """The JSON-ready form of a head config (what checkpoints and the contract store)."""
    return asdict(cfg)


# Fields added to a head's config after checkpoints were written without them, with the value
# that reproduces what those checkpoints did (not the default a new head gets).
_STORED_BEFORE = {"maxpool": {"timeline": "shared"}, "rnn": {"timeline": "state"}}


def stored_head_config(name: str, data: Any):
    """A head config read back from a checkpoint, a contract document or a search trial: like
    `head_config`, but a field the writer's gifsent did not know yet takes the value that
    behaves as that gifsent did (a MaxPool config without `timeline` is "shared")."""
    if isinstance(data, dict):
        data = {**_STORED_BEFORE.get(name, {}), **data}
    return head_config(name, data)


def _mlp(in_dim: int, cfg: MaxPoolConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(cfg.num_layers - 1):
        layers += [nn.Linear(width, cfg.hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
        width = cfg.hidden
    layers.append(nn.Linear(width, NUM_EMOTIONS))
    return nn.Sequential(*layers)


class MaxPoolHead(nn.Module):
    """Max over segments, then the MLP. With `timeline="mil"` it also holds `readout`, a
    second MLP with the same layers for the timeline (see MaxPoolConfig.timeline); it is built
    after `mlp`, so a seed gives the score MLP the same initial weights in both modes, and the
    scores never read it. Training code finds it by the attribute `readout` (train/fit.py)."""

    name = "maxpool"

    def __init__(self, in_dim: int, cfg: MaxPoolConfig) -> None:
        super().__init__()
        self.config = cfg
        self.mlp = _mlp(in_dim, cfg)
        # [x_s, x_s - mean over s of x] -> 17 (BENCHMARKS.md, issue 22's fourth push: the
        # GIF-centred half lifts how often the timeline peaks in the moment)
        self.readout = _mlp(2 * in_dim, cfg) if cfg.timeline == "mil" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, S, D) -> (B, D): the strongest response of each feature over the segments.
        return self.mlp(x.amax(dim=1))

    def segment_scores(self, x: torch.Tensor) -> torch.Tensor:
        # (B, S, D) -> (B, S, 17), an MLP acting on the last axis (dropout off in eval mode).
        # "shared": the score MLP on each segment alone, i.e. what the max pools over.
        if self.readout is None:
            return self.mlp(x)
        # "mil": the readout on each segment beside how it differs from the GIF's mean segment
        return self.readout(readout_input(x))


def readout_input(x: torch.Tensor) -> torch.Tensor:
    """(B, S, D) -> (B, S, 2D): each segment's features, then their difference from the mean
    segment of the GIF (any S: the timeline can be sampled finer than the model's S)."""
    return torch.cat([x, x - x.mean(dim=1, keepdim=True)], dim=-1)


class RNNHead(nn.Module):
    name = "rnn"

    def __init__(self, in_dim: int, cfg: RNNConfig) -> None:
        super().__init__()
        self.config = cfg
        self.lstm = nn.LSTM(
            in_dim,
            cfg.hidden,
            num_layers=cfg.num_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        self.fc = nn.Linear(cfg.hidden, NUM_EMOTIONS)
        # built after the LSTM and fc, so a seed gives them the same weights in both modes
        self.readout = _mlp(2 * in_dim, MaxPoolConfig()) if cfg.timeline == "mil" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (B, S, hidden): the last layer's output at every segment
        return self.fc(out[:, -1])  # the final segment's output -> (B, 17)

    def segment_scores(self, x: torch.Tensor) -> torch.Tensor:
        # (B, S, D) -> (B, S, 17). "mil": the readout on each segment beside how it differs
        # from the GIF's mean segment; "state": the FC layer on the state after each segment,
        # the running estimate, whose last segment is the head's score
        if self.readout is not None:
            return self.readout(readout_input(x))
        out, _ = self.lstm(x)
        return self.fc(out)

    def scores_and_segments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.readout is not None:
            return self.forward(x), self.segment_scores(x)
        seg = self.segment_scores(x)  # the LSTM runs once for both outputs
        return seg[:, -1], seg


class LinearHead(nn.Module):
    name = "linear"

    def __init__(self, in_dim: int, cfg: LinearConfig) -> None:
        super().__init__()
        self.config = cfg
        self.fc = nn.Linear(in_dim, NUM_EMOTIONS)

    @torch.no_grad()
    def set_affine(self, weight, bias) -> LinearHead:
        """Load a solved map: weight [17, D] and bias [17] on segment-mean features."""
        w = torch.as_tensor(weight, dtype=torch.float32)
        b = torch.as_tensor(bias, dtype=torch.float32)
        if tuple(w.shape) != tuple(self.fc.weight.shape) or tuple(b.shape) != (NUM_EMOTIONS,):
            raise HeadConfigError(
                f"linear head: weight {tuple(w.shape)} / bias {tuple(b.shape)} do not fit "
                f"{tuple(self.fc.weight.shape)} / ({NUM_EMOTIONS},)"
            )
        self.fc.weight.copy_(w)
        self.fc.bias.copy_(b)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, S, D) -> (B, D): the mean feature over segments, the ridge baseline's pooling.
        return self.fc(x.mean(dim=1))

    def segment_scores(self, x: torch.Tensor) -> torch.Tensor:
        # (B, S, D) -> (B, S, 17): the linear map of each segment's features; their mean over
        # segments is the score (the map is affine).
        return self.fc(x)


class EnsembleHead(nn.Module):
    """K heads of one kind on the same encoder features: `scores` is their mean, `scores_std`
    their spread (population standard deviation over the K heads), `segment_scores` the mean
    of their timelines. The encoder runs once for all K."""

    def __init__(self, heads: list[nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise HeadConfigError("an ensemble needs at least one head")
        names = {h.name for h in heads}
        if len(names) != 1:
            raise HeadConfigError(f"an ensemble's heads must be of one kind, got {sorted(names)}")
        timelines = {getattr(h.config, "timeline", "") for h in heads}
        if len(timelines) != 1:  # their mean timeline would mix two meanings
            raise HeadConfigError(
                f"an ensemble's heads must share one timeline kind, got {sorted(timelines)}"
            )
        self.heads = nn.ModuleList(heads)
        self.name = heads[0].name
        self.config = heads[0].config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([h(x) for h in self.heads]).mean(dim=0)


def head_output_names(head: nn.Module) -> tuple[str, ...]:
    """The named outputs `head` can give: scores and segment_scores; ensembles add scores_std."""
    names = (OUTPUT_NAME, SEGMENT_SCORES)
    return (*names, STD_NAME) if isinstance(head, EnsembleHead) else names


def _one_head(head: nn.Module, x: torch.Tensor, timeline: bool):
    if not timeline:
        return head(x), None
    both = getattr(head, "scores_and_segments", None)
    if both is not None:
        return both(x)
    return head(x), head.segment_scores(x)


def head_outputs(head: nn.Module, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
    """Features [B, S, D] -> {name: tensor} for each of `names` (see head_output_names)."""
    names = tuple(names)
    unknown = [n for n in names if n not in head_output_names(head)]
    if unknown:
        raise HeadConfigError(
            f"{head.name} head has no output(s) {unknown}; it gives {list(head_output_names(head))}"
        )
    timeline = SEGMENT_SCORES in names
    if isinstance(head, EnsembleHead):
        parts = [_one_head(h, x, timeline) for h in head.heads]
        scores = torch.stack([p[0] for p in parts])  # (K, B, 17)
        out = {OUTPUT_NAME: scores.mean(dim=0)}
        if STD_NAME in names:
            out[STD_NAME] = scores.std(dim=0, unbiased=False)
        if timeline:
            out[SEGMENT_SCORES] = torch.stack([p[1] for p in parts]).mean(dim=0)
    else:
        scores, seg = _one_head(head, x, timeline)
        out = {OUTPUT_NAME: scores, SEGMENT_SCORES: seg}
    return {n: out[n] for n in names}


_MODULES: dict[str, type] = {"maxpool": MaxPoolHead, "rnn": RNNHead, "linear": LinearHead}


def create_head(name: str, in_dim: int, config: dict[str, Any] | Any | None = None) -> nn.Module:
    """Build head `name` for features of width `in_dim`; maps [B, S, in_dim] -> [B, 17]."""
    cfg = head_config(name, config)
    if not isinstance(in_dim, int) or isinstance(in_dim, bool) or in_dim < 1:
        raise HeadConfigError(f"{name} head: in_dim must be a positive integer, got {in_dim!r}")
    return _MODULES[name](in_dim, cfg)
