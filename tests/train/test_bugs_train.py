"""Training-side facts that no earlier test pinned: the seed reaches the splits through the whole
pipeline, the default Bradley-Terry prior (a known-answer fit and choix), and scores.csv's
header names (pinned by name, read by name)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import expit

from gifsent_infer.contract import EMOTIONS
from gifsent_train.bradley_terry import (
    DEFAULT_L2,
    fit_all_emotions,
    fit_bradley_terry,
    read_scores_csv,
    write_scores_csv,
)
from gifsent_train.cli import main
from gifsent_train.run import RunLayout
from gifsent_train.splits import load_splits, make_splits
from gifsent_train.votes import Votes, VoteStats

# --- the seed reaches the splits, and the splits reach the search ------------------------------


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from gifsent_train.demo_data import make_demo_data

    out = tmp_path_factory.mktemp("demo")
    make_demo_data(out, n_gifs=30, comparisons_per_gif=20, seed=3, size_range=(48, 64))
    return out


def _train(argv) -> None:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    assert e.value.code in (0, None)


SEED = 7


@pytest.fixture(scope="module")
def seed_run(demo_dir, tmp_path_factory):
    """One whole tiny run with --seed 7 (its own GIFSENT_HOME, shared by this module's tests)."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("GIFSENT_HOME", str(home))
    try:
        argv = ["--preset", "tiny", "--data", demo_dir, "--run-name", "s7", "--seed", SEED]
        # one seed: Table 1 then reports the saved checkpoints themselves (not a mean over seeds)
        _train(
            [
                *argv,
                "--threads",
                "1",
                "--trials",
                "1",
                "--max-epochs",
                "2",
                "--seeds",
                "1",
                "--quiet",
            ]
        )
        yield RunLayout(home / "runs" / "s7")
    finally:
        mp.undo()


def test_seed_flows_from_the_command_line_through_splits_into_the_search(seed_run):
    seed, run = SEED, seed_run
    assert run.splits.is_file()

    ids = read_scores_csv(run.scores).ids
    want = make_splits(ids, seed=seed)
    assert want != make_splits(ids, seed=0), "seeds 0 and 7 must differ for this test to bite"
    assert load_splits(run.splits) == want
    assert json.loads(run.splits.read_text())["seed"] == seed

    # The search used exactly these splits: the mean baseline's test RMSE (train mean
    # predicted for every test GIF), recomputed here from scores.csv and the seed-7 splits.
    metrics = json.loads(run.metrics.read_text())
    assert metrics["rows"]["test"] == len(want["test"])
    scores = dict(zip(ids, read_scores_csv(run.scores).scores.astype(np.float32), strict=True))
    y_train = np.stack([scores[g] for g in want["train"]])
    y_test = np.stack([scores[g] for g in want["test"]])
    mean = y_train.mean(axis=0)
    rmse = float(np.sqrt(np.mean(np.mean((y_test - mean) ** 2, axis=0))))
    assert metrics["models"]["mean"]["test"]["rmse"] == pytest.approx(rmse, rel=1e-5)
    # ... and seed 0's splits would have given another figure
    other = make_splits(ids, seed=0)
    y0 = np.stack([scores[g] for g in other["test"]])
    m0 = np.stack([scores[g] for g in other["train"]]).mean(axis=0)
    assert not math.isclose(
        float(np.sqrt(np.mean(np.mean((y0 - m0) ** 2, axis=0)))), rmse, rel_tol=1e-5
    )


def test_whole_run_figures_recompute_from_its_checkpoints_and_features(seed_run):
    """Table 1's test RMSE of each head is what its saved checkpoint computes on the cached
    test features against scores.csv (not just "a finite number")."""
    import torch

    from gifsent_models.checkpoint import load_checkpoint

    run = seed_run
    metrics = json.loads(run.metrics.read_text())
    with open(run.report / "table1.csv", newline="") as f:
        table = {r["model"]: r for r in csv.DictReader(f)}
    entries = json.loads(run.features_index.read_text())["entries"]
    test_ids = [g for g in load_splits(run.splits)["test"] if g in entries]
    bt = read_scores_csv(run.scores)
    y = bt.select(test_ids)
    x = np.stack([np.load(entries[g]["0"]) for g in test_ids]).astype(np.float32)
    for head, label in (("maxpool", "Best MaxPool"), ("rnn", "Best LSTM")):
        head_module = load_checkpoint(run.checkpoint(head)).head.eval()
        with torch.no_grad():
            p = head_module(torch.from_numpy(x)).double().numpy()
        rmse = float(np.sqrt(np.mean((y - p) ** 2)))
        assert metrics["models"][head]["test"]["rmse"] == pytest.approx(rmse, rel=1e-4), head
        assert float(table[label]["test_rmse"]) == pytest.approx(rmse, rel=1e-4), head
        ev = 1 - np.var(y - p) / np.var(y)
        assert float(table[label]["test_ev"]) == pytest.approx(ev, abs=1e-4), head
    mean = metrics["models"]["mean"]["test"]["rmse"]
    assert float(table["Training mean (baseline)"]["test_rmse"]) == pytest.approx(mean, rel=1e-9)


# --- the default prior ---------------------------------------------------------------------------


def two_gif_answer(l2: float) -> float:
    """One vote, GIF 0 beats GIF 1: by symmetry theta = (t, -t) with l2 * t = sigmoid(-2 t)
    (the zero of d/dt [log(1 + e^(-2t)) + l2 t^2] / 2)."""
    return brentq(lambda t: l2 * t - expit(-2 * t), 0.0, 10.0, xtol=1e-14)


def test_default_prior_is_a_standard_normal_known_answer():
    fit = fit_bradley_terry(np.array([0]), np.array([1]), 2)  # the default prior
    t = two_gif_answer(1.0)
    assert t == pytest.approx(0.33, abs=0.01)  # hand-solved: t = sigmoid(-2t) near 0.332
    np.testing.assert_allclose(fit.strength, [t, -t], rtol=0, atol=1e-7)
    # prior 0.1 would give a clearly different answer (about 1.0), so the test bites
    assert abs(two_gif_answer(0.1) - t) > 0.5
    assert DEFAULT_L2 == 1.0  # the documented value (module docstring: a standard normal prior)


def test_default_prior_agrees_with_choix_at_alpha_one_half():
    choix = pytest.importorskip("choix")
    rng = np.random.default_rng(5)
    n, m = 30, 200
    w = rng.integers(0, n, m)
    lo = (w + rng.integers(1, n, m)) % n  # never a GIF against itself
    ours = fit_bradley_terry(w, lo, n).strength  # default prior
    # choix minimises ... + alpha * ||theta||^2; ours ... + l2 / 2 * ||theta||^2, l2 = 1
    theirs = choix.opt_pairwise(n, list(zip(w.tolist(), lo.tolist(), strict=True)), alpha=0.5)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)

    votes = Votes(
        ids=[f"g{i:02d}" for i in range(n)],
        winners={e: w for e in EMOTIONS},
        losers={e: lo for e in EMOTIONS},
        stats=VoteStats(),
    )
    every = fit_all_emotions(votes)  # what the pipeline calls, with its default
    assert every.l2 == 1.0
    np.testing.assert_allclose(every.strength[:, 0], theirs, rtol=0, atol=1e-5)


