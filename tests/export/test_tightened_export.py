"""Exported graphs judged independently of the export's own figures: the written .onnx file is
run here in onnxruntime, compared with PyTorch, and rank-correlated with scipy.

Measured on the tiny untrained checkpoints of test_export (24 generated GIFs, x86-64 CPU):
fp16 (rnn) max |ort - torch| 2.8e-4 with per-emotion score spreads (max - min) of 0.042 to
0.13; int8 (maxpool) mean Spearman 0.9805 vs PyTorch and max abs 0.71 on spreads of 1.7-3.9;
fp32 differences ~1e-7. Bounds below leave ~3x margin over the measured fp16 error.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from support import tiny_checkpoint as make_checkpoint  # noqa: E402
from test_export import ort_scores, sampled  # noqa: E402

from gifsent_export.api import export_checkpoint  # noqa: E402
from gifsent_export.frames import generate_gifs  # noqa: E402
from gifsent_models.checkpoint import load_checkpoint  # noqa: E402

FP16_MAX_ABS = 1e-3  # measured 2.8e-4


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("tight")
    ckpt = {h: root / f"tiny-{h}.pt" for h in ("rnn", "maxpool")}
    for h, p in ckpt.items():
        make_checkpoint(p, h)
    return {
        "ckpt": ckpt,
        "eval": generate_gifs(root / "eval", 24, seed=11),
        "calib": generate_gifs(root / "calib", 16, seed=12),
    }


def reference(ckpt, frames) -> np.ndarray:
    loaded = load_checkpoint(ckpt)
    with torch.inference_mode():
        return loaded.scorer.eval()(torch.from_numpy(frames)).numpy()


def scipy_rhos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([spearmanr(a[:, k], b[:, k])[0] for k in range(a.shape[1])])


def test_fp16_error_is_within_a_stated_margin_of_what_it_measures(work, tmp_path):
    ckpt = work["ckpt"]["rnn"]
    out = tmp_path / "fp16.onnx"
    result = export_checkpoint(ckpt, out, precision="fp16", parity_gifs=work["eval"])
    frames = sampled(work["eval"], load_checkpoint(ckpt).encoder.spec, 24)
    want, got = reference(ckpt, frames), ort_scores(out, frames)
    err = float(np.abs(got - want).max())
    assert 0 < err < FP16_MAX_ABS
    # the bound is small against how far apart GIFs' scores are
    assert np.ptp(want, axis=0).min() > 20 * FP16_MAX_ABS
    # the export's own figures are what an independent run measures
    assert result.deviation.max_abs == pytest.approx(err, abs=1e-5)
    rhos = scipy_rhos(want, got)
    assert rhos.min() > 0.99
    assert result.deviation.mean_spearman == pytest.approx(rhos.mean(), abs=1e-4)


def test_int8_ranking_checked_independently_with_scipy(work, tmp_path):
    ckpt = work["ckpt"]["maxpool"]
    out = tmp_path / "int8.onnx"
    result = export_checkpoint(
        ckpt,
        out,
        precision="int8",
        parity_gifs=work["eval"],
        calibration_gifs=work["calib"],
    )
    frames = sampled(work["eval"], load_checkpoint(ckpt).encoder.spec, 24)
    want, got = reference(ckpt, frames), ort_scores(out, frames)
    rhos = scipy_rhos(want, got)
    assert rhos.mean() >= 0.98  # the gate, recomputed on the written file
    assert result.deviation.mean_spearman == pytest.approx(rhos.mean(), abs=1e-3)
    assert result.deviation.max_abs == pytest.approx(float(np.abs(got - want).max()), abs=1e-3)
    # int8 really is a different graph: it does not reproduce fp32 exactly
    assert np.abs(got - want).max() > 1e-3


def test_fp32_parity_on_real_gifs_checked_independently(work, real_gifs, tmp_path):
    ckpt = work["ckpt"]["rnn"]
    out = tmp_path / "real.onnx"
    result = export_checkpoint(ckpt, out, parity_gifs=[real_gifs], parity_count=4)
    paths = sorted(real_gifs.glob("*.gif"))[:4]
    frames = sampled(paths, load_checkpoint(ckpt).encoder.spec, 4)
    want, got = reference(ckpt, frames), ort_scores(out, frames)
    assert got.shape == (4, 17)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert result.parity.max_abs <= 1e-4
