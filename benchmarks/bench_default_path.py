"""The default path (--backend auto --precision auto) against onnxruntime fp32 and OpenVINO
fp32 on one model, model alone (random frames), interleaved rounds in one process; with
--int8, int8 graphs of the same model on each installed backend beside them. Prints the
recorded precision check the auto choice read, and the load average beside every figure.

    .venv/bin/python benchmarks/bench_default_path.py [MODEL.onnx] [--int8 INT8.onnx ...]
        [--batch 8] [--runs 7] [--compile]
    # default MODEL: the make-demo model; for ResNeXt-101: benchmarks/bench_study_model.sh

The OpenVINO rows run a full batch through the engine's static-batch twin, as a Scorer does
(Engine.expect_batch); "default, dynamic batch" is the same engine without it (the path before
the twin). --compile also times, in fresh processes with an empty and then a warm
compiled-model cache, opening the model and the first full batch (the twin's compile).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
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
        "default, dynamic batch": Scorer(model, device="cpu", backend="auto", precision="auto"),
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
    ap.add_argument(
        "--compile", action="store_true", help="also time open + first batch, cold and warm cache"
    )
    ap.add_argument("--compile-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.compile_child:
        compile_child(args.model, args.batch)
        return
    print(f"{cpu_line()}\n{args.model}; load at start {load_tag()}")
    sc = scorers(args.model, args.int8)
    first = next(iter(sc.values()))
    for line in describe_checks(first.session.document.metrics.get("precision_checks")):
        print(f"  recorded: {line}")
    shape = first.session.input_shape
    x = np.random.default_rng(0).integers(0, 255, (args.batch, *shape), dtype=np.uint8)
    for k, s in sc.items():
        if k != "default, dynamic batch":
            s.session.expect_batch(args.batch)  # as Scorer.score_many / from_options do
        c = getattr(s.session, "choice", None)
        why = f" ({c.backend_reason}; {c.precision.reason})" if c is not None else ""
        print(f"  {k} -> {s.backend} {s.session.precision}{why}")
    times = interleaved({k: functools.partial(s.session.run, x) for k, s in sc.items()}, args.runs)
    base = statistics.median(times["ort fp32"])
    print(f"model alone, batch {args.batch} GIFs, median of {args.runs} interleaved rounds:")
    for k, t in times.items():
        med = statistics.median(t)
        twin = getattr(sc[k].session.engine, "static_batches", ())
        how = f" (static batch {twin[0]})" if twin else ""
        print(
            f"  {k + how:34s} {args.batch / med:8.2f} GIFs/s {base / med:6.2f}x ort fp32 "
            f"{load_tag()}"
        )
    if args.compile:
        compile_times(args.model, args.batch)


def compile_child(model: Path, batch: int) -> None:
    """In this fresh process: seconds to open the model on the default path, to run one GIF,
    to run the first full batch (the static twin's compile or cache load) and a second one."""
    t0 = time.perf_counter()
    s = Scorer(model, device="cpu", backend="auto", precision="auto")
    s.session.expect_batch(batch)
    out = {"open": time.perf_counter() - t0}
    x = np.random.default_rng(0).integers(0, 255, (batch, *s.session.input_shape), np.uint8)
    for label, frames in (("one GIF", x[:1]), ("first batch", x), ("second batch", x)):
        t0 = time.perf_counter()
        s.session.run(frames)
        out[label] = time.perf_counter() - t0
    print(json.dumps(out))


def compile_times(model: Path, batch: int) -> None:
    print(f"start-up, fresh processes, batch {batch} (cold: empty $GIFSENT_HOME; warm: again):")
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "GIFSENT_HOME": home}
        for state in ("cold", "warm"):
            cmd = [sys.executable, __file__, str(model), "--batch", str(batch), "--compile-child"]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            t = json.loads(res.stdout.strip().splitlines()[-1])
            twin = t["first batch"] - t["second batch"]
            print(
                f"  {state}: open {t['open']:.2f} s, one GIF {t['one GIF']:.2f} s, first batch "
                f"{t['first batch']:.2f} s, second {t['second batch']:.2f} s "
                f"(the twin's compile or load ~{twin:.2f} s) {load_tag()}"
            )


if __name__ == "__main__":
    main()
