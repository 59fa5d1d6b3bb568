"""Benchmark: every installed engine backend x precision on the fused graph, vs PyTorch channels-last; and end to end.

For each encoder (resnext101-kinetics: 4 clips of 16x112x112 per GIF, random weights since the
Kinetics checkpoint cannot be downloaded here; efficientnet-lite0: 8 frames of 224x224 per GIF,
ImageNet weights) with an LSTM head (random init: no trained head ships with the repository),
in ONE process, interleaved rounds, batch of one GIF per call:

  PyTorch eager channels-last (the reference speed of the training framework),
  onnxruntime fp32 and int8 (QDQ encoder, float head),
  OpenVINO fp32 (INFERENCE_PRECISION_HINT=f32), bf16 (where the CPU has native bf16) and int8
  (the same QDQ graph),

all through gifsent_infer.running.engine (the code users run). Reports best and median clips/s (a
"clip" is one segment: 16 frames for ResNeXt, 1 frame for Lite0), the ratio to onnxruntime
fp32, and for every variant the max abs difference and the mean per-emotion Spearman of its
scores vs fp32 (onnxruntime) on the same held-out GIFs. What the Spearman compares: the
outputs of a random-init LSTM head on real GIFs' features, so it measures how well a
precision keeps the ordering that the encoder's features induce, not a trained model's
emotion ranking.

End to end (--e2e, EfficientNet-Lite0 by default): Scorer.score_many on a folder of real
GIFs per backend, vs the model alone on the pre-decoded frames (same batches), vs decoding
and sampling alone (the reader, same worker threads).

    .venv/bin/python benchmarks/bench_engines.py [--encoders resnext101-kinetics efficientnet-lite0]
        [--runs 5] [--gifs ../shared/gifs/real] [--e2e efficientnet-lite0]
    # the default path end to end on a trained model (issue 25's >= 90% figure):
    .venv/bin/python benchmarks/bench_engines.py --encoders --e2e demo-home/models/gifsent-rnn.onnx
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_line, interleaved, load_tag

from gifsent_export.frames import generate_gifs, gif_files, load_frames
from gifsent_export.parity import compare
from gifsent_export.precision import merge_encoder_head, quantize_encoder
from gifsent_infer.contract import HeadInfo, ModelDocument, TargetScale
from gifsent_infer.running.engine import cpu_bf16_reason, installed_backends, open_engine
from gifsent_models.heads import create_head
from gifsent_models.onnx import FEATURES_NAME, export_proto, save_proto, set_metadata
from gifsent_models.registry import create_encoder
from gifsent_models.scorer import GifScorer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GIFS = REPO.parent / "shared" / "gifs" / "real"
if not DEFAULT_GIFS.is_dir():
    DEFAULT_GIFS = Path("/work/shared/gifs/real")


def split_gifs(folder: Path, tmp: Path, n_cal: int, n_eval: int, spec) -> tuple:
    """Calibration and held-out GIFs: real ones from `folder` when present, else generated."""
    paths = gif_files([folder]) if folder.is_dir() else []
    source = f"real GIFs from {folder}"
    if len(paths) < n_cal + 3:
        paths = generate_gifs(tmp / "gen", n_cal + n_eval, seed=5, size=spec.size + 16)
        source = "generated GIFs"
    cal, _ = load_frames(paths[:n_cal], spec, limit=n_cal)
    ev, used = load_frames(paths[n_cal:], spec, limit=n_eval)
    return cal, ev, f"{len(used)} held-out {source} ({len(cal)} others for calibration)"


def bench_encoder(name: str, args, threads: int, tmp: Path) -> list[dict]:
    try:
        encoder = create_encoder(name)
        weights = "pretrained"
    except Exception:  # no pretrained weights here: random weights time the same
        encoder = create_encoder(name, random_init=True)
        weights = "random init"
    torch.manual_seed(0)
    scorer = GifScorer(encoder, create_head("rnn", encoder.feature_dim)).eval()
    spec = encoder.spec
    cal, ev, source = split_gifs(args.gifs, tmp, args.calibration, args.eval, spec)
    clips = spec.segments
    print(
        f"\n{name} ({weights}) + random LSTM head: {clips} clips x {spec.frames_per_segment} "
        f"frame(s) x {spec.crop}px per GIF; Spearman/diffs on {source}",
        flush=True,
    )

    x2 = torch.from_numpy(np.ascontiguousarray(ev[:2]))
    t0 = time.perf_counter()
    enc = export_proto(encoder, example=x2, output_names=(FEATURES_NAME,))
    with torch.no_grad():
        feats = encoder(x2)
    head = export_proto(scorer.head, example=feats, input_name=FEATURES_NAME)
    fp32 = merge_encoder_head(enc, head)
    print(f"  export: {time.perf_counter() - t0:.1f} s", flush=True)
    int8 = {}
    for recipe in args.recipes:
        t0 = time.perf_counter()
        int8[recipe] = merge_encoder_head(quantize_encoder(enc, cal, recipe=recipe), head)
        print(
            f"  int8 ({recipe}) quantization on {len(cal)} GIFs: {time.perf_counter() - t0:.1f} s",
            flush=True,
        )

    engines: dict[str, object] = {}
    have = installed_backends()
    for backend in ("onnxruntime", "openvino"):
        if backend not in have:
            continue
        engines[f"{backend} fp32"] = open_engine(
            fp32, backend=backend, device="cpu", threads=threads
        )
        if backend == "openvino" and cpu_bf16_reason() is None:
            engines["openvino bf16"] = open_engine(
                fp32, backend="openvino", device="cpu", threads=threads, precision="bf16"
            )
        for recipe, g in int8.items():
            engines[f"{backend} int8 {recipe}"] = open_engine(
                g, backend=backend, device="cpu", threads=threads
            )

    # accuracy vs fp32 on the held-out GIFs (one GIF per call, as timed)
    ref = engines["onnxruntime fp32"].run_batched(ev, batch_size=1)
    scorer_cl = GifScorer(encoder, scorer.head).eval()
    encoder.set_channels_last(True)
    with torch.inference_mode():
        torch_scores = np.concatenate(
            [scorer_cl(torch.from_numpy(ev[i : i + 1])).numpy() for i in range(len(ev))]
        )
    quality = {"pytorch channels-last": compare(ref, torch_scores)}
    for label, e in engines.items():
        quality[label] = compare(ref, e.run_batched(ev, batch_size=1))

    x = np.ascontiguousarray(ev[:1])
    xt = torch.from_numpy(x)

    def eager():
        with torch.inference_mode():
            scorer_cl(xt)

    variants = {"pytorch channels-last": eager}
    for label, e in engines.items():
        variants[label] = functools.partial(e.run, x)
    times = interleaved(variants, args.runs)
    base = min(times["onnxruntime fp32"])
    print(
        f"  {'variant':28s} {'best clips/s':>12s} {'median':>8s} {'vs ort fp32':>11s} "
        f"{'max abs diff':>12s} {'mean Spearman':>13s} {'min':>6s}"
    )
    rows = []
    for label, t in times.items():
        q = quality[label]
        row = {
            "encoder": name,
            "variant": label,
            "best": clips / min(t),
            "median": clips / float(np.median(t)),
            "ratio": base / min(t),
            "max_abs": q.max_abs,
            "spearman": q.mean_spearman,
            "min_spearman": q.min_spearman,
        }
        rows.append(row)
        print(
            f"  {label:28s} {row['best']:12.2f} {row['median']:8.2f} {row['ratio']:10.2f}x "
            f"{row['max_abs']:12.2e} {row['spearman']:13.4f} {row['min_spearman']:6.3f} {load_tag()}",
            flush=True,
        )
    encoder.set_channels_last(False)
    return rows


def random_e2e_model(name: str, paths: list[Path], tmp: Path) -> Path:
    """A fused graph of the named encoder (its weights where they load, else random) and a
    random-init LSTM head: no recorded precision checks, so auto runs it in fp32."""
    try:
        encoder = create_encoder(name)
    except Exception:
        encoder = create_encoder(name, random_init=True)
    torch.manual_seed(0)
    head = create_head("rnn", encoder.feature_dim)
    scorer = GifScorer(encoder, head).eval()
    spec = encoder.spec
    frames, _ = load_frames(paths[:2], spec)
    model = export_proto(scorer, example=torch.from_numpy(frames))
    doc = ModelDocument(
        sampling=spec,
        normalization=encoder.normalization,
        encoder=encoder.info(),
        head=HeadInfo("rnn", {}),
        target=TargetScale("minmax", low=[-1.0] * 17, high=[1.0] * 17),
    )
    set_metadata(model, doc)
    return save_proto(model, tmp / f"e2e-{name}.onnx")


def bench_e2e(name: str, args, threads: int, tmp: Path) -> None:
    """Scorer.score_many per backend vs model alone on pre-decoded frames vs decoding alone.
    `name` is an encoder (a random-head graph is built) or a model file (e.g. make demo's,
    with its recorded precision checks): then the default path (auto/auto) runs beside fp32."""
    from concurrent.futures import ThreadPoolExecutor

    from gifsent_infer.reading.gifio import read_gif
    from gifsent_infer.running.batch import default_workers
    from gifsent_infer.running.modelfile import document_from, read_metadata
    from gifsent_infer.running.scorer import Scorer

    paths = gif_files([args.gifs]) if args.gifs.is_dir() else []
    if not paths:
        paths = generate_gifs(tmp / "e2e", 24, seed=9, size=256)
    paths = paths * max(1, args.e2e_repeat)
    trained = name.endswith(".onnx")
    path = Path(name) if trained else random_e2e_model(name, paths, tmp)
    spec = document_from(read_metadata(path), path).sampling
    variants = [(b, "fp32") for b in installed_backends()[::-1]]
    if trained:
        variants.append(("auto", "auto"))
    workers = default_workers()
    bs = 8
    print(
        f"\nend to end, {name}: {len(paths)} GIF files, batch {bs}, {workers} reader threads, "
        f"{threads} inference threads",
        flush=True,
    )

    def decode_all():
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda p: read_gif(p, spec).frames, paths))

    t0 = time.perf_counter()
    decoded = np.stack(decode_all())
    t_decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    decode_all()
    t_decode = min(t_decode, time.perf_counter() - t0)
    print(
        f"  decode+sample alone: {t_decode:.2f} s ({len(paths) / t_decode:.1f} GIFs/s) {load_tag()}"
    )
    for backend, precision in variants:
        s = Scorer(path, device="cpu", backend=backend, threads=threads, precision=precision)
        if backend == "auto":
            backend = f"default: {s.session.backend} {s.session.precision}"
        s.session.expect_batch(bs)  # as score_many does: the warm-up compiles the static twin
        s.session.run(decoded[:bs])  # warm-up
        best_model = best_e2e = float("inf")
        for _ in range(2):  # interleaved: model alone, then end to end
            t0 = time.perf_counter()
            for i in range(0, len(decoded), bs):
                s.session.run(decoded[i : i + bs])
            best_model = min(best_model, time.perf_counter() - t0)
            t0 = time.perf_counter()
            n_ok = sum(r.ok for r in s.score_many(paths, batch_size=bs, workers=workers))
            best_e2e = min(best_e2e, time.perf_counter() - t0)
        # What the machine allows: the model's and the decoder's CPU time together, spread
        # over the cores (each ran alone on `threads` / `workers` threads above).
        cores = len(os.sched_getaffinity(0))
        ideal = max(best_model, (best_model * threads + t_decode * workers) / cores)
        print(
            f"  {backend:12s} model alone {best_model:.2f} s ({len(paths) / best_model:.1f} GIFs/s); "
            f"end to end {best_e2e:.2f} s ({len(paths) / best_e2e:.1f} GIFs/s, {n_ok} ok); "
            f"ideal (model + decode CPU time / {cores} cores) {ideal:.2f} s: "
            f"end to end reaches {100 * ideal / best_e2e:.0f}% of it {load_tag()}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--encoders",
        nargs="*",
        default=["resnext101-kinetics", "efficientnet-lite0"],
        help="encoders for the backend x precision table (none: end to end only)",
    )
    ap.add_argument("--runs", type=int, default=5, help="timed rounds after one warm-up each")
    ap.add_argument("--gifs", type=Path, default=DEFAULT_GIFS, help="folder of real GIFs")
    ap.add_argument("--calibration", type=int, default=8, help="int8 calibration GIFs")
    ap.add_argument("--eval", type=int, default=22, help="held-out GIFs for diffs/Spearman")
    ap.add_argument(
        "--recipes", nargs="+", default=["minmax"], help="int8 recipes (export/precision.py)"
    )
    ap.add_argument(
        "--e2e",
        nargs="*",
        default=["efficientnet-lite0"],
        help="end-to-end encoders, or model files (.onnx: fp32 per backend and the default path)",
    )
    ap.add_argument(
        "--e2e-repeat", type=int, default=2, help="score the GIF folder this many times"
    )
    args = ap.parse_args(argv)
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    import onnxruntime

    versions = f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    try:
        import openvino

        versions += f", openvino {openvino.__version__.split('-')[0]}"
    except ImportError:
        versions += ", openvino not installed"
    print(f"{cpu_line()}\n{versions}; {threads} threads everywhere")
    print(f"load average at start: {load_tag()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.encoders:
            bench_encoder(name, args, threads, Path(tmp))
        for name in args.e2e:
            bench_e2e(name, args, threads, Path(tmp))
    print(f"load average at end: {os.getloadavg()[0]:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
