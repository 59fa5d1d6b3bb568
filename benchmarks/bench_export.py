"""Benchmark: the fused ONNX graph in onnxruntime vs the same model in PyTorch eager, fp32 and int8, on this CPU.

For each encoder (resnext101-kinetics: 16x112x112 clips, random weights are fine for speed;
efficientnet-lite0: 224x224 frames) with the default LSTM head, in one process:
  PyTorch eager (default memory format and channels-last; the faster one is the baseline),
  onnxruntime fp32 (the exported graph), onnxruntime int8 (QDQ encoder, float head).
Reports clips/s (a "clip" is one segment: 16 frames for ResNeXt, 1 frame for Lite0), the
ratio to the baseline, and the share of this machine's FP32 peak, with FLOPs per clip
counted by torch's FlopCounterMode (2 FLOPs per multiply-add).

    .venv/bin/python benchmarks/bench_export.py [--encoders resnext101-kinetics efficientnet-lite0] [--runs 2]
        [--calibration-gifs 16] [--memory-only]   # peak RSS per int8 recipe (mixed, nncf too)
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import interleaved, load_tag

from gifsent_export.frames import generate_gifs, load_frames
from gifsent_export.parity import ort_session, run_session
from gifsent_export.precision import merge_encoder_head, quantize_encoder
from gifsent_models.heads import create_head
from gifsent_models.onnx import FEATURES_NAME, export_proto
from gifsent_models.registry import create_encoder
from gifsent_models.scorer import GifScorer


def cpu_peak() -> tuple[float, str]:
    """FP32 peak FLOP/s of the CPUs this process may use, and the assumption behind it."""
    cores = len(os.sched_getaffinity(0))
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", text)
    model = model.group(1).strip() if model else "unknown CPU"
    flags = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())
    ghz = None
    m = re.search(r"@\s*([\d.]+)\s*GHz", model)
    if m:
        ghz = float(m.group(1))  # nominal clock from the model name
    else:
        mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", text)
        ghz = float(mhz.group(1)) / 1000 if mhz else 1.0
    if "avx512f" in flags:
        per_cycle, why = 64, "AVX-512: 2 FMA units x 16 fp32 lanes x 2 (assumed 2 FMA-512 ports)"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, why = 32, "AVX2/FMA: 2 FMA units x 8 fp32 lanes x 2 (as Zen 3)"
    else:
        per_cycle, why = 16, "no FMA: assumed 16"
    peak = cores * ghz * 1e9 * per_cycle
    return peak, f"{cores} cores of {model} at {ghz:.2f} GHz x {per_cycle} FP32 FLOP/cycle ({why})"


def flops_per_clip(module: torch.nn.Module, x: torch.Tensor, clips: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() / clips


def bench_encoder(
    name: str, runs: int, threads: int, peak: float, tmp: Path, calib_gifs: int = 16
) -> list[tuple]:
    try:
        encoder = create_encoder(name)
    except Exception:  # no pretrained weights here: random weights time the same
        encoder = create_encoder(name, random_init=True)
    torch.manual_seed(0)
    scorer = GifScorer(encoder, create_head("rnn", encoder.feature_dim)).eval()
    spec = encoder.spec
    frames, _ = load_frames(generate_gifs(tmp / name, 3, seed=5, size=spec.size + 16), spec)
    x = frames[:1]  # one GIF = S clips per call
    clips = spec.segments
    xt = torch.from_numpy(x)
    fpc = flops_per_clip(scorer, xt, clips)
    print(
        f"\n{name}: S={spec.segments} x T={spec.frames_per_segment} x {spec.crop}px, "
        f"{fpc / 1e9:.2f} GFLOP per clip, batch 1 GIF = {clips} clips, {runs} timed runs",
        flush=True,
    )

    # channels-last runs on a copy, so both eager variants can be timed in the same rounds.
    scorer_cl = copy.deepcopy(scorer)
    scorer_cl.encoder.set_channels_last(True)
    with torch.no_grad():
        ref = scorer(xt).numpy()

    t0 = time.perf_counter()
    x2 = torch.from_numpy(np.concatenate([x, x]))
    full = export_proto(scorer, example=x2)
    print(f"  export (torchscript): {time.perf_counter() - t0:.1f} s", flush=True)
    sess = ort_session(full, threads=threads)
    got = sess.run(x)
    print(f"  fp32 onnxruntime vs PyTorch: max abs diff {np.abs(got - ref).max():.2e}")

    t0 = time.perf_counter()
    enc = export_proto(encoder, example=x2, output_names=(FEATURES_NAME,))
    with torch.no_grad():
        feats = encoder(x2)
    head = export_proto(scorer.head, example=feats, input_name=FEATURES_NAME)
    int8 = merge_encoder_head(quantize_encoder(enc, frames[1:3]), head)
    print(f"  int8 quantization (2 calibration GIFs): {time.perf_counter() - t0:.1f} s", flush=True)
    sess8 = ort_session(int8, threads=threads)
    got8 = sess8.run(x)
    print(f"  int8 vs fp32 onnxruntime: max abs diff {np.abs(got8 - got).max():.2e}")

    def eager(module):
        def call():
            with torch.no_grad():
                module(xt)

        return call

    variants = {
        "pytorch eager": eager(scorer),
        "pytorch eager channels-last": eager(scorer_cl),
        "onnxruntime fp32": lambda: sess.run(x),
        "onnxruntime int8": lambda: sess8.run(x),
    }
    times = interleaved(variants, runs)
    best = {k: min(v) for k, v in times.items()}
    base_name = min(("pytorch eager", "pytorch eager channels-last"), key=best.get)
    base_t, fp32_t = best[base_name], best["onnxruntime fp32"]
    print(
        f"  {'variant (best of ' + str(runs) + ')':30s} {'clips/s':>9s} {'median':>8s} "
        f"{'vs eager':>9s} {'vs ort fp32':>11s} {'% FP32 peak':>11s}"
    )
    rows = []
    for label, t in best.items():
        cps = clips / t
        med = clips / float(np.median(times[label]))
        rows.append((label, cps))
        print(
            f"  {label:30s} {cps:9.2f} {med:8.2f} {base_t / t:8.2f}x {fp32_t / t:10.2f}x "
            f"{100 * cps * fpc / peak:10.1f}% {load_tag()}"
        )
    print(f"  baseline: {base_name}")
    if calib_gifs:
        calibration_memory(enc, spec, calib_gifs, tmp / f"{name}-calib")
    return [(name, label, cps) for label, cps in rows]


def memory_only(name: str, tmp: Path, calib_gifs: int, only: list[str] | None = None) -> None:
    """The calibration peak memory per recipe, without the timing (--memory-only)."""
    try:
        encoder = create_encoder(name)
    except Exception:  # random weights calibrate the same
        encoder = create_encoder(name, random_init=True)
    frames, _ = load_frames(
        generate_gifs(tmp / name, 2, seed=5, size=encoder.spec.size + 16), encoder.spec
    )
    enc = export_proto(
        encoder.eval(), example=torch.from_numpy(frames[:2]), output_names=(FEATURES_NAME,)
    )
    print(f"\n{name}: load {load_tag()}")
    calibration_memory(enc, encoder.spec, calib_gifs, tmp / f"{name}-calib", only)


def calibration_memory(enc, spec, n_gifs: int, tmp: Path, only: list[str] | None = None) -> None:
    """Peak memory of int8 calibration per recipe: each recipe quantizes the encoder in a
    fresh child process on `n_gifs` GIFs (export's default: 16); its max RSS is the figure."""
    import subprocess

    import onnx

    from gifsent_export.precision import EXTRA_RECIPES, INT8_RECIPES

    tmp.mkdir(parents=True, exist_ok=True)
    onnx.save(enc, str(tmp / "encoder.onnx"))
    frames, _ = load_frames(
        generate_gifs(tmp / "gifs", n_gifs, seed=7, size=spec.size + 16), spec, limit=n_gifs
    )
    np.save(tmp / "frames.npy", frames)
    print(f"  int8 calibration peak memory, {len(frames)} GIFs, each recipe in a fresh process:")
    for recipe in INT8_RECIPES + EXTRA_RECIPES:
        if only and recipe not in only:
            continue
        if recipe == "nncf" and importlib.util.find_spec("nncf") is None:
            print("    nncf       skipped (pip install 'gifsent[nncf]')")
            continue
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, __file__, "--calibration-child", recipe, str(tmp)],
            capture_output=True,
            text=True,
        )
        peak = res.stdout.strip().splitlines()[-1] if res.returncode == 0 else "failed"
        print(
            f"    {recipe:10s} peak RSS {peak} ({time.perf_counter() - t0:.0f} s) {load_tag()}",
            flush=True,
        )


