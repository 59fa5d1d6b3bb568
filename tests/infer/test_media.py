"""The media reader (gifsent_infer/reading/media.py) against ffmpeg, on files ffmpeg makes from GIFs.

Tolerances, and why:
* timestamps: equal to ffmpeg's presentation times (to a nanosecond: ours are float ms).
* lossless WebP and APNG made from a GIF: the same pixels as the GIF, bit for bit, so the
  same scores exactly; the same as ffmpeg's decode of those files too.
* H.264 / VP9 / lossy WebP: ffmpeg's CLI and PyAV convert YUV 4:2:0 to RGB with different
  swscale settings (chroma upsampling filter, rounding), so sampled frames differ by a few
  levels: mean absolute difference <= 2 of 255 and 99th percentile <= 24 against ffmpeg's
  decode of the same file. Against the source GIF the codec's own loss adds to that, so
  scores of the tiny mean-colour model agree within 0.02.
"""

from __future__ import annotations

import csv
import io
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from infer_support import build_model
from media_support import convert, ffmpeg, ffmpeg_frames, mutations, real_corpus
from PIL import Image

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.reading import decoders, gifio, media
from gifsent_infer.reading.gifio import GifError, ReaderLimits
from gifsent_infer.reading.media import MediaError, probe_media, read_media, sniff_format

pytest.importorskip("av")

SPEC = SamplingSpec(segments=4, frames_per_segment=4, fps=12.5, size=48, crop=40)
LOSSLESS = ("webp", "apng")
LOSSY = ("mp4", "mov", "webm", "lossy.webp")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def synth_gif(work) -> Path:
    """A 1.2 s, 10 fps GIF of ffmpeg's test pattern (a moving, numbered frame)."""
    p = work / "synth.gif"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1.2", str(p))
    return p


