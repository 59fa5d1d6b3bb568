"""Active pair choice: information gain, no repeats, spanning-tree connectivity, the prior."""

from __future__ import annotations

import numpy as np
import pytest

from gifsent_train.bradley_terry import fit_bradley_terry
from gifsent_train.collect.pairs import PairChooser, expected_information_gain


def test_information_gain_prefers_uncertain_close_pairs():
    z = np.zeros(1)
    close, far = (
        expected_information_gain(z, z, z + 1, z + 1),
        expected_information_gain(z + 3, z, z + 1, z + 1),
    )
    assert close[0] > far[0] > 0
    sure = expected_information_gain(z, z, z + 0.01, z + 0.01)
    assert close[0] > 10 * sure[0]  # known strengths: a vote teaches little
    # symmetric in the two sides
    a = expected_information_gain(np.array([0.7]), z, np.array([0.5]), z + 0.2)
    b = expected_information_gain(z, np.array([0.7]), z + 0.2, np.array([0.5]))
    assert a == pytest.approx(b)


@pytest.mark.parametrize("mode", ["active", "random"])
def test_a_voter_never_gets_a_pair_twice(mode):
    ids = [f"g{i}" for i in range(8)]
    chooser = PairChooser(ids, ["amusement"], mode=mode, seed=0)
    seen: set[frozenset] = set()
    for k in range(28):  # all 8*7/2 pairs
        pair = chooser.choose("amusement", lambda a, b: frozenset((a, b)) in seen)
        assert pair is not None, f"ran out after {k} pairs"
        assert frozenset(pair) not in seen and pair[0] != pair[1]
        seen.add(frozenset(pair))
        chooser.add_vote("amusement", *pair, "left")
    assert chooser.choose("amusement", lambda a, b: frozenset((a, b)) in seen) is None


def test_pending_pairs_go_to_different_voters():
    chooser = PairChooser([f"g{i}" for i in range(30)], ["anger"], seed=1)
    handed = [frozenset(chooser.choose("anger")) for _ in range(20)]  # nobody answers yet
    assert len(set(handed)) == 20


def test_spanning_tree_pairs_connect_every_gif():
    n = 40
    rng = np.random.default_rng(3)
    truth = rng.standard_normal(n)
    ids = [f"g{i}" for i in range(n)]
    chooser = PairChooser(ids, ["fear"], seed=2)
    for _ in range(n - 1):  # until connected every pick is a tree pair
        a, b = chooser.choose("fear")
        i, j = chooser.index[a], chooser.index[b]
        chooser.add_vote("fear", a, b, "left" if truth[i] > truth[j] else "right")
    st = chooser.states["fear"]
    assert st.components.sets == 1
    assert set(st.winners) | set(st.losers) == set(range(n))
    # and later picks (information gain mixed with new trees) keep every GIF in play
    for _ in range(200):
        a, b = chooser.choose("fear")
        chooser.add_vote(
            "fear", a, b, "left" if truth[chooser.index[a]] > truth[chooser.index[b]] else "right"
        )
        if chooser.refit_due("fear"):
            chooser.refit("fear")
    counts = np.bincount(st.winners + st.losers, minlength=n)
    assert counts.min() >= 2
    rho = np.corrcoef(np.argsort(np.argsort(st.mu)), np.argsort(np.argsort(truth)))[0, 1]
    assert rho > 0.8


def test_incremental_refit_matches_the_full_fit():
    n = 25
    rng = np.random.default_rng(4)
    truth = rng.standard_normal(n)
    chooser = PairChooser([f"g{i}" for i in range(n)], ["pride"], seed=5, refit_min=10**9)
    for _ in range(150):
        a, b = chooser.choose("pride")
        i, j = chooser.index[a], chooser.index[b]
        left = rng.random() < 1 / (1 + np.exp(-(truth[i] - truth[j])))
        chooser.add_vote("pride", a, b, "left" if left else "right")
    st = chooser.states["pride"]
    online = st.mu.copy()
    chooser.refit("pride")
    full = fit_bradley_terry(np.array(st.winners), np.array(st.losers), n)
    np.testing.assert_allclose(st.mu, full.strength, atol=1e-3)
    np.testing.assert_allclose(1 / np.sqrt(st.precision), full.stderr, atol=1e-4)
    assert np.corrcoef(online, full.strength)[0, 1] > 0.9  # the online steps track the fit


