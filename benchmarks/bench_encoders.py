"""Encoder cost on this machine: parameters, FLOPs per segment, PyTorch CPU throughput (eager, channels-last).

Weights do not change the cost, so encoders whose pretrained weights are absent run at
random initialisation. FLOPs are counted by torch.utils.flop_counter.FlopCounterMode on one
segment (a 3D encoder's 16-frame clip, or one frame of a 2D encoder); it counts a
multiply-accumulate as 2 FLOPs, so GMACs = GFLOPs / 2. Convolutions and matmuls only:
normalisation, activations and pooling are left out, as in the papers' counts.

    .venv/bin/python benchmarks/bench_encoders.py                  # the default set
    .venv/bin/python benchmarks/bench_encoders.py -e resnext101-kinetics --iters 5
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from gifsent_infer.contract import SamplingSpec
from gifsent_models import WeightsUnavailableError, create_encoder

DEFAULT = (
    "resnext101-kinetics",
    "r3d_18",
    "mc3_18",
    "r2plus1d_18",
    "s3d",
    "efficientnet-lite0",
    "resnext3d-tiny",
    "efficientnet-lite0-tiny",
)


def build(name: str):
    try:
        return create_encoder(name)
    except WeightsUnavailableError:
        return create_encoder(name, random_init=True)


def with_segments(encoder, segments: int):
    """The same encoder (same weights source) with `segments` segments per GIF."""
    s = encoder.spec
    one = SamplingSpec(
        segments=segments,
        frames_per_segment=s.frames_per_segment,
        fps=s.fps,
        size=s.size,
        crop=s.crop,
    )
    return create_encoder(encoder.name, spec=one, random_init=encoder.random_init)


def frames(spec: SamplingSpec, batch: int) -> torch.Tensor:
    shape = (batch, spec.num_frames, spec.crop, spec.crop, 3)
    return torch.randint(0, 256, shape, dtype=torch.uint8)


def segment_flops(encoder) -> int:
    enc = with_segments(encoder, 1)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        enc(frames(enc.spec, 1))
    return counter.get_total_flops()


def throughput(encoder, x: torch.Tensor, warmup: int, iters: int) -> float:
    """Segments per second over `iters` timed calls."""
    with torch.inference_mode():
        for _ in range(warmup):
            encoder(x)
        start = time.perf_counter()
        for _ in range(iters):
            encoder(x)
        elapsed = time.perf_counter() - start
    return iters * x.shape[0] * encoder.spec.segments / elapsed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-e", "--encoders", nargs="+", default=list(DEFAULT))
    ap.add_argument("--batch", type=int, default=1, help="GIFs per call (each S segments)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); "
        f"batch {args.batch} GIF(s), {args.warmup} warm-up + {args.iters} timed calls; "
        "seg/s = segments (clips or frames) per second"
    )
    header = (
        f"{'encoder':<24} {'S x T @ crop':>14} {'D':>5} {'params M':>9} {'GMACs/seg':>10} "
        f"{'GFLOPs/seg':>11} {'eager seg/s':>12} {'ch-last seg/s':>14}"
    )
    print(header)
    print("-" * len(header))
    for name in args.encoders:
        enc = build(name)
        s = enc.spec
        params = sum(p.numel() for n, p in enc.named_parameters() if not n.startswith("_fc."))
        flops = segment_flops(enc)
        x = frames(s, args.batch)
        eager = throughput(enc, x, args.warmup, args.iters)
        last = throughput(enc.set_channels_last(True), x, args.warmup, args.iters)
        weights = "" if not enc.random_init else "  (random init)"
        print(
            f"{name:<24} {f'{s.segments} x {s.frames_per_segment} @ {s.crop}':>14} "
            f"{enc.feature_dim:>5} {params / 1e6:>9.2f} {flops / 2e9:>10.2f} {flops / 1e9:>11.2f} "
            f"{eager:>12.2f} {last:>14.2f}{weights}",
            flush=True,
        )


if __name__ == "__main__":
    main()