def assert_close(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert ours.shape == ref.shape, what
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.mean() <= 2.0 and np.percentile(diff, 99) <= 24, (
        f"{what}: mean {diff.mean():.2f}, p99 {np.percentile(diff, 99)}"
    )


def reference_sample(path: Path, spec: SamplingSpec, clamp: bool, decoded=None) -> np.ndarray:
    """ffmpeg's frames sampled with the shared sampling code: uint8 [S*T, crop, crop, 3]."""
    frames, times, durations = decoded if decoded is not None else ffmpeg_frames(path, spec.matte)
    d = durations.copy()
    d[:-1] = np.diff(times)  # a frame lasts until the next one
    if clamp:
        d[d < spec.min_delay_ms] = spec.clamped_delay_ms
    idx, _w = gifio.sample_indices(d, spec)
    return gifio.resize_crop(frames, idx, spec, (0.0, 0.0), False)


def check_against_ffmpeg(path: Path, fmt: str) -> None:
    info = probe_media(path)
    decoded = ffmpeg_frames(path, SPEC.matte)
    _, times, durations = decoded
    np.testing.assert_allclose(info.times_ms, times, atol=1e-6, err_msg=str(path))
    # each frame lasts until the next one; the last for its own (packet) duration
    np.testing.assert_allclose(info.durations_ms[:-1], np.diff(times), atol=1e-6)
    np.testing.assert_allclose(info.durations_ms[-1], durations[-1], atol=1e-6)
    ours = read_media(path, SPEC)
    ref = reference_sample(path, SPEC, fmt not in media.VIDEO_FORMATS, decoded)
    if fmt in LOSSLESS:
        np.testing.assert_array_equal(ours.frames, ref, err_msg=str(path))
    else:
        assert_close(ours.frames, ref, str(path))


# --- sniffing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mp4", "mov", "webm", "webp", "apng"])
def test_format_is_recognised_by_content_not_name(work, synth_gif, fmt):
    p = convert(synth_gif, work, fmt)
    disguised = work / f"disguised-{fmt}.gif"
    disguised.write_bytes(p.read_bytes())
    assert sniff_format(disguised.read_bytes()) == fmt
    assert read_media(disguised, SPEC).info.format == fmt
    assert sniff_format(b"\xff\xd8\xff\xe0 jpeg") is None and sniff_format(b"") is None


# --- against ffmpeg ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mp4", "mov", "webm", "webp", "apng"])
def test_synthetic_clip_matches_ffmpeg(work, synth_gif, fmt):
    check_against_ffmpeg(convert(synth_gif, work, fmt), fmt)


def test_real_gifs_converted_match_ffmpeg_and_the_gif(work):
    for gif in real_corpus(3):
        base = read_media(gif, SPEC)
        for fmt in ("mp4", "webm", "webp", "apng", "lossy.webp"):
            p = convert(gif, work, fmt)
            check_against_ffmpeg(p, fmt)
            got = read_media(p, SPEC)
            assert got.info.format == fmt.split(".")[-1] and got.info.n_frames == base.info.n_frames
            if fmt in LOSSLESS:  # same pixels, same timeline as the GIF itself
                np.testing.assert_array_equal(got.frames, base.frames, err_msg=f"{gif} {fmt}")
                assert got.info.duration_s == base.info.duration_s


# --- one GIF as every format: scores ---------------------------------------------------------


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    from gifsent_infer.running.scorer import Scorer

    model = build_model(tmp_path_factory.mktemp("model") / "m.onnx", spec=SPEC)
    return Scorer(model, device="cpu", threads=1)


def test_same_gif_scores_alike_in_every_format(work, synth_gif, scorer):
    gif = scorer.score(synth_gif)
    assert gif.ok and gif.to_row()["format"] == "gif"
    for fmt in ("webp", "apng", *LOSSY):
        r = scorer.score(convert(synth_gif, work, fmt))
        assert r.ok, r.error
        assert r.to_row()["format"] == fmt.split(".")[-1]
        assert r.info.n_frames == gif.info.n_frames and r.info.padding == gif.info.padding
        if fmt in LOSSLESS:
            assert r.scores == gif.scores, fmt  # bit for bit
        else:
            np.testing.assert_allclose(r.array, gif.array, atol=0.02, err_msg=fmt)
            assert r.scores != gif.scores or fmt == "lossy.webp"  # really a different decode


# --- hand-made edge cases -----------------------------------------------------------------------


def test_variable_frame_rate_follows_presentation_times(work):
    p = work / "vfr.mp4"
    # frame n at 0.02 n^2 s: gaps of 20, 60, 100, ... ms
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=10:duration=1",
        "-vf",
        "settb=1/1000,setpts='N*N*0.02/TB'",
        "-fps_mode",
        "passthrough",
        "-enc_time_base:v",
        "1/1000",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(p),
    )
    info = probe_media(p)
    np.testing.assert_allclose(info.times_ms[:5], [0, 20, 80, 180, 320], atol=1e-6)
    check_against_ffmpeg(p, "mp4")


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata_is_applied_like_ffmpeg(work, degrees):
    src = work / "wide.mp4"
    if not src.exists():
        ffmpeg(
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=96x48:rate=10:duration=0.5",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(src),
        )
    p = work / f"rot{degrees}.mp4"
    ffmpeg("-display_rotation", str(degrees), "-i", str(src), "-c", "copy", str(p))
    got = read_media(p, SPEC)
    w, h = (got.info.width, got.info.height)
    assert (w, h) == ((48, 96) if degrees != 180 else (96, 48))
    ref = reference_sample(p, SPEC, clamp=False)
    assert_close(got.frames, ref, f"rotation {degrees}")


@pytest.mark.parametrize(
    "fmt,args",
    [
        ("webm", ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p"]),
        ("mp4", ["-c:v", "libx264", "-pix_fmt", "yuv444p"]),
        ("webp", ["-c:v", "libwebp_anim", "-lossless", "1"]),
        ("png", ["-plays", "0", "-f", "apng"]),
    ],
)
def test_odd_sizes(work, fmt, args):
    p = work / f"odd.{fmt}"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=33x17:rate=10:duration=0.5", *args, str(p))
    got = read_media(p, SPEC)
    assert (got.info.width, got.info.height) == (33, 17)
    check_against_ffmpeg(p, "apng" if fmt == "png" else fmt)


def test_still_images_and_one_frame_video_are_one_frame_clips(work, tmp_path):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).quantize(64)
    img = img.convert("RGB")
    gif_b, png_b, webp_b = io.BytesIO(), io.BytesIO(), io.BytesIO()
    img.save(gif_b, "GIF")
    img.save(png_b, "PNG")
    img.save(webp_b, "WEBP", lossless=True)
    base = read_media(gif_b.getvalue(), SPEC)
    for data, fmt in ((png_b.getvalue(), "png"), (webp_b.getvalue(), "webp")):
        got = read_media(data, SPEC)
        assert got.info.format == fmt and got.info.n_frames == 1
        assert got.info.padding == base.info.padding and got.info.duration_s == 0.1
        np.testing.assert_array_equal(got.frames, base.frames)
    one = tmp_path / "one.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=32x32:rate=10",
        "-frames:v",
        "1",
        "-c:v",
        "libx264",
        str(one),
    )
    got = read_media(one, SPEC)
    assert got.info.n_frames == 1 and got.info.padding == base.info.padding  # like a GIF
    assert (got.frames == got.frames[0]).all()


