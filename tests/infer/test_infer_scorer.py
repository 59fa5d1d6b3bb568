"""The library API: Scorer on paths, bytes, file objects and frames; bad inputs; threads; the pipeline."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from infer_support import SPEC, build_model, gif_bytes, reference_scores, write_gifs

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.reading.gifio import ReaderLimits, read_gif
from gifsent_infer.running.batch import run_pipeline
from gifsent_infer.running.scorer import Scorer, ScoreResult


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return Scorer(build_model(tmp_path_factory.mktemp("model") / "m.onnx"), device="cpu", threads=1)


def _expected(data: bytes) -> np.ndarray:
    return reference_scores(read_gif(data, SPEC).frames[None])[0]


def test_path_bytes_file_object_and_frames_agree(scorer, tmp_path):
    data = gif_bytes(3)
    path = tmp_path / "a.gif"
    path.write_bytes(data)
    by_path = scorer.score(path)
    by_str = scorer.score(str(path))
    by_bytes = scorer.score(data)
    with open(path, "rb") as f:
        by_file = scorer.score(f)
    by_buffer = scorer.score(io.BytesIO(data))
    for r in (by_path, by_str, by_bytes, by_file, by_buffer):
        assert r.ok, r.error
        assert list(r.scores) == list(EMOTIONS)
        np.testing.assert_allclose(r.array, _expected(data), rtol=1e-5, atol=1e-6)
        assert r.sha256 == by_path.sha256 and r.model_id == scorer.model_id
    assert by_path.path == str(path) and by_bytes.path == "<bytes>" and by_file.path == str(path)
    assert by_path.info.n_frames == 4 and by_path.info.segments == SPEC.segments
    frames = read_gif(data, SPEC).frames
    np.testing.assert_allclose(scorer.score_frames(frames), by_path.array, rtol=1e-6)
    assert scorer.score_frames(np.stack([frames, frames])).shape == (2, 17)
    assert by_path.top(2)[0][1] == max(by_path.scores.values())


def test_bad_inputs_become_error_results(scorer, tmp_path):
    good = gif_bytes(1)
    cases = {
        "empty": (b"", "empty file"),
        "text": (b"hello, I am text", "not a GIF"),
        "png": (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "PNG"),
        "truncated": (good[: len(good) // 2], "truncated"),
    }
    for name, (data, reason) in cases.items():
        r = scorer.score(data)
        assert r.status == "error" and reason in r.error, (name, r.error)
        assert r.scores is None and np.isnan(r.array).all()
        assert r.to_row()["happiness"] is None
    missing = scorer.score(tmp_path / "nope.gif")
    assert missing.status == "error" and "no such file" in missing.error
    with pytest.raises(TypeError):
        scorer.score(12345)


def test_size_limit_applies_to_files(tmp_path, scorer):
    small = Scorer(scorer.model_path, device="cpu", limits=ReaderLimits(max_file_bytes=100))
    p = tmp_path / "big.gif"
    p.write_bytes(gif_bytes(2))
    r = small.score(p)
    assert r.status == "error" and "limit" in r.error


def test_score_many_keeps_input_order_and_skips(scorer, tmp_path):
    paths = write_gifs(tmp_path, 11)
    bad = tmp_path / "bad.gif"
    bad.write_text("nope")
    sources = [*paths[:5], bad, *paths[5:]]
    results = list(scorer.score_many(sources, batch_size=4, workers=2))
    assert [r.path for r in results] == [str(p) for p in sources]
    assert [r.status for r in results].count("error") == 1
    for p, r in zip(sources, results, strict=True):
        if r.ok:
            np.testing.assert_allclose(r.array, _expected(p.read_bytes()), rtol=1e-5, atol=1e-6)
    skip_first = {str(paths[0]): results[0].sha256}
    again = list(scorer.score_many(paths[:3], skip=lambda path, sha: skip_first.get(path) == sha))
    assert [r.status for r in again] == ["skipped", "ok", "ok"]


def test_concurrent_scoring_from_threads_equals_sequential(scorer, tmp_path):
    paths = write_gifs(tmp_path, 24)
    sequential = {str(p): scorer.score(p).array for p in paths}

    def work(chunk):
        return [(r.path, r.array) for r in scorer.score_many(chunk, batch_size=3, workers=2)]

    with ThreadPoolExecutor(4) as pool:
        chunks = [paths[i::4] for i in range(4)] + [paths[::-1]]
        singles = list(pool.map(lambda p: (str(p), scorer.score(p).array), paths))
        batched = [item for part in pool.map(work, chunks) for item in part]
    assert len(batched) == 48
    for path, arr in singles + batched:
        np.testing.assert_array_equal(arr, sequential[path])


def test_score_result_row_has_every_column(scorer):
    row = scorer.score(gif_bytes(5)).to_row()
    from gifsent_infer.writing.outputs import COLUMNS

    assert list(row) == list(COLUMNS)
    assert row["status"] == "ok" and row["frames"] == 4 and row["segments"] == 2


# --- the pipeline itself -------------------------------------------------------------------


def test_pipeline_batches_exactly_keeps_order_and_bounds_memory():
    live = 0
    peak = 0
    lock = threading.Lock()
    batches = []

    def prepare(i):
        nonlocal live, peak
        time.sleep(0.001 * (i % 3))  # out-of-order completion
        if i % 7 == 0:
            return None, (i, "error")
        with lock:
            live += 1
            peak = max(peak, live)
        return np.full((2, 1, 1, 3), i % 256, np.uint8), (i, "ok")

    def infer(stacked):
        nonlocal live
        batches.append(len(stacked))
        with lock:
            live -= len(stacked)
        return stacked.reshape(len(stacked), -1)[:, :1].astype(np.float32)

    def complete(ctx, row):
        i, status = ctx
        return i, status, None if row is None else int(row[0])

    out = list(
        run_pipeline(range(200), prepare, infer, complete, batch_size=5, workers=3, window=8)
    )
    assert [o[0] for o in out] == list(range(200))
    assert all(o[2] == o[0] % 256 for o in out if o[1] == "ok")
    n_ok = sum(1 for o in out if o[1] == "ok")
    assert batches[:-1] == [5] * (len(batches) - 1) and sum(batches) == n_ok
    assert peak <= 8 + 5  # window + one batch, however many items


def test_pipeline_without_workers_and_with_errors_in_infer():
    out = list(
        run_pipeline(
            [1, 2, 3],
            lambda i: (np.zeros((1, 1, 1, 3), np.uint8), i),
            lambda x: np.zeros((len(x), 1), np.float32),
            lambda c, r: c,
            batch_size=2,
            workers=0,
        )
    )
    assert out == [1, 2, 3]

    def boom(x):
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        list(
            run_pipeline(
                range(10),
                lambda i: (np.zeros((1, 1, 1, 3), np.uint8), i),
                boom,
                lambda c, r: c,
                batch_size=2,
                workers=2,
            )
        )


def test_result_is_a_plain_dataclass():
    r = ScoreResult(path="x", status="error", error="bad")
    assert not r.ok and r.top() == [] and r.to_row()["error"] == "bad"


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_extra_outputs_come_from_the_same_call_and_missing_ones_are_refused(
    scorer, tmp_path, backend
):
    from gifsent_infer.running.session import MissingOutputError

    model = build_model(tmp_path / "two.onnx", mean_output="rgb")
    two = Scorer(model, device="cpu", threads=1, backend=backend)
    gifs = [gif_bytes(3), gif_bytes(5), b"not a gif"]
    results = list(two.score_many(gifs, batch_size=2, workers=0, outputs=("rgb",)))
    plain = list(two.score_many(gifs, batch_size=2, workers=0))
    for r, p, data in zip(results, plain, gifs, strict=True):
        assert r.status == p.status and r.scores == p.scores
        if not r.ok:
            assert r.extras is None
            continue
        frames = read_gif(data, SPEC).frames
        np.testing.assert_allclose(r.extras["rgb"], frames.mean(axis=(0, 1, 2)) / 255, atol=1e-5)
        assert p.extras is None
    with pytest.raises(MissingOutputError, match="'rgb'") as e:
        list(scorer.score_many(gifs, outputs=("rgb",)))
    assert e.value.exit_code == 2
