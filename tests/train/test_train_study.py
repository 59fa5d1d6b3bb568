"""The study helpers: the linear head equals ridge, certainty weights, paired tests, ceiling flags."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from gifsent_train import metrics as M
from gifsent_train import study
from gifsent_train.fit import predict
from gifsent_train.search import Trial


def test_linear_head_predicts_what_ridge_predicts():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3, 10)) * 5 + 2
    y = x.mean(axis=1) @ rng.normal(size=(10, 17)) * 0.01 + 0.4
    ridge = M.RidgeBaseline().fit(x[:90], y[:90], x[90:], y[90:])
    head = study.linear_head(ridge, 10)
    assert head.config.alpha == ridge.alpha_
    np.testing.assert_allclose(predict(head, x), ridge.predict(x), atol=1e-5)


def test_certainty_weights_by_hand():
    se = np.array([[0.1, 1.0], [0.2, 1.0], [0.4, 1.0], [0.01, np.nan]])
    w = study.certainty_weights(se, cap=2.0)
    # emotion 0: 1/se^2 = 100, 25, 6.25, 10000; median 62.5 -> cap 125: 100, 25, 6.25, 125
    # emotion 1: 1, 1, 1, inf (missing se) -> median 1 -> cap 2: 1, 1, 1, 2
    raw = np.array([[100, 1], [25, 1], [6.25, 1], [125, 2]], dtype=float)
    np.testing.assert_allclose(w, raw / raw.mean())
    assert w.mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cap"):
        study.certainty_weights(se, cap=0.5)


def test_paired_comparison_against_scipy_and_by_hand():
    rng = np.random.default_rng(1)
    y = rng.random((40, 17))
    base = y + rng.normal(0, 0.2, y.shape)
    model = np.stack([y + rng.normal(0, 0.1, y.shape) for _ in range(3)])  # 3 seeds
    r = study.paired_comparison(y, model, base, seed=0)
    e_m = ((model - y) ** 2).mean(axis=2).mean(axis=0)
    e_b = ((base - y) ** 2).mean(axis=1)
    d = e_m - e_b
    assert r["mse_diff"] == pytest.approx(d.mean()) and r["n"] == 40
    assert r["p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue)
    assert r["ci_low"] < d.mean() < r["ci_high"] < 0  # clearly better
    assert r["rmse_base"] == pytest.approx(math.sqrt(e_b.mean()))
    # no difference at all: no interval, no p-value
    same = study.paired_comparison(y, base, base)
    assert same["mse_diff"] == 0 and math.isnan(same["p_wilcoxon"])


def test_spread_and_ceiling_hits():
    s = study.spread([{"test": {"rmse": 1.0, "ev": 0.1}}, {"test": {"rmse": 3.0, "ev": 0.3}}])
    assert s["test"]["rmse"]["mean"] == 2.0 and s["test"]["rmse"]["std"] == pytest.approx(
        math.sqrt(2)
    )

    def trial(i, best, run, stopped):
        return Trial("rnn", i, {}, {}, {}, best, run, {}, 0.0, stopped_early=stopped)

    hits = study.ceiling_hits(
        [trial(0, 55, 60, False), trial(1, 20, 29, True), trial(2, 59, 60, False)], 60
    )
    # 0-based best epochs 55 and 59 -> 56 and 60 counted from 1
    assert hits == [
        {"head": "rnn", "trial": 0, "best_epoch": 56, "ceiling": 60},
        {"head": "rnn", "trial": 2, "best_epoch": 60, "ceiling": 60},
    ]
