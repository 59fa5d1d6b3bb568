"""The study around the search: the linear head, certainty weights, repeats over seeds, paired tests.

- `linear_head`: the ridge baseline (gifsent_train.metrics.RidgeBaseline) as a
  `gifsent_models.heads.LinearHead`, so the best model by dev may be the linear one and
  still export to the same fused graph.
- `certainty_weights`: loss weights from Bradley-Terry standard errors (inverse variance,
  capped, mean 1).
- `repeat_seeds`: retrain one head's best configuration with other fit seeds on the same
  splits; the spread says how much of a difference between heads is noise.
- `paired_comparison`: per-GIF squared errors of a model against a baseline on the same
  test GIFs: mean difference, a bootstrap interval over GIFs and a Wilcoxon signed-rank
  p-value (scipy.stats).
- `ceiling_hits`: trials that reached the epoch ceiling without early stopping.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import stats

from gifsent_train import metrics as M

WEIGHT_MODES = ("none", "inverse-variance")


def linear_head(ridge: M.RidgeBaseline, in_dim: int):
    """A LinearHead computing ridge.predict on [B, S, D] features (segment mean, one affine map).

    ridge predicts ((mean_s x - mu) / sd) @ w + ymean; as one Linear on the segment mean:
    weight = (w / sd)^T [17, D], bias = ymean - (mu / sd) @ w.
    """
    from gifsent_models.heads import create_head

    w = np.asarray(ridge.w_, dtype=np.float64)  # [D, 17]
    weight = (w / ridge.sd_).T
    bias = ridge.ymean_ - (ridge.mu_ / ridge.sd_) @ w
    head = create_head("linear", int(in_dim), {"alpha": float(ridge.alpha_)})
    return head.set_affine(weight, bias).eval()


def certainty_weights(stderr, cap: float = 10.0) -> np.ndarray:
    """Loss weights [N, 17] from score standard errors [N, 17] (in the target's scale).

    w = 1 / se^2, then capped at `cap` times its median (per emotion, so that an emotion
    with fewer votes is not down-weighted as a whole, and a GIF with a tiny standard error
    does not dominate), then rescaled to mean 1. Non-finite or zero standard errors get
    the cap.
    """
    se = np.asarray(stderr, dtype=np.float64)
    if se.ndim != 2:
        raise ValueError(f"stderr must be [N, emotions], got shape {se.shape}")
    if not cap >= 1.0:
        raise ValueError(f"weight cap must be >= 1 (times the median weight), got {cap}")
    with np.errstate(divide="ignore", invalid="ignore"):
        w = 1.0 / se**2
    w[~np.isfinite(w)] = np.inf
    med = np.median(np.where(np.isfinite(w), w, np.nan), axis=0)
    med = np.where(np.isfinite(med) & (med > 0), med, 1.0)
    w = np.minimum(w, cap * med)
    return w / w.mean()


def repeat_seeds(
    head: str,
    trial,
    data,
    base_fit,
    seeds: int,
    seed: int,
    w_train=None,
    first=None,
    on_fit=None,
    models_out: list | None = None,
):
    """Predictions on test [seeds, N, 17] and summaries of `trial`'s config over `seeds` fits.

    Repeat 0 uses the search's own fit seed (the same model the search kept; pass its
    (test predictions, summary) as `first` to skip refitting it); repeat r > 0 uses a seed
    derived from (seed, trial, r). Splits and features are the same for all.
    """
    from gifsent_train.fit import fit_head, predict
    from gifsent_train.search import evaluate

    preds, summaries = [], []
    for r in range(seeds):
        if r == 0 and first is not None:
            preds.append(np.asarray(first[0]))
            summaries.append(first[1])
            continue
        if on_fit is not None:
            on_fit(r)
        fit_seed = int(seed) * 1000 + int(trial.index) + 1_000_003 * r
        fit_cfg = replace(base_fit, **_fit_overrides(trial.fit), seed=fit_seed)
        model, _ = fit_head(
            head,
            trial.head_config,
            data.x["train"],
            data.y["train"],
            data.x["dev"],
            data.y["dev"],
            fit_cfg,
            w_train=w_train,
        )
        summaries.append(evaluate(model, data))
        preds.append(predict(model, data.x["test"]))
        if models_out is not None:
            models_out.append(model)
    return np.stack(preds), summaries


def _fit_overrides(fit: dict) -> dict:
    return {k: fit[k] for k in ("lr", "batch_size", "weight_decay") if k in fit}


def spread(summaries: list[dict]) -> dict:
    """{split: {metric: {"mean", "std", "values"}}} over seed repeats (std with ddof=1)."""
    out: dict = {}
    for split in ("train", "dev", "test"):
        for key in ("rmse", "ev"):
            vals = [s[split][key] for s in summaries if split in s]
            if not vals:
                continue
            std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            out.setdefault(split, {})[key] = {
                "mean": float(np.mean(vals)),
                "std": std,
                "values": [float(v) for v in vals],
            }
    return out


def per_gif_sq_error(y, p) -> np.ndarray:
    """[N]: mean over emotions of the squared error of each GIF; p may be [seeds, N, 17]."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    err = (p - y) ** 2
    err = err.mean(axis=-1)
    return err.mean(axis=0) if err.ndim == 2 else err


