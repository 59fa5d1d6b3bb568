"""The model contract: the one definition of what a gifsent model is, shared by training, export and inference.

An exported ONNX graph carries a JSON document under the metadata key ``gifsent``;
this module defines that document, parses it, and refuses what it does not understand.
Graph I/O: input ``frames`` uint8 ``[batch, S*T, crop, crop, 3]`` RGB, output ``scores``
float32 ``[batch, 17]`` in the target scale below. Everything numeric happens in the graph.
Further outputs are found by name, never by position, and the document's ``outputs``
(schema 3) says what each one means: ``segment_scores`` ``[batch, S, 17]`` (the timeline),
``features`` ``[batch, D]`` (the encoder's features averaged over segments: embeddings)
and, for a graph fusing K heads, ``scores_std`` ``[batch, 17]`` (their spread; ``scores`` is
then their mean). Its ``intervals`` (schema 3) hold the split-conformal calibration that
turns a score into an interval with a stated coverage.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from itertools import pairwise
from typing import Any

from gifsent_infer.errors import GifsentError

SCHEMA_VERSION = 3
# Versions this runtime reads. 2 added the optional `provenance` and `score_quantiles`
# fields, 3 the optional `outputs` and `intervals`; older documents load with them absent.
SUPPORTED_SCHEMA_VERSIONS = (1, 2, 3)
_V2_FIELDS = ("provenance", "score_quantiles")
_V3_FIELDS = ("outputs", "intervals")
METADATA_KEY = "gifsent"
INPUT_NAME = "frames"
OUTPUT_NAME = "scores"
SEGMENT_SCORES = "segment_scores"  # [batch, S, 17]: the timeline
STD_NAME = "scores_std"  # [batch, 17]: spread of a K-head graph's heads
FEATURES_OUTPUT = "features"  # [batch, D]: the encoder's features, mean over segments
FEATURES_MEANING = (
    "pooled encoder features [batch, D]: the encoder's per-segment features averaged over "
    "the S segments (the vector the head reads), for embeddings and similarity search"
)
# What `segment_scores` is, per head (the contract's `outputs` carries the model's line); a
# head with several kinds of timeline has one entry per kind, "<head>:<kind>" (MaxPool's
# config field `timeline`), the plain head name being what its models meant before the field.
SEGMENT_MEANINGS = {
    "maxpool": "the head applied to each segment's features alone (what the max pools over; "
    "trained on whole GIFs only, so read where it rises within a GIF, not its level)",
    "maxpool:mil": "a timeline readout beside the head: how strongly each segment shows each "
    "emotion, judged from that segment and from how it differs from the rest of the GIF, "
    "trained so that a GIF's strongest segment explains its score (it peaks where the "
    "emotion happens; the score itself comes from the head, not from it)",
    "rnn": "the head applied to the LSTM state after each segment (the running estimate; "
    "the last segment's value is the score)",
    "rnn:mil": "a timeline readout beside the LSTM: how strongly each segment shows each "
    "emotion, judged from that segment and from how it differs from the rest of the GIF, "
    "trained so that a GIF's strongest segment explains its score (it peaks where the "
    "emotion happens; the score itself comes from the LSTM, not from it)",
    "linear": "the linear map of each segment's features (their mean is the score)",
}

# GIFGIF's emotions, in GIFGIF's order; this is also the order of the `scores` output.
EMOTIONS: tuple[str, ...] = (
    "amusement",
    "anger",
    "contempt",
    "contentment",
    "disgust",
    "embarrassment",
    "excitement",
    "fear",
    "guilt",
    "happiness",
    "pleasure",
    "pride",
    "relief",
    "sadness",
    "satisfaction",
    "shame",
    "surprise",
)
NUM_EMOTIONS = len(EMOTIONS)

# "rnn" is the LSTM head everywhere a name is needed; "linear" is ridge on segment-mean features
HEADS = ("maxpool", "rnn", "linear")
PRECISIONS = ("fp32", "fp16", "int8")
# `--precision auto` runs bf16 only where the model's recorded bf16 check (metrics
# "precision_checks", written by gifsent-export) kept at least this mean per-emotion Spearman
# against fp32: the models are used as rankings, and 0.99 is what bf16 holds on trained heads.
AUTO_BF16_MIN_MEAN_SPEARMAN = 0.99
SHORT_GIF_POLICIES = ("loop",)  # segments of a short GIF wrap around the timeline
RESIZE_FILTERS = ("bilinear", "bicubic", "area")
# What a model was trained on: GIFGIF's votes, gifsent's procedural demo data, anything else.
DATASET_KINDS = ("gifgif", "procedural-demo", "custom")
DEMO_WARNING = "trained on procedural demo data: scores on real GIFs mean nothing"


class ContractError(GifsentError, ValueError):
    """A metadata document or spec that gifsent cannot use; the message says why."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ContractError(msg)


