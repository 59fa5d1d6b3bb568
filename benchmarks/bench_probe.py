"""What the memory budget's header probe costs next to the decode it sizes, per format.

Before a worker decodes an input it reserves the decode's peak memory, estimated by the
format's header probe (gifsent_infer/reading/formats.py, `Format.peak_bytes`; GIF: 4 bytes
of the logical screen; WebP/APNG: the chunk records; video and AVIF: FFmpeg opening the
container). This times `estimate_decode_bytes` against `read_media` on the smallest real
GIFs converted by ffmpeg (imageio-ffmpeg) to MP4 (H.264), WebM (VP9), WebP, APNG and AVIF
(AV1, libaom), interleaved (benchmarks/machine.py), one thread, and prints the estimate
next to the frames' real size:

    .venv/bin/python benchmarks/bench_probe.py [--files 6] [--rounds 5] [--folder ../shared/gifs/real]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from machine import cpu_line, interleaved  # noqa: E402

from gifsent_infer.contract import SamplingSpec  # noqa: E402
from gifsent_infer.reading.budget import estimate_decode_bytes  # noqa: E402
from gifsent_infer.reading.gifio import DEFAULT_LIMITS  # noqa: E402
from gifsent_infer.reading.media import read_media  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = REPO.parent / "shared" / "gifs" / "real"
SPEC = SamplingSpec(segments=4, frames_per_segment=16, fps=12.5, size=112, crop=112)
EVEN = ["-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-pix_fmt", "yuv420p"]
CONVERSIONS = {
    "gif": (".gif", None),
    "mp4": (".mp4", ["-c:v", "libx264", *EVEN]),
    "webm": (
        ".webm",
        [
            "-c:v",
            "libvpx-vp9",
            "-b:v",
            "0",
            "-crf",
            "32",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            *EVEN,
        ],
    ),
    "webp": (".webp", ["-c:v", "libwebp_anim", "-quality", "80", "-loop", "0"]),
    "apng": (".png", ["-plays", "0", "-f", "apng"]),
    "avif": (".avif", ["-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "32", *EVEN, "-f", "avif"]),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    ap.add_argument("--files", type=int, default=6, help="the N smallest GIFs (default 6)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    gifs = sorted(args.folder.glob("*.gif"), key=lambda p: p.stat().st_size)[: args.files]
    if not gifs:
        print(f"no GIFs in {args.folder}", file=sys.stderr)
        return 2
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    print(cpu_line())
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    print(f"{len(gifs)} GIFs, {args.rounds} rounds; medians per file, one thread\n")
    print(f"{'format':6} {'probe ms':>9} {'decode ms':>10} {'probe/decode':>13} "
          f"{'estimate MiB':>13} {'frames MiB':>11}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, (suffix, conv) in CONVERSIONS.items():
            files = []
            for g in gifs:
                if conv is None:
                    files.append(g.read_bytes())
                    continue
                dest = Path(tmp) / f"{g.stem}{suffix}"
                cmd = [exe, "-v", "error", "-y", "-i", str(g), *conv, str(dest)]
                subprocess.run(cmd, check=True, capture_output=True, timeout=300)
                files.append(dest.read_bytes())
            variants = {
                "probe": lambda files=files: [
                    estimate_decode_bytes(d, SPEC, DEFAULT_LIMITS) for d in files
                ],
                "decode": lambda files=files: [read_media(d, SPEC) for d in files],
            }
            t = {
                k: statistics.median(v) / len(files)
                for k, v in interleaved(variants, args.rounds).items()
            }
            est = sum(estimate_decode_bytes(d, SPEC, DEFAULT_LIMITS) for d in files) / len(files)
            kept = 0
            for d in files:
                info = read_media(d, SPEC).info
                kept += min(SPEC.num_frames, info.n_frames) * info.width * info.height * 3
            print(
                f"{fmt:6} {t['probe'] * 1e3:9.2f} {t['decode'] * 1e3:10.1f} "
                f"{t['probe'] / t['decode']:13.1%} {est / 2**20:13.1f} {kept / len(files) / 2**20:11.1f}"
            )
    print(f"\nload average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
