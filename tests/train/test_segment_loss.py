"""Issue 22: MaxPool's multiple-instance timeline. The shared kind's term (FitConfig.segment_weight,
TrainConfig segment_weight): the pools, its errors, where the training stages apply it, and that
it puts a tiny head's timeline on a short moment that no label marks. The mil readout
(MaxPool's default timeline): it finds the moment too while the scores train bit-identically
to a head without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gifsent_train.fit import FitConfig, fit_head, predict, segment_pool

SHARED = {"hidden": 32, "timeline": "shared"}
MIL = {"hidden": 32, "timeline": "mil"}


def test_segment_pools():
    seg = torch.tensor([[[0.0, 1.0], [2.0, -1.0], [1.0, 0.0]]])  # [1, S=3, 2]
    assert segment_pool(seg, "max").tolist() == [[2.0, 1.0]]
    assert segment_pool(seg, "mean").numpy() == pytest.approx(np.array([[1.0, 0.0]]))
    # lse: the max as the temperature goes to 0, the mean as it grows
    assert segment_pool(seg, "lse", 1e-3).numpy() == pytest.approx(np.array([[2.0, 1.0]]), abs=2e-3)
    assert segment_pool(seg, "lse", 1e3).numpy() == pytest.approx(np.array([[1.0, 0.0]]), abs=2e-3)
    with pytest.raises(ValueError, match="segment_pool"):
        segment_pool(seg, "median")


def _moment_data(n: int, seed: int, s: int = 6, d: int = 8):
    """GIFs of s segments: each one's label shows only in one segment (its moment, at a random
    place), the other segments carry a distractor that moves as much within the GIF and says
    nothing about the label. Returns x [n, s, d], y [n, 17], moment index [n]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.3, size=(n, s, d)).astype(np.float32)
    a = rng.uniform(0.0, 1.0, size=n).astype(np.float32)  # the GIF's strength
    where = rng.integers(0, s, size=n)
    x[np.arange(n), where, 0] += 3.0 * a  # the moment: feature 0 carries the label there only
    x[:, :, 1] += rng.uniform(0.0, 3.0, size=(n, s)).astype(np.float32)  # the distractor
    y = np.repeat(0.2 + 0.6 * a[:, None], 17, axis=1).astype(np.float32)
    return x, y, where


def _peak_rate(model, x, where, strong) -> float:
    with torch.no_grad():
        seg = model.segment_scores(torch.as_tensor(x[strong])).numpy()
    return float(np.mean(seg.mean(axis=2).argmax(axis=1) == where[strong]))


def test_the_term_puts_the_maxpool_timeline_on_the_moment():
    x, y, _ = _moment_data(384, seed=0)
    xd, yd, _ = _moment_data(64, seed=1)
    xt, yt, wt = _moment_data(128, seed=2)
    strong = yt[:, 0] > 0.5  # GIFs whose moment stands out of the noise
    base = {"lr": 3e-3, "batch_size": 32, "max_epochs": 40, "patience": 40, "threads": 1}
    cfg = FitConfig(**base, segment_weight=3.0)
    m, r = fit_head("maxpool", SHARED, x, y, xd, yd, cfg)
    # the score is still fit (the dev loss early stopping watches is the plain MSE of it)
    assert np.mean((predict(m, xt) - yt) ** 2) < 0.25 * np.var(yt)
    assert r.best_dev_loss == pytest.approx(float(np.mean((predict(m, xd) - yd) ** 2)), rel=1e-4)
    # the segments' max explains the label (twice as well as without the term: a plain MaxPool
    # head learns max-pooled features, which no single segment shows), and the timeline peaks
    # at the moment
    plain, _ = fit_head("maxpool", SHARED, x, y, xd, yd, FitConfig(**base))

    def pooled_error(model) -> float:
        with torch.no_grad():
            pooled = segment_pool(model.segment_scores(torch.as_tensor(xt)), "max").numpy()
        return float(np.mean((pooled - yt) ** 2) / np.var(yt))

    assert pooled_error(m) < 0.2 and pooled_error(m) < 0.7 * pooled_error(plain)
    assert _peak_rate(m, xt, wt, strong) >= 0.9
    # deterministic, like every fit
    m2, _ = fit_head("maxpool", SHARED, x, y, xd, yd, cfg)
    assert torch.equal(m.mlp[0].weight, m2.mlp[0].weight)


def test_the_term_checks_its_settings():
    x, y, _ = _moment_data(16, seed=0)
    for bad, match in (
        ({"segment_weight": -1.0}, "segment_weight"),
        ({"segment_weight": 1.0, "segment_pool": "median"}, "segment_pool"),
        ({"segment_weight": 1.0, "segment_pool": "lse", "segment_temperature": 0.0}, "temperature"),
    ):
        with pytest.raises(ValueError, match=match):
            fit_head("maxpool", SHARED, x, y, x, y, FitConfig(max_epochs=1, **bad))
    with pytest.raises(ValueError, match="own timeline readout"):  # the term needs "shared"
        fit_head("maxpool", MIL, x, y, x, y, FitConfig(max_epochs=1, segment_weight=1.0))

    class NoTimeline(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 17)

        def forward(self, v):
            return self.fc(v.mean(dim=1))

    from gifsent_train.fit import train_model

    with pytest.raises(ValueError, match="segment_scores"):
        train_model(NoTimeline(), x, y, x, y, FitConfig(max_epochs=1, segment_weight=1.0))


