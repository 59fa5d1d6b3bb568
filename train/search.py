"""Randomized hyperparameter search over a head's architecture and optimiser settings; best on dev wins.

The ranges (``SearchSpace``) are the study's, at least as wide: MaxPool 2-8 FC layers,
LSTM 1-4 layers, hidden units 32-512 (log-uniform integer), batch size one of
16/32/64/128, learning rate 1e-4..3e-3 (log-uniform), dropout 0..0.5 (uniform),
weight decay 1e-6..1e-2 (log-uniform). Trial k of a head draws from its own RNG
seeded with (seed, head, k), so a trial's settings do not depend on how many trials
ran before it, and the same seed reproduces the same search. Trial 0 is optionally
the head's default config (for ``rnn`` the study's best: 2 layers, 64 units, dropout
0.1705). Every trial is written to ``<trials dir>/<head>-<k>.json``.

Resuming: with a trials dir, a trial whose file is there and carries the same signature
(a hash of the data and settings the caller passes) is loaded instead of fitted, so an
interrupted search picks up after its last finished trial. The best head so far is kept
as ``<head>-best.pt`` (its state dict and trial index), written before the trial's JSON;
if it is missing on resume, the best finished trial is refitted (fits are seeded, so it
comes out the same).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from gifsent_infer.files import write_json as atomic_write_json
from gifsent_train import metrics as M
from gifsent_train.fit import FitConfig, FitResult, fit_head, predict
from gifsent_train.run import strict_json

HEAD_INDEX = {"maxpool": 0, "rnn": 1}


@dataclass
class SearchSpace:
    maxpool_layers: tuple[int, int] = (2, 8)  # the study's MaxPool head: 2-8 FC layers
    rnn_layers: tuple[int, int] = (1, 4)  # LSTM layers
    hidden: tuple[int, int] = (32, 512)  # log-uniform integer
    batch_sizes: tuple[int, ...] = (16, 32, 64, 128)
    lr: tuple[float, float] = (1e-4, 3e-3)  # log-uniform
    dropout: tuple[float, float] = (0.0, 0.5)  # uniform
    weight_decay: tuple[float, float] = (1e-6, 1e-2)  # log-uniform

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def sample_trial(
    head: str, k: int, seed: int, space: SearchSpace | None = None
) -> tuple[dict, dict]:
    """(head config dict, fit overrides dict) of trial k; deterministic in (head, k, seed)."""
    sp = space or SearchSpace()
    rng = np.random.default_rng([int(seed), HEAD_INDEX[head], int(k)])
    lo, hi = sp.maxpool_layers if head == "maxpool" else sp.rnn_layers
    layers = int(rng.integers(lo, hi + 1))
    hidden = round(_loguniform(rng, *sp.hidden))
    dropout = float(rng.uniform(*sp.dropout))
    fit = {
        "batch_size": int(rng.choice(np.asarray(sp.batch_sizes))),
        "lr": _loguniform(rng, *sp.lr),
        "weight_decay": _loguniform(rng, *sp.weight_decay),
    }
    return {"num_layers": layers, "hidden": hidden, "dropout": dropout}, fit


@dataclass
class SplitData:
    """Features and targets per split; train rows may repeat a GIF once per augmented view."""

    x: dict[str, np.ndarray]  # "train", "dev", "test": [N, S, D]
    y: dict[str, np.ndarray]  # [N, 17]
    ids: dict[str, list[str]] = field(default_factory=dict)
    train_eval: str = "train"  # which entry train metrics use ("train_view0" when augmented)


@dataclass
class Trial:
    head: str
    index: int
    head_config: dict
    fit: dict
    curves: dict
    best_epoch: int
    epochs_run: int
    metrics: dict
    seconds: float
    stopped_early: bool = False  # False: the epoch ceiling ended it, not patience
    readout_best_epoch: int | None = None  # a timeline readout's own best epoch (0-based)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchResult:
    head: str
    trials: list[Trial]
    best: int  # index into trials
    model: object  # the best head, trained, eval mode
    fit_result: FitResult

    @property
    def best_trial(self) -> Trial:
        return self.trials[self.best]


def evaluate(model, data: SplitData, splits=("train", "dev", "test")) -> dict[str, dict]:
    out = {}
    for s in splits:
        key = data.train_eval if s == "train" else s
        if key in data.x and len(data.x[key]):
            out[s] = M.summary(data.y[key], predict(model, data.x[key]))
    return out


def run_search(
    head: str,
    data: SplitData,
    *,
    trials: int = 20,
    seed: int = 0,
    space: SearchSpace | None = None,
    fit_defaults: FitConfig | None = None,
    include_default: bool = True,
    trials_dir: Path | None = None,
    on_trial: Callable[[Trial, bool], None] | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
    w_train=None,
    signature: str = "",
    head_fixed: dict | None = None,
) -> SearchResult:
    """Run `trials` trials for `head`, keep the best on dev RMSE, record each trial.

    With `trials_dir`, finished trials recorded there under the same `signature` (and the same
    head config) are reused (see the module docstring); `on_trial` is called only for trials
    run now. `head_fixed`: head config values every trial takes (e.g. MaxPool's timeline).
    """
    if trials < 1:
        raise ValueError("trials must be >= 1")
    base = fit_defaults or FitConfig()
    done: list[Trial] = []
    best_i, best_model, best_fit, best_score = -1, None, None, math.inf
    best_file = None
    if trials_dir is not None:
        Path(trials_dir).mkdir(parents=True, exist_ok=True)
        best_file = Path(trials_dir) / f"{head}-best.pt"
    for k in range(trials):
        cfg, fit_cfg = trial_settings(head, k, seed, base, space, include_default, head_fixed)
        trial = _finished_trial(trials_dir, head, k, signature, cfg)
        model = res = None
        if trial is None:
            t0 = time.perf_counter()
            model, res = fit_head(
                head,
                cfg,
                data.x["train"],
                data.y["train"],
                data.x["dev"],
                data.y["dev"],
                fit_cfg,
                on_epoch=on_epoch,
                w_train=w_train,
            )
            mets = evaluate(model, data, ("train", "dev"))
            trial = Trial(
                head=head,
                index=k,
                head_config=cfg,
                fit=fit_cfg.to_dict(),
                curves=res.curves,
                best_epoch=res.best_epoch,
                epochs_run=res.epochs_run,
                metrics=mets,
                seconds=time.perf_counter() - t0,
                stopped_early=res.stopped_early,
                readout_best_epoch=res.readout_best_epoch,
            )
        done.append(trial)
        score = trial.metrics["dev"]["rmse"]
        score = math.inf if score is None else score
        is_best = math.isfinite(score) and score < best_score
        if is_best:
            best_i, best_score = k, score
            best_model, best_fit = model, res  # None for a reused trial: loaded below
            if model is not None and best_file is not None:
                _atomic_torch_save(best_file, {"index": k, "state_dict": model.state_dict()})
        if model is not None:
            if trials_dir is not None:
                doc = {**trial.to_dict(), "signature": signature}
                atomic_write_json(Path(trials_dir) / f"{head}-{k}.json", strict_json(doc))
            if on_trial is not None:
                on_trial(trial, is_best)
    if best_i < 0:
        raise RuntimeError(f"no {head} trial reached a finite dev RMSE")
    if best_model is None:  # the best trial finished in an earlier, interrupted search
        best_model, best_fit = _restore_best(
            head, done[best_i], best_file, data, base, (space, include_default, head_fixed),
            seed, w_train,
        )  # fmt: skip
    return SearchResult(head=head, trials=done, best=best_i, model=best_model, fit_result=best_fit)


def trial_settings(
    head: str,
    k: int,
    seed: int,
    base: FitConfig,
    space: SearchSpace | None = None,
    include_default: bool = True,
    head_fixed: dict | None = None,
) -> tuple[dict, FitConfig]:
    """(resolved head config dict, FitConfig) of trial k; deterministic in (head, k, seed)."""
    from gifsent_models.heads import head_config as resolve_config

    if k == 0 and include_default:
        cfg, fit_over = {}, {}
    else:
        cfg, fit_over = sample_trial(head, k, seed, space)
    cfg = asdict(resolve_config(head, {**cfg, **(head_fixed or {})}))
    return cfg, replace(base, **fit_over, seed=int(seed) * 1000 + k)


def _finished_trial(trials_dir, head: str, k: int, signature: str, cfg: dict) -> Trial | None:
    """Trial k as an earlier search recorded it, if it ran with this signature and head config
    (a config recorded before a field existed counts as that gifsent built it)."""
    from gifsent_models.heads import stored_head_config

    if trials_dir is None:
        return None
    p = Path(trials_dir) / f"{head}-{k}.json"
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if doc.pop("signature", None) != signature:
        return None
    try:
        if asdict(stored_head_config(head, doc.get("head_config"))) != cfg:
            return None  # trained with another head config (e.g. MaxPool's old timeline)
        trial = Trial(**{f: doc[f] for f in Trial.__dataclass_fields__ if f in doc})
        trial.head_config = cfg  # every field named, as a trial run now records it
        return trial
    except (TypeError, ValueError):  # an older or damaged file: run the trial again
        return None


def _atomic_torch_save(path: Path, obj) -> None:
    import os

    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _restore_best(head, trial, best_file, data, base, settings, seed, w_train):
    """The best trial's trained head: from <head>-best.pt, else refitted (seeded: the same).
    settings: (space, include_default, head_fixed) of the search."""
    import torch

    from gifsent_models.heads import create_head

    space, include_default, head_fixed = settings
    cfg, fit_cfg = trial_settings(head, trial.index, seed, base, space, include_default, head_fixed)

    if best_file is not None and best_file.is_file():
        saved = torch.load(best_file, map_location="cpu", weights_only=True)
        if saved.get("index") == trial.index:
            model = create_head(head, int(data.x["train"].shape[-1]), cfg)
            model.load_state_dict(saved["state_dict"])
            model.eval()
            res = FitResult(
                state_dict=saved["state_dict"],
                best_epoch=trial.best_epoch,
                best_dev_loss=min(
                    (v for v in trial.curves.get("dev") or [] if v is not None), default=math.nan
                ),
                curves=trial.curves,
                epochs_run=trial.epochs_run,
                stopped_early=trial.stopped_early,
                readout_best_epoch=trial.readout_best_epoch,
            )
            return model, res
    x, y = data.x, data.y
    return fit_head(head, cfg, x["train"], y["train"], x["dev"], y["dev"], fit_cfg, w_train=w_train)


def load_trials(trials_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(trials_dir).glob("*.json"))]
