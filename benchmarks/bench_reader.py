"""Benchmark of the GIF reader (gifsent_infer.gifio.read_gif) on ../shared/gifs/real, one thread.

Prints, per sampling spec, frames/s and segments/s delivered (decode + composite + sample +
resize + crop, from the bytes in memory so disk is not measured), next to what the model
consumes, and whether the reader keeps the required 2x margin:

    .venv/bin/python benchmarks/bench_reader.py [--repeats 3] [--folder ../shared/gifs/real]

CPU time (time.process_time) is reported beside wall time because this machine's cores are
shared: CPU time is what one dedicated core would take.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# One thread, before numpy is imported (numpy's BLAS is unused here, but be explicit).
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from gifsent_infer.contract import SamplingSpec  # noqa: E402
from gifsent_infer.gifio import decode_gif, read_gif  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = REPO.parent / "shared" / "gifs" / "real"

# (name, spec, model consumption in segments/s, where that rate comes from)
SPECS = [
    (
        "resnext-like S=4 T=16 12.5fps 112",
        SamplingSpec(segments=4, frames_per_segment=16, fps=12.5, size=112, crop=112),
        3.8,
        "ResNeXt-101 3.8 clips/s (onnxruntime, 2-core Zen 3)",
    ),
    (
        "effnet-like S=8 T=1 224",
        SamplingSpec(segments=8, frames_per_segment=1, fps=12.5, size=224, crop=224),
        120.0,
        "EfficientNet-Lite0 120 frames/s (onnxruntime)",
    ),
]


def _time(fn, blobs, repeats: int) -> tuple[float, float]:
    """Best-of-`repeats` (cpu seconds, wall seconds) for fn over all blobs."""
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        for blob in blobs:
            fn(blob)
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return best_cpu, best_wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    files = sorted(args.folder.glob("*.gif"))
    if not files:
        print(f"no GIFs in {args.folder}", file=sys.stderr)
        return 1
    blobs = [f.read_bytes() for f in files]
    n_src = sum(len(decode_gif(b).durations_ms) for b in blobs)  # also a warm-up
    print(f"{len(blobs)} GIFs, {n_src} source frames, {sum(map(len, blobs)) / 2**20:.1f} MiB")

    cpu, wall = _time(decode_gif, blobs, args.repeats)
    print(
        f"decode_gif (all frames, composited): {n_src / cpu:.0f} source frames/s CPU, "
        f"{len(blobs) / cpu:.1f} GIFs/s CPU ({n_src / wall:.0f} frames/s wall)\n"
    )

    header = (
        f"{'spec':36} {'GIFs/s':>7} {'frames/s':>9} {'segments/s':>11} "
        f"{'model seg/s':>12} {'margin':>7}  ok(>=2x)"
    )
    print(header)
    print("-" * len(header))
    notes = []
    for name, spec, model_rate, source in SPECS:
        read_gif(blobs[0], spec)  # warm-up
        cpu, wall = _time(lambda b, s=spec: read_gif(b, s), blobs, args.repeats)
        gifs = len(blobs) / cpu
        segments = gifs * spec.segments
        frames = gifs * spec.num_frames
        margin = segments / model_rate
        print(
            f"{name:36} {gifs:7.1f} {frames:9.0f} {segments:11.1f} "
            f"{model_rate:12.1f} {margin:6.1f}x  {'yes' if margin >= 2 else 'NO'}"
        )
        notes.append(f"  {name}: wall {len(blobs) * spec.segments / wall:.1f} segments/s; {source}")
    print("\nrates are per CPU second of one thread; wall-clock on this shared machine:")
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
