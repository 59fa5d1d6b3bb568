"""The default path (--backend auto --precision auto) against onnxruntime fp32 and OpenVINO
fp32 on one model, model alone (random frames), interleaved rounds in one process; with
--int8, int8 graphs of the same model on each installed backend beside them. Prints the
recorded precision check the auto choice read, and the load average beside every figure.

    .venv/bin/python benchmarks/bench_default_path.py [MODEL.onnx] [--int8 INT8.onnx ...]
        [--batch 8] [--runs 7]
    # default MODEL: the make-demo model; for ResNeXt-101: benchmarks/bench_study_model.sh
"""

from __future__ import annotations

import argparse
import functools
import statistics
from pathlib import Path

import numpy as np
from machine import cpu_line, interleaved, load_tag

from gifsent_infer.running.engine import installed_backends
from gifsent_infer.running.precision import describe_checks
from gifsent_infer.running.scorer import Scorer


def scorers(model: Path, int8: list[Path]) -> dict[str, Scorer]:
    out = {
        "ort fp32": Scorer(model, device="cpu", backend="onnxruntime", precision="fp32"),
        "ov fp32": Scorer(model, device="cpu", backend="openvino", precision="fp32"),
        "default (auto/auto)": Scorer(model, device="cpu", backend="auto", precision="auto"),
    }
    for path in int8:
        for backend in installed_backends():
            out[f"{backend} int8 {path.stem}"] = Scorer(path, device="cpu", backend=backend)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "model", nargs="?", type=Path, default=Path("demo-home/models/gifsent-rnn.onnx")
    )
    ap.add_argument("--int8", type=Path, nargs="*", default=[], help="int8 graphs to time too")
    ap.add_argument("--batch", type=int, default=8, help="GIFs per timed call")
    ap.add_argument("--runs", type=int, default=7, help="interleaved rounds after one warm-up")
    args = ap.parse_args(argv)
    print(f"{cpu_line()}\n{args.model}; load at start {load_tag()}")
    sc = scorers(args.model, args.int8)
    first = next(iter(sc.values()))
    for line in describe_checks(first.session.document.metrics.get("precision_checks")):
        print(f"  recorded: {line}")
    shape = first.session.input_shape
    x = np.random.default_rng(0).integers(0, 255, (args.batch, *shape), dtype=np.uint8)
    for k, s in sc.items():
        c = getattr(s.session, "choice", None)
        why = f" ({c.backend_reason}; {c.precision.reason})" if c is not None else ""
        print(f"  {k} -> {s.backend} {s.session.precision}{why}")
    times = interleaved({k: functools.partial(s.session.run, x) for k, s in sc.items()}, args.runs)
    base = statistics.median(times["ort fp32"])
    print(f"model alone, batch {args.batch} GIFs, median of {args.runs} interleaved rounds:")
    for k, t in times.items():
        med = statistics.median(t)
        print(f"  {k:34s} {args.batch / med:8.2f} GIFs/s {base / med:6.2f}x ort fp32 {load_tag()}")


if __name__ == "__main__":
    main()
