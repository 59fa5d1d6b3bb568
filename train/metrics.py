"""Metrics of the study (RMSE, explained variance) and the per-emotion diagnostics and baselines around them.

All functions take ``y`` (targets) and ``p`` (predictions) as float arrays ``[N, 17]``
in the training target's scale (min-max scaled Bradley-Terry strengths).

Definitions, fixed here once:
- RMSE (the study's): sqrt( mean over emotions e of MSE_e ), MSE_e = mean_i (y_ie - p_ie)^2.
  With every GIF scored for every emotion this equals the RMSE over all entries.
- Explained variance (the study's, pooled): 1 - Var(y - p) / Var(y), both variances taken
  over all N*17 entries pooled together (population variances, ddof=0), the way
  sklearn's explained_variance_score computes it on flattened arrays. Pooling lets
  differences between emotion means count as explained variance, which is why the
  study's training-mean baseline already reaches EV > 0.
- Per emotion: R^2 = 1 - SSE/SST, Pearson r and Spearman rho (scipy.stats; average ranks
  for ties),
  and the prediction spread std(p_e) / std(y_e): below 1 means "too conservative".
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from gifsent_infer.contract import EMOTIONS


def _as2d(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    return a


def rmse(y, p) -> float:
    y, p = _as2d(y), _as2d(p)
    return float(np.sqrt(np.mean(np.mean((y - p) ** 2, axis=0))))


def explained_variance(y, p) -> float:
    """Pooled explained variance: 1 - Var(y - p) / Var(y) over all entries."""
    y, p = _as2d(y), _as2d(p)
    var_y = float(np.var(y))
    if var_y == 0.0:
        return float("nan")
    return float(1.0 - np.var(y - p) / var_y)


def _finite_pair(a, b) -> tuple[np.ndarray, np.ndarray] | None:
    """Flattened float64 copies, or None when a correlation is undefined (n < 2, a constant)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if len(a) != len(b):
        raise ValueError(f"correlation of arrays of different lengths ({len(a)} and {len(b)})")
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None  # a constant has no correlation (not a rounding-noise 0.0, no warning)
    return a, b


def pearson(a, b) -> float:
    """Pearson r (scipy.stats.pearsonr); NaN where undefined."""
    pair = _finite_pair(a, b)
    return float("nan") if pair is None else float(stats.pearsonr(*pair).statistic)


def spearman(a, b) -> float:
    """Spearman rho with average ranks for ties (scipy.stats.spearmanr); NaN where undefined."""
    pair = _finite_pair(a, b)
    return float("nan") if pair is None else float(stats.spearmanr(*pair).statistic)


def per_emotion(y, p) -> list[dict[str, float]]:
    """One row per emotion: mse, rmse, r2, pearson, spearman, spread, target/pred mean and std."""
    y, p = _as2d(y), _as2d(p)
    rows = []
    for e in range(y.shape[1]):
        ye, pe = y[:, e], p[:, e]
        sse = float(np.sum((ye - pe) ** 2))
        sst = float(np.sum((ye - ye.mean()) ** 2))
        sy, sp = float(ye.std()), float(pe.std())
        rows.append(
            {
                "emotion": EMOTIONS[e] if y.shape[1] == len(EMOTIONS) else str(e),
                "mse": sse / len(ye),
                "rmse": math.sqrt(sse / len(ye)),
                "r2": 1.0 - sse / sst if sst > 0 else float("nan"),
                "pearson": pearson(ye, pe),
                "spearman": spearman(ye, pe),
                "spread": sp / sy if sy > 0 else float("nan"),
                "target_mean": float(ye.mean()),
                "target_std": sy,
                "pred_mean": float(pe.mean()),
                "pred_std": sp,
            }
        )
    return rows


def summary(y, p) -> dict[str, float]:
    """The headline numbers of one split: rmse, ev, and means of the per-emotion diagnostics."""
    rows = per_emotion(y, p)

    def mean_of(k: str) -> float:
        vals = [r[k] for r in rows if math.isfinite(r[k])]
        return float(np.mean(vals)) if vals else float("nan")

    return {
        "rmse": rmse(y, p),
        "ev": explained_variance(y, p),
        "mean_r2": mean_of("r2"),
        "mean_pearson": mean_of("pearson"),
        "mean_spearman": mean_of("spearman"),
        "mean_spread": mean_of("spread"),
        "n": int(_as2d(y).shape[0]),
    }


def agreement(truth, values) -> dict[str, object]:
    """Spearman per emotion between true strengths and `values` (predictions or BT scores)."""
    t, v = _as2d(truth), _as2d(values)
    rhos = [spearman(t[:, e], v[:, e]) for e in range(t.shape[1])]
    finite = [r for r in rhos if math.isfinite(r)]
    return {
        "spearman": dict(zip(EMOTIONS, rhos, strict=False)),
        "mean_spearman": float(np.mean(finite)) if finite else float("nan"),
        "min_spearman": float(np.min(finite)) if finite else float("nan"),
    }


# ---------------------------------------------------------------- baselines


class MeanBaseline:
    """Predicts each emotion's training mean for every GIF (the study's class-mean baseline)."""

    def fit(self, y_train) -> MeanBaseline:
        self.mean_ = _as2d(y_train).mean(axis=0)
        return self

    def predict(self, n: int) -> np.ndarray:
        return np.tile(self.mean_, (n, 1))


class RidgeBaseline:
    """Ridge regression from segment-mean features [N, D] to the 17 targets.

    Features are centred with training means and divided by one overall training standard
    deviation; the intercept is not penalised.
    alpha is chosen on dev from a log grid (lowest dev RMSE). Solved in the dual when
    N < D, so 1280- or 2048-d features stay cheap.
    """

    ALPHAS = tuple(10.0**k for k in range(-3, 6))

    def __init__(self, alphas=ALPHAS):
        self.alphas = tuple(alphas)

    @staticmethod
    def pool(x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x.mean(axis=1) if x.ndim == 3 else x

    def _solve(self, xs: np.ndarray, yc: np.ndarray, alpha: float) -> np.ndarray:
        n, d = xs.shape
        if n < d:  # dual: W = X^T (X X^T + a I)^-1 Y
            k = xs @ xs.T
            return xs.T @ np.linalg.solve(k + alpha * np.eye(n), yc)
        return np.linalg.solve(xs.T @ xs + alpha * np.eye(d), xs.T @ yc)

    def fit(self, x_train, y_train, x_dev, y_dev) -> RidgeBaseline:
        xt, xd = self.pool(x_train), self.pool(x_dev)
        yt = _as2d(y_train)
        self.mu_ = xt.mean(axis=0)
        # One scale for all features, not one per feature: CNN features that are nearly
        # constant on the training GIFs would otherwise be blown up, and a test GIF that
        # moves them gets a wild prediction.
        self.sd_ = float(xt.std()) + 1e-8
        self.ymean_ = yt.mean(axis=0)
        xs = (xt - self.mu_) / self.sd_
        best = None
        self.dev_curve_ = {}
        for a in self.alphas:
            w = self._solve(xs, yt - self.ymean_, a)
            pred = ((xd - self.mu_) / self.sd_) @ w + self.ymean_
            score = rmse(y_dev, pred)
            self.dev_curve_[a] = score
            if best is None or score < best[0]:
                best = (score, a, w)
        _, self.alpha_, self.w_ = best
        return self

    def predict(self, x) -> np.ndarray:
        return ((self.pool(x) - self.mu_) / self.sd_) @ self.w_ + self.ymean_
