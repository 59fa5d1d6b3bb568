"""Split-conformal intervals on synthetic data with known noise: coverage within the binomial
tolerance, adaptive scaling where the seeds' spread tracks the noise, and the contract round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gifsent_infer.contract import EMOTIONS, Intervals, ModelDocument
from gifsent_train.conformal import calibrate, conformal_quantile, evaluate


def _data(n, rng, hetero=False):
    pred = rng.random((n, 17))
    sigma = rng.uniform(0.02, 0.3, (n, 17)) if hetero else np.full((n, 17), 0.1)
    y = pred + rng.normal(size=(n, 17)) * sigma
    std = sigma * rng.uniform(0.8, 1.2, (n, 17))  # seeds' spread tracks the noise
    return y, pred, std


def test_conformal_quantile_is_the_finite_sample_rank():
    v = np.arange(1, 10)  # n = 9
    assert conformal_quantile(v, 0.9) == 9  # ceil(10 * 0.9) = 9th
    assert conformal_quantile(v, 0.5) == 5
    assert conformal_quantile(v, 0.99) == 9  # past n: the largest


@pytest.mark.parametrize("hetero", [False, True])
def test_coverage_on_fresh_data_within_binomial_tolerance(hetero):
    rng = np.random.default_rng(7)
    iv = calibrate(*_data(400, rng, hetero), heads=3, levels=(0.8, 0.9, 0.95))
    y, pred, std = _data(4000, rng, hetero)
    m = evaluate(iv, y, pred, std)
    for c in (0.8, 0.9, 0.95):
        # per emotion: 4000 test draws around a calibration quantile from 400 dev draws; the
        # coverage's sd is about sqrt(c (1 - c) (1 / 400 + 1 / 4000)); 4 sd for the worst of 17
        sd = math.sqrt(c * (1 - c) * (1 / 400 + 1 / 4000))
        got = m["levels"][f"{c:g}"]
        assert abs(got["coverage_mean"] - c) <= 4 * sd / math.sqrt(17) + 1 / 401
        assert got["coverage_worst"] >= c - 4 * sd
    if hetero:  # scaling by a spread that tracks the noise is narrower: chosen everywhere
        assert m["adaptive_emotions"] == 17 and m["spearman_spread_abs_error"] > 0.3
        plain = calibrate(*_data(400, np.random.default_rng(7), hetero))
        assert (
            m["levels"]["0.9"]["width_mean"]
            < evaluate(plain, y, pred)["levels"]["0.9"]["width_mean"]
        )


def test_levels_too_fine_for_the_dev_split_are_left_out():
    rng = np.random.default_rng(0)
    iv = calibrate(*_data(15, rng)[:2], levels=(0.5, 0.9, 0.95))  # 0.95 needs n >= 19
    assert iv.levels == (0.5, 0.9) and not any(iv.normalized.values())
    with pytest.raises(ValueError, match="too few"):
        calibrate(*_data(3, rng)[:2], levels=(0.9,))


def test_intervals_survive_the_model_document():
    from support import model_document

    rng = np.random.default_rng(1)
    iv = calibrate(*_data(100, rng, True), heads=3)
    assert isinstance(iv, Intervals) and set(iv.q) == set(EMOTIONS)
    doc = model_document().__class__.from_dict(
        {
            **model_document().to_dict(),
            "schema_version": 3,
            "outputs": {"scores": "s", "scores_std": "spread"},
            "intervals": iv.to_dict(),
        }
    )
    assert doc.intervals == iv
    bad = {**model_document().to_dict(), "schema_version": 3, "intervals": iv.to_dict()}
    with pytest.raises(ValueError, match="scores_std"):
        ModelDocument.from_dict(bad)  # scaled intervals need the spread output


def test_demo_truth_records_each_moment_in_seconds(tmp_path):
    from gifsent_train.demo_data import make_demo_data, read_moments, read_truth

    demo = make_demo_data(
        tmp_path / "demo",
        n_gifs=30,
        seed=3,
        moment_share=0.5,
        comparisons_per_gif=5,
        size_range=(32, 40),
        temporal_share=1.0,
    )
    ids, _ = read_truth(demo.truth)  # the moment columns do not disturb the strengths
    moments = read_moments(demo.truth)
    assert 5 <= len(moments) <= 25 and set(moments) <= set(ids)
    for start, end, duration in moments.values():
        assert 0 <= start < end <= duration + 1e-6
        assert end - start == pytest.approx(0.2 * duration, rel=1e-3)  # MOMENT_WIDTH
