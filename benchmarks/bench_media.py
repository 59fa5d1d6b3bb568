"""Decode throughput per format (gifsent_infer.reading.media.read_media) on the real corpus converted by ffmpeg.

Every GIF of ../shared/gifs/real is converted (imageio-ffmpeg's ffmpeg, into a temporary
folder) to MP4 (H.264), WebM (VP9), lossless and lossy WebP and APNG. Then, in one process,
one thread, the formats are timed interleaved (round r times every format before round r+1)
and the median round is reported: files/s and segments/s per core for a ResNeXt-like spec
(S=4, T=16, 12.5 fps, 112 px), next to what that model consumes (3.8 clips/s on a 2-core
Zen 3 with onnxruntime, DESIGN.md):

    .venv/bin/python benchmarks/bench_media.py [--rounds 5] [--folder ../shared/gifs/real]

CPU time (time.process_time) is reported beside wall time because this machine's cores are
shared with other work: CPU time is what one dedicated core would take.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from machine import cpu_line  # noqa: E402

from gifsent_infer.contract import SamplingSpec  # noqa: E402
from gifsent_infer.reading.media import read_media  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = REPO.parent / "shared" / "gifs" / "real"
SPEC = SamplingSpec(segments=4, frames_per_segment=16, fps=12.5, size=112, crop=112)
MODEL_SEGMENTS_PER_S = 3.8  # ResNeXt-101, onnxruntime, 2-core Zen 3 (DESIGN.md)

CONVERSIONS = {
    "mp4 (h264)": (
        ".mp4",
        ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2"],
    ),
    "webm (vp9)": (
        ".webm",
        [
            "-c:v",
            "libvpx-vp9",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            "0",
            "-crf",
            "32",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
        ],
    ),
    "webp lossless": (".webp", ["-c:v", "libwebp_anim", "-lossless", "1", "-loop", "0"]),
    "webp lossy": (".webp", ["-c:v", "libwebp_anim", "-quality", "80", "-loop", "0"]),
    "apng": (".png", ["-plays", "0", "-f", "apng"]),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    gifs = sorted(args.folder.glob("*.gif"))
    if not gifs:
        print(f"no GIFs in {args.folder}", file=sys.stderr)
        return 2
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory() as tmp:
        blobs: dict[str, list[bytes]] = {"gif": [g.read_bytes() for g in gifs]}
        for name, (suffix, opts) in CONVERSIONS.items():
            blobs[name] = []
            for i, g in enumerate(gifs):
                out = Path(tmp) / f"{i}{suffix}"
                subprocess.run(
                    [exe, "-v", "error", "-y", "-i", str(g), *opts, str(out)],
                    check=True,
                    capture_output=True,
                )
                blobs[name].append(out.read_bytes())
        cpu: dict[str, list[float]] = {k: [] for k in blobs}
        wall: dict[str, list[float]] = {k: [] for k in blobs}
        for _ in range(args.rounds):  # interleaved: every format once per round
            for name, items in blobs.items():
                c0, w0 = time.process_time(), time.perf_counter()
                for b in items:
                    read_media(b, SPEC)
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - w0)
    n = len(gifs)
    print(f"{n} files per format from {args.folder}; spec S=4 T=16 12.5 fps 112 px; one thread")
    print(f"CPU: {cpu_line()}")
    print(
        f"{'format':<15} {'MiB':>6} {'files/s cpu':>12} {'files/s wall':>13} "
        f"{'segments/s cpu':>15} {'x model':>8}"
    )
    for name in blobs:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        mib = sum(len(b) for b in blobs[name]) / 2**20
        seg = n * SPEC.segments / c
        print(
            f"{name:<15} {mib:>6.1f} {n / c:>12.1f} {n / w:>13.1f} {seg:>15.1f} "
            f"{seg / MODEL_SEGMENTS_PER_S:>7.0f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