def test_prior_seeds_gifs_without_votes():
    prior = np.linspace(-1, 1, 6)
    chooser = PairChooser([f"g{i}" for i in range(6)], ["relief"], prior={"relief": prior})
    np.testing.assert_allclose(chooser.states["relief"].mu, prior)
    chooser.add_vote("relief", "g0", "g5", "left")  # the weakest beats the strongest once
    chooser.refit("relief")
    mu = chooser.states["relief"].mu
    assert mu[0] > prior[0] and mu[5] < prior[5]
    np.testing.assert_allclose(mu[1:5], prior[1:5], atol=1e-6)  # no votes: the prior
    assert chooser.top("relief", 1)[0][0] == "g4"  # g5 lost once: no longer the top


def test_bradley_terry_prior_mean_and_warm_start():
    w, lo = np.array([0, 1, 2, 0]), np.array([1, 2, 3, 3])
    base = fit_bradley_terry(w, lo, 5)
    warm = fit_bradley_terry(w, lo, 5, init=base.strength + 0.3)
    np.testing.assert_allclose(warm.strength, base.strength, atol=1e-6)
    mean = np.array([0.0, 0.0, 0.0, 0.0, 2.0])
    shifted = fit_bradley_terry(w, lo, 5, prior_mean=mean)
    assert shifted.strength[4] == pytest.approx(2.0)  # no votes: exactly the prior mean
    np.testing.assert_allclose(shifted.strength[:4], base.strength[:4], atol=1e-6)
    with pytest.raises(ValueError, match="prior_mean"):
        fit_bradley_terry(w, lo, 5, prior_mean=np.zeros(3))


def test_settled_grows_with_votes():
    n = 30
    rng = np.random.default_rng(6)
    truth = 2 * rng.standard_normal(n)
    chooser = PairChooser([f"g{i}" for i in range(n)], ["shame"], seed=7)
    before = chooser.settled("shame")
    for _ in range(400):
        a, b = chooser.choose("shame")
        left = truth[chooser.index[a]] > truth[chooser.index[b]]
        chooser.add_vote("shame", a, b, "left" if left else "right")
        if chooser.refit_due("shame"):
            chooser.refit("shame")
    assert abs(before) < 0.3 and chooser.settled("shame") > 0.8


def test_bad_settings():
    with pytest.raises(ValueError, match="pairs must be"):
        PairChooser(["a", "b"], ["fear"], mode="greedy")
    with pytest.raises(ValueError, match="at least 2"):
        PairChooser(["a"], ["fear"])


def test_prior_model_scores_seed_the_prior(tmp_path):
    """--prior-model: a gifsent model scores every GIF; its strengths (centred) are the prior."""
    from gifsent_train.collect.cli import index_images, prior_strengths
    from tests.infer_support import build_model
    from tests.train.collect_support import make_gifs

    gifs = index_images(make_gifs(tmp_path / "gifs", 5))
    (tmp_path / "gifs" / "broken.gif").write_bytes(b"GIF89a\x10\x00")  # unreadable: the mean
    gifs = index_images(tmp_path / "gifs")
    model = build_model(tmp_path / "m.onnx")
    prior = prior_strengths(model, gifs, ["amusement", "fear"])
    assert set(prior) == {"amusement", "fear"}
    for values in prior.values():
        assert values.shape == (6,) and np.isfinite(values).all()
        assert values[list(gifs).index("broken")] == 0.0
        assert values.std() > 0
    chooser = PairChooser(list(gifs), ["amusement", "fear"], prior=prior)
    np.testing.assert_allclose(chooser.states["fear"].mu, prior["fear"])
