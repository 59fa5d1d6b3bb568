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
- `evaluate_study`: a finished search's metrics document — baselines, seeds, the head best
  on dev, paired tests, agreement with the truth (demo data), the per-emotion table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

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


def timeline_signal(model, seg: np.ndarray) -> np.ndarray:
    """What "when" is read from, [N, S, 17]: the timeline itself, but for an LSTM whose timeline
    is the running estimate ("state") its increments (what each segment adds to the running
    estimate, the first from the estimate before any segment, the output layer's bias): a
    running estimate's level stays up after a moment, so its peak says "by now", while its
    rise says "here"."""
    heads = getattr(model, "heads", None) or [model]  # an EnsembleHead: the mean of its heads'
    if getattr(model, "name", "") != "rnn" or getattr(heads[0], "readout", None) is not None:
        return seg  # (an LSTM's timeline readout is read as it is, like MaxPool's)
    start = np.mean([h.fc.bias.detach().cpu().numpy() for h in heads], axis=0).astype(seg.dtype)
    return np.diff(seg, axis=1, prepend=np.broadcast_to(start, (seg.shape[0], 1, seg.shape[2])))


def moment_peak(signal: np.ndarray, emotions) -> int:
    """The segment where a GIF's timeline [S, 17] of `emotions` peaks together: each emotion's
    deviation from its own mean over the GIF, in units of its spread over the GIF (so no
    emotion's scale dominates), summed over the emotions; the argmax over segments."""
    x = signal[:, list(emotions)]
    z = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)
    return int(np.argmax(z.sum(axis=1)))


def timeline_study(
    model, data, moments: dict, spec, truth: dict | None, carried: dict | None = None, top: int = 3
) -> dict:
    """How often the timeline peaks inside a moment GIF's true moment, vs chance.

    For each test GIF with a moment, the emotions that moment carries (`carried`: id -> emotion
    names, the truth file's moment_emotions; for older truth files the `top` truly strongest
    emotions) give one peak, `moment_peak` of `timeline_signal`: a hit when that segment lies
    inside the moment. "per_emotion" also counts each of those emotions' own peaks. Chance is
    the moment's share of the segments (averaged over the GIFs). Returns rates, chance, ratios."""
    import torch

    from gifsent_infer.contract import EMOTIONS
    from gifsent_models.heads import head_outputs

    ids = data.ids["test"]
    rows = [i for i, g in enumerate(ids) if g in moments and (truth is None or g in truth)]
    if not rows:
        return {"gifs": 0}
    model.eval()
    with torch.no_grad():
        x = torch.as_tensor(data.x["test"][rows], dtype=torch.float32)
        seg = head_outputs(model, x, ("segment_scores",))["segment_scores"].numpy()
    signal = timeline_signal(model, seg)
    hits, each, chance = [], [], []
    for j, i in enumerate(rows):
        inside = segment_in_moment(spec, seg.shape[1], moments[ids[i]])
        if carried and ids[i] in carried:
            emotions = [EMOTIONS.index(e) for e in carried[ids[i]]]
        elif truth is not None:
            emotions = [int(e) for e in np.argsort(-truth[ids[i]])[:top]]
        else:
            emotions = list(range(seg.shape[2]))
        if not emotions:  # a moment raising no emotion (all its latents near 0): nothing to find
            continue
        hits.append(bool(inside[moment_peak(signal[j], emotions)]))
        each.extend(bool(inside[int(np.argmax(signal[j, :, e]))]) for e in emotions)
        chance.append(float(inside.mean()))
    rate, per, base = float(np.mean(hits)), float(np.mean(each)), float(np.mean(chance))
    return {
        "gifs": len(hits),
        "segments": int(seg.shape[1]),
        "emotions": "moment_emotions" if carried else f"top {top} by truth",
        "peak_in_moment": round(rate, 4),
        "chance": round(base, 4),
        "ratio": round(rate / base, 3) if base > 0 else None,
        "per_emotion_peak_in_moment": round(per, 4),
        "per_emotion_ratio": round(per / base, 3) if base > 0 else None,
        # the binomial standard error of the ratio: how far the GIF count lets it be trusted
        "ratio_se": round(math.sqrt(rate * (1 - rate) / len(hits)) / base, 3) if base > 0 else None,
    }


# --- the evaluation of a finished search -------------------------------------------------------


@dataclass
class HeadFit:
    """One head as the search (or the closed form) left it, ready to be evaluated.

    metrics: evaluate(model, data) of the kept model; entry: what metrics.json says about
    how it was found (trial, config, epochs...), after the metrics; trial: the search's best
    trial, whose configuration `seeds` refits (None: closed form, every seed the same);
    curves: its train/dev loss per epoch (Figure 3), or None.
    """

    model: Any
    metrics: dict
    entry: dict
    trial: Any = None
    curves: dict | None = None


@dataclass
class Baselines:
    """The per-emotion training mean and ridge on pooled features, fitted on train (+dev)."""

    mean: M.MeanBaseline
    ridge: M.RidgeBaseline

    @classmethod
    def fit(cls, data) -> Baselines:
        mean = M.MeanBaseline().fit(data.y["train"])
        ridge = M.RidgeBaseline().fit(
            data.x["train"], data.y["train"], data.x["dev"], data.y["dev"]
        )
        return cls(mean, ridge)