def test_only_maxpool_gets_the_term_and_old_run_names_stay():
    from gifsent_train.config import TrainConfig
    from gifsent_train.stages import head_fit_defaults

    base = FitConfig(seed=3)
    cfg = TrainConfig(data_dir="/d", encoder="efficientnet-lite0", segment_weight=10.0)
    per = head_fit_defaults(cfg, base)
    assert per["maxpool"].segment_weight == 10.0 and per["maxpool"].segment_pool == "max"
    assert per["maxpool"].seed == 3
    assert per["rnn"] is base and per["linear"] is base  # the LSTM's timeline is a running sum
    off = TrainConfig(data_dir="/d", encoder="efficientnet-lite0")
    assert all(v is base for v in head_fit_defaults(off, base).values())
    # off (0) leaves the run's default name as it was before the option existed
    assert off.default_run_name() != cfg.default_run_name()
    assert off.default_run_name() == "d-efficientnet-lite0-sparse-" + _old_hash(off)
    with pytest.raises(ValueError, match="segment_weight"):
        TrainConfig(segment_weight=-0.5)
    # the timeline kind: mil by default, shared with the term (old runs keep their meaning)
    assert off.maxpool_timeline_kind() == "mil" and cfg.maxpool_timeline_kind() == "shared"
    plain = TrainConfig(data_dir="/d", encoder="efficientnet-lite0", maxpool_timeline="shared")
    assert plain.maxpool_timeline_kind() == "shared"
    assert plain.default_run_name() != off.default_run_name()
    # naming the kind the run would get anyway keeps its name
    assert off.replace(maxpool_timeline="mil").default_run_name() == off.default_run_name()
    assert cfg.replace(maxpool_timeline="shared").default_run_name() == cfg.default_run_name()
    with pytest.raises(ValueError, match="maxpool_timeline shared"):
        TrainConfig(maxpool_timeline="mil", segment_weight=1.0)
    with pytest.raises(ValueError, match="maxpool_timeline"):
        TrainConfig(maxpool_timeline="soft")


def _old_hash(cfg) -> str:
    import hashlib
    import json
    from dataclasses import asdict

    skip = ("run_dir", "run_name", "threads", "ray_address", "segment_weight", "maxpool_timeline")
    keep = {k: v for k, v in asdict(cfg).items() if k not in skip}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:8]


def test_the_mil_readout_finds_the_moment_and_leaves_the_scores_as_they_were():
    """MaxPool's default timeline: a readout trained beside the head. Its argmax over segments
    finds the one segment that carries the label far above chance (1/6), while the score path
    trains bit for bit as the same head without a readout (W = 0, shared)."""
    x, y, _ = _moment_data(384, seed=0)
    xd, yd, _ = _moment_data(64, seed=1)
    xt, yt, wt = _moment_data(128, seed=2)
    strong = yt[:, 0] > 0.5
    cfg = FitConfig(lr=3e-3, batch_size=32, max_epochs=40, patience=8, threads=1, seed=5)
    mil, r = fit_head("maxpool", MIL, x, y, xd, yd, cfg)
    plain, rp = fit_head("maxpool", SHARED, x, y, xd, yd, cfg)
    # the scores: identical to the plain head's (same epochs, same weights, same predictions)
    assert np.array_equal(predict(mil, xt), predict(plain, xt))
    assert r.curves["dev"] == rp.curves["dev"] and r.best_epoch == rp.best_epoch
    assert all(
        torch.equal(a, b) for a, b in zip(mil.mlp.parameters(), plain.mlp.parameters(), strict=True)
    )
    # the readout: its own early stopping on its pooled dev loss, its best state kept
    assert r.readout_best_epoch is not None and rp.readout_best_epoch is None
    best = int(np.argmin(r.curves["readout_dev"]))
    assert r.readout_best_epoch == best
    assert _peak_rate(mil, xt, wt, strong) >= 0.9

    def pooled_error(model, xs, ys) -> float:
        with torch.no_grad():
            pooled = segment_pool(model.segment_scores(torch.as_tensor(xs)), "max").numpy()
        return float(np.mean((pooled - ys) ** 2))

    assert pooled_error(mil, xd, yd) == pytest.approx(r.curves["readout_dev"][best], rel=1e-4)
    # its segments' max explains most of the label's variance (an untrained readout: none)
    assert pooled_error(mil, xt, yt) < 0.4 * np.var(yt)
