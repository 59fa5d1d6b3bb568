"""The format registry (gifsent_infer/reading/formats.py): AVIF and HEIF by their ftyp brand,
AVIF read like ffmpeg reads it, HEIF refused, every format sized for the memory budget from
its header, and video never getting GIF's delay clamp.

AVIF references: ffmpeg (imageio-ffmpeg's binary, libaom-av1) makes the files and decodes
them; an animated AVIF's frames are its track (`-map 0:1`), which FFmpeg shows after the
still "primary item" it takes by default. PyAV's FFmpeg converts them with the same
settings as the ffmpeg CLI, so the frames are compared pixel for pixel.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from infer_support import build_model, gif_bytes
from media_support import convert, ffmpeg, ffmpeg_frames

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.reading import decoders, formats, gifio, media
from gifsent_infer.reading.budget import estimate_decode_bytes
from gifsent_infer.reading.formats import REGISTRY, by_suffix, format_of, sniff_format
from gifsent_infer.reading.gifio import DEFAULT_LIMITS
from gifsent_infer.reading.inputs import expand_inputs
from gifsent_infer.reading.media import MediaError, decode_media, probe_media, read_media

av = pytest.importorskip("av")

SPEC = SamplingSpec(segments=4, frames_per_segment=4, fps=12.5, size=48, crop=40)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("formats")


def _avif(work: Path, name: str, source: str, *extra: str) -> Path:
    p = work / name
    if not p.exists():
        ffmpeg("-f", "lavfi", "-i", source, "-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "30",
               "-pix_fmt", "yuv420p", *extra, "-f", "avif", str(p))  # fmt: skip
    return p


@pytest.fixture(scope="module")
def animated_avif(work) -> Path:
    """4 frames of ffmpeg's test pattern, 100 ms each."""
    return _avif(work, "anim.avif", "testsrc=size=64x48:rate=10:duration=0.4")


@pytest.fixture(scope="module")
def still_avif(work) -> Path:
    return _avif(
        work, "still.avif", "testsrc=size=64x48:rate=10:duration=0.1", "-frames:v", "1",
        "-still-picture", "1",
    )  # fmt: skip


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body


# --- the table ----------------------------------------------------------------------------------


def test_every_format_is_one_entry_with_its_suffixes_and_kind():
    names = [f.name for f in REGISTRY]
    assert len(names) == len(set(names))
    assert set(formats.FORMATS) == {f.name for f in REGISTRY if f.open is not None}
    assert "avif" in formats.FORMATS and "heif" not in formats.FORMATS  # recognised, refused
    for f in REGISTRY:
        assert f.kind in ("image", "video") and f.suffixes
        assert all(by_suffix(s.upper()) is f for s in f.suffixes)
        assert f.clamp == (f.kind == "image")  # never for video
    assert by_suffix(".mkv").kind == "video" and by_suffix(".avif").kind == "image"
    assert by_suffix(".txt") is None


def test_report_shows_what_the_registry_says():
    from gifsent_infer.views.report import media_kind

    assert media_kind("a/b.mkv") == "video" and media_kind("x.MP4") == "video"
    assert media_kind("x.avif") == "img" and media_kind("x.gif") == "img"
    assert media_kind("noext") == "img"  # content decides when scoring: maybe a GIF


@pytest.mark.parametrize(
    "head, want",
    [
        (_ftyp(b"avif", b"mif1", b"miaf"), "avif"),
        (_ftyp(b"avis", b"avif", b"msf1"), "avif"),
        (_ftyp(b"mif1", b"avif", b"miaf"), "avif"),  # generic brand: the compatible ones decide
        (_ftyp(b"msf1", b"avis"), "avif"),
        (_ftyp(b"heic", b"mif1"), "heif"),
        (_ftyp(b"heix", b"mif1"), "heif"),
        (_ftyp(b"mif1", b"heic"), "heif"),
        (_ftyp(b"msf1", b"hevc"), "heif"),
        (_ftyp(b"isom", b"iso2", b"avc1", b"mp41"), "mp4"),
        (_ftyp(b"mp42", b"isom"), "mp4"),
        (_ftyp(b"qt  ", b"qt  "), "mov"),
    ],
)
def test_iso_bmff_files_are_told_apart_by_their_ftyp_brand(head, want):
    assert sniff_format(head + b"\0" * 32) == want


def test_real_avif_files_are_avif_never_mp4(animated_avif, still_avif):
    for p in (animated_avif, still_avif):
        assert sniff_format(p.read_bytes()) == "avif"
        assert format_of(p.read_bytes()[:64]).name == "avif"


# --- AVIF -----------------------------------------------------------------------------------------


