"""Fits one head on cached features; knows nothing about which head it is training.

Input features are ``[N, S, D]`` float32 (S segments of D-dim encoder features) and
targets ``[N, 17]``; the model maps ``[B, S, D] -> [B, 17]``. MSE loss (optionally
weighted per GIF and emotion, e.g. by the certainty of its Bradley-Terry score; optionally plus a
multiple-instance term on the per-segment outputs, `segment_weight`), Adam with
(L2-style, torch Adam's) weight decay, early stopping on dev loss with patience; the
state of the best dev epoch is returned. Seeded: the same seed, data and thread
count give bit-identical results on a CPU.

A head with a timeline readout (a module attribute `readout`, MaxPool's timeline "mil"; its
`segment_scores` read it) trains it beside the scores on its own multiple-instance loss,
MSE(pool over segments of segment_scores, y), with its own early stopping on that loss on dev
and its own best state (`_ReadoutFit`). It shares no weights with the score path and draws
its dropout masks from its own random stream, so the scores train bit-identically to the
same head without a readout.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class FitConfig:
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 1e-5
    max_epochs: int = 60  # early stopping usually ends far sooner
    patience: int = 8  # epochs without a dev improvement before stopping
    min_delta: float = 0.0  # a dev loss must beat the best by this much to count
    seed: int = 0
    eval_batch_size: int = 256  # inference batches; no effect on results
    # torch intra-op threads while fitting; small heads often run fastest on 1 thread, and
    # results are bit-identical only for the same thread count. None: leave torch's setting.
    threads: int | None = None
    # Start the last Linear layer that outputs the targets at the training mean (bias) with
    # small weights: every head then starts at the study's baseline instead of at 0, and the
    # epochs go into learning what differs between GIFs. Works for any head ending in Linear.
    init_output_at_mean: bool = True
    # A multiple-instance term for heads whose per-segment outputs (`segment_scores`) come
    # from their score path (MaxPool's "shared" timeline), 0: off. The GIF's label must also be
    # explained by its segments' own predictions pooled over the segments (`segment_pool`):
    # the loss adds segment_weight * (pool(segment_scores) - y)^2. It needs no labels inside
    # the GIF, and it trains the head on single segments, which its timeline shows (a MaxPool
    # head otherwise sees only max-pooled features). A head with a readout ("mil") refuses it:
    # its readout trains on that loss alone, pooled by `segment_pool` too.
    segment_weight: float = 0.0
    # "max": the segment that explains the label (a short moment carries it); "lse": a soft max,
    # temperature segment_temperature in target units; "mean": every segment shares it.
    segment_pool: str = "max"
    segment_temperature: float = 0.05

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    state_dict: dict[str, torch.Tensor]  # best dev epoch (a readout: its own best epoch's)
    best_epoch: int  # 0-based
    best_dev_loss: float
    # "train": the training loss per epoch (with the segment term when on), "dev": plain MSE;
    # a head with a readout adds "readout_train" and "readout_dev" (its pooled MSE)
    curves: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int = 0  # epochs the scores trained (a readout may train on after they stop)
    stopped_early: bool = False
    readout_best_epoch: int | None = None  # 0-based; None: the head has no readout


def _tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)


@torch.no_grad()
def predict(model: nn.Module, x, batch_size: int = 256) -> np.ndarray:
    """[N, S, D] -> [N, 17] numpy, eval mode."""
    was_training = model.training
    model.eval()
    xt = _tensor(x)
    out = [model(xt[i : i + batch_size]) for i in range(0, len(xt), batch_size)]
    model.train(was_training)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy()


SEGMENT_POOLS = ("max", "lse", "mean")


def segment_pool(seg: torch.Tensor, how: str, temperature: float = 0.05) -> torch.Tensor:
    """Per-segment predictions [B, S, 17] pooled over the segments -> [B, 17] (SEGMENT_POOLS).

    "lse" is temperature * log(mean(exp(seg / temperature))): the mean for a large temperature,
    the max as it goes to 0."""
    if how == "max":
        return seg.amax(dim=1)
    if how == "mean":
        return seg.mean(dim=1)
    if how == "lse":
        t = float(temperature)
        return t * (torch.logsumexp(seg / t, dim=1) - math.log(seg.shape[1]))
    raise ValueError(f"segment_pool must be one of {SEGMENT_POOLS}, got {how!r}")


def _check_segment_loss(model: nn.Module, cfg: FitConfig) -> bool:
    """Whether the multiple-instance term is on; a clear error when it cannot be."""
    if cfg.segment_pool not in SEGMENT_POOLS:
        raise ValueError(f"segment_pool must be one of {SEGMENT_POOLS}, got {cfg.segment_pool!r}")
    if not cfg.segment_temperature > 0:
        raise ValueError(f"segment_temperature must be > 0, got {cfg.segment_temperature}")
    if not cfg.segment_weight:
        return False
    if not (math.isfinite(cfg.segment_weight) and cfg.segment_weight > 0):
        raise ValueError(f"segment_weight must be a finite number >= 0, got {cfg.segment_weight}")
    if _readout(model) is not None:
        raise ValueError(
            "segment_weight trains a head's own score MLP on single segments (MaxPool timeline "
            '"shared"); this head has its own timeline readout (timeline "mil"), trained on '
            "its own loss: leave segment_weight at 0"
        )
    if not callable(getattr(model, "segment_scores", None)):
        raise ValueError(
            f"segment_weight needs a head with segment_scores; {type(model).__name__} has none"
        )
    return True


def _mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            total += float(((model(x[i : i + batch_size]) - y[i : i + batch_size]) ** 2).sum())
    return total / (len(x) * y.shape[1])


@torch.no_grad()
def _init_output(model: nn.Module, y: torch.Tensor, skip: nn.Module | None = None) -> None:
    """The last Linear with one output per target (outside `skip`) starts at the mean of y."""
    skipped = {id(m) for m in skip.modules()} if skip is not None else set()
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.out_features == y.shape[1] and id(m) not in skipped:
            last = m
    if last is not None and last.bias is not None:
        last.bias.copy_(y.mean(dim=0))
        last.weight.mul_(0.1)


def _readout(model: nn.Module) -> nn.Module | None:
    r = getattr(model, "readout", None)
    return r if isinstance(r, nn.Module) else None


class _ReadoutFit:
    """The timeline readout of `model` (see the module docstring) while it trains: its loss,
    its dev loss, its patience and its best state."""

    def __init__(self, model: nn.Module, cfg: FitConfig) -> None:
        self.model, self.module = model, _readout(model)
        self.pool = (cfg.segment_pool, cfg.segment_temperature)
        self.patience, self.min_delta = cfg.patience, cfg.min_delta
        # its own dropout stream (a fixed offset from the fit's seed): the global one stays
        # the score path's
        self.rng = torch.Generator().manual_seed(int(cfg.seed) + 104729).get_state()
        self.best = (math.inf, -1, copy.deepcopy(self.module.state_dict()))
        self.bad, self.alive = 0, True

    def sq_error(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """(pool(segment_scores) - y)^2 of a training batch, dropout from its own stream."""
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng)
            seg = self.model.segment_scores(xb)
            self.rng = torch.get_rng_state()
        return (segment_pool(seg, *self.pool) - yb) ** 2

    @torch.no_grad()
    def dev_loss(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
        total = 0.0
        for i in range(0, len(x), batch_size):
            seg = self.model.segment_scores(x[i : i + batch_size])
            total += float(((segment_pool(seg, *self.pool) - y[i : i + batch_size]) ** 2).sum())
        return total / (len(x) * y.shape[1])

    def end_epoch(self, epoch: int, dev_loss: float) -> None:
        if math.isfinite(dev_loss) and dev_loss < self.best[0] - self.min_delta:
            self.best = (dev_loss, epoch, copy.deepcopy(self.module.state_dict()))
            self.bad = 0
        else:
            self.bad += 1
            self.alive = math.isfinite(dev_loss) and self.bad < self.patience

    def restore(self) -> None:
        self.module.load_state_dict(self.best[2])


def train_model(
    model: nn.Module,
    x_train,
    y_train,
    x_dev,
    y_dev,
    config: FitConfig | None = None,
    *,
    on_epoch: Callable[[int, float, float], None] | None = None,
    w_train=None,
) -> FitResult:
    """Train `model` in place and load its best-dev state into it; returns curves and that state.

    w_train: optional [N, 17] non-negative loss weights of the training entries (rescaled
    here to mean 1, so the learning rate means the same with and without). The dev loss
    that early stopping watches stays unweighted: the model is still chosen on plain MSE.
    """
    cfg = config or FitConfig()
    previous = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    try:
        return _train(model, x_train, y_train, x_dev, y_dev, cfg, on_epoch, w_train)
    finally:
        torch.set_num_threads(previous)


def _loss_weights(w_train, yt: torch.Tensor) -> torch.Tensor | None:
    if w_train is None:
        return None
    wt = _tensor(w_train)
    if wt.shape != yt.shape or not bool(torch.isfinite(wt).all()) or bool((wt < 0).any()):
        raise ValueError(
            f"w_train must be finite, non-negative and shaped like y_train {tuple(yt.shape)}"
        )
    if float(wt.mean()) <= 0:
        raise ValueError("w_train is all zeros")
    return wt / wt.mean()


def _train(
    model, x_train, y_train, x_dev, y_dev, cfg: FitConfig, on_epoch, w_train=None
) -> FitResult:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    xt, yt = _tensor(x_train), _tensor(y_train)
    xd, yd = _tensor(x_dev), _tensor(y_dev)
    if len(xt) == 0 or len(xd) == 0:
        raise ValueError("train_model needs non-empty train and dev sets")
    wt = _loss_weights(w_train, yt)
    seg_loss = _check_segment_loss(model, cfg)
    readout = _ReadoutFit(model, cfg) if _readout(model) is not None else None
    if cfg.init_output_at_mean:
        _init_output(model, yt, skip=readout.module if readout else None)
        if readout is not None:
            _init_output(readout.module, yt)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best = (math.inf, -1, copy.deepcopy(model.state_dict()))
    curves: dict[str, list[float]] = {"train": [], "dev": []}
    if readout is not None:
        curves.update(readout_train=[], readout_dev=[])
    bad, stopped, scoring, epochs_run = 0, False, True, 0
    for epoch in range(cfg.max_epochs):
        if not scoring and not (readout is not None and readout.alive):
            break
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total, r_total = 0.0, 0.0
        for i in range(0, len(xt), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad(set_to_none=True)
            loss = r_loss = torch.zeros(())
            if scoring:  # the scores (and the shared term) exactly as without a readout
                sq = (model(xb) - yb) ** 2
                if seg_loss:
                    pooled = segment_pool(
                        model.segment_scores(xb), cfg.segment_pool, cfg.segment_temperature
                    )
                    sq = sq + cfg.segment_weight * (pooled - yb) ** 2
                loss = (sq * wt[idx]).mean() if wt is not None else sq.mean()
            if readout is not None and readout.alive:
                rq = readout.sq_error(xb, yb)
                r_loss = (rq * wt[idx]).mean() if wt is not None else rq.mean()
            (loss + r_loss).backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            r_total += float(r_loss.detach()) * len(idx)
        model.eval()
        if readout is not None and readout.alive:
            curves["readout_train"].append(r_total / len(xt))
            curves["readout_dev"].append(readout.dev_loss(xd, yd, cfg.eval_batch_size))
            readout.end_epoch(epoch, curves["readout_dev"][-1])
        if not scoring:
            continue
        # the training loss: mean over the epoch's batches, dropout on, weighted if asked
        train_loss, dev_loss = total / len(xt), _mse(model, xd, yd, cfg.eval_batch_size)
        curves["train"].append(train_loss)
        curves["dev"].append(dev_loss)
        epochs_run = epoch + 1
        if on_epoch is not None:
            on_epoch(epoch, train_loss, dev_loss)
        if not math.isfinite(dev_loss):
            stopped, scoring = True, False
        elif dev_loss < best[0] - cfg.min_delta:
            best = (dev_loss, epoch, copy.deepcopy(model.state_dict()))
            bad = 0
        else:
            bad += 1
            if bad >= cfg.patience:
                stopped, scoring = True, False
    model.load_state_dict(best[2])
    if readout is not None:
        readout.restore()
    model.eval()
    return FitResult(
        state_dict=copy.deepcopy(model.state_dict()) if readout is not None else best[2],
        best_epoch=best[1],
        best_dev_loss=best[0],
        curves=curves,
        epochs_run=epochs_run,
        stopped_early=stopped,
        readout_best_epoch=readout.best[1] if readout is not None else None,
    )


def fit_head(
    head_name: str,
    head_config,
    x_train,
    y_train,
    x_dev,
    y_dev,
    config: FitConfig | None = None,
    *,
    on_epoch: Callable[[int, float, float], None] | None = None,
    w_train=None,
) -> tuple[nn.Module, FitResult]:
    """Create a registry head for these features and train it; returns (head, result)."""
    from gifsent_models.heads import create_head

    cfg = config or FitConfig()
    torch.manual_seed(cfg.seed)  # the head's initial weights depend on the seed too
    in_dim = int(np.asarray(x_train).shape[-1])
    head = create_head(head_name, in_dim, head_config)
    result = train_model(
        head, x_train, y_train, x_dev, y_dev, cfg, on_epoch=on_epoch, w_train=w_train
    )
    return head, result