def _check_version(version: Any) -> None:
    _check(
        version in SUPPORTED_SCHEMA_VERSIONS and isinstance(version, int),
        f"unsupported gifsent schema version {version!r}; this gifsent understands "
        f"versions {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))} "
        "(upgrade gifsent or re-export the model)",
    )


def _from_dict(cls, data: Any, where: str):
    """Build dataclass `cls` from a JSON object, rejecting unknown and missing keys."""
    _check(isinstance(data, dict), f"{where}: expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    _check(not unknown, f"{where}: unknown field(s) {unknown}")
    try:
        return cls(**data)
    except TypeError as e:  # missing required fields
        raise ContractError(f"{where}: {e}") from None


@dataclass(frozen=True)
class SamplingSpec:
    """How a GIF becomes the graph's `frames` input; identical for training and inference.

    The GIF is a timeline where each frame shows for its (clamped) delay. S segment start
    times are spread evenly over the duration: t_s = (s + offset) * duration / S. Segment s
    holds T frames at times t_s + k / fps, taken modulo the duration (loop padding), so short
    GIFs are padded, never dropped. Frames are composited over `matte`, resized so the
    shorter side is `size`, then centre-cropped to `crop` x `crop`.
    """

    segments: int  # S; fixed per model so the graph's frames axis is static
    frames_per_segment: int  # T; 1 for per-frame (2D) encoders
    fps: float  # rate at which a segment's T frames are taken from the timeline
    size: int  # shorter side after resize, pixels
    crop: int  # centre crop, square, pixels (<= size)
    matte: tuple[int, int, int] = (255, 255, 255)  # RGB under transparent pixels
    short_gif: str = "loop"
    resize_filter: str = "bilinear"
    # Browsers show frames with a delay under `min_delay_ms` for `clamped_delay_ms`.
    min_delay_ms: int = 20
    clamped_delay_ms: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "matte", tuple(int(c) for c in self.matte))
        self.validate()

    @property
    def num_frames(self) -> int:
        """S * T: the static size of the graph's frames axis."""
        return self.segments * self.frames_per_segment

    def validate(self) -> None:
        _check(
            isinstance(self.segments, int) and self.segments >= 1,
            f"sampling.segments must be an integer >= 1, got {self.segments!r}",
        )
        _check(
            isinstance(self.frames_per_segment, int) and self.frames_per_segment >= 1,
            f"sampling.frames_per_segment must be an integer >= 1, got {self.frames_per_segment!r}",
        )
        _check(
            isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0,
            f"sampling.fps must be a positive number, got {self.fps!r}",
        )
        _check(
            isinstance(self.size, int) and self.size >= 1,
            f"sampling.size must be a positive integer, got {self.size!r}",
        )
        _check(
            isinstance(self.crop, int) and 1 <= self.crop <= self.size,
            f"sampling.crop must be an integer in [1, size={self.size}], got {self.crop!r}",
        )
        _check(
            len(self.matte) == 3 and all(0 <= c <= 255 for c in self.matte),
            f"sampling.matte must be three integers in 0..255, got {self.matte!r}",
        )
        _check(
            self.short_gif in SHORT_GIF_POLICIES,
            f"sampling.short_gif must be one of {SHORT_GIF_POLICIES}, got {self.short_gif!r}",
        )
        _check(
            self.resize_filter in RESIZE_FILTERS,
            f"sampling.resize_filter must be one of {RESIZE_FILTERS}, got {self.resize_filter!r}",
        )
        _check(
            self.min_delay_ms >= 0 and self.clamped_delay_ms > 0,
            "sampling delay clamp must have min_delay_ms >= 0 and clamped_delay_ms > 0",
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["matte"] = list(self.matte)
        return d

    @classmethod
    def from_dict(cls, data: Any) -> SamplingSpec:
        return _from_dict(cls, data, "sampling")


@dataclass(frozen=True)
class Normalization:
    """Inside the graph: x = (uint8 * scale - mean) / std, per RGB channel."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float = 1.0  # 1.0: pixels in 0..255 (Hara et al.); 1/255: pixels in 0..1

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        _check(len(self.mean) == 3, "normalization.mean must have 3 values (RGB)")
        _check(len(self.std) == 3, "normalization.std must have 3 values (RGB)")
        _check(all(s > 0 for s in self.std), "normalization.std must be positive")
        _check(self.scale > 0, "normalization.scale must be positive")

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "scale": self.scale}

    @classmethod
    def from_dict(cls, data: Any) -> Normalization:
        return _from_dict(cls, data, "normalization")


@dataclass(frozen=True)
class EncoderInfo:
    name: str  # registry name, e.g. "resnext101-kinetics", "efficientnet-lite0"
    feature_dim: int  # D, per segment
    weights: str = ""  # where the weights came from (file name, "random", torchvision id)
    weights_sha256: str = ""
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> EncoderInfo:
        return _from_dict(cls, data, "encoder")


@dataclass(frozen=True)
class HeadInfo:
    name: str  # "maxpool", "rnn" or "linear"
    config: dict[str, Any] = field(default_factory=dict)  # the head's resolved config

    def __post_init__(self) -> None:
        _check(self.name in HEADS, f"head.name must be one of {HEADS}, got {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "config": dict(self.config)}

    @classmethod
    def from_dict(cls, data: Any) -> HeadInfo:
        return _from_dict(cls, data, "head")


@dataclass(frozen=True)
class TargetScale:
    """Maps scores back to Bradley-Terry strengths (logit units).

    kind "minmax": score = (strength - low) / (high - low), per emotion, so scores of the
    training data span [0, 1]; strength = low + score * (high - low).
    kind "identity": scores are strengths.
    """

    kind: str = "minmax"
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", tuple(float(v) for v in self.low))
        object.__setattr__(self, "high", tuple(float(v) for v in self.high))
        _check(
            self.kind in ("minmax", "identity"),
            f"target.kind must be 'minmax' or 'identity', got {self.kind!r}",
        )
        if self.kind == "minmax":
            _check(
                len(self.low) == NUM_EMOTIONS and len(self.high) == NUM_EMOTIONS,
                f"target 'minmax' needs {NUM_EMOTIONS} low and high values, "
                f"got {len(self.low)} and {len(self.high)}",
            )
            _check(
                all(h > lo for lo, h in zip(self.low, self.high, strict=True)),
                "target 'minmax' needs high > low for every emotion",
            )

    def to_strength(self, scores):
        """scores [..., 17] -> Bradley-Terry strengths [..., 17] (works on numpy arrays)."""
        if self.kind == "identity":
            return scores
        import numpy as np

        low = np.asarray(self.low, dtype=np.float64)
        high = np.asarray(self.high, dtype=np.float64)
        return low + np.asarray(scores, dtype=np.float64) * (high - low)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_dict(cls, data: Any) -> TargetScale:
        return _from_dict(cls, data, "target")


@dataclass(frozen=True)
class Provenance:
    """What a model was trained on (schema 2). Export fills it from the training run."""

    dataset_kind: str  # one of DATASET_KINDS
    dataset_name: str = ""  # e.g. the votes file's name, or the demo folder's
    gifs: int | None = None  # GIFs with Bradley-Terry scores (all splits)
    comparisons: int | None = None  # decisive pairwise comparisons the scores were fitted on
    train_gifs: int | None = None  # GIFs in the training split (what score_quantiles cover)
    vote_cutoff: str = ""  # ISO date of the last vote where known (GIFGIF: 2015-01-21)
    encoder_weights: str = ""  # where the encoder's weights came from
    run_id: str = ""  # the training run's folder name

    def __post_init__(self) -> None:
        _check(
            self.dataset_kind in DATASET_KINDS,
            f"provenance.dataset_kind must be one of {DATASET_KINDS}, got {self.dataset_kind!r}",
        )
        for name in ("gifs", "comparisons", "train_gifs"):
            v = getattr(self, name)
            _check(
                v is None or (isinstance(v, int) and v >= 0),
                f"provenance.{name} must be a non-negative integer or null, got {v!r}",
            )

    @property
    def is_demo(self) -> bool:
        return self.dataset_kind == "procedural-demo"

    def summary(self) -> str:
        """One line for people: 'procedural-demo: demo (...), 600 GIFs, 81,600 comparisons, ...'."""
        parts = [self.dataset_kind + (f": {self.dataset_name}" if self.dataset_name else "")]
        if self.gifs is not None:
            parts.append(f"{self.gifs:,} GIFs")
        if self.comparisons is not None:
            parts.append(f"{self.comparisons:,} comparisons")
        if self.vote_cutoff:
            parts.append(f"votes until {self.vote_cutoff}")
        if self.encoder_weights:
            parts.append(f"encoder weights {self.encoder_weights}")
        if self.run_id:
            parts.append(f"run {self.run_id}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Provenance:
        return _from_dict(cls, data, "provenance")


@dataclass(frozen=True)
class ScoreQuantiles:
    """Each emotion's score distribution over the training GIFs (schema 2).

    values[e][i] is the `levels[i]`-th percentile of emotion e's training targets, in the
    `scores` output's scale. Runtime percentiles are exact at these points and linear in
    between (gifsent_infer.running.readable.percentile).
    """

    levels: tuple[float, ...]  # percent, strictly increasing, within [0, 100]
    values: dict[str, tuple[float, ...]]  # emotion -> non-decreasing, len(levels) values
    gifs: int = 0  # training GIFs the quantiles were computed over
    source: str = "training targets"  # what was measured (Bradley-Terry targets, not predictions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        _check(isinstance(self.values, dict), "score_quantiles.values must be a JSON object")
        object.__setattr__(
            self, "values", {e: tuple(float(v) for v in vs) for e, vs in self.values.items()}
        )
        lv = self.levels
        _check(len(lv) >= 2, "score_quantiles.levels needs at least two levels")
        _check(
            all(0.0 <= v <= 100.0 for v in lv) and all(a < b for a, b in pairwise(lv)),
            "score_quantiles.levels must be strictly increasing percentages within [0, 100]",
        )
        _check(
            set(self.values) == set(EMOTIONS),
            f"score_quantiles.values must have the {NUM_EMOTIONS} emotions, got "
            f"{sorted(self.values)}",
        )
        for e, vs in self.values.items():
            _check(
                len(vs) == len(lv) and all(math.isfinite(v) for v in vs),
                f"score_quantiles.values[{e!r}] must hold {len(lv)} finite numbers",
            )
            _check(
                all(a <= b for a, b in pairwise(vs)),
                f"score_quantiles.values[{e!r}] must be non-decreasing",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "levels": list(self.levels),
            "values": {e: list(self.values[e]) for e in EMOTIONS},
            "gifs": self.gifs,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ScoreQuantiles:
        return _from_dict(cls, data, "score_quantiles")


def features_meaning() -> dict[str, str]:
    """The `outputs` entry of the fused graph's `features` output (export adds it)."""
    return {FEATURES_OUTPUT: FEATURES_MEANING}


def segment_meaning(head: str, timeline: str = "") -> str:
    """What `segment_scores` means for a `head` whose timeline is of kind `timeline` (MaxPool's
    config field: "mil" or "shared"; "" or an unknown kind: the head's plain meaning)."""
    return SEGMENT_MEANINGS.get(f"{head}:{timeline}", SEGMENT_MEANINGS[head])


def output_meanings(head: str, heads: int = 1, timeline: str = "") -> dict[str, str]:
    """The `outputs` entry export writes for a graph of `heads` heads of kind `head` (their
    timeline of kind `timeline`, see segment_meaning)."""
    k = f"the mean of {heads} {head} heads' " if heads > 1 else ""
    out = {
        OUTPUT_NAME: (f"{k}scores" if k else "scores")
        + " [batch, 17] in the target scale, EMOTIONS order",
        SEGMENT_SCORES: "per-segment scores [batch, S, 17], segments in time order starting at "
        "t_s = s * duration / S: "
        + (f"the mean over {heads} {head} heads of " if heads > 1 else "")
        + segment_meaning(head, timeline),
    }
    if heads > 1:
        out[STD_NAME] = (
            f"spread (population standard deviation) of the {heads} heads' scores [batch, 17]"
        )
    return out


@dataclass(frozen=True)
class Intervals:
    """Split-conformal score intervals, calibrated on the dev split (schema 3).

    For emotion e at coverage level c: interval = score -/+ q[e][i] * scale, where `levels[i]`
    is c and scale is max(scores_std, std_floor) when `normalized[e]` (adaptive: wider where
    the heads disagree) and 1 otherwise. q is the ceil((n + 1) c)-th smallest dev value of
    |target - score| / scale, so a new exchangeable GIF's target lies in its interval with
    probability >= c (marginally, per emotion).
    """

    levels: tuple[float, ...]  # coverage levels in (0, 1), strictly increasing
    q: dict[str, tuple[float, ...]]  # emotion -> one quantile per level, non-decreasing
    normalized: dict[str, bool]  # emotion -> scale by the heads' spread
    heads: int = 1  # heads fused in the graph (normalized needs >= 2 and `scores_std`)
    std_floor: float = 1e-3  # spreads below this count as this
    gifs: int = 0  # dev GIFs calibrated on
    source: str = "dev split"

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        _check(isinstance(self.q, dict), "intervals.q must be a JSON object")
        _check(isinstance(self.normalized, dict), "intervals.normalized must be a JSON object")
        object.__setattr__(self, "q", {e: tuple(float(v) for v in vs) for e, vs in self.q.items()})
        object.__setattr__(self, "normalized", {e: bool(v) for e, v in self.normalized.items()})
        lv = self.levels
        _check(
            len(lv) >= 1 and all(0.0 < v < 1.0 for v in lv) and all(a < b for a, b in pairwise(lv)),
            "intervals.levels must be strictly increasing coverages in (0, 1)",
        )
        for name in ("q", "normalized"):
            _check(
                set(getattr(self, name)) == set(EMOTIONS),
                f"intervals.{name} must have the {NUM_EMOTIONS} emotions",
            )
        for e, vs in self.q.items():
            _check(
                len(vs) == len(lv)
                and all(math.isfinite(v) and v >= 0 for v in vs)
                and all(a <= b for a, b in pairwise(vs)),
                f"intervals.q[{e!r}] must hold {len(lv)} non-decreasing numbers >= 0",
            )
        _check(isinstance(self.heads, int) and self.heads >= 1, "intervals.heads must be >= 1")
        _check(
            self.heads >= 2 or not any(self.normalized.values()),
            "intervals.normalized needs a graph of at least 2 heads",
        )
        _check(self.std_floor > 0, "intervals.std_floor must be positive")

    @property
    def needs_std(self) -> bool:
        return any(self.normalized.values())

    def half_width(self, level: float, std=None):
        """The interval's half-width per emotion: float64 [..., 17] (std: scores_std [..., 17])."""
        import numpy as np

        i = self.level_index(level)
        q = np.array([self.q[e][i] for e in EMOTIONS], np.float64)
        norm = np.array([self.normalized[e] for e in EMOTIONS])
        if not norm.any():
            return q if std is None else np.broadcast_to(q, np.shape(std)).copy()
        _check(std is not None, "these intervals are scaled by scores_std; pass it")
        scale = np.where(norm, np.maximum(np.asarray(std, np.float64), self.std_floor), 1.0)
        return q * scale

    def level_index(self, level: float) -> int:
        for i, v in enumerate(self.levels):
            if abs(v - level) < 1e-9:
                return i
        raise ContractError(
            f"the model's intervals are calibrated for coverage "
            f"{', '.join(f'{v:g}' for v in self.levels)}, not {level:g}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "levels": list(self.levels),
            "q": {e: list(self.q[e]) for e in EMOTIONS},
            "normalized": {e: self.normalized[e] for e in EMOTIONS},
            "heads": self.heads,
            "std_floor": self.std_floor,
            "gifs": self.gifs,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Intervals:
        return _from_dict(cls, data, "intervals")


@dataclass(frozen=True)
class ModelDocument:
    """The metadata document stored under the `gifsent` key of every exported graph."""

    sampling: SamplingSpec
    normalization: Normalization
    encoder: EncoderInfo
    head: HeadInfo
    target: TargetScale
    precision: str = "fp32"
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. {"test": {"rmse": ..., "ev": ...}}
    library_version: str = ""
    checkpoint_sha256: str = ""
    emotions: tuple[str, ...] = EMOTIONS
    schema_version: int = SCHEMA_VERSION
    provenance: Provenance | None = None  # schema 2: what the model was trained on
    score_quantiles: ScoreQuantiles | None = None  # schema 2: training score distribution
    # schema 3: the graph's outputs by name -> what each means (None: `scores` only)
    outputs: dict[str, str] | None = None
    intervals: Intervals | None = None  # schema 3: conformal calibration on dev

    def __post_init__(self) -> None:
        object.__setattr__(self, "emotions", tuple(self.emotions))
        if not self.library_version:
            from gifsent_infer.version import __version__

            object.__setattr__(self, "library_version", __version__)
        self.validate()

    def validate(self) -> None:
        _check_version(self.schema_version)
        if self.schema_version < 2:
            _check(
                self.provenance is None and self.score_quantiles is None,
                "provenance and score_quantiles need gifsent schema version 2",
            )
        if self.schema_version < 3:
            _check(
                self.outputs is None and self.intervals is None,
                "outputs and intervals need gifsent schema version 3",
            )
        if self.outputs is not None:
            _check(
                isinstance(self.outputs, dict)
                and OUTPUT_NAME in self.outputs
                and all(isinstance(k, str) and isinstance(v, str) for k, v in self.outputs.items()),
                f"outputs must map output names to descriptions and include {OUTPUT_NAME!r}",
            )
        if self.intervals is not None and self.intervals.needs_std:
            _check(
                self.outputs is not None and STD_NAME in self.outputs,
                f"intervals scaled by the heads' spread need a {STD_NAME!r} output",
            )
        _check(
            self.emotions == EMOTIONS,
            f"emotions must be GIFGIF's {NUM_EMOTIONS} emotions in GIFGIF order, got {list(self.emotions)}",
        )
        _check(
            self.precision in PRECISIONS,
            f"precision must be one of {PRECISIONS}, got {self.precision!r}",
        )
        _check(self.encoder.feature_dim >= 1, "encoder.feature_dim must be >= 1")
        _check(isinstance(self.metrics, dict), "metrics must be a JSON object")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "emotions": list(self.emotions),
            "sampling": self.sampling.to_dict(),
            "normalization": self.normalization.to_dict(),
            "encoder": self.encoder.to_dict(),
            "head": self.head.to_dict(),
            "target": self.target.to_dict(),
            "precision": self.precision,
            "metrics": self.metrics,
            "library_version": self.library_version,
            "checkpoint_sha256": self.checkpoint_sha256,
            **({"provenance": self.provenance.to_dict()} if self.provenance else {}),
            **({"score_quantiles": self.score_quantiles.to_dict()} if self.score_quantiles else {}),
            **({"outputs": dict(self.outputs)} if self.outputs is not None else {}),
            **({"intervals": self.intervals.to_dict()} if self.intervals else {}),
        }

    def describes(self, name: str) -> bool:
        """True when the document says the graph has output `name` (`scores` always)."""
        return name == OUTPUT_NAME or (self.outputs is not None and name in self.outputs)

    @property
    def is_demo(self) -> bool:
        """True when the model was trained on gifsent's procedural demo data."""
        return self.provenance is not None and self.provenance.is_demo

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any) -> ModelDocument:
        _check(isinstance(data, dict), "gifsent metadata must be a JSON object")
        version = data.get("schema_version")
        _check_version(version)
        known = {f.name for f in fields(cls)}
        if version < 2:
            known -= set(_V2_FIELDS)
        if version < 3:
            known -= set(_V3_FIELDS)
        unknown = sorted(set(data) - known)
        _check(not unknown, f"gifsent metadata: unknown field(s) {unknown}")
        missing = sorted({"sampling", "normalization", "encoder", "head", "target"} - set(data))
        _check(not missing, f"gifsent metadata: missing field(s) {missing}")
        return cls(
            schema_version=version,
            emotions=tuple(data.get("emotions", EMOTIONS)),
            sampling=SamplingSpec.from_dict(data["sampling"]),
            normalization=Normalization.from_dict(data["normalization"]),
            encoder=EncoderInfo.from_dict(data["encoder"]),
            head=HeadInfo.from_dict(data["head"]),
            target=TargetScale.from_dict(data["target"]),
            precision=data.get("precision", "fp32"),
            metrics=data.get("metrics", {}),
            library_version=data.get("library_version", ""),
            checkpoint_sha256=data.get("checkpoint_sha256", ""),
            provenance=(
                Provenance.from_dict(data["provenance"]) if data.get("provenance") else None
            ),
            score_quantiles=(
                ScoreQuantiles.from_dict(data["score_quantiles"])
                if data.get("score_quantiles")
                else None
            ),
            outputs=data.get("outputs"),
            intervals=Intervals.from_dict(data["intervals"]) if data.get("intervals") else None,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelDocument:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ContractError(f"gifsent metadata is not valid JSON: {e}") from None
        return cls.from_dict(data)
