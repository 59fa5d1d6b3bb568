"""Emotion-aware GIF search over a scores file: rank by one emotion, or by closeness to a profile.

Ranking by an emotion uses its score (``by="score"``) or, for files scored with
``--intervals``, the lower end of its calibrated interval (``by="lower"``): a confident 0.58
then comes before a 0.62 that could be anything from 0.3 to 0.9.

A profile names some emotions and the scores wanted for them (``happiness=0.9,surprise=0.6``);
GIFs are ranked by the Euclidean distance between their scores and the profile over the
named emotions only, so unnamed emotions do not matter. Only rows with status "ok" are ranked.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.writing.outputs import iter_ok, read_rows


class SearchError(GifsentError, ValueError):
    """A bad query (unknown emotion, malformed profile); the message says what to write."""

    exit_code = USAGE


@dataclass(frozen=True)
class Hit:
    rank: int  # 1-based
    path: str
    value: float  # the emotion's score or lower bound (--emotion), or the distance (--like)
    scores: dict[str, float]  # all 17 scores of the GIF
    sha256: str = ""


def check_emotion(name: str) -> str:
    name = name.strip().lower()
    if name not in EMOTIONS:
        close = difflib.get_close_matches(name, EMOTIONS, n=2)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise SearchError(f"unknown emotion {name!r}{hint} (emotions: {', '.join(EMOTIONS)})")
    return name


def parse_profile(text: str) -> dict[str, float]:
    """'happiness=0.9,surprise=0.6' -> {'happiness': 0.9, 'surprise': 0.6}."""
    profile: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise SearchError(
                f"profile entry {part.strip()!r} must look like emotion=score, e.g. happiness=0.9"
            )
        emotion = check_emotion(name)
        try:
            profile[emotion] = float(value)
        except ValueError:
            raise SearchError(
                f"profile entry {part.strip()!r}: {value.strip()!r} is not a number"
            ) from None
        if not math.isfinite(profile[emotion]):
            raise SearchError(f"profile entry {part.strip()!r}: the score must be finite")
    if not profile:
        raise SearchError("empty profile: give at least one emotion=score")
    return profile


def _scores(row: dict[str, Any]) -> dict[str, float] | None:
    try:
        scores = {e: float(row[e]) for e in EMOTIONS}
    except (KeyError, TypeError, ValueError):
        return None
    return scores if all(math.isfinite(v) for v in scores.values()) else None


def _hits(rows: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, float]]]:
    out = []
    for row in iter_ok(rows):
        scores = _scores(row)
        if scores is not None:
            out.append((row, scores))
    return out


BY = ("score", "lower")


def _lower(row: dict[str, Any], emotion: str) -> float | None:
    try:
        v = float(row[emotion + "_lo"])
    except (KeyError, TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def rank_by_emotion(
    rows: Iterable[dict[str, Any]], emotion: str, top: int | None = 20, by: str = "score"
) -> list[Hit]:
    """GIFs with the highest score (by="score") or interval lower bound (by="lower") for
    `emotion` first (ties by path, for a stable order)."""
    emotion = check_emotion(emotion)
    if by not in BY:
        raise SearchError(f"--by must be one of {', '.join(BY)}, not {by!r}")
    hits = [
        (row, s, s[emotion] if by == "score" else _lower(row, emotion)) for row, s in _hits(rows)
    ]
    if by == "lower" and any(v is None for _, _, v in hits):
        raise SearchError(
            f"--by lower needs the {emotion}_lo column on every scored row: score the GIFs with "
            "`gifsent-infer score --intervals 0.9` (a model exported with intervals)"
        )
    scored = sorted(hits, key=lambda r: (-r[2], r[0]["path"]))
    return [
        Hit(i + 1, row["path"], v, s, row.get("sha256") or "")
        for i, (row, s, v) in enumerate(scored[:top] if top else scored)
    ]


def rank_by_profile(
    rows: Iterable[dict[str, Any]], profile: dict[str, float], top: int | None = 20
) -> list[Hit]:
    """GIFs closest to `profile` first: Euclidean distance over the profile's emotions."""
    profile = {check_emotion(k): float(v) for k, v in profile.items()}

    def distance(s: dict[str, float]) -> float:
        return math.sqrt(sum((s[e] - want) ** 2 for e, want in profile.items()))

    scored = sorted(
        ((row, s, distance(s)) for row, s in _hits(rows)), key=lambda r: (r[2], r[0]["path"])
    )
    return [
        Hit(i + 1, row["path"], d, s, row.get("sha256") or "")
        for i, (row, s, d) in enumerate(scored[:top] if top else scored)
    ]


def _rows(source: str | os.PathLike) -> list[dict[str, Any]]:
    """A scores file's rows, or the latest snapshot of `gifsent-infer ray`'s Delta table."""
    from gifsent_infer.scaleout.delta_table import is_score_table, read_scores

    try:
        if is_score_table(source):
            return read_scores(source)
    except (ImportError, GifsentError) as e:
        raise SearchError(str(e)) from None
    return read_rows(source).rows


def search(
    scores_file: str | os.PathLike,
    *,
    emotion: str | None = None,
    like: str | dict[str, float] | None = None,
    top: int | None = 20,
    by: str = "score",
) -> list[Hit]:
    """Rank the GIFs of a scores file (or Ray's Delta table) by `emotion` (its score or,
    by="lower", its interval's lower bound) or by closeness to the profile `like`."""
    if (emotion is None) == (like is None):
        raise SearchError("give exactly one of --emotion EMOTION or --like emotion=score,...")
    rows = _rows(scores_file)
    if emotion is not None:
        return rank_by_emotion(rows, emotion, top, by)
    profile = parse_profile(like) if isinstance(like, str) else dict(like or {})
    return rank_by_profile(rows, profile, top)
