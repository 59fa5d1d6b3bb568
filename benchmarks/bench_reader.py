"""Benchmark of the GIF reader (gifsent_infer.reading.gifio.read_gif) on ../shared/gifs/real, one thread.

Prints, per sampling spec, frames/s and segments/s delivered (decode + composite + sample +
resize + crop, from the bytes in memory so disk is not measured), next to the rate at which
the matching encoder consumes segments, measured in the same run on this machine, and
whether the reader keeps the required 2x margin:

    .venv/bin/python benchmarks/bench_reader.py [--repeats 3] [--folder ../shared/gifs/real]
    .venv/bin/python benchmarks/bench_reader.py --no-model     # reader only (no torch needed)

The model rate is the faster of PyTorch channels-last and onnxruntime (the two backends of
the training feature stage) for the full-size encoder at random initialisation (speed does
not depend on the weights), batch of one GIF, median of --model-iters calls. Both sides run
on ONE thread and are counted per CPU second, so the margin compares a core of reading with
a core of encoding (with more cores each side scales about alike).
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

from machine import cpu_line  # noqa: E402

from gifsent_infer.contract import SamplingSpec  # noqa: E402
from gifsent_infer.reading.gifio import decode_gif, read_gif  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = (
    Path(os.environ["GIFSENT_SHARED_GIFS"]) / "real"
    if os.environ.get("GIFSENT_SHARED_GIFS")
    else REPO.parent / "shared" / "gifs" / "real"
)


# (name, spec, the encoder that consumes what this spec samples)
SPECS = [
    (
        "resnext-like S=4 T=16 12.5fps 112",
        SamplingSpec(segments=4, frames_per_segment=16, fps=12.5, size=112, crop=112),
        "resnext101-kinetics",
    ),
    (
        "effnet-like S=8 T=1 224",
        SamplingSpec(segments=8, frames_per_segment=1, fps=12.5, size=224, crop=224),
        "efficientnet-lite0",
    ),
]


def model_rate(encoder_name: str, spec: SamplingSpec, iters: int, log) -> tuple[float, str]:
    """Segments per CPU second the encoder consumes on ONE thread (best backend), and a note.

    One thread and CPU time, like the reader's figures, so the margin compares one core's
    worth of reading with one core's worth of encoding, and load from other processes on
    a shared machine affects neither side much."""
    import tempfile

    import numpy as np
    import torch

    from gifsent_models import create_encoder
    from gifsent_train.features import OrtRunner, TorchRunner

    torch.set_num_threads(1)
    enc = create_encoder(encoder_name, spec=spec, random_init=True)
    x = np.random.default_rng(0).integers(
        0, 256, (1, spec.num_frames, spec.crop, spec.crop, 3), dtype=np.uint8
    )
    rates, walls = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        runners = []
        try:
            runners.append(OrtRunner(enc, Path(tmp) / "encoder.onnx", threads=1))
        except Exception as e:  # onnxruntime or the exporter missing: torch only
            log(f"  {encoder_name}: onnxruntime not timed ({type(e).__name__}: {e})")
        runners.append(TorchRunner(enc, channels_last=True))
        for runner in runners:
            runner(x)  # warm-up
            cpu, wall = [], []
            for _ in range(iters):
                c0, w0 = time.process_time(), time.perf_counter()
                runner(x)
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
            rates[runner.name] = spec.segments / sorted(cpu)[len(cpu) // 2]  # median
            walls[runner.name] = spec.segments / sorted(wall)[len(wall) // 2]
    best = max(rates, key=rates.get)
    detail = ", ".join(f"{k} {rates[k]:.2f} (wall {walls[k]:.2f})" for k in rates)
    return rates[best], f"{encoder_name}, {best} wins; seg per CPU s, 1 thread: {detail}"


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
    ap.add_argument("--model-iters", type=int, default=5, help="timed model calls per backend")
    ap.add_argument("--no-model", action="store_true", help="do not time the encoders")
    args = ap.parse_args(argv)
    files = sorted(args.folder.glob("*.gif"))
    if not files:
        print(f"no GIFs in {args.folder}", file=sys.stderr)
        return 1
    blobs = [f.read_bytes() for f in files]
    print(f"CPU: {cpu_line()}")
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
    for name, spec, encoder_name in SPECS:
        read_gif(blobs[0], spec)  # warm-up
        cpu, wall = _time(lambda b, s=spec: read_gif(b, s), blobs, args.repeats)
        gifs = len(blobs) / cpu
        segments = gifs * spec.segments
        frames = gifs * spec.num_frames
        rate, source = (
            (float("nan"), "model not timed (--no-model)")
            if args.no_model
            else model_rate(encoder_name, spec, args.model_iters, print)
        )
        margin = segments / rate
        ok = "n/a" if args.no_model else ("yes" if margin >= 2 else "NO")
        print(
            f"{name:36} {gifs:7.1f} {frames:9.0f} {segments:11.1f} "
            f"{rate:12.2f} {margin:6.1f}x  {ok}"
        )
        notes.append(f"  {name}: wall {len(blobs) * spec.segments / wall:.1f} segments/s; {source}")
    print("\nrates are per CPU second of one thread; wall-clock on this shared machine:")
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
