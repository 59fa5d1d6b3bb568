"""Split-conformal score intervals: calibrated on the dev split, measured on test.

For each emotion, the conformity score of a dev GIF is |target - prediction| / scale, with
scale = max(spread of the K seeds' predictions, std_floor) when that makes the intervals
narrower on dev (adaptive: wide where the seeds disagree), else 1. The interval at coverage
c is prediction -/+ q * scale, q the ceil((n + 1) c)-th smallest of the n dev conformity
scores; for a new GIF exchangeable with the dev GIFs the target lies in it with probability
>= c (and < c + 1 / (n + 1)). The choice between plain and scaled is made on dev with the
same data, a small departure from the textbook recipe that the test split measures.

`calibrate` writes a gifsent_infer.contract.Intervals (what export stores in the model);
`evaluate` measures coverage, width and Spearman(spread, |error|) on another split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gifsent_infer.contract import EMOTIONS, Intervals

__all__ = ["DEFAULT_LEVELS", "calibrate", "conformal_quantile", "evaluate"]

# The coverages stored in a model: --intervals must be one of them.
DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
STD_FLOOR = 1e-3


def conformal_quantile(values: np.ndarray, level: float) -> float:
    """The ceil((n + 1) level)-th smallest of `values` (the largest when that is past n)."""
    v = np.sort(np.asarray(values, np.float64))
    n = len(v)
    if n == 0:
        raise ValueError("conformal calibration needs at least one dev GIF")
    k = math.ceil((n + 1) * level)
    return float(v[min(k, n) - 1])


def _levels_for(n: int, levels: Sequence[float]) -> tuple[float, ...]:
    # a level needs ceil((n + 1) c) <= n dev GIFs, or its quantile is not a guarantee
    return tuple(c for c in levels if math.ceil((n + 1) * c) <= n)


def calibrate(
    y: np.ndarray,
    pred: np.ndarray,
    std: np.ndarray | None = None,
    *,
    levels: Sequence[float] = DEFAULT_LEVELS,
    heads: int = 1,
    std_floor: float = STD_FLOOR,
    source: str = "dev split",
) -> Intervals:
    """Dev targets and predictions [n, 17] (std: the K heads' spread [n, 17], K >= 2) ->
    Intervals. Levels needing more dev GIFs than there are are left out."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    n = len(y)
    kept = _levels_for(n, levels)
    if not kept:
        raise ValueError(f"{n} dev GIFs are too few to calibrate any of {list(levels)}")
    err = np.abs(y - pred)
    use_std = std is not None and heads >= 2
    scale = np.maximum(np.asarray(std, np.float64), std_floor) if use_std else None
    mid = kept[len(kept) // 2]
    q: dict[str, tuple[float, ...]] = {}
    normalized: dict[str, bool] = {}
    for k, e in enumerate(EMOTIONS):
        plain = [conformal_quantile(err[:, k], c) for c in kept]
        norm = False
        if scale is not None:
            scaled = [conformal_quantile(err[:, k] / scale[:, k], c) for c in kept]
            i = kept.index(mid)
            if scaled[i] * scale[:, k].mean() < plain[i]:  # narrower on dev: adaptive wins
                plain, norm = scaled, True
        # 6 decimals keep the metadata small; rounded up, so the guarantee is kept
        q[e] = tuple(math.ceil(v * 1e6) / 1e6 for v in np.maximum.accumulate(plain))
        normalized[e] = norm
    return Intervals(
        levels=kept,
        q=q,
        normalized=normalized,
        heads=max(1, heads),
        std_floor=std_floor,
        gifs=n,
        source=source,
    )


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def evaluate(
    intervals: Intervals, y: np.ndarray, pred: np.ndarray, std: np.ndarray | None = None
) -> dict:
    """Coverage (mean over emotions and the worst emotion), mean width per level, and the
    Spearman correlation of the seeds' spread with |error| (pooled over GIFs and emotions)."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    out: dict = {"gifs": len(y), "heads": intervals.heads, "levels": {}}
    for c in intervals.levels:
        half = intervals.half_width(c, std if intervals.needs_std else None)
        half = np.broadcast_to(half, y.shape)
        inside = np.abs(y - pred) <= half
        cover = inside.mean(axis=0)
        out["levels"][f"{c:g}"] = {
            "coverage_mean": round(float(cover.mean()), 4),
            "coverage_worst": round(float(cover.min()), 4),
            "worst_emotion": EMOTIONS[int(cover.argmin())],
            "width_mean": round(float(2 * half.mean()), 4),
        }
    if std is not None:
        out["spearman_spread_abs_error"] = round(
            _spearman(np.asarray(std).ravel(), np.abs(y - pred).ravel()), 4
        )
    out["adaptive_emotions"] = sum(intervals.normalized.values())
    return out
