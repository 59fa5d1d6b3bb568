"""Scores people can read: percentiles against the training GIFs, a `top` column, clipping, provenance lines.

A model's scores are min-max scaled Bradley-Terry strengths: 0 is the weakest training GIF
for that emotion, 1 the strongest, so a new GIF can land outside [0, 1]. The contract
(schema 2) carries each emotion's quantiles over the training GIFs' targets, from which a
score becomes a percentile: "more amused than 93% of the training GIFs". Percentiles are
exact at the stored quantiles and linear in between; below the lowest stored value a score
is at the lowest level (0), above the highest at the highest (100).

Row decoration (`Readable.decorate`) adds to a scores row, in place of nothing else:
  top            the K highest emotions: a list of {"emotion", "score"} objects in JSON/JSONL,
                 "happiness:0.91 amusement:0.85 surprise:0.40" in CSV (format_top)
  <emotion>_pct  with percentiles on: 0..100, one column per emotion, after the 17 scores
and clips the 17 scores to [0, 1] when asked. Pure numpy/stdlib: no torch, typer or rich.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gifsent_infer.contract import (
    DEMO_WARNING,
    EMOTIONS,
    ModelDocument,
    Provenance,
    ScoreQuantiles,
)
from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.options import ScoreOptions

# Percent levels stored at export: every whole percentile, so a percentile read off a row
# is exact wherever a training GIF's rank lands on a whole percent.
QUANTILE_LEVELS: tuple[float, ...] = tuple(float(p) for p in range(101))
PCT_SUFFIX = "_pct"
TOP_COLUMN = "top"
PCT_COLUMNS: tuple[str, ...] = tuple(e + PCT_SUFFIX for e in EMOTIONS)
DEFAULT_TOP = 3

SCALE_NOTE = (
    "scores are Bradley-Terry strengths min-max scaled over the training data's GIFs: "
    "0 = the GIF with the least of an emotion, 1 = the one with the most; new GIFs can land "
    "outside [0, 1] (--clip clips them; --percentiles compares them with the training GIFs)"
)


class ReadableError(GifsentError, ValueError):
    """A readability option the model cannot support (e.g. percentiles without quantiles)."""

    exit_code = USAGE


# --- quantiles (export side) and percentiles (runtime side) ----------------------------------


def compute_quantiles(
    targets: np.ndarray, levels: Sequence[float] = QUANTILE_LEVELS, *, digits: int = 6
) -> ScoreQuantiles:
    """targets float [N, 17] (training GIFs x emotions, in the scores' scale) -> ScoreQuantiles.

    numpy's default (linear) percentile method; values rounded to `digits` decimals to keep
    the metadata small (17 x 101 numbers), which keeps them non-decreasing.
    """
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 2 or targets.shape[1] != len(EMOTIONS) or targets.shape[0] < 1:
        raise ValueError(f"targets must be [N >= 1, {len(EMOTIONS)}], got {targets.shape}")
    if not np.isfinite(targets).all():
        raise ValueError("targets must be finite")
    q = np.percentile(targets, np.asarray(levels, dtype=np.float64), axis=0)  # [L, 17]
    q = np.round(q, digits)
    return ScoreQuantiles(
        levels=tuple(float(v) for v in levels),
        values={e: tuple(float(v) for v in q[:, k]) for k, e in enumerate(EMOTIONS)},
        gifs=int(targets.shape[0]),
    )


def percentile(quantiles: ScoreQuantiles, emotion: str, score: float) -> float:
    """Where `score` falls among the training GIFs for `emotion`, in percent (0..100).

    Exact at stored quantiles: a score equal to values[i] gives levels[i]. Where several
    stored quantiles share one value (ties among training targets) the middle of their
    levels is returned. Between two stored values the level is interpolated linearly.
    NaN gives NaN.
    """
    if score is None or not math.isfinite(score):
        return math.nan
    values = quantiles.values[emotion]
    levels = quantiles.levels
    lo = int(np.searchsorted(values, score, side="left"))
    hi = int(np.searchsorted(values, score, side="right"))
    if hi > lo:  # equal to stored value(s) values[lo:hi]
        return (levels[lo] + levels[hi - 1]) / 2.0
    if lo == 0:
        return levels[0]
    if lo == len(values):
        return levels[-1]
    v0, v1 = values[lo - 1], values[lo]
    p0, p1 = levels[lo - 1], levels[lo]
    return p0 + (score - v0) / (v1 - v0) * (p1 - p0)


def percentiles(quantiles: ScoreQuantiles, scores: Mapping[str, float]) -> dict[str, float]:
    """All 17 percentiles of one GIF's scores."""
    return {e: percentile(quantiles, e, scores[e]) for e in EMOTIONS}


# --- the top column --------------------------------------------------------------------------


def top_emotions(scores: Mapping[str, float], k: int = DEFAULT_TOP) -> list[dict[str, Any]]:
    """The k highest emotions, best first (ties in EMOTIONS order): [{"emotion", "score"}]."""
    ranked = sorted(EMOTIONS, key=lambda e: (-scores[e], EMOTIONS.index(e)))
    return [{"emotion": e, "score": scores[e]} for e in ranked[: max(0, k)]]


def format_top(top: Any, digits: int = 2) -> str:
    """The CSV form of a `top` value: "happiness:0.91 amusement:0.85". Strings pass through
    (a CSV row read back keeps its cell)."""
    if isinstance(top, str):
        return top
    parts = []
    for item in top or ():
        if isinstance(item, Mapping):
            name, value = item.get("emotion"), item.get("score")
        else:  # [emotion, score] pairs
            name, value = item[0], item[1]
        parts.append(f"{name}:{float(value):.{digits}f}")
    return " ".join(parts)


def top_from_cell(cell: str, row: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """A CSV `top` cell back in the JSON form. Scores come from the row's own (full-precision)
    emotion columns when it has them, else from the cell (2 decimals), so a CSV read back
    equals the JSON Lines of the same run."""
    out = []
    for part in cell.split():
        name, _, value = part.rpartition(":")
        score = row.get(name) if row is not None and name in EMOTIONS else None
        out.append({"emotion": name, "score": float(value) if score is None else score})
    return out


# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Readable:
    """What to add to each scores row. top=0 leaves the `top` column out."""

    top: int = DEFAULT_TOP
    percentiles: bool = False
    clip: bool = False
    quantiles: ScoreQuantiles | None = None  # needed when percentiles is on

    def __post_init__(self) -> None:
        if self.top < 0 or self.top > len(EMOTIONS):
            raise ReadableError(f"top must be between 0 and {len(EMOTIONS)}, got {self.top}")
        if self.percentiles and self.quantiles is None:
            raise ReadableError(
                "this model carries no training score distribution (it was exported before "
                "gifsent schema 2, or without its training run): re-export it with "
                "gifsent-export --run RUN to get percentiles"
            )

    @classmethod
    def for_model(
        cls,
        document: ModelDocument,
        *,
        top: int = DEFAULT_TOP,
        percentiles: bool = False,
        clip: bool = False,
    ) -> Readable:
        return cls(top, percentiles, clip, document.score_quantiles)

    @classmethod
    def for_options(cls, document: ModelDocument, options: ScoreOptions) -> Readable:
        """The extras a ScoreOptions asks for (its top, percentiles and clip)."""
        return cls.for_model(
            document, top=options.top, percentiles=options.percentiles, clip=options.clip
        )

    def columns(self, base: Sequence[str]) -> tuple[str, ...]:
        """The output columns: `base` (info columns + 17 scores) with `top` before the first
        emotion and the percentile columns at the end."""
        base = tuple(base)
        cols = list(base)
        if self.top:
            at = base.index(EMOTIONS[0]) if EMOTIONS[0] in base else len(base)
            cols.insert(at, TOP_COLUMN)
        if self.percentiles:
            cols += PCT_COLUMNS
        return tuple(cols)

    def decorate(self, row: dict[str, Any]) -> dict[str, Any]:
        """A copy of `row` with clipped scores, `top` and percentiles (None on error rows)."""
        out = dict(row)
        scores = _scores_of(row)
        if scores is not None and self.percentiles:
            assert self.quantiles is not None
            for e in EMOTIONS:  # from the unclipped score: beyond 1 is still "above them all"
                out[e + PCT_SUFFIX] = round(percentile(self.quantiles, e, scores[e]), 2)
        elif self.percentiles:
            out.update(dict.fromkeys(PCT_COLUMNS))
        if scores is not None and self.clip:
            scores = {e: min(1.0, max(0.0, v)) for e, v in scores.items()}
            out.update(scores)
            for key in [k for k in out if k.endswith(("_lo", "_hi"))]:  # extras.py's intervals
                if isinstance(out[key], float):
                    out[key] = min(1.0, max(0.0, out[key]))
        if self.top:
            out[TOP_COLUMN] = top_emotions(scores, self.top) if scores is not None else None
        return out


def _scores_of(row: Mapping[str, Any]) -> dict[str, float] | None:
    try:
        scores = {e: float(row[e]) for e in EMOTIONS}
    except (KeyError, TypeError, ValueError):
        return None
    return scores if all(math.isfinite(v) for v in scores.values()) else None


# --- provenance for people -------------------------------------------------------------------


def provenance_line(document: ModelDocument) -> str:
    """One line saying what the model was trained on, for the start of every run and `info`."""
    p: Provenance | None = document.provenance
    if p is None:
        return "trained on: not recorded (exported before gifsent schema 2, or without its run)"
    return "trained on: " + p.summary()


def demo_warning(document: ModelDocument) -> str | None:
    """The loud one-line warning for models trained on the procedural demo data, else None."""
    return f"WARNING: {DEMO_WARNING}" if document.is_demo else None


def scale_note(document: ModelDocument) -> str:
    """How to read this model's scores."""
    if document.target.kind != "minmax":
        return "scores are Bradley-Terry strengths (logit units), not scaled"
    return SCALE_NOTE
