"""Tighter versions of training-side checks that used to accept wrong answers: metrics on
general (not identity/affine) inputs against scipy/sklearn-style formulas, the "auto" encoder
backend really keeping the faster one, augmented views equal to the encoder on that view's
own sampling, and the encoder's output values (not only its shape) against a reference."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import pearsonr, spearmanr

from gifsent_infer.contract import EMOTIONS
from gifsent_train import metrics as M

# --- metrics on general inputs ------------------------------------------------------------------


def test_metrics_on_general_inputs_match_independent_formulas():
    rng = np.random.default_rng(4)
    y = rng.random((40, 17))
    p = 0.6 * y + 0.4 * rng.random((40, 17)) ** 2  # non-linear, noisy, biased
    p[:, 3] = np.round(p[:, 3], 1)  # ties
    p[:, 5] = 0.5  # a constant prediction: correlations undefined
    # RMSE: over all entries (every GIF has every emotion)
    assert M.rmse(y, p) == pytest.approx(np.sqrt(np.mean((y - p) ** 2)), rel=1e-12)
    # pooled EV, as sklearn's explained_variance_score on flattened arrays
    r, t = (y - p).ravel(), y.ravel()
    assert M.explained_variance(y, p) == pytest.approx(1 - r.var() / t.var(), rel=1e-12)
    rows = M.per_emotion(y, p)
    assert [row["emotion"] for row in rows] == list(EMOTIONS)
    for e, row in enumerate(rows):
        ye, pe = y[:, e], p[:, e]
        sst = np.sum((ye - ye.mean()) ** 2)
        assert row["r2"] == pytest.approx(1 - np.sum((ye - pe) ** 2) / sst, rel=1e-12)
        assert row["mse"] == pytest.approx(np.mean((ye - pe) ** 2), rel=1e-12)
        if e == 5:
            assert np.isnan(row["pearson"]) and np.isnan(row["spearman"])
            continue
        assert row["pearson"] == pytest.approx(pearsonr(ye, pe)[0], abs=1e-12)
        assert row["spearman"] == pytest.approx(spearmanr(ye, pe)[0], abs=1e-12)
        assert row["spread"] == pytest.approx(pe.std() / ye.std(), rel=1e-12)
    s = M.summary(y, p)
    finite = [spearmanr(y[:, e], p[:, e])[0] for e in range(17) if e != 5]
    assert s["mean_spearman"] == pytest.approx(np.mean(finite), abs=1e-12)
    a = M.agreement(y, p)
    assert a["min_spearman"] == pytest.approx(np.min(finite), abs=1e-12)
    assert a["spearman"]["anger"] == pytest.approx(spearmanr(y[:, 1], p[:, 1])[0], abs=1e-12)


# --- "auto" keeps the faster backend ------------------------------------------------------------


class FakeRunner:
    """A backend that takes `delay` seconds per call and returns a recognisable output."""

    def __init__(self, name: str, delay: float, value: float):
        self.name, self.delay, self.value, self.calls = name, delay, value, 0

    def __call__(self, frames):
        self.calls += 1
        time.sleep(self.delay)
        return np.full((len(frames), 1, 1), self.value, np.float32)


@pytest.mark.parametrize("fast_first", [True, False])
def test_auto_backend_keeps_the_faster_one(fast_first):
    from gifsent_train.features import AutoRunner

    fast, slow = FakeRunner("fast", 0.0, 1.0), FakeRunner("slow", 0.05, 2.0)
    logs: list[str] = []
    auto = AutoRunner([fast, slow] if fast_first else [slow, fast], logs.append)
    frames = np.zeros((2, 4, 8, 8, 3), np.uint8)
    out = auto(frames)
    assert auto.name == "fast" and auto.chosen is fast
    np.testing.assert_array_equal(out, 1.0)  # the chosen backend's output, whichever ran last
    assert "encoder backend: fast" in logs[0]
    slow_calls = slow.calls
    np.testing.assert_array_equal(auto(frames), 1.0)
    assert slow.calls == slow_calls  # decided once: the slow one never runs again


# --- augmented views -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder():
    import torch

    from gifsent_models.registry import create_encoder

    torch.manual_seed(0)
    return create_encoder("resnext3d-tiny", random_init=True)


def _gif(path: Path, n_frames: int = 7) -> Path:
    rng = np.random.default_rng(1)
    frames = [
        Image.fromarray(rng.integers(0, 255, (36, 52, 3), dtype=np.uint8)) for _ in range(n_frames)
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=90, loop=0)
    return path


def test_each_augmented_view_is_the_encoder_on_that_views_sampling(tmp_path, encoder):
    from gifsent_infer.reading import gifio
    from gifsent_train.features import (
        FeatureItem,
        FeatureOptions,
        TorchRunner,
        extract_features,
        file_sha256,
        view_params,
    )

    path = _gif(tmp_path / "g.gif")
    views = 4
    r = extract_features(
        encoder,
        [FeatureItem("g", path, views)],
        FeatureOptions(mode="augmented", views=views, backend="torch"),
        cache_root=tmp_path / "c",
    )
    x, _ = r.load(["g"], views=views)  # [views, S, D]
    sha = file_sha256(path)
    params = [view_params(v, sha) for v in range(views)]
    assert [p["flip"] for p in params] == [False, True, False, True]  # odd views mirrored
    assert len({(p["offset"], p["crop_shift"]) for p in params}) == views  # all distinct
    runner = TorchRunner(encoder)
    for v in range(views):
        frames = gifio.read_gif(path, encoder.spec, **params[v]).frames
        want = runner(frames[None])[0]
        np.testing.assert_allclose(x[v], want, rtol=1e-5, atol=1e-5, err_msg=f"view {v}")
    for a in range(views):  # and the views really differ from each other
        for b in range(a + 1, views):
            assert np.abs(x[a] - x[b]).max() > 1e-3, (a, b)