class _MemoryJudge:
    """A judge for the memory figure of mixed and nncf: every probe and validation really runs
    the candidate (an onnxruntime session on one GIF), the int8 graph fails the gate and the
    first candidate holds, so mixed spends its whole probe budget and nncf its calibration."""

    gate = 0.98

    def __init__(self, frames: np.ndarray) -> None:
        self.frames, self.judged = frames, 0

    def _run(self, encoder) -> float:
        out = run_session(ort_session(encoder), self.frames[:1])
        return float(np.tanh(np.abs(out).mean()))

    def probe(self, encoder) -> float:
        return self._run(encoder)

    def judge(self, encoder) -> float:
        self.judged += 1
        self._run(encoder)
        return 0.0 if self.judged == 1 else 1.0

    def held_out(self) -> np.ndarray:
        return self.frames

    def validate(self, encoder, indices) -> float:
        self._run(encoder)
        return 1.0


def calibration_child(recipe: str, folder: Path) -> None:
    import resource

    import onnx

    # a cap, so a recipe that would take the machine's memory fails here instead of
    # inviting the OOM killer (GIFSENT_BENCH_MEM_CAP_GIB, default 12)
    cap = int(float(os.environ.get("GIFSENT_BENCH_MEM_CAP_GIB", "12")) * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    frames = np.load(folder / "frames.npy")
    judge = _MemoryJudge(frames) if recipe in ("mixed", "nncf") else None
    quantize_encoder(onnx.load(str(folder / "encoder.onnx")), frames, recipe=recipe, judge=judge)
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{kib / 2**20:.2f} GiB")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", nargs="+", default=["resnext101-kinetics", "efficientnet-lite0"])
    ap.add_argument(
        "--runs", type=int, default=3, help="timed rounds (after 1 warm-up per variant)"
    )
    ap.add_argument(
        "--calibration-gifs",
        type=int,
        default=16,
        help="GIFs for the int8 calibration peak-memory figure per recipe (0: skip it)",
    )
    ap.add_argument(
        "--memory-only", action="store_true", help="only the calibration peak memory per recipe"
    )
    ap.add_argument("--recipes", nargs="+", default=None, help="--memory-only: these recipes only")
    ap.add_argument("--calibration-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.calibration_child:
        calibration_child(args.calibration_child[0], Path(args.calibration_child[1]))
        return
    if args.memory_only:
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.encoders:
                memory_only(name, Path(tmp), args.calibration_gifs, args.recipes)
        return
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    peak, how = cpu_peak()
    print(
        f"torch {torch.__version__}, {threads} threads; FP32 peak {peak / 1e9:.0f} GFLOP/s = {how}"
    )
    print(f"load average at start: {load_tag()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.encoders:
            bench_encoder(name, args.runs, threads, peak, Path(tmp), args.calibration_gifs)


if __name__ == "__main__":
    main()