def _patch_box_duration(data: bytes, box: bytes, seconds: int) -> bytes:
    """Set the duration of an mvhd/mdhd box (version 0: timescale at +12, duration at +16)."""
    i = data.find(box)
    b = bytearray(data)
    timescale = struct.unpack_from(">I", b, i + 16)[0]
    struct.pack_into(">I", b, i + 20, timescale * seconds)
    return bytes(b)


def test_ten_hour_duration_is_refused_before_decoding(work, synth_gif):
    short = convert(synth_gif, work, "mp4").read_bytes()
    # MP4 movie/media headers that claim 10 hours: FFmpeg ignores them (the sample tables
    # say 1.2 s) and so does the timeline, which comes from the packets
    lying = _patch_box_duration(_patch_box_duration(short, b"mvhd", 36000), b"mdhd", 36000)
    assert read_media(lying, SPEC).info.duration_s == pytest.approx(1.2)
    # a WebM whose Segment Duration (float, in ms) claims 10 hours: refused from the header
    webm = bytearray(convert(synth_gif, work, "webm").read_bytes())
    i = webm.find(b"\x44\x89")  # Duration element: ID, size (0x88: 8 bytes), float64
    assert i > 0 and webm[i + 2] == 0x88
    struct.pack_into(">d", webm, i + 3, 36_000_000.0)
    with pytest.raises(MediaError, match="duration limit"):
        read_media(bytes(webm), SPEC)
    # a real 10-hour timeline (two frames 10 h apart) is refused too, and fast
    long = work / "ten-hours.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=s=16x16:r=1:d=2",
        "-vf",
        "setpts='N*36000/TB'",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        str(long),
    )
    t0 = time.perf_counter()
    with pytest.raises(MediaError, match="duration limit"):
        read_media(long, SPEC)
    assert time.perf_counter() - t0 < 5
    # a higher limit reads it: frame 0 for the first 10 hours
    ok = read_media(long, SPEC, limits=ReaderLimits(max_duration_s=100_000))
    assert ok.info.duration_s > 36000


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import zlib

    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def huge_png() -> bytes:
    import zlib

    ihdr = struct.pack(">IIBBBBB", 16384, 16384, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def huge_webp() -> bytes:
    vp8x = bytes([0x10, 0, 0, 0]) + (16383).to_bytes(3, "little") * 2
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + vp8x
    body += b"VP8L" + struct.pack("<I", 6) + b"\x2f" + b"\xff\xff\xff\x0f\x00"
    return b"RIFF" + struct.pack("<I", len(body)) + body


def huge_vp8_webm(work: Path) -> bytes:
    """A small VP8 WebM whose keyframes claim 12000 x 12000 in the bitstream only (FFmpeg
    itself refuses sizes over about 16k x 16k; this one it would allocate)."""
    p = work / "small-vp8.webm"
    ffmpeg("-f", "lavfi", "-i", "color=s=32x32:r=10:d=0.3", "-c:v", "libvpx", str(p))
    b = bytearray(p.read_bytes())
    i = 0
    while (i := b.find(b"\x9d\x01\x2a", i)) >= 0:  # VP8 keyframe start code, then w, h
        struct.pack_into("<HH", b, i + 3, 12000, 12000)
        i += 3
    return bytes(b)


def test_huge_dimensions_are_refused_before_allocation(work, tmp_path):
    bombs = {"png": huge_png(), "webp": huge_webp(), "webm": huge_vp8_webm(work)}
    for name, data in bombs.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(MediaError, match=r"limit|decod|corrupt|invalid"):
            read_media(data, SPEC)
    # Peak memory of a fresh process reading all three: a 16k x 16k RGB frame alone would
    # be 768 MiB. VmHWM (peak RSS of this process image, in kB) rather than ru_maxrss, which
    # Linux carries over from the parent across fork + exec; tracemalloc cannot see C
    # allocations.
    code = (
        "import re, sys\n"
        "from gifsent_infer.reading.media import read_media\n"
        "from gifsent_infer.contract import SamplingSpec\n"
        "from gifsent_infer.reading.gifio import ReaderLimits\n"
        "spec = SamplingSpec(segments=2, frames_per_segment=2, fps=10.0, size=16, crop=16)\n"
        "limits = ReaderLimits(max_canvas_pixels=int(sys.argv[1]))\n"
        "for p in sys.argv[2:]:\n"
        "    try:\n"
        "        read_media(p, spec, limits=limits)\n"
        "    except ValueError:\n"
        "        pass\n"
        "status = open('/proc/self/status').read()\n"
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1))\n"
    )
    if not Path("/proc/self/status").exists():
        pytest.skip("peak RSS is read from /proc (Linux)")

    def peak_mib(max_canvas_pixels: int, names) -> float:
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                str(max_canvas_pixels),
                *(str(tmp_path / n) for n in names),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return int(out.stdout.strip()) / 1024

    default = ReaderLimits().max_canvas_pixels
    assert peak_mib(default, bombs) < 400
    # the measurement can see it: without the limit, FFmpeg decodes the 12k x 12k VP8 frames
    assert peak_mib(1 << 30, ["webm"]) > 400


