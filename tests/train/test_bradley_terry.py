"""Bradley-Terry fitting: recovery of a known truth, agreement with choix, standard errors, I/O."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from gifsent_infer.contract import EMOTIONS
from gifsent_train.bradley_terry import (
    fit_all_emotions,
    fit_bradley_terry,
    read_scores_csv,
    write_scores_csv,
)
from gifsent_train.demo_data import simulate_votes, true_strengths
from gifsent_train.votes import Votes, VoteStats


def simulated_votes(n_gifs: int, per_gif: float, seed: int) -> tuple[Votes, np.ndarray]:
    """Demo-like votes (undecided answers dropped, as read_votes does) and the truth [n, 17]."""
    rng = np.random.default_rng(seed)
    _, truth = true_strengths(n_gifs, rng)
    winners, losers = {}, {}
    for k, e in enumerate(EMOTIONS):
        left, right, outcome = simulate_votes(truth[:, k], round(n_gifs * per_gif / 2), rng, 0.15)
        keep = outcome < 2
        left_won = outcome[keep] == 0
        winners[e] = np.where(left_won, left[keep], right[keep]).astype(np.int32)
        losers[e] = np.where(left_won, right[keep], left[keep]).astype(np.int32)
    ids = [f"g{i:05d}" for i in range(n_gifs)]
    return Votes(ids=ids, winners=winners, losers=losers, stats=VoteStats()), truth


def per_emotion_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([spearmanr(a[:, k], b[:, k])[0] for k in range(a.shape[1])])


def test_recovers_true_ranking_at_100_votes_per_gif():
    votes, truth = simulated_votes(600, 100, seed=1)
    scores = fit_all_emotions(votes)
    assert scores.converged
    rho = per_emotion_spearman(scores.strength, truth)
    print(
        f"\nSpearman vs truth at ~100 votes/GIF/emotion: min {rho.min():.3f} mean {rho.mean():.3f}"
    )
    assert rho.min() >= 0.95
    # the target scale: min-max per emotion over the dataset
    s = scores.scores
    assert np.allclose(s.min(axis=0), 0) and np.allclose(s.max(axis=0), 1)
    assert np.allclose(scores.target.to_strength(s), scores.strength)


def test_density_of_gifgif_is_reported():
    # GIFGIF's happiness has ~35 votes per GIF (2 * 106,877 / 6,170); most emotions fewer
    votes, truth = simulated_votes(600, 35, seed=2)
    rho = per_emotion_spearman(fit_all_emotions(votes).strength, truth)
    print(
        f"\nSpearman vs truth at ~35 votes/GIF/emotion: min {rho.min():.3f} mean {rho.mean():.3f}"
    )
    assert rho.min() >= 0.85


def test_agrees_with_choix():
    choix = pytest.importorskip("choix")
    rng = np.random.default_rng(5)
    n = 200
    truth = rng.standard_normal(n)
    left, right, outcome = simulate_votes(truth, 4000, rng, 0.0)
    w = np.where(outcome == 0, left, right)
    lo = np.where(outcome == 0, right, left)
    ours = fit_bradley_terry(w, lo, n, l2=1.0)
    # choix penalises alpha * ||theta||^2, we l2 / 2 * ||theta||^2
    theirs = choix.opt_pairwise(n, list(zip(w.tolist(), lo.tolist(), strict=True)), alpha=0.5)
    assert spearmanr(ours.strength, theirs)[0] >= 0.99
    assert np.max(np.abs(ours.strength - theirs)) < 1e-3


def test_unbeaten_and_unvoted_gifs_stay_finite():
    # GIF 0 always wins, GIF 3 always loses, GIF 4 never appears
    w = np.array([0, 0, 0, 1, 2, 1, 0])
    lo = np.array([1, 2, 3, 3, 3, 2, 1])
    fit = fit_bradley_terry(w, lo, 5, l2=0.1)
    assert fit.converged and np.all(np.isfinite(fit.strength))
    assert fit.strength[0] == fit.strength.max() and fit.strength[3] == fit.strength.min()
    assert fit.strength[4] == pytest.approx(0.0, abs=1e-9)
    assert fit.stderr[4] == pytest.approx(1 / np.sqrt(0.1))
    assert fit.strength.sum() == pytest.approx(0.0, abs=1e-6)  # the prior pins the offset
    assert fit.comparisons.tolist() == [4, 4, 3, 3, 0]
    with pytest.raises(ValueError):
        fit_bradley_terry(w, lo, 3)
    with pytest.raises(ValueError):
        fit_bradley_terry(w, lo, 5, l2=0.0)


def test_stderr_is_fisher_diagonal_and_sane():
    rng = np.random.default_rng(7)
    n = 200
    truth = rng.standard_normal(n)
    # GIFs 0..99 get four times the votes of GIFs 100..199
    a = np.concatenate([rng.integers(0, 100, 16000), rng.integers(0, n, 4000)])
    b = (a + rng.integers(1, n, len(a))) % n
    p = 1 / (1 + np.exp(-(truth[a] - truth[b])))
    won = rng.random(len(a)) < p
    w, lo = np.where(won, a, b), np.where(won, b, a)
    l2 = 1.0
    fit = fit_bradley_terry(w, lo, n, l2=l2)
    # exact Hessian of the objective at the estimate
    th = fit.strength
    q = 1 / (1 + np.exp(th[w] - th[lo]))
    h = q * (1 - q)
    hess = l2 * np.eye(n)
    np.add.at(hess, (w, w), h)
    np.add.at(hess, (lo, lo), h)
    np.add.at(hess, (w, lo), -h)
    np.add.at(hess, (lo, w), -h)
    assert np.allclose(fit.stderr, 1 / np.sqrt(np.diag(hess)))
    exact = np.sqrt(np.diag(np.linalg.inv(hess)))
    assert np.all(fit.stderr <= exact + 1e-12)  # the diagonal approximation is optimistic...
    assert np.median(fit.stderr / exact) > 0.9  # ...but only slightly
    assert fit.stderr[:100].mean() < 0.75 * fit.stderr[100:].mean()  # more votes, smaller error
    z = (fit.strength - truth) / exact
    assert 0.6 < z.std() < 1.4


def test_scores_csv_roundtrip(tmp_path):
    votes, _ = simulated_votes(80, 30, seed=3)
    scores = fit_all_emotions(votes)
    path = write_scores_csv(tmp_path / "scores.csv", scores)
    back = read_scores_csv(path)
    assert back.ids == scores.ids
    assert np.allclose(back.strength, scores.strength, rtol=0, atol=1e-12)
    assert np.allclose(back.stderr, scores.stderr, rtol=1e-8)
    assert np.array_equal(back.comparisons, scores.comparisons)
    assert np.allclose(back.scores, scores.scores, atol=1e-9)
    assert back.target.low == pytest.approx(scores.target.low)
    assert np.allclose(back.select(scores.ids[:3]), scores.scores[:3])
    header = path.read_text().splitlines()[0].split(",")
    assert header[:3] == ["id", "amusement", "anger"] and len(header) == 1 + 4 * 17
