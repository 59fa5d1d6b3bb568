"""gifsent_train.metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gifsent_train import metrics as M


def test_rmse_is_sqrt_of_mean_of_per_emotion_mse():
    y = np.array([[0.0, 1.0], [1.0, 1.0]])
    p = np.array([[0.0, 0.0], [0.0, 1.0]])
    # emotion 0: errors 0, 1 -> MSE 0.5; emotion 1: errors 1, 0 -> MSE 0.5
    assert M.rmse(y, p) == pytest.approx(math.sqrt(0.5))
    y = np.array([[0.0, 0.0], [0.0, 0.0]])
    p = np.array([[2.0, 0.0], [0.0, 0.0]])
    # emotion 0 MSE 2, emotion 1 MSE 0 -> sqrt(1)
    assert M.rmse(y, p) == pytest.approx(1.0)


def test_explained_variance_is_pooled():
    y = np.array([[0.0, 2.0], [2.0, 4.0]])  # pooled entries 0,2,2,4: var 2
    p = np.array([[1.0, 2.0], [1.0, 4.0]])  # residuals -1,0,1,0: var 0.5
    assert M.explained_variance(y, p) == pytest.approx(1 - 0.5 / 2)
    # a constant offset is "explained" (variance, not MSE)
    assert M.explained_variance(y, y + 3) == pytest.approx(1.0)
    # per-emotion means only: pooled EV > 0 because emotion means differ
    mean = M.MeanBaseline().fit(y).predict(2)
    np.testing.assert_allclose(mean, [[1.0, 3.0], [1.0, 3.0]])
    # residuals -1,-1,1,1: var 1 -> EV 0.5
    assert M.explained_variance(y, mean) == pytest.approx(0.5)


def test_ranks_pearson_spearman():
    # ties share average ranks: [3, 1, 2, 2] -> ranks [3, 0, 1.5, 1.5]; against [0, 1, 2, 3]
    # by hand: centred x = [1.5, -1.5, 0, 0], y = [-1.5, -0.5, 0.5, 1.5]: sum xy = -2.25 + 0.75,
    # sum x^2 = 4.5, sum y^2 = 5 -> r = -1.5 / sqrt(22.5)
    assert M.spearman([3.0, 1.0, 2.0, 2.0], [0, 1, 2, 3]) == pytest.approx(-1.5 / math.sqrt(22.5))
    assert M.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert M.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # monotone but non-linear: Spearman 1, Pearson < 1
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert M.spearman(a, a**3) == pytest.approx(1.0)
    assert M.pearson(a, a**3) < 0.99
    # hand-computed: x=[1,2,3], y=[1,3,2] -> ranks [0,1,2],[0,2,1] -> r = 0.5
    assert M.spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert math.isnan(M.pearson([1, 1, 1], [1, 2, 3]))
    assert math.isnan(M.spearman([1, 2, 3], [5, 5, 5])) and math.isnan(M.pearson([1], [2]))
    with pytest.raises(ValueError, match="different lengths"):
        M.pearson([1, 2, 3], [1, 2])


def test_per_emotion_r2_and_spread():
    y = np.array([[0.0], [1.0], [2.0], [3.0]])
    p = np.array([[1.0], [1.0], [2.0], [2.0]])
    (row,) = M.per_emotion(y, p)
    # SSE = 1 + 0 + 0 + 1 = 2, SST = 5 -> R2 = 0.6
    assert row["r2"] == pytest.approx(0.6)
    assert row["spread"] == pytest.approx(0.5 / math.sqrt(1.25))
    assert row["mse"] == pytest.approx(0.5)


def test_summary_and_agreement_shapes():
    rng = np.random.default_rng(0)
    y = rng.random((30, 17))
    s = M.summary(y, y)
    assert s["rmse"] == 0.0 and s["ev"] == pytest.approx(1.0) and s["n"] == 30
    a = M.agreement(y, y * 2 + 1)
    assert a["mean_spearman"] == pytest.approx(1.0) and len(a["spearman"]) == 17


def test_ridge_recovers_a_linear_map_and_picks_alpha_on_dev():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 17))
    x = rng.normal(size=(200, 3, 6))  # pooled over segments -> [200, 6]
    y = x.mean(axis=1) @ w + 0.5
    r = M.RidgeBaseline().fit(x[:150], y[:150], x[150:], y[150:])
    assert r.alpha_ <= 1.0
    assert M.rmse(y[150:], r.predict(x[150:])) < 0.05
    # dual path (N < D) gives the same answer as the primal one
    xs = rng.normal(size=(10, 40))
    ys = rng.normal(size=(10, 17))
    rr = M.RidgeBaseline()
    np.testing.assert_allclose(
        rr._solve(xs, ys, 3.0),
        np.linalg.solve(xs.T @ xs + 3.0 * np.eye(40), xs.T @ ys),
        atol=1e-8,
    )


def test_correlations_equal_numpy_formulas_on_random_data_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(50):
        a, b = np.round(rng.random(40), 1), rng.random(40)  # rounding makes ties
        assert abs(M.pearson(a, b) - np.corrcoef(a, b)[0, 1]) < 1e-15
        # average ranks by hand: mean position of each tied value
        ra = np.array([np.mean(np.flatnonzero(np.sort(a) == v)) for v in a])
        rb = np.argsort(np.argsort(b)).astype(float)
        assert abs(M.spearman(a, b) - np.corrcoef(ra, rb)[0, 1]) < 1e-15