# --- malformed media ------------------------------------------------------------------------------


def test_damaged_files_raise_the_reader_error_quickly(work, synth_gif):
    """Truncations, bit flips, garbage runs, renamed/zeroed/huge box sizes (missing moov...):
    every input either reads or raises a GifError; none crashes, hangs or raises anything else."""
    n, slowest = 0, 0.0
    for fmt in ("mp4", "mov", "webm", "webp", "apng"):
        data = convert(synth_gif, work, fmt).read_bytes()
        for name, bad in mutations(data, seed=len(fmt)).items():
            t0 = time.perf_counter()
            try:
                read_media(bad, SPEC)
            except GifError:
                pass
            except Exception as e:  # pragma: no cover - the assertion names the input
                pytest.fail(f"{fmt} {name}: {type(e).__name__}: {e}")
            slowest = max(slowest, time.perf_counter() - t0)
            n += 1
    assert n > 100 and slowest < 10, (n, slowest)


# --- the CLI on a folder of everything ---------------------------------------------------------


def test_cli_scores_a_folder_mixing_all_formats(work, synth_gif, tmp_path):
    from gifsent_infer.cli import main

    folder = tmp_path / "reactions"
    folder.mkdir()
    names = {}
    for fmt in ("mp4", "mov", "webm", "webp", "apng"):
        p = convert(synth_gif, work, fmt)
        dest = folder / f"clip-{fmt.replace('.', '-')}.{'bin' if fmt == 'mov' else fmt}"
        dest.write_bytes(p.read_bytes())  # mov named .bin: found by content
        names[dest.name] = "apng" if fmt == "apng" else fmt
    (folder / "orig.gif").write_bytes(synth_gif.read_bytes())
    names["orig.gif"] = "gif"
    mkv = folder / "clip.mkv"
    ffmpeg("-i", str(synth_gif), "-c:v", "libvpx", "-pix_fmt", "yuv420p", str(mkv))
    names["clip.mkv"] = "mkv"
    still = folder / "still.png"
    Image.new("RGB", (20, 10), (200, 30, 30)).save(still)
    names["still.png"] = "png"
    mp4 = convert(synth_gif, work, "mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(mp4[: len(mp4) // 3])
    (folder / "nomoov.mp4").write_bytes(mp4.replace(b"moov", b"xxxx"))
    (folder / "text.webm").write_text("not a video")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)  # not ours: skipped
    out = tmp_path / "scores.csv"
    model = build_model(tmp_path / "m.onnx", spec=SPEC)
    with pytest.raises(SystemExit) as exit_:
        main([str(folder), "--out", str(out), "--model", str(model), "--device", "cpu"])
    assert exit_.value.code == 1  # some inputs failed
    with open(out, newline="") as f:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(f)}
    assert set(rows) == {*names, "truncated.mp4", "nomoov.mp4", "text.webm"}
    for name, fmt in names.items():
        assert rows[name]["status"] == "ok", (name, rows[name]["error"])
        assert rows[name]["format"] == fmt
    for name in ("truncated.mp4", "nomoov.mp4", "text.webm"):
        assert rows[name]["status"] == "error" and rows[name]["error"]


