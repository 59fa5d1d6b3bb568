"""Benchmark of `search --embeddings`: exact cosine (numpy) against faiss HNSW, per query.

    .venv/bin/python benchmarks/bench_similar.py [--n 10000 100000] [--dim 1280] [--queries 50]

Vectors are random (normal, then L2-normalised), D = 1280 as EfficientNet-Lite0's features
(ResNeXt-101's are 2048). For each N: exact query time (one matrix-vector product and a
partial sort, gifsent_infer.views.similar.cosine_knn), HNSW build time and query time
(M=32, efSearch=128, inner product), and HNSW's recall@10 against the exact answer. Exact
and HNSW queries are timed interleaved (benchmarks/machine.py). Prints the load average:
this machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import cpu_line, interleaved  # noqa: E402

from gifsent_infer.views.similar import ann_knn, build_ann, cosine_knn, normalise  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    print(cpu_line())
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    try:
        import faiss

        faiss.omp_set_num_threads(os.cpu_count() or 1)
    except ImportError:
        faiss = None
        print("faiss is not installed (pip install 'gifsent[ann]'): exact search only")
    rng = np.random.default_rng(0)
    for n in args.n:
        unit = normalise(rng.normal(size=(n, args.dim)).astype(np.float32))
        qs = rng.integers(0, n, args.queries)
        variants = {
            "exact": lambda u=unit, qq=qs: [cosine_knn(u, u[q], args.k, exclude=q) for q in qq]
        }
        build_s = float("nan")
        index = None
        if faiss is not None:
            t = time.perf_counter()
            index = build_ann(unit)
            build_s = time.perf_counter() - t
            variants["hnsw"] = lambda u=unit, qq=qs, ix=index: [
                ann_knn(u, u[q], args.k, exclude=q, index=ix) for q in qq
            ]
        times = interleaved(variants, runs=3)
        per_q = {k: statistics.median(v) / len(qs) * 1e3 for k, v in times.items()}
        recall = float("nan")
        if index is not None:
            hits = 0
            for q in qs:
                exact = set(cosine_knn(unit, unit[q], args.k, exclude=q)[0].tolist())
                approx = set(ann_knn(unit, unit[q], args.k, exclude=q, index=index)[0].tolist())
                hits += len(exact & approx)
            recall = hits / (len(qs) * args.k)
        print(
            f"N={n:>9,} D={args.dim}: exact {per_q['exact']:.2f} ms/query; "
            + (
                f"hnsw build {build_s:.1f} s, {per_q['hnsw']:.3f} ms/query, recall@{args.k} "
                f"{recall:.3f}"
                if index is not None
                else "hnsw -"
            )
            + f"; load average {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
