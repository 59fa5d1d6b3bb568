"""Benchmark: int8 and bf16 judged on a TRAINED head — the precisions a run's model can use.

Random heads rank GIFs by noise, so a precision's Spearman against fp32 means little there.
This takes a finished training run (the demo's, or a study-path ResNeXt-101 run on demo data)
and, through gifsent-export's own library:
  1. exports its best model in fp32, recording the bf16 check (OpenVINO, native-bf16 CPUs);
  2. exports int8 with each recipe (minmax, percentile, sensitive, mixed) at the ranking
     gate (mean per-emotion Spearman >= 0.98 vs fp32 on the run's held-out test GIFs, on every
     installed backend); a refused recipe is shown with its measurement;
  3. times the model alone, interleaved, one process: onnxruntime fp32 (the baseline),
     OpenVINO fp32, bf16 (where native) and int8 per written recipe, and onnxruntime int8;
each figure with the load average beside it (machine.py warns above 1.5).

    .venv/bin/python benchmarks/bench_trained_int8.py --run $GIFSENT_HOME/runs/<id>
        [--model best] [--eval 32] [--calibration 8] [--runs 5] [--batch 4]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_line, interleaved, load_tag

from gifsent_export.api import ExportOptions, export_checkpoint
from gifsent_export.frames import load_frames
from gifsent_export.parity import ParityError
from gifsent_export.precision import EXTRA_RECIPES, INT8_RECIPES
from gifsent_infer.running.engine import cpu_bf16_reason, installed_backends, open_engine
from gifsent_infer.running.precision import describe_checks
from gifsent_train.run import RunLayout, latest_run


def checkpoint_of(run: RunLayout, model: str) -> Path:
    if model == "best":
        best = run.checkpoints / "best.pt"
        return best.resolve() if best.is_file() else best
    return run.checkpoint(model)


def export_all(ckpt: Path, run: RunLayout, args, tmp: Path) -> tuple[Path, dict, dict]:
    """fp32 (with its bf16 check) and one int8 graph per recipe that holds the gate."""
    base = ExportOptions(
        run=run,
        eval_count=args.eval,
        parity_count=min(8, args.eval),
        calibration_count=args.calibration,
        progress=lambda m: print(f"    · {m}", file=sys.stderr, flush=True),
    )
    t0 = time.perf_counter()
    fp32 = export_checkpoint(ckpt, tmp / "fp32.onnx", base)
    print(f"  fp32 export {time.perf_counter() - t0:.0f} s {load_tag()}", flush=True)
    for line in describe_checks(fp32.document.metrics.get("precision_checks")):
        print(f"    {line}")
    int8, records = {}, {}
    for recipe in args.recipes:
        t0 = time.perf_counter()
        try:
            r = export_checkpoint(
                ckpt, tmp / f"int8-{recipe}.onnx", base, precision="int8", int8_recipe=recipe
            )
            int8[recipe] = r.path
            records[recipe] = r.document.metrics["precision_checks"]["int8"][recipe]
            verdict = "holds"
        except ParityError as e:
            records[recipe] = None
            verdict = "refused: " + str(e).splitlines()[-1].strip()[:300]
        print(
            f"  int8 {recipe:10s} {verdict} ({time.perf_counter() - t0:.0f} s; "
            f"process peak RSS so far {peak_rss_gib():.2f} GiB) {load_tag()}",
            flush=True,
        )
        rec = records.get(recipe)
        if rec:
            for line in describe_checks({"int8": {recipe: rec}}):
                print(f"    {line}")
    return fp32.path, int8, records


def peak_rss_gib() -> float:
    """This process's peak RSS (an upper bound on any one recipe's calibration and search)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def time_variants(fp32: Path, int8: dict, frames: np.ndarray, args, clips: int) -> None:
    have = installed_backends()
    engines = {}
    if "onnxruntime" in have:
        engines["onnxruntime fp32"] = open_engine(fp32, backend="onnxruntime", device="cpu")
    if "openvino" in have:
        engines["openvino fp32"] = open_engine(fp32, backend="openvino", device="cpu")
        if cpu_bf16_reason() is None:
            engines["openvino bf16"] = open_engine(
                fp32, backend="openvino", device="cpu", precision="bf16"
            )
    for recipe, path in int8.items():
        for backend in have:
            engines[f"{backend} int8 {recipe}"] = open_engine(path, backend=backend, device="cpu")
    x = np.ascontiguousarray(frames[: args.batch])
    times = interleaved({k: functools.partial(e.run, x) for k, e in engines.items()}, args.runs)
    base = min(times.get("onnxruntime fp32") or next(iter(times.values())))
    print(f"  model alone, batch {len(x)} GIFs, best of {args.runs} interleaved rounds:")
    for label, t in times.items():
        gps = len(x) / min(t)
        print(
            f"    {label:30s} {gps:8.2f} GIFs/s {gps * clips:8.2f} clips/s "
            f"{base / min(t):6.2f}x ort fp32 {load_tag()}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="training run (default: the latest)")
    ap.add_argument("--model", default="best", help="best, rnn, maxpool or linear")
    ap.add_argument("--eval", type=int, default=32, help="held-out GIFs for the gate")
    ap.add_argument("--calibration", type=int, default=8, help="int8 calibration GIFs")
    ap.add_argument(
        "--recipes",
        nargs="+",
        default=list(INT8_RECIPES),
        choices=INT8_RECIPES + EXTRA_RECIPES,
        help="int8 recipes to export (nncf: needs gifsent[nncf])",
    )
    ap.add_argument("--runs", type=int, default=5, help="timed rounds after one warm-up")
    ap.add_argument("--batch", type=int, default=4, help="GIFs per timed call")
    ap.add_argument("--no-time", action="store_true", help="record the checks only; no timing")
    ap.add_argument("--json", type=Path, default=None, help="write every recipe's record here")
    args = ap.parse_args(argv)
    run = RunLayout(args.run) if args.run else latest_run()
    if run is None:
        sys.exit("no training run: pass --run DIR (make demo makes one)")
    ckpt = checkpoint_of(run, args.model)
    print(f"{cpu_line()}\nrun {run.root}, checkpoint {ckpt.name}; load at start {load_tag()}")
    with tempfile.TemporaryDirectory(prefix="gifsent-trained-int8-") as tmp:
        fp32, int8, records = export_all(ckpt, run, args, Path(tmp))
        if args.json:
            args.json.write_text(json.dumps(records, indent=1, sort_keys=True))
        if args.no_time:
            return
        from gifsent_infer.running.session import read_document

        spec = read_document(fp32).sampling
        frames, _ = load_frames(run.split_files("test"), spec, limit=max(args.batch, 1))
        time_variants(fp32, int8, frames, args, spec.segments)
    print(f"load at end {load_tag()}; threads: {len(os.sched_getaffinity(0))}")


if __name__ == "__main__":
    main()
