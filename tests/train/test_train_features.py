"""Feature cache: atomic entries, resume, failures recorded and skipped, augmentation views."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import write_gif

from gifsent_train.features import (
    FeatureItem,
    FeatureOptions,
    TorchRunner,
    encode_segments,
    extract_features,
    sampling_spec,
    view_params,
)


@pytest.fixture(scope="module")
def encoder():
    import torch

    from gifsent_models.registry import create_encoder

    torch.manual_seed(0)
    return create_encoder("resnext3d-tiny", random_init=True)


def _gifs(folder: Path, n: int = 4) -> list[FeatureItem]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        frames = [rng.integers(0, 255, (36, 44, 3), dtype=np.uint8) for _ in range(1 + 2 * i)]
        p = write_gif(folder / f"g{i}.gif", frames, delay_ms=70)
        items.append(FeatureItem(f"g{i}", p, 1))
    bad = folder / "bad.gif"
    bad.write_bytes(b"GIF89a\x10\x00\x10\x00\x00\x00\x00!garbage")
    items.append(FeatureItem("bad", bad, 1))
    return items


class CountingRunner(TorchRunner):
    def __init__(self, encoder):
        super().__init__(encoder)
        self.calls = 0
        self.rows = 0

    def __call__(self, frames):
        self.calls += 1
        self.rows += frames.shape[0]
        return super().__call__(frames)


def test_cache_resume_failures_and_tmp_files(tmp_path, encoder):
    items = _gifs(tmp_path / "gifs")
    cache = tmp_path / "cache"
    opts = FeatureOptions(backend="torch", batch_size=3)
    r1 = extract_features(encoder, items, opts, cache_root=cache, runner=CountingRunner(encoder))
    assert r1.encoded == 4 and r1.cached == 0
    assert set(r1.failures) == {"bad"} and "GifError" in r1.failures["bad"]["error"]
    x, ids = r1.load(["g0", "g1", "bad", "g2", "g3"])
    assert ids == ["g0", "g1", "g2", "g3"]
    assert x.shape == (4, encoder.spec.segments, encoder.feature_dim) and np.isfinite(x).all()
    json.loads((r1.cache_dir / "meta.json").read_text())

    # a stray partial temp file (an interrupted writer) and a truncated entry
    entry = r1.entries["g2"][0]
    (entry.parent / f".{entry.name}.999.deadbeef.tmp").write_bytes(b"\x93NUMPY partial")
    truncated = r1.entries["g3"][0]
    truncated.write_bytes(truncated.read_bytes()[:40])

    runner = CountingRunner(encoder)
    r2 = extract_features(encoder, items, opts, cache_root=cache, runner=runner)
    assert r2.cached == 3 and r2.encoded == 1 and runner.rows == 1  # only the truncated one
    x2, _ = r2.load(["g0", "g1", "g2", "g3"])
    np.testing.assert_allclose(x2, x, rtol=1e-5, atol=1e-5)

    runner = CountingRunner(encoder)
    r3 = extract_features(encoder, items, opts, cache_root=cache, runner=runner)
    assert r3.encoded == 0 and r3.cached == 4 and runner.calls == 0
    assert set(r3.failures) == {"bad"}


def test_views_and_modes(tmp_path, encoder):
    items = _gifs(tmp_path / "gifs", n=2)[:2]
    for it in items:
        it.views = 3
    opts = FeatureOptions(mode="augmented", views=3, backend="torch")
    r = extract_features(encoder, items, opts, cache_root=tmp_path / "c")
    assert r.encoded == 6
    x, ids = r.load(["g1"], views=3)
    assert ids == ["g1"] * 3
    assert not np.allclose(x[0], x[1])  # an augmented view differs from the canonical one
    # view 0 of the augmented run is the canonical (sparse) view
    one = [FeatureItem("g0", items[0].path, 1)]
    rs = extract_features(encoder, one, FeatureOptions(backend="torch"), cache_root=tmp_path / "c")
    assert rs.cached == 1 and rs.encoded == 0
    assert view_params(0, "ab" * 32)["flip"] is False
    assert view_params(1, "ab" * 32) == view_params(1, "ab" * 32)
    # dense: more segments, same encoder
    dense = FeatureOptions(mode="dense", dense_segments=5, backend="torch")
    assert sampling_spec(encoder.spec, dense).segments == 5
    rd = extract_features(encoder, one, dense, cache_root=tmp_path / "c")
    xd, _ = rd.load(["g0"])
    assert xd.shape == (1, 5, encoder.feature_dim)


def test_encode_segments_equals_whole_when_chunked(encoder):
    spec = encoder.spec
    rng = np.random.default_rng(1)
    s2 = spec.segments * 2
    frames = rng.integers(
        0, 255, (2, s2 * spec.frames_per_segment, spec.crop, spec.crop, 3), dtype=np.uint8
    )
    runner = TorchRunner(encoder)
    whole = encode_segments(runner, frames, spec, s2)
    # encoding each half separately gives the same features
    half = spec.segments * spec.frames_per_segment
    a = runner(frames[:, :half])
    b = runner(frames[:, half:])
    np.testing.assert_allclose(whole, np.concatenate([a, b], axis=1), rtol=1e-4, atol=1e-4)


def test_graph_backend_matches_torch(tmp_path, encoder, backend):
    items = _gifs(tmp_path / "gifs", n=2)[:2]
    rt = extract_features(
        encoder, items, FeatureOptions(backend="torch"), cache_root=tmp_path / "t"
    )
    ro = extract_features(
        encoder, items, FeatureOptions(backend=backend), cache_root=tmp_path / "o"
    )
    assert ro.backend == backend
    xt, _ = rt.load(["g0", "g1"])
    xo, _ = ro.load(["g0", "g1"])
    np.testing.assert_allclose(xo, xt, rtol=1e-3, atol=1e-3)


def test_auto_backend_times_both_keeps_the_faster_and_leaves_weights_unchanged(tmp_path):
    pytest.importorskip("onnxruntime")
    import torch

    from gifsent_models.registry import create_encoder
    from gifsent_train.features import OrtRunner, make_runner

    torch.manual_seed(1)
    enc = create_encoder("resnext3d-tiny", random_init=True)
    before = enc.weights_fingerprint()
    logs: list[str] = []
    graph = tmp_path / "encoder.onnx"
    runner = make_runner(enc, FeatureOptions(backend="auto"), graph, logs.append)
    assert runner.name == "auto"  # undecided until it has seen a batch
    spec = enc.spec
    frames = np.random.default_rng(2).integers(
        0, 255, (3, spec.num_frames, spec.crop, spec.crop, 3), dtype=np.uint8
    )
    out = runner(frames)
    assert runner.name in ("onnxruntime", "openvino", "torch channels-last")
    assert any(m.startswith("encoder backend: ") for m in logs), logs
    timed = next(m for m in logs if m.startswith("encoder backend: "))
    from gifsent_infer.running.engine import installed_backends

    for backend in installed_backends():  # every installed graph backend was timed
        assert f"{backend} " in timed.split("(first batch:")[1], timed
    # whichever won, the features are the encoder's
    np.testing.assert_allclose(out, OrtRunner(enc, graph)(frames), rtol=1e-4, atol=1e-4)
    # channels-last changes the memory layout, not the weights a checkpoint refers to
    assert torch.equal(enc.weights_fingerprint(), before)
