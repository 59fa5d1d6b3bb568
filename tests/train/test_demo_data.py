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


def _thumb(im, k: int) -> np.ndarray:
    im.seek(k)
    return np.asarray(im.convert("RGB").resize((24, 24)), dtype=np.float64).ravel() / 255


def _cv_ridge_r(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r per column of y of a 4-fold cross-validated (dual) ridge on x."""
    x = x - x.mean(axis=0)
    folds = np.arange(len(x)) % 4
    pred = np.zeros_like(y)
    for f in range(4):
        tr, te = folds != f, folds == f
        a = x[tr]
        coef = np.linalg.solve(a @ a.T + 3.0 * np.eye(len(a)), y[tr] - y[tr].mean(axis=0))
        pred[te] = x[te] @ a.T @ coef + y[tr].mean(axis=0)
    return np.array([np.corrcoef(pred[:, k], y[:, k])[0, 1] for k in range(y.shape[1])])


def test_emotions_are_visible_in_pixels(tmp_path):
    """Without the temporal part, a linear model on tiny thumbnails of one frame already
    predicts the true emotions (the face moving around makes it harder for raw pixels)."""
    demo = make_demo_data(
        tmp_path, n_gifs=120, comparisons_per_gif=2, seed=11, temporal_share=0.0, moment_share=0.0
    )
    ids, truth = read_truth(demo.truth)
    files = index_gifs(demo.gifs)
    keep = [i for i, g in enumerate(ids) if g in files]
    x = []
    for i in keep:
        with Image.open(files[ids[i]]) as im:
            x.append(_thumb(im, 0))
    r = _cv_ridge_r(np.array(x), truth[keep])
    print(f"\nthumbnail ridge, Pearson per emotion: min {r.min():.2f} mean {r.mean():.2f}")
    assert np.median(r) > 0.45


def test_motion_carries_signal_that_single_frames_do_not():
    """The droop latent (mouth and lids drift down or up over the timeline) is invisible in
    any one frame but read off the difference between a late and an early frame. The other
    motion of the GIF is held still here so that raw pixels can show it."""
    import dataclasses

    from gifsent_train.demo_data import (
        LATENTS,
        TEMPORAL_LATENTS,
        _frame,
        _palette,
        plan_motion,
        true_strengths,
    )

    rng = np.random.default_rng(5)
    z, _ = true_strengths(160, rng)
    k = len(LATENTS) + TEMPORAL_LATENTS.index("droop")
    single, diff = [], []
    for i in range(160):
        m = plan_motion(z[i, len(LATENTS) :], np.random.default_rng([5, i]), 0.0)
        m = dataclasses.replace(m, path=(0.0, 0.0), jump=(0.0, 0.0), pulse=0.0, squeeze=0.0)
        m = dataclasses.replace(m, start=(0.0, 0.0), base_scale=1.0, jolt_scale=1.0)
        pal = _palette(z[i])
        early, late = (
            np.asarray(_frame(48, 48, z[i], 0.0, pal, m, tau).convert("RGB"), np.float64).ravel()
            / 255
            for tau in (0.1, 0.9)
        )
        single.append(rng.choice([early, late]))  # one frame, from somewhere on the timeline
        diff.append(late - early)
    y = z[:, k : k + 1]
    r_single = _cv_ridge_r(np.array(single), y)[0]
    r_diff = _cv_ridge_r(np.array(diff), y)[0]
    print(f"\ndroop from one frame r={r_single:.2f}, from late - early r={r_diff:.2f}")
    assert abs(r_single) < 0.3 and r_diff > 0.6


def test_temporal_share_knob_and_recorded_shares(tmp_path):
    from gifsent_train.demo_data import TEMPORAL_EMPHASIS, signal_shares, strength_parts

    _, parts = strength_parts(20000, np.random.default_rng(0), temporal_share=0.5)
    shares = signal_shares(parts)
    for e in EMOTIONS:  # expected: share_e = min(1, 0.5 * emphasis), scaled by 1 / (1 + 0.3^2)
        want = min(1.0, 0.5 * TEMPORAL_EMPHASIS[e]) / 1.09
        assert shares[e]["temporal"] == pytest.approx(want, abs=0.02), e
        assert sum(shares[e].values()) == pytest.approx(1.0, abs=1e-3)
    a = make_demo_data(
        tmp_path / "a", n_gifs=30, comparisons_per_gif=2, seed=2, size_range=(16, 16)
    )
    meta = json.loads((a.root / "demo.json").read_text())
    assert meta["temporal_share"] == 0.5 and set(meta["signal_shares"]) == set(EMOTIONS)
    b = make_demo_data(
        tmp_path / "b", n_gifs=30, comparisons_per_gif=2, seed=2, size_range=(16, 16),
        temporal_share=0.0,
    )  # fmt: skip
    shares = json.loads((b.root / "demo.json").read_text())["signal_shares"]
    assert all(v["temporal"] == 0.0 for v in shares.values())
    with pytest.raises(ValueError, match="temporal_share"):
        make_demo_data(tmp_path / "c", n_gifs=4, temporal_share=1.5)
