"""Demo data: GIFGIF's format, determinism, true strengths, visible emotions, votes readable."""

from __future__ import annotations

import csv
import gzip
import json
import re

import numpy as np
import pytest
from PIL import Image

from gifsent_infer.contract import EMOTIONS
from gifsent_train.demo_data import make_demo_data, read_truth
from gifsent_train.votes import index_gifs, missing_gifs, read_votes


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return make_demo_data(out, n_gifs=120, comparisons_per_gif=40, seed=11, missing_gifs=2)


def _frames(path):
    with Image.open(path) as im:
        n = getattr(im, "n_frames", 1)
        delays = []
        for k in range(n):
            im.seek(k)
            delays.append(im.info.get("duration", 0))
        return n, delays, im.size


def test_layout_and_format(demo):
    assert demo.votes.name == "votes.csv.gz" and demo.truth.name == "truth.csv"
    with gzip.open(demo.votes, "rt", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["metric", "left", "right", "choice"]
    assert len(rows) - 1 == demo.rows
    assert {r[0] for r in rows[1:]} == set(EMOTIONS)
    assert {r[3] for r in rows[1:]} == {"left", "right", "neither"}
    assert all(re.fullmatch(r"[A-Za-z0-9]{13}", g) for g in demo.ids)
    assert len(set(demo.ids)) == 120
    files = index_gifs(demo.gifs)
    assert set(files) == set(demo.ids) - set(demo.missing)
    assert len(demo.missing) == 2
    meta = json.loads((demo.root / "demo.json").read_text())
    assert meta["seed"] == 11 and meta["missing"] == demo.missing

    counts, delays, sizes = [], [], set()
    for path in files.values():
        assert path.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
        n, d, size = _frames(path)
        counts.append(n)
        delays.extend(d)
        sizes.add(size)
    counts = np.array(counts)
    assert (counts == 1).any(), "some single-frame GIFs"
    assert ((counts > 1) & (counts < 16)).any(), "some GIFs shorter than 16 frames"
    assert (counts >= 16).any()
    assert any(d < 20 for d in delays) and any(d >= 50 for d in delays)
    assert len(sizes) > 20
    assert all(96 <= w <= 160 and 96 <= h <= 160 for w, h in sizes)


def test_votes_parse_and_truth(demo):
    votes = read_votes(demo.votes)
    s = votes.stats
    assert s.corrupt["empty_id"] == 5 and s.corrupt_total == 5
    assert s.non_decisive_choices.keys() == {"neither"}
    assert 0.03 < s.non_decisive / s.rows < 0.2
    assert s.rows == demo.rows
    for e in EMOTIONS:  # 120 GIFs * 40 votes / 2 per emotion, undecided ones included
        assert s.decisive_per_emotion[e] + s.non_decisive_per_emotion[e] in (2400, 2399, 2398)
    assert set(votes.ids) == set(demo.ids)
    report = missing_gifs(votes, index_gifs(demo.gifs))
    assert sorted(report.missing_ids) == sorted(demo.missing)

    ids, truth = read_truth(demo.truth)
    assert ids == demo.ids and truth.shape == (120, 17)
    assert np.allclose(truth.mean(axis=0), 0, atol=1e-6)
    assert np.allclose(truth.std(axis=0), 1, atol=1e-6)
    corr = np.corrcoef(truth.T)
    assert corr[EMOTIONS.index("happiness"), EMOTIONS.index("amusement")] > 0.4  # correlated
    # winners are stronger than losers in truth, as the Bradley-Terry model says
    k = EMOTIONS.index("happiness")
    idx = {g: i for i, g in enumerate(ids)}
    order = np.array([idx[g] for g in votes.ids])
    w, lo = order[votes.winners["happiness"]], order[votes.losers["happiness"]]
    assert np.mean(truth[w, k] > truth[lo, k]) > 0.65


def test_deterministic_by_seed(tmp_path):
    a = make_demo_data(tmp_path / "a", n_gifs=12, comparisons_per_gif=10, seed=3)
    b = make_demo_data(tmp_path / "b", n_gifs=12, comparisons_per_gif=10, seed=3)
    c = make_demo_data(tmp_path / "c", n_gifs=12, comparisons_per_gif=10, seed=4)
    assert a.ids == b.ids and a.ids != c.ids
    assert a.votes.read_bytes() == b.votes.read_bytes()
    assert a.truth.read_bytes() == b.truth.read_bytes()
    for g in a.ids:
        assert (a.gifs / f"{g}.gif").read_bytes() == (b.gifs / f"{g}.gif").read_bytes()
    assert a.votes.read_bytes() != c.votes.read_bytes()


def test_emotions_are_visible_in_pixels(demo):
    """A linear model on tiny thumbnails of one frame already predicts the true emotions."""
    ids, truth = read_truth(demo.truth)
    files = index_gifs(demo.gifs)
    keep = [i for i, g in enumerate(ids) if g in files]
    x = []
    for i in keep:
        with Image.open(files[ids[i]]) as im:
            x.append(np.asarray(im.convert("RGB").resize((24, 24)), dtype=np.float64).ravel() / 255)
    x = np.array(x)
    x -= x.mean(axis=0)
    y = truth[keep]
    # leave-fold-out ridge regression, 4 folds
    folds = np.arange(len(keep)) % 4
    pred = np.zeros_like(y)
    for f in range(4):
        tr, te = folds != f, folds == f
        a = x[tr]
        coef = np.linalg.solve(a @ a.T + 3.0 * np.eye(len(a)), y[tr] - y[tr].mean(axis=0))
        pred[te] = x[te] @ a.T @ coef + y[tr].mean(axis=0)
    r = np.array([np.corrcoef(pred[:, k], y[:, k])[0, 1] for k in range(17)])
    print(f"\nthumbnail ridge, Pearson per emotion: min {r.min():.2f} mean {r.mean():.2f}")
    assert np.median(r) > 0.5