def test_animated_avif_is_its_four_frames_as_ffmpeg_decodes_its_track(animated_avif):
    info = probe_media(animated_avif)
    assert info.format == "avif" and info.n_frames == 4 and (info.width, info.height) == (64, 48)
    frames, times, durations = ffmpeg_frames(animated_avif, SPEC.matte, stream="1")
    assert len(frames) == 4
    np.testing.assert_allclose(info.times_ms, times, atol=1e-6)
    np.testing.assert_allclose(info.durations_ms[-1], durations[-1], atol=1e-6)
    decoded = decode_media(animated_avif)
    np.testing.assert_array_equal(decoded.frames, frames)  # PyAV's FFmpeg = the ffmpeg CLI
    got = read_media(animated_avif, SPEC)
    assert got.info.format == "avif" and got.info.n_frames == 4
    assert got.info.duration_s == pytest.approx(0.4)
    idx, _ = gifio.sample_indices(info.durations_ms, SPEC)
    assert len(set(idx.tolist())) == 4  # all four frames sampled, not the still item
    np.testing.assert_array_equal(got.frames, gifio.resize_crop(frames, idx, SPEC, (0, 0), False))


def test_still_avif_is_one_frame_shown_like_a_one_frame_gif(still_avif):
    frames, _, _ = ffmpeg_frames(still_avif, SPEC.matte)
    decoded = decode_media(still_avif)
    assert decoded.frames.shape[0] == 1
    np.testing.assert_array_equal(decoded.frames, frames)
    assert decoded.durations_ms.tolist() == [SPEC.clamped_delay_ms]
    assert read_media(still_avif, SPEC).info.format == "avif"


def test_avif_transparency_is_composited_over_the_matte(work):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow cannot write AVIF (Pillow >= 11.3 wheels can)")
    from PIL import Image

    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., 1] = 200
    rgba[:, :32, 3] = 255  # left half opaque green, right half transparent
    ims = [Image.fromarray(rgba, "RGBA") for _ in range(3)]
    p = work / "alpha.avif"
    ims[0].save(p, save_all=True, append_images=ims[1:], duration=80, quality=100)
    decoded = decode_media(p, matte=(255, 0, 255))
    assert decoded.frames.shape == (3, 48, 64, 3)
    left, right = decoded.frames[:, 8:40, 4:24], decoded.frames[:, 8:40, 40:60]
    assert np.abs(left.astype(int) - [0, 200, 0]).max() <= 8
    assert np.abs(right.astype(int) - [255, 0, 255]).max() <= 8


def test_avif_without_an_av1_decoder_is_refused_as_avif(animated_avif, monkeypatch):
    monkeypatch.setattr(decoders, "has_av1_decoder", lambda: False)
    with pytest.raises(MediaError, match="unsupported format avif"):
        read_media(animated_avif, SPEC)


def test_heif_is_refused_by_name_never_read_as_mp4(tmp_path):
    data = _ftyp(b"heic", b"mif1", b"heic") + b"\0\0\0\x10meta" + b"\0" * 200
    with pytest.raises(MediaError, match="unsupported format heif"):
        read_media(data, SPEC)
    with pytest.raises(MediaError, match="unsupported format heif"):
        probe_media(data)


def test_scoring_rows_say_avif_or_unsupported_heif(tmp_path, animated_avif):
    from gifsent_infer.running.scorer import Scorer

    heic = tmp_path / "photo.heic"
    heic.write_bytes(_ftyp(b"heic", b"mif1") + b"\0" * 200)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.avif").write_bytes(animated_avif.read_bytes())
    (folder / "b.heic").write_bytes(heic.read_bytes())
    (folder / "c").write_bytes(animated_avif.read_bytes())  # no suffix: content decides
    items = expand_inputs([str(folder)]).items
    assert sorted(Path(i.name).name for i in items) == ["a.avif", "b.heic", "c"]
    scorer = Scorer(build_model(tmp_path / "m.onnx", spec=SPEC), device="cpu", threads=1)
    rows = {Path(r.path).name: r.to_row() for r in scorer.score_many(items)}
    assert rows["a.avif"]["status"] == "ok" and rows["a.avif"]["format"] == "avif"
    assert rows["c"]["format"] == "avif" and rows["a.avif"]["frames"] == 4
    assert rows["b.heic"]["status"] == "error"
    assert rows["b.heic"]["error"].startswith("unsupported format heif")


# --- video timelines get no delay clamp ---------------------------------------------------------


@pytest.fixture(scope="module")
def video_60fps(work) -> Path:
    """1 s at 60 fps: every frame lasts 16.7 ms, under GIF's 20 ms clamp threshold."""
    p = work / "fast.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=60:duration=1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(p))  # fmt: skip
    return p


def test_a_video_timeline_never_gets_the_gif_delay_clamp(video_60fps):
    info = probe_media(video_60fps)
    assert info.n_frames == 60 and np.allclose(info.durations_ms, 1000 / 60, atol=0.01)
    decoded = decode_media(video_60fps, min_delay_ms=20, clamped_delay_ms=100)
    np.testing.assert_allclose(decoded.durations_ms, info.durations_ms)  # as stored
    got = read_media(video_60fps, SPEC)
    assert got.info.duration_s == pytest.approx(1.0, abs=0.01)  # clamped it would be 6 s
    # sampling by time at 12.5 fps over 1 s: the frames shown at 0, 80, 160... ms
    frames, times, _ = ffmpeg_frames(video_60fps, SPEC.matte)
    d = np.append(np.diff(times), 1000 / 60)
    idx, _ = gifio.sample_indices(d, SPEC)
    assert idx.max() < 60 and len(set(idx.tolist())) > 8
    ref = gifio.resize_crop(frames, idx, SPEC, (0, 0), False)
    assert np.abs(got.frames.astype(int) - ref.astype(int)).mean() <= 2