# --- scores.csv: header names pinned, columns read by name ------------------------------------


def small_scores():
    rng = np.random.default_rng(9)
    n = 12
    w = rng.integers(0, n, 80)
    lo = (w + rng.integers(1, n, 80)) % n
    votes = Votes(
        ids=[f"g{i:02d}" for i in range(n)],
        winners={e: np.roll(w, k) for k, e in enumerate(EMOTIONS)},
        losers={e: np.roll(lo, k) for k, e in enumerate(EMOTIONS)},
        stats=VoteStats(),
    )
    return fit_all_emotions(votes)


def test_scores_csv_header_is_pinned_by_name(tmp_path):
    scores = small_scores()
    path = write_scores_csv(tmp_path / "scores.csv", scores)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        rows = list(reader)
    assert header == (
        ["id"]
        + list(EMOTIONS)
        + [e + "_strength" for e in EMOTIONS]
        + [e + "_se" for e in EMOTIONS]
        + [e + "_n" for e in EMOTIONS]
    )
    assert header[1:4] == ["amusement", "anger", "contempt"]
    # each named column holds what its name says (read by name, as a user would)
    assert len(rows) == len(scores.ids)
    for i, row in enumerate(rows):
        assert row["id"] == scores.ids[i]
        for k, e in enumerate(EMOTIONS):
            assert float(row[e]) == pytest.approx(scores.scores[i, k], abs=1e-8)
            assert float(row[f"{e}_strength"]) == scores.strength[i, k]
            assert float(row[f"{e}_se"]) == pytest.approx(scores.stderr[i, k], rel=1e-8)
            assert int(row[f"{e}_n"]) == scores.comparisons[i, k]
    # standard errors are positive and strengths centre on 0: the two cannot be confused
    se = np.array([[float(r[f"{e}_se"]) for e in EMOTIONS] for r in rows])
    strength = np.array([[float(r[f"{e}_strength"]) for e in EMOTIONS] for r in rows])
    assert (se > 0).all() and (strength < 0).any()
    assert np.allclose(strength.sum(axis=0), 0, atol=1e-6)  # the prior centres the strengths


def test_scores_csv_is_read_by_column_name(tmp_path):
    scores = small_scores()
    path = write_scores_csv(tmp_path / "scores.csv", scores)
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    order = list(reversed(range(len(table[0]))))  # every column moved
    shuffled = tmp_path / "shuffled.csv"
    with open(shuffled, "w", newline="") as f:
        csv.writer(f).writerows([[r[i] for i in order] for r in table])
    back = read_scores_csv(shuffled)
    assert back.ids == scores.ids
    np.testing.assert_array_equal(back.strength, scores.strength)
    np.testing.assert_allclose(back.stderr, scores.stderr, rtol=1e-8)
    np.testing.assert_array_equal(back.comparisons, scores.comparisons)

    dropped = tmp_path / "dropped.csv"
    keep = [i for i, name in enumerate(table[0]) if name != "fear_se"]
    with open(dropped, "w", newline="") as f:
        csv.writer(f).writerows([[r[i] for i in keep] for r in table])
    with pytest.raises(ValueError, match="fear_se"):
        read_scores_csv(dropped)