def test_training_index_takes_renditions_for_ids_without_a_gif(tmp_path):
    from gifsent_train.votes import index_gifs

    (tmp_path / "a").mkdir()
    for name in ("x.gif", "x.mp4", "y.mp4", "z.webp", "a/w.WEBM", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    found = {k: v.name for k, v in index_gifs(tmp_path).items()}
    assert found == {"x": "x.gif", "y": "y.mp4", "z": "z.webp", "w": "w.WEBM"}


@pytest.mark.parametrize(
    "name,args",
    [
        ("hevc.mp4", ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-x265-params", "log-level=none"]),
        ("av1.mp4", ["-c:v", "libsvtav1", "-pix_fmt", "yuv420p", "-svtav1-params", "verbosity=0"]),
        ("av1.webm", ["-c:v", "libsvtav1", "-pix_fmt", "yuv420p", "-svtav1-params", "verbosity=0"]),
        ("vp8.webm", ["-c:v", "libvpx", "-pix_fmt", "yuv420p"]),
        ("h264.mkv", ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
    ],
)
def test_other_codecs_match_ffmpeg(work, name, args):
    p = work / name
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1", *args, str(p))
    check_against_ffmpeg(p, sniff_format(p.read_bytes()))


def test_long_video_decodes_only_from_keyframes_before_the_sampled_frames(work):
    """20 s at 25 fps with a keyframe each second and B-frames: sampling 4 segments of 2
    frames decodes a few GOPs, not 500 frames, and still gives ffmpeg's frames."""
    p = work / "long.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=25:duration=20",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "25",
        "-bf",
        "3",
        str(p),
    )
    spec = SamplingSpec(segments=4, frames_per_segment=2, fps=25.0, size=48, crop=40)
    import av

    with av.open(str(p)) as c:
        packets = [pk for pk in c.demux(video=0) if pk.size]
    pts = np.array([pk.pts for pk in packets])
    order = np.argsort(pts, kind="stable")
    idx, _ = gifio.sample_indices(np.full(len(pts), 40.0), spec)
    ranges = decoders._plan(packets, order, np.unique(idx).tolist())
    decoded = sum(b - a for a, b in ranges)
    assert len(ranges) == 4 and decoded < 4 * 30 and len(packets) == 500
    assert ranges[-1][1] < 400  # stops after the last needed frame (t = 15.04 s)
    got = read_media(p, spec)
    ref = reference_sample(p, spec, clamp=False)
    np.testing.assert_array_equal(got.frames, ref)


def test_cli_gives_every_damaged_file_one_row(work, synth_gif, tmp_path):
    from gifsent_infer.cli import main

    folder = tmp_path / "fuzz"
    folder.mkdir()
    n = 0
    for fmt in ("mp4", "webm", "webp", "apng"):
        data = convert(synth_gif, work, fmt).read_bytes()
        for name, bad in mutations(data, seed=7, flips=4).items():
            (folder / f"{fmt}-{name}.{fmt}").write_bytes(bad)
            n += 1
    out = tmp_path / "fuzz.jsonl"
    model = build_model(tmp_path / "m.onnx", spec=SPEC)
    with pytest.raises(SystemExit):
        main([str(folder), "--out", str(out), "--model", str(model), "--device", "cpu"])
    import json

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == n and len({r["path"] for r in rows}) == n
    assert all(r["status"] in ("ok", "error") for r in rows)
    assert all(r["error"] for r in rows if r["status"] == "error")
    assert not any("cannot decode:" in r["error"] for r in rows)  # no unexpected exception types


def test_resume_reads_scores_files_written_before_the_format_column(work, synth_gif, tmp_path):
    from gifsent_infer.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.gif").write_bytes(synth_gif.read_bytes())
    (folder / "b.mp4").write_bytes(convert(synth_gif, work, "mp4").read_bytes())
    out = tmp_path / "scores.csv"
    model = build_model(tmp_path / "m.onnx", spec=SPEC)
    args = [str(folder), "--out", str(out), "--model", str(model), "--device", "cpu"]
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code in (0, None)
    with open(out, newline="") as f:  # an older gifsent's file: no format column
        old = list(csv.DictReader(f))
    fields = [c for c in old[0] if c != "format"]
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(old)
    with pytest.raises(SystemExit) as e:
        main([*args, "--resume"])
    assert e.value.code in (0, None)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    assert [r["amusement"] for r in rows] == [r["amusement"] for r in old]  # kept, not rescored
    assert "format" in rows[0]