def paired_comparison(
    y, p_model, p_base, *, n_resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Model vs baseline on the same GIFs, by per-GIF squared error d_i = e_model_i - e_base_i.

    p_model may hold several seeds [seeds, N, 17]: its per-GIF error is then the mean over
    seeds (the expected error of a model trained this way). Returns the mean difference of
    MSE (negative: the model is better), its 95% bootstrap interval over GIFs (percentile,
    `n_resamples` resamples), the implied difference of RMSE, and the two-sided Wilcoxon
    signed-rank p-value.
    """
    e_m, e_b = per_gif_sq_error(y, p_model), per_gif_sq_error(y, p_base)
    d = e_m - e_b
    out = {
        "n": len(d),
        "mse_diff": float(d.mean()),
        "rmse_model": math.sqrt(float(e_m.mean())),
        "rmse_base": math.sqrt(float(e_b.mean())),
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "p_wilcoxon": float("nan"),
        "better_share": float(np.mean(d < 0)) if len(d) else float("nan"),
    }
    if len(d) >= 3 and np.ptp(d) > 0:
        boot = stats.bootstrap(
            (d,),
            np.mean,
            n_resamples=n_resamples,
            confidence_level=0.95,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
        out["ci_low"] = float(boot.confidence_interval.low)
        out["ci_high"] = float(boot.confidence_interval.high)
        out["p_wilcoxon"] = float(stats.wilcoxon(d).pvalue)
    return out


def ceiling_hits(trials, max_epochs: int) -> list[dict]:
    """Trials that ran to the epoch ceiling with patience not yet run out (dev still improving
    within `patience` epochs of the end): their best epoch is within patience of the ceiling,
    so a higher ceiling might have found a better model. Epochs are counted from 1."""
    out = []
    for t in trials:
        stopped = t.stopped_early if hasattr(t, "stopped_early") else t.get("stopped_early")
        get = (lambda k, t=t: getattr(t, k)) if hasattr(t, "index") else t.get
        if not stopped and get("epochs_run") >= max_epochs:
            out.append(
                {
                    "head": get("head"),
                    "trial": get("index"),
                    "best_epoch": int(get("best_epoch")) + 1,
                    "ceiling": int(max_epochs),
                }
            )
    return out


# -- where and how sure (issue 22): the seeds' intervals and the timeline ---------------------


def _stacked(models, x) -> np.ndarray:
    from gifsent_train.fit import predict

    return np.stack([predict(m, x) for m in models])  # [K, N, 17]


def interval_study(models: list, data, levels=None) -> dict:
    """Split-conformal intervals of one head's seed models, calibrated on dev, measured on test:
    for K = 1 (the best model alone, plain intervals) and K = len(models) (their mean, scaled by
    their spread where that is narrower on dev). {"k1": {...}, "k<K>": {...}}, each with
    "calibration" (a contract Intervals dict, what export stores) and "test" (conformal.evaluate)."""
    from gifsent_train.conformal import DEFAULT_LEVELS, calibrate, evaluate

    levels = levels or DEFAULT_LEVELS
    dev, test = _stacked(models, data.x["dev"]), _stacked(models, data.x["test"])
    out = {}
    for k in sorted({1, len(models)}):
        d_mean, t_mean = dev[:k].mean(0), test[:k].mean(0)
        d_std = dev[:k].std(0) if k > 1 else None
        t_std = test[:k].std(0) if k > 1 else None
        iv = calibrate(data.y["dev"], d_mean, d_std, levels=levels, heads=k)
        out[f"k{k}"] = {
            "calibration": iv.to_dict(),
            "test": evaluate(iv, data.y["test"], t_mean, t_std),
        }
    return out


def segment_in_moment(spec, n_segments: int, moment: tuple[float, float, float]) -> np.ndarray:
    """bool [S]: whether each segment's middle sampled time falls inside the moment.

    Segment s starts at s * D / S and holds T frames at 1 / fps apart (taken modulo D)."""
    start, end, duration = moment
    t = np.arange(n_segments) * duration / n_segments
    mid = (t + (spec.frames_per_segment - 1) / (2.0 * spec.fps)) % max(duration, 1e-9)
    return (mid >= start) & (mid < end)


def timeline_study(model, data, moments: dict, spec, truth: dict | None, top: int = 3) -> dict:
    """How often the timeline peaks inside a moment GIF's true moment, vs chance.

    For each test GIF with a moment, the `top` emotions with the highest true strength (the
    ones its moment carries) each give a hit when their segment_scores peak in a segment inside
    the moment; chance is the share of segments inside it. Returns rate, chance, their ratio."""
    import torch

    from gifsent_models.heads import head_outputs

    ids = data.ids["test"]
    rows = [i for i, g in enumerate(ids) if g in moments and (truth is None or g in truth)]
    if not rows:
        return {"gifs": 0}
    model.eval()
    with torch.no_grad():
        x = torch.as_tensor(data.x["test"][rows], dtype=torch.float32)
        seg = head_outputs(model, x, ("segment_scores",))["segment_scores"].numpy()
    hits, chance = [], []
    for j, i in enumerate(rows):
        inside = segment_in_moment(spec, seg.shape[1], moments[ids[i]])
        emotions = (
            np.argsort(-truth[ids[i]])[:top] if truth is not None else np.arange(seg.shape[2])
        )
        for e in emotions:
            hits.append(bool(inside[int(np.argmax(seg[j, :, e]))]))
        chance.append(float(inside.mean()))
    rate, base = float(np.mean(hits)), float(np.mean(chance))
    return {
        "gifs": len(rows),
        "segments": int(seg.shape[1]),
        "peak_in_moment": round(rate, 4),
        "chance": round(base, 4),
        "ratio": round(rate / base, 3) if base > 0 else None,
    }
