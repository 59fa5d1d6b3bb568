"""Test support for the media reader: make files with ffmpeg (imageio-ffmpeg's binary), decode
them with ffmpeg as the independent reference, and damage them for fuzzing.

ffmpeg is the reference decoder: `ffmpeg_frames` returns its frames (RGB, autorotated, no
frames dropped or duplicated) and their presentation times in the stream's own time base.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_GIFS


def ffmpeg_exe() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str, timeout: float = 120) -> None:
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", *args],
        check=True,
        capture_output=True,
        timeout=timeout,
    )


# How each format is made from a GIF (or any ffmpeg input). Even sizes for H.264 4:2:0.
CONVERSIONS = {
    "mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2"],
    "mov": [
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-vf",
        "scale=trunc(iw/2)*2:trunc(ih/2)*2",
        "-f",
        "mov",
    ],
    "webm": [
        "-c:v",
        "libvpx-vp9",
        "-pix_fmt",
        "yuv420p",
        "-b:v",
        "0",
        "-crf",
        "30",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
    ],
    "webp": ["-c:v", "libwebp_anim", "-lossless", "1", "-loop", "0"],
    "lossy.webp": ["-c:v", "libwebp_anim", "-quality", "80", "-loop", "0"],
    "apng": ["-plays", "0", "-f", "apng"],
}
SUFFIX = {"apng": ".png"}


def convert(src: Path, dest_dir: Path, fmt: str) -> Path:
    dest = dest_dir / f"{src.stem}.{fmt}{SUFFIX.get(fmt, '')}"
    if not dest.exists():
        ffmpeg("-i", str(src), *CONVERSIONS[fmt], str(dest))
    return dest


def ffmpeg_frames(
    path: Path, matte: tuple[int, int, int] = (255, 255, 255), stream: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ffmpeg's decode: uint8 [N, H, W, 3] frames (RGBA composited over `matte`, rounded as
    decoders._over_matte does), and float64 [N] start times (from 0) and durations in ms,
    from the presentation times in the stream's own time base. `stream` picks one stream
    (`-map 0:STREAM`, e.g. "1": an animated AVIF's track; ffmpeg's default is its still item)."""
    exe = ffmpeg_exe()
    common = ["-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-an"]
    if stream:
        common += ["-map", f"0:{stream}"]
    crc = subprocess.run(
        [
            exe,
            *common,
            "-enc_time_base:v",
            "demux",
            "-f",
            "framecrc",
            "-c:v",
            "rawvideo",
            "-pix_fmt",
            "rgba",
            "-",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    tb = None
    pts, dur, dims = [], [], None
    for line in crc.splitlines():
        if line.startswith("#tb 0:"):
            num, den = line.split(":")[1].strip().split("/")
            tb = int(num) / int(den)
        elif line.startswith("#dimensions 0:"):
            w, h = line.split(":")[1].strip().split("x")
            dims = (int(h), int(w))
        elif line and not line.startswith("#"):
            cells = [c.strip() for c in line.split(",")]
            pts.append(int(cells[2]))
            dur.append(int(cells[3]))
    raw = subprocess.run(
        [exe, *common, "-f", "rawvideo", "-pix_fmt", "rgba", "-"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    assert tb is not None and dims is not None
    rgba = np.frombuffer(raw, np.uint8).reshape(-1, *dims, 4)
    assert len(rgba) == len(pts)
    a = rgba[..., 3:].astype(np.uint16)
    m = np.asarray(matte, np.uint16)
    frames = ((rgba[..., :3].astype(np.uint16) * a + m * (255 - a) + 127) // 255).astype(np.uint8)
    times = (np.array(pts, np.float64) - pts[0]) * tb * 1000.0
    return frames, times, np.array(dur, np.float64) * tb * 1000.0


def real_corpus(n: int = 3) -> list[Path]:
    """The n smallest multi-frame GIFs of ../shared/gifs/real ($GIFSENT_SHARED_GIFS overrides
    ../shared/gifs); skips when absent, fails when $CI is true (CI must have the corpus)."""
    root = Path(os.environ.get("GIFSENT_SHARED_GIFS", SHARED_GIFS)) / "real"
    if not root.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{root} is absent; CI must provide the shared GIF corpus")
        pytest.skip(f"{root} is absent (optional corpus)")
    from gifsent_infer.reading import media

    picked = []
    for p in sorted(root.glob("*.gif"), key=lambda p: p.stat().st_size):
        if media.probe_media(p).n_frames > 1:
            picked.append(p)
        if len(picked) == n:
            break
    return picked


# --- damage ------------------------------------------------------------------------------------


def mutations(data: bytes, seed: int, flips: int = 12) -> dict[str, bytes]:
    """Damaged copies of one file: truncations, bit flips, zeroed and renamed boxes/chunks."""
    rng = random.Random(seed)
    n = len(data)
    out = {
        "empty": b"",
        "head16": data[:16],
        "trunc10": data[: n // 10],
        "trunc50": data[: n // 2],
        "trunc90": data[: n * 9 // 10],
        "minus1": data[:-1],
    }
    for k in range(flips):
        b = bytearray(data)
        for _ in range(1 + k % 4):
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        out[f"flip{k}"] = bytes(b)
    for k in range(4):  # a run of garbage inside
        b = bytearray(data)
        i = rng.randrange(n)
        b[i : i + 64] = bytes(rng.randrange(256) for _ in range(64))
        out[f"garbage{k}"] = bytes(b)[:n]
    # container structures: box/chunk names and sizes
    for name in (
        b"moov",
        b"mdat",
        b"stsz",
        b"stco",
        b"avcC",
        b"mvhd",
        b"ANMF",
        b"VP8X",
        b"VP8L",
        b"fcTL",
        b"fdAT",
        b"IDAT",
        b"acTL",
        b"IHDR",
        b"\x1fC\xb6u",
        b"\x16T\xaek",
    ):
        i = data.find(name)
        if i < 0:
            continue
        key = name.decode("latin-1").strip().replace("\x1f", "").replace("\x16", "")
        out[f"renamed-{key}"] = data[:i] + b"xxxx" + data[i + 4 :]
        if i >= 4:
            huge = data[: i - 4] + b"\x7f\xff\xff\xf0" + data[i:]
            out[f"size-{key}"] = huge
            out[f"zero-{key}"] = data[: i - 4] + b"\x00\x00\x00\x00" + data[i:]
        out[f"cut-at-{key}"] = data[:i]
    return out
