"""Benchmark: what the timeline and a K-head ensemble cost in the fused graph (issue 22).

In one process, for one encoder with random weights (the cost does not depend on them) and a
head with its default config, three fused fp32 graphs are exported and timed in onnxruntime
on the same frames, interleaved (benchmarks/machine.py):
  single    `scores` only (the graph before issue 22)
  timeline  `scores` + `segment_scores` (what gifsent-export writes now)
  K heads   K heads on one encoder: `scores` (mean), `scores_std`, `segment_scores`
The issue's bar: the K-head graph's model time <= 1.15x the single-head graph's (the encoder
runs once and dominates).

    .venv/bin/python benchmarks/bench_heads.py [--encoder efficientnet-lite0] [--head rnn] [--k 3] [--batch 4] [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch
from machine import cpu_line, interleaved

from gifsent_export.parity import ort_session
from gifsent_models.heads import EnsembleHead, create_head
from gifsent_models.onnx import encoder_example, export_proto
from gifsent_models.registry import create_encoder
from gifsent_models.scorer import GifScorer, NamedOutputs


def _graph(scorer: GifScorer, names: tuple[str, ...], example):
    return ort_session(
        export_proto(NamedOutputs(scorer, names), example=example, output_names=names)
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--head", default="rnn", choices=["maxpool", "rnn", "linear"])
    ap.add_argument("--k", type=int, default=3, help="heads in the ensemble")
    ap.add_argument("--batch", type=int, default=4, help="GIFs per model call")
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    enc = create_encoder(args.encoder, random_init=True).eval()
    heads = [create_head(args.head, enc.feature_dim).eval() for _ in range(args.k)]
    single = GifScorer(enc, heads[0]).eval()
    ens = GifScorer(enc, EnsembleHead(heads)).eval()
    example = encoder_example(enc, batch=max(2, args.batch))
    frames = example.numpy()
    graphs = {
        "single": (_graph(single, ("scores",), example), ("scores",)),
        "timeline": (_graph(single, ("scores", "segment_scores"), example), None),
        f"{args.k} heads": (_graph(ens, ("scores", "scores_std", "segment_scores"), example), None),
    }

    def call(engine, names):
        return lambda: engine.run_all({"frames": frames}, list(names or engine_outputs(engine)))

    def engine_outputs(engine):
        return [n for o in engine.outputs for n in o.names]

    times = interleaved({k: call(e, n) for k, (e, n) in graphs.items()}, args.runs)
    spec = enc.spec
    print(f"# bench_heads: {cpu_line()}")
    print(f"# load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min)")
    print(
        f"# encoder {args.encoder} (S={spec.segments}, T={spec.frames_per_segment}, "
        f"crop {spec.crop}), head {args.head} default config, batch {args.batch}, "
        f"{args.runs} interleaved runs, onnxruntime CPU fp32"
    )
    base = statistics.median(times["single"])
    print("| graph | median ms per call | vs single head |")
    print("|---|---:|---:|")
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"| {k} | {med * 1e3:.1f} | {med / base:.3f}x |")


if __name__ == "__main__":
    main()
