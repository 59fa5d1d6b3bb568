"""Randomized hyperparameter search over a head's architecture and optimiser settings; best on dev wins.

The ranges (``SearchSpace``) are the study's, at least as wide: MaxPool 2-8 FC layers,
LSTM 1-4 layers, hidden units 32-512 (log-uniform integer), batch size one of
16/32/64/128, learning rate 1e-4..3e-3 (log-uniform), dropout 0..0.5 (uniform),
weight decay 1e-6..1e-2 (log-uniform). Trial k of a head draws from its own RNG
seeded with (seed, head, k), so a trial's settings do not depend on how many trials
ran before it, and the same seed reproduces the same search. Trial 0 is optionally
the head's default config (for ``rnn`` the study's best: 2 layers, 64 units, dropout
0.1705). Every trial is written to ``<trials dir>/<head>-<k>.json``.
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
) -> SearchResult:
    """Run `trials` trials for `head`, keep the best on dev RMSE, record each trial."""
    from gifsent_models.heads import head_config as resolve_config

    if trials < 1:
        raise ValueError("trials must be >= 1")
    base = fit_defaults or FitConfig()
    done: list[Trial] = []
    best_i, best_model, best_fit, best_score = -1, None, None, math.inf
    for k in range(trials):
        if k == 0 and include_default:
            cfg = asdict(resolve_config(head, None))
            fit_over = {}
        else:
            cfg, fit_over = sample_trial(head, k, seed, space)
            cfg = asdict(resolve_config(head, cfg))
        fit_cfg = replace(base, **fit_over, seed=int(seed) * 1000 + k)
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
        )
        done.append(trial)
        score = mets["dev"]["rmse"]
        is_best = math.isfinite(score) and score < best_score
        if is_best:
            best_i, best_model, best_fit, best_score = k, model, res, score
        if trials_dir is not None:
            atomic_write_json(Path(trials_dir) / f"{head}-{k}.json", _jsonable(trial.to_dict()))
        if on_trial is not None:
            on_trial(trial, is_best)
    if best_model is None:
        raise RuntimeError(f"no {head} trial reached a finite dev RMSE")
    return SearchResult(head=head, trials=done, best=best_i, model=best_model, fit_result=best_fit)


def _jsonable(obj):
    """NaN/inf -> None so trial files are strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def load_trials(trials_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(trials_dir).glob("*.json"))]
