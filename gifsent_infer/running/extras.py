"""What a row carries beyond the 17 scores from the model's further outputs: the timeline and the score intervals.

Timeline (`--timeline`, the graph's `segment_scores` [S, 17]): each of the S segments'
scores, with each segment's start time in seconds (segment s of a GIF lasting D seconds
starts at s * D / S, the sampling spec's start times). In JSON/JSONL the `timeline` column is
{"start_s": [S floats], "<emotion>": [S floats], ...}; in CSV the same object as compact
JSON. What a segment's value means depends on the head (contract.SEGMENT_MEANINGS).

Intervals (`--intervals 0.9`, the contract's split-conformal `intervals`): `<emotion>_lo` and
`<emotion>_hi` per emotion, and `<emotion>_std` (the heads' spread) when the graph fuses
several heads. A new GIF's true score lies in [lo, hi] with the stated probability, per
emotion, for GIFs like the model's dev split.

Finer timeline (`--segments N`): the timeline sampled at N segments instead of the model's S
(N a multiple of S), while the scores keep the model's own sampling. The graph's segments
axis is fixed, so the N segments run as N / S groups of S; that is exact for heads whose
segment scores are each segment's own (MaxPool, linear), and refused for the LSTM, whose
running estimate needs all segments in one pass.

`RowExtras.for_model` checks once, before anything is scored, that the model can give what
was asked (MissingOutputError or ExtrasError, exit 2, otherwise).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gifsent_infer.contract import (
    EMOTIONS,
    SEGMENT_SCORES,
    STD_NAME,
    ContractError,
    ModelDocument,
    SamplingSpec,
)
from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.running.rows import f32

__all__ = [
    "HI_SUFFIX",
    "LO_SUFFIX",
    "STD_SUFFIX",
    "TIMELINE_COLUMN",
    "ExtrasError",
    "RowExtras",
    "timeline_cell",
    "timeline_from_cell",
]

TIMELINE_COLUMN = "timeline"
LO_SUFFIX, HI_SUFFIX, STD_SUFFIX = "_lo", "_hi", "_std"


class ExtrasError(GifsentError, ValueError):
    """A timeline or interval option the model cannot support; the message says what to do."""

    exit_code = USAGE


@dataclass(frozen=True)
class RowExtras:
    """Which extra outputs a run asks of the model, and how they become row columns."""

    timeline: bool = False
    level: float | None = None  # coverage of the intervals; None: no intervals
    document: ModelDocument | None = None
    has_std: bool = False  # the graph outputs scores_std (a K-head graph)
    segments: int | None = None  # the timeline's segments when finer than the model's S

    @classmethod
    def for_model(
        cls,
        document: ModelDocument,
        output_names: tuple[str, ...],
        *,
        timeline: bool = False,
        intervals: float | None = None,
        segments: int | None = None,
    ) -> RowExtras:
        """Check that the model gives what is asked; ExtrasError (exit 2) saying why not."""
        segments = _check_segments(document, timeline, segments)
        if timeline and SEGMENT_SCORES not in output_names:
            raise ExtrasError(
                "--timeline needs a model with a 'segment_scores' output; this one was exported "
                "before gifsent could write it: export it again with this version of "
                "gifsent-export"
            )
        has_std = STD_NAME in output_names
        if intervals is not None:
            iv = document.intervals
            if iv is None:
                raise ExtrasError(
                    "--intervals needs a model calibrated on its dev split; this one carries no "
                    "intervals (exported before gifsent schema 3, or without its training run): "
                    "export it again with gifsent-export --run RUN"
                )
            try:
                iv.level_index(intervals)
            except ContractError as e:
                raise ExtrasError(f"--intervals {intervals:g}: {e}") from None
            if iv.needs_std and not has_std:
                raise ExtrasError(
                    f"the model's intervals are scaled by its heads' spread, but the graph has "
                    f"no {STD_NAME!r} output: export it again"
                )
        return cls(timeline, intervals, document, has_std, segments)

    @property
    def fine_spec(self) -> SamplingSpec | None:
        """The sampling of a finer timeline (--segments), or None."""
        if self.segments is None or self.document is None:
            return None
        return replace(self.document.sampling, segments=self.segments)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The graph outputs to ask for besides `scores`."""
        names = []
        if self.timeline:
            names.append(SEGMENT_SCORES)
        if self.has_std and self.level is not None:
            names.append(STD_NAME)
        return tuple(names)

    def columns(self) -> tuple[str, ...]:
        """The extra columns, after the scores: _std, then _lo/_hi per emotion, then timeline."""
        cols: list[str] = []
        if self.level is not None:
            if self.has_std:
                cols += [e + STD_SUFFIX for e in EMOTIONS]
            for e in EMOTIONS:
                cols += [e + LO_SUFFIX, e + HI_SUFFIX]
        if self.timeline:
            cols.append(TIMELINE_COLUMN)
        return tuple(cols)

    def values(
        self,
        scores: Mapping[str, float] | None,
        extras: Mapping[str, np.ndarray] | None,
        duration_s,
    ) -> dict[str, Any]:
        """The extra columns of one result (None on error rows)."""
        out: dict[str, Any] = dict.fromkeys(self.columns())
        if scores is None or extras is None:
            return out
        if self.timeline:
            out[TIMELINE_COLUMN] = timeline_value(extras[SEGMENT_SCORES], duration_s)
        if self.level is not None:
            assert self.document is not None and self.document.intervals is not None
            s = np.array([scores[e] for e in EMOTIONS], np.float64)
            std = extras.get(STD_NAME) if self.has_std else None
            half = self.document.intervals.half_width(self.level, std)
            for k, e in enumerate(EMOTIONS):
                out[e + LO_SUFFIX] = f32(s[k] - half[k])
                out[e + HI_SUFFIX] = f32(s[k] + half[k])
                if std is not None:
                    out[e + STD_SUFFIX] = f32(std[k])
        return out


def _check_segments(document: ModelDocument, timeline: bool, segments: int | None) -> int | None:
    s = document.sampling.segments
    if segments is None or segments == s:
        return None
    if not timeline:
        raise ExtrasError("--segments sets the timeline's segments: use it with --timeline")
    if segments < s or segments % s:
        raise ExtrasError(
            f"--segments {segments}: this model samples S={s} segments; a finer timeline needs "
            f"a multiple of {s} (e.g. {2 * s} or {4 * s})"
        )
    if document.head.name == "rnn":
        raise ExtrasError(
            "--segments: an LSTM model's graph runs its segments in one pass at a fixed "
            f"S={s}; leave --segments out"
        )
    return segments


def timeline_value(segment_scores: np.ndarray, duration_s: float | None) -> dict[str, list[float]]:
    """[S, 17] -> {"start_s": [S], "<emotion>": [S], ...} (segment s starts at s * D / S)."""
    seg = np.asarray(segment_scores, np.float32)
    n = seg.shape[0]
    d = float(duration_s) if duration_s is not None and math.isfinite(duration_s) else 0.0
    out: dict[str, list[float]] = {"start_s": [round(s * d / n, 4) for s in range(n)]}
    for k, e in enumerate(EMOTIONS):
        out[e] = [f32(v) for v in seg[:, k]]
    return out


def timeline_cell(value: Any) -> str:
    """The CSV form of a timeline: compact JSON (strings pass through)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def timeline_from_cell(cell: str) -> dict[str, list[float]] | None:
    """A CSV timeline cell back in the JSON form."""
    return json.loads(cell) if cell else None
