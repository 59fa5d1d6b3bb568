"""Value checks where older tests checked only shapes: real GIFs read through both reader paths,
sampling a hand-made decoded GIF, an error result's row, and what the tiny encoders compute
(batch- and segment-independence, determinism) rather than only their output shape."""

from __future__ import annotations

import numpy as np
import pytest

from gifsent_infer.contract import EMOTIONS, SamplingSpec
from gifsent_infer.reading.gifio import DecodedGif, decode_gif, read_gif, sample_decoded


def test_real_gifs_read_the_same_through_both_reader_paths(real_gifs):
    """read_gif composites only the sampled frames; decode_gif + sample_decoded composites all
    of them. Same pixels, same info, on real GIFs."""
    from PIL import Image

    spec = SamplingSpec(segments=4, frames_per_segment=16, fps=12.5, size=112, crop=112)
    paths = sorted(real_gifs.glob("*.gif"))[:5]
    assert paths
    for path in paths:
        data = path.read_bytes()
        fast = read_gif(data, spec)
        full = sample_decoded(decode_gif(data), spec)
        assert fast.frames.shape == (64, 112, 112, 3)
        np.testing.assert_array_equal(fast.frames, full.frames, err_msg=path.name)
        assert fast.info == full.info
        with Image.open(path) as im:
            assert fast.info.n_frames == im.n_frames
            assert (fast.info.width, fast.info.height) == im.size
        assert fast.frames.std() > 1.0  # real content, not a blank canvas


def test_sampling_a_hand_made_decoded_gif():
    # 3 frames of 100, 200, 100 ms (total 400 ms), each one flat colour, 4x6 pixels
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    frames = np.broadcast_to(colours[:, None, None, :], (3, 4, 6, 3)).copy()
    d = DecodedGif(frames, np.array([100, 200, 100]), 6, 4)
    # 2 segments at 0 and 200 ms, 2 samples each 100 ms apart (fps 10):
    # times 0, 100 | 200, 300 ms -> frames 0, 1 | 1, 2
    spec = SamplingSpec(segments=2, frames_per_segment=2, fps=10.0, size=4, crop=4)
    out = sample_decoded(d, spec)
    assert out.frames.shape == (4, 4, 4, 3)
    got = out.frames.reshape(4, -1, 3)
    for k, want in enumerate([0, 1, 1, 2]):
        assert (got[k] == colours[want]).all(), k
    assert out.info.padded_frames == 0 and out.info.duration_s == pytest.approx(0.4)
    assert d.matte == (255, 255, 255)


def test_an_error_result_row_has_every_column_and_no_scores():
    from gifsent_infer.running.scorer import ScoreResult
    from gifsent_infer.writing.outputs import COLUMNS

    r = ScoreResult(path="x.gif", status="error", error="bad", sha256="ab", model_id="cd")
    row = r.to_row()
    assert tuple(row) == COLUMNS
    assert (row["path"], row["status"], row["error"], row["sha256"], row["model_id"]) == (
        "x.gif",
        "error",
        "bad",
        "ab",
        "cd",
    )
    assert all(row[e] is None for e in EMOTIONS)
    assert not r.ok and r.top() == []


@pytest.mark.parametrize("name", ["resnext3d-tiny", "efficientnet-lite0-tiny"])
def test_tiny_encoder_values_are_per_gif_and_per_segment(name):
    torch = pytest.importorskip("torch")
    from gifsent_models import create_encoder

    torch.manual_seed(0)
    enc = create_encoder(name).eval()
    s = enc.spec
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, s.num_frames, s.crop, s.crop, 3), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        y = enc(x)
        alone = enc(x[1:2])
        # change only the last segment of GIF 0: its other segments' features stay the same
        x2 = x.clone()
        t = s.frames_per_segment
        x2[0, -t:] = 255 - x2[0, -t:]
        y2 = enc(x2)
    assert y.shape == (3, s.segments, enc.feature_dim)
    torch.testing.assert_close(alone[0], y[1], rtol=1e-5, atol=1e-5)  # batch-independent
    torch.testing.assert_close(y2[0, :-1], y[0, :-1], rtol=1e-5, atol=1e-5)
    assert (y2[0, -1] - y[0, -1]).abs().max() > 1e-4  # ... and the changed segment changes
    torch.testing.assert_close(y2[1:], y[1:], rtol=1e-5, atol=1e-5)
    assert (y[0] - y[1]).abs().max() > 1e-4  # different GIFs, different features
    # a second encoder from the same seed computes the same function
    torch.manual_seed(0)
    again = create_encoder(name).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), y, rtol=0, atol=0)


GIFGIF_EMOTIONS = [
    "amusement",
    "anger",
    "contempt",
    "contentment",
    "disgust",
    "embarrassment",
    "excitement",
    "fear",
    "guilt",
    "happiness",
    "pleasure",
    "pride",
    "relief",
    "sadness",
    "satisfaction",
    "shame",
    "surprise",
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_scores_file_columns_are_pinned_by_name_and_order(tmp_path, fmt):
    """The CLI's output columns, spelled out here rather than taken from outputs.COLUMNS
    (writer and reader share that tuple, so a reorder there would pass every round trip)."""
    import csv
    import json

    from infer_support import build_model, write_gifs

    from gifsent_infer.cli import main

    model = build_model(tmp_path / "m.onnx")
    write_gifs(tmp_path / "gifs", 2)
    out = tmp_path / f"s.{fmt}"
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "gifs"), "--out", str(out), "--model", str(model), "--quiet"])
    assert e.value.code in (0, None)
    want = [
        "path",
        "sha256",
        "model_id",
        "status",
        "error",
        "format",
        "frames",
        "duration",
        "segments",
        "padding",
        "top",  # --top 3 by default
        *GIFGIF_EMOTIONS,
    ]
    assert list(EMOTIONS) == GIFGIF_EMOTIONS
    if fmt == "csv":
        with open(out, newline="") as f:
            header = next(csv.reader(f))
            f.seek(0)
            rows = list(csv.DictReader(f))
    else:
        lines = out.read_text().splitlines()
        header = list(json.loads(lines[0]))
        rows = [json.loads(x) for x in lines]
    assert header == want
    for row in rows:  # read by name: the values under each name are of that column's kind
        assert row["path"].endswith(".gif") and row["status"] == "ok"
        assert len(row["sha256"]) == 64 and len(row["model_id"]) == 64
        assert int(row["frames"]) == 4 and int(row["segments"]) == 2
        assert all(0.0 < float(row[e]) < 1.0 for e in GIFGIF_EMOTIONS)