def evaluate_study(
    data,
    baselines: Baselines,
    heads: dict[str, HeadFit],
    *,
    settings: dict,
    fit_defaults,
    seed: int,
    w_train=None,
    truth: dict[str, np.ndarray] | None = None,
    scale=None,
    trials: Sequence = (),
    on_seed: Callable[[str, int, int], None] | None = None,
    fitted: dict[str, list] | None = None,
) -> dict:
    """The metrics document of a search: baselines, each head over `settings["seeds"]` fit
    seeds, the head best on dev (`best_head`; ties: the order of `heads`), paired tests of
    each head against each baseline on the test GIFs, the per-emotion table, agreement with
    the true emotions (demo data: `truth`, with the vote-noise ceiling through `scale`) and
    the epoch-ceiling hits among `trials`. on_seed(head, repeat, seeds): progress. `fitted`,
    when given, receives head -> [its model, then its seed refits] (issue 22: saved for
    `gifsent-export --ensemble` and calibrated by `interval_study`). fit_defaults: one
    FitConfig, or head -> FitConfig (stages.head_fit_defaults)."""
    from gifsent_train.fit import predict

    seeds = settings["seeds"]
    splits3 = (("train", data.train_eval), ("dev", "dev"), ("test", "test"))
    mean, ridge = baselines.mean, baselines.ridge
    models: dict[str, dict] = {
        "mean": {s: M.summary(data.y[k], mean.predict(len(data.y[k]))) for s, k in splits3},
        "ridge": {s: M.summary(data.y[k], ridge.predict(data.x[k])) for s, k in splits3},
    }
    models["ridge"]["alpha"] = ridge.alpha_
    preds = {"mean": mean.predict(len(data.y["test"])), "ridge": ridge.predict(data.x["test"])}
    seed_preds: dict[str, np.ndarray] = {}
    curves = {}
    for head, fit in heads.items():
        models[head] = {**fit.metrics, **fit.entry}
        preds[head] = predict(fit.model, data.x["test"])
        refits: list = []
        if fit.trial is None:  # closed form: every seed gives the same
            seed_preds[head], summaries = preds[head][None], [fit.metrics] * seeds
        else:
            curves[head] = {**fit.curves, "best_epoch": fit.entry["best_epoch"]}
            seed_preds[head], summaries = _refit_seeds(
                head,
                fit,
                preds[head],
                data,
                _for_head(fit_defaults, head),
                seeds,
                seed,
                w_train,
                on_seed,
                refits,
            )
        if fitted is not None:
            fitted[head] = [fit.model, *refits]
        models[head]["seeds"] = spread(summaries)
    best_head = min(heads, key=lambda h: models[h]["dev"]["rmse"])
    for key in ("mean", "ridge"):
        models[key]["seeds"] = spread([models[key]] * seeds)
    paired = _paired_tests(data, list(heads), seed_preds, preds, seed)
    per_emotion = _per_emotion_and_truth(data, models, preds, truth, scale)
    return {
        "models": models,
        "best_head": best_head,
        "per_emotion": per_emotion,
        "curves": curves,
        "paired": paired,
        "ceiling_hits": ceiling_hits(trials, settings["max_epochs"]),
        "training": settings,
        "rows": {k: int(v.shape[0]) for k, v in data.x.items()},
    }


def _for_head(fit_defaults, head: str):
    return fit_defaults[head] if isinstance(fit_defaults, dict) else fit_defaults


def _refit_seeds(
    head, fit: HeadFit, test_pred, data, fit_defaults, seeds, seed, w_train, on_seed, refits=None
):
    def on_fit(r: int) -> None:
        if on_seed is not None:
            on_seed(head, r + 1, seeds)

    if seeds > 1:
        on_fit(0)
    return repeat_seeds(
        head,
        fit.trial,
        data,
        fit_defaults,
        seeds,
        seed,
        w_train=w_train,
        first=(test_pred, fit.metrics),
        on_fit=on_fit,
        models_out=refits,
    )


def _paired_tests(data, heads: list[str], seed_preds: dict, preds: dict, seed: int) -> list[dict]:
    """Each trained head (errors averaged over its seeds) against each baseline."""
    paired = []
    for head in heads:
        for base in ("mean", "ridge"):
            if head == "linear" and base == "ridge":
                continue  # the same model
            cmp = paired_comparison(data.y["test"], seed_preds[head], preds[base], seed=seed)
            paired.append({"model": head, "baseline": base, "seeds": len(seed_preds[head]), **cmp})
    return paired


def _per_emotion_and_truth(data, models: dict, preds: dict, truth, scale) -> list[dict]:
    """The per-emotion table on test; with `truth`, each model's agreement with the true
    emotions (in `models`, and a truth_spearman column) and the Bradley-Terry ceiling."""
    test_truth = None
    if truth:
        have = [i for i, g in enumerate(data.ids["test"]) if g in truth]
        test_truth = (have, np.stack([truth[data.ids["test"][i]] for i in have])) if have else None
    rows_all: list[dict] = []
    for key, p in preds.items():
        rows = M.per_emotion(data.y["test"], p)
        if test_truth is not None and key in ("maxpool", "rnn", "ridge", "linear"):
            have, tv = test_truth
            agree = M.agreement(tv, p[have])
            models[key]["truth_agreement"] = agree
            for r in rows:
                r["truth_spearman"] = agree["spearman"][r["emotion"]]
        for r in rows:
            r["model"] = key
        rows_all += rows
    if test_truth is not None:
        have, tv = test_truth
        strengths = scale.to_strength(data.y["test"][have])
        models["bt_ceiling"] = {"truth_agreement": M.agreement(tv, strengths)}
    return rows_all