def test_the_same_frames_as_an_animated_image_do_get_the_clamp(work, video_60fps):
    webp = convert(video_60fps, work, "webp")  # 16/17 ms frame records
    d = probe_media(webp).durations_ms
    assert (d[:-1] < 20).all()
    shown = np.where(d < SPEC.min_delay_ms, SPEC.clamped_delay_ms, d)
    assert read_media(webp, SPEC).info.duration_s == pytest.approx(shown.sum() / 1000)


# --- memory budget: every format sized from its header ---------------------------------------


@pytest.fixture(scope="module")
def long_quiet_video(work) -> Path:
    """40 s of a still grey 320x240 picture: 1000 frames in a few KiB."""
    p = work / "quiet.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=320x240:rate=25:duration=40", "-c:v",
           "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(p))  # fmt: skip
    return p


def test_a_long_low_bitrate_video_is_sized_by_its_pixels_not_its_file(long_quiet_video):
    data = long_quiet_video.read_bytes()
    assert len(data) < 200_000
    est = estimate_decode_bytes(data, SPEC, DEFAULT_LIMITS)
    by_file = formats.unknown_peak_bytes(data)  # what a file-size rule would reserve
    kept = SPEC.num_frames * 320 * 240 * 3  # just the RGB frames sampling keeps
    assert est >= kept + 320 * 240 * 24 > by_file  # and the decoder's reference frames
    tracemalloc.start()
    try:
        read_media(data, SPEC)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= est, (peak, est)


def test_a_small_budget_makes_a_long_quiet_video_wait_for_its_real_size(tmp_path, long_quiet_video):
    from gifsent_infer.running.scorer import Scorer

    data = long_quiet_video.read_bytes()
    est = estimate_decode_bytes(data, SPEC, DEFAULT_LIMITS)
    model = build_model(tmp_path / "m.onnx", spec=SPEC)
    scorer = Scorer(model, device="cpu", threads=1, memory_budget=int(1.5 * est))
    results = list(scorer.score_many([data, data, data], workers=3, batch_size=1))
    assert all(r.ok for r in results), [r.error for r in results]
    assert scorer.budget.peak == est  # one at a time: two would need 2 x est


@pytest.mark.parametrize("fmt", ["webp", "apng", "webm", "mov"])
def test_every_readable_format_is_sized_from_its_header(work, fmt):
    src = work / "src.gif"
    if not src.exists():
        src.write_bytes(gif_bytes(5, frames=6, size=(160, 120)))
    data = convert(src, work, fmt).read_bytes()
    est = estimate_decode_bytes(data, SPEC, DEFAULT_LIMITS)
    assert est >= 6 * 160 * 120 * 3  # its six frames, decoded
    broken = data[:40]  # a header the probe cannot read: sized from the bytes, no exception
    assert estimate_decode_bytes(broken, SPEC, DEFAULT_LIMITS) == formats.unknown_peak_bytes(broken)


def test_gif_estimate_is_unchanged(tmp_path):
    data = gif_bytes(3, frames=12, size=(640, 480))
    # the formula of issue 12: 2 x bytes + pixels x (4 x kept + 32)
    assert estimate_decode_bytes(data, SPEC, DEFAULT_LIMITS) == 2 * len(data) + 640 * 480 * (
        4 * SPEC.num_frames + 32
    )


def test_media_reads_the_registry_not_its_own_lists():
    assert media.FORMATS is formats.FORMATS and media.MEDIA_SUFFIXES is formats.MEDIA_SUFFIXES
    assert ".mkv" in formats.MEDIA_SUFFIXES and ".avif" in formats.MEDIA_SUFFIXES


@pytest.fixture(scope="module")
def containers(work, animated_avif, still_avif) -> dict[str, Path]:
    src = work / "src6.gif"
    src.write_bytes(gif_bytes(6, frames=7, size=(96, 64)))
    out = {fmt: convert(src, work, fmt) for fmt in ("mp4", "mov", "webm")}
    mkv = work / "src6.mkv"
    ffmpeg("-i", str(src), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "matroska", str(mkv))
    out.update(mkv=mkv, avif=animated_avif, still_avif=still_avif)
    return out


def test_python_header_parsers_agree_with_ffmpeg(containers):
    for name, p in containers.items():
        data = p.read_bytes()
        demuxer = "matroska" if name in ("webm", "mkv") else "mov"
        parse = decoders.matroska_header if demuxer == "matroska" else decoders.bmff_header
        want = decoders.video_header(data, name, demuxer, choose=decoders.longest_stream)
        assert parse(data) == want, name


def test_header_probes_never_raise_on_damaged_files(containers):
    from media_support import mutations

    for name, p in containers.items():
        for what, bad in mutations(p.read_bytes(), seed=3, flips=6).items():
            est = estimate_decode_bytes(bad, SPEC, DEFAULT_LIMITS)
            assert isinstance(est, int) and est > 0, (name, what)
