"""Runtime benchmark: end-to-end GIFs/s against the model alone on the same frames, and peak memory.

    .venv/bin/python benchmarks/bench_infer.py                 # small generated GIFs + a small CNN
    .venv/bin/python benchmarks/bench_infer.py --model ~/.gifsent/models/gifsent-rnn.onnx --gifs DIR

Prints, for one set of GIFs:
  decode     read_gif alone, one thread (GIFs/s)
  model      ModelSession.run alone on the same pre-decoded frames, batches of --batch-size
  library    Scorer.score_many end to end (read + decode in the worker pool, model, results)
  cli        `gifsent-infer DIR --out x.csv` in a fresh process: the scoring rate from its
             summary, and GIFs / wall seconds of the whole process (start-up included)
and the peak resident memory (ru_maxrss) of a fresh process running the CLI on --small vs
--large GIFs: with bounded batching the two should be close.

The default model is a small convolutional net with the gifsent contract (16 frames of
112x112, two strided convolutions, mean pool, linear, sigmoid), built with onnx's helper API.
Needs the dev environment (onnx, Pillow).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from gifsent_infer.contract import (
    EncoderInfo,
    HeadInfo,
    ModelDocument,
    Normalization,
    SamplingSpec,
    TargetScale,
)

SPEC = SamplingSpec(segments=4, frames_per_segment=4, fps=10.0, size=128, crop=112)


def build_model(path: Path, spec: SamplingSpec = SPEC) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    n, c = spec.num_frames, spec.crop
    doc = ModelDocument(
        sampling=spec,
        normalization=Normalization(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0)),
        encoder=EncoderInfo(name="bench-cnn", feature_dim=32, weights="random"),
        head=HeadInfo(name="maxpool", config={}),
        target=TargetScale(kind="identity"),
    )
    inits = [
        numpy_helper.from_array(np.array([-1, c, c, 3], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([1 / 255], np.float32), "scale"),
        numpy_helper.from_array((rng.normal(size=(16, 3, 3, 3)) * 0.3).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.normal(size=(32, 16, 3, 3)) * 0.1).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "hw"),
        numpy_helper.from_array(np.array([-1, n, 32], np.int64), "seq_shape"),
        numpy_helper.from_array(np.array([1], np.int64), "time"),
        numpy_helper.from_array((rng.normal(size=(32, 17)) * 0.2).astype(np.float32), "w3"),
        numpy_helper.from_array(np.zeros(17, np.float32), "b3"),
    ]
    nodes = [
        helper.make_node("Reshape", ["frames", "flat_shape"], ["flat"]),  # [B*N, c, c, 3]
        helper.make_node("Cast", ["flat"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "scale"], ["f01"]),
        helper.make_node("Transpose", ["f01"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("ReduceMean", ["r2", "hw"], ["feat"], keepdims=0),  # [B*N, 32]
        helper.make_node("Reshape", ["feat", "seq_shape"], ["seq"]),  # [B, N, 32]
        helper.make_node("ReduceMax", ["seq", "time"], ["pooled"], keepdims=0),  # [B, 32]
        helper.make_node("MatMul", ["pooled", "w3"], ["z"]),
        helper.make_node("Add", ["z", "b3"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["batch", n, c, c, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 17])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    helper.set_model_props(model, {"gifsent": doc.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_gifs(folder: Path, count: int, size=(160, 120), frames: int = 12) -> list[Path]:
    """Small animated GIFs with moving content, a few KB each (GIFGIF's are 100s of KB)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(count):
        rng = np.random.default_rng(i)
        palette = rng.integers(0, 256, (64, 3), dtype=np.uint8).tobytes()
        images = []
        for k in range(frames):
            # palette indices drawn directly (no quantisation): stripes plus a moving blob
            idx = ((yy // 8 + i) % 48).astype(np.uint8)
            cx, cy = (k * 7 + i) % w, (k * 5 + 2 * i) % h
            idx[(xx - cx) ** 2 + (yy - cy) ** 2 < 400] = 48 + k % 16
            im = Image.fromarray(idx, "P")
            im.putpalette(palette)
            images.append(im)
        buf = io.BytesIO()
        images[0].save(
            buf, format="GIF", save_all=True, append_images=images[1:], duration=80, loop=0
        )
        p = folder / f"b{i:05d}.gif"
        p.write_bytes(buf.getvalue())
        out.append(p)
    return out


def bench_decode_and_model(model: Path, paths: list[Path], batch_size: int, threads: int | None):
    from gifsent_infer.reading.gifio import read_gif
    from gifsent_infer.running.session import ModelSession

    session = ModelSession(model, device="cpu", threads=threads)
    spec = session.spec
    t = time.perf_counter()
    frames = [read_gif(p.read_bytes(), spec).frames for p in paths]
    decode_s = time.perf_counter() - t
    stacked = np.stack(frames)
    session.run(stacked[:batch_size])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(stacked), batch_size):
        session.run(stacked[i : i + batch_size])
    model_s = time.perf_counter() - t
    return len(paths) / decode_s, len(paths) / model_s, session.provider


def bench_library(
    model: Path, paths: list[Path], batch_size: int, threads: int | None, workers: int | None
):
    from gifsent_infer.running.scorer import Scorer

    scorer = Scorer(model, device="cpu", threads=threads)
    list(scorer.score_many(paths[:batch_size], batch_size=batch_size))  # warm-up
    t = time.perf_counter()
    n_ok = sum(r.ok for r in scorer.score_many(paths, batch_size=batch_size, workers=workers))
    elapsed = time.perf_counter() - t
    assert n_ok == len(paths), f"{len(paths) - n_ok} GIFs failed"
    return len(paths) / elapsed


# Peak RSS from /proc/self/status VmHWM: unlike getrusage's ru_maxrss, which Linux keeps
# across execve (so a child would report its big parent's size), VmHWM starts afresh.
_CHILD = textwrap.dedent(
    """
    import sys
    from gifsent_infer.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit as e:
        code = e.code
    with open("/proc/self/status") as f:
        hwm = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    print("MAXRSS_KB", hwm, "EXIT", code, file=sys.stderr)
    """
)


def bench_cli(
    model: Path, folder: Path, out: Path, batch_size: int, workers: int | None
) -> tuple[float, float, float]:
    """(GIFs/s from the CLI summary, wall seconds including start-up, peak RSS in MiB)."""
    args = [
        sys.executable,
        "-c",
        _CHILD,
        str(folder),
        "--out",
        str(out),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--batch-size",
        str(batch_size),
    ]
    if workers is not None:
        args += ["--workers", str(workers)]
    t = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t
    rate = re.search(r"\(([\d.]+) GIFs/s\)", proc.stderr)
    rss = re.search(r"MAXRSS_KB (\d+) EXIT (\d+)", proc.stderr)
    if not rate or not rss or rss.group(2) != "0":
        raise RuntimeError(f"CLI run failed:\n{proc.stderr}")
    return float(rate.group(1)), wall, int(rss.group(1)) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", type=Path, help="an exported gifsent .onnx (default: a small CNN built here)"
    )
    ap.add_argument(
        "--gifs", type=Path, help="a folder of GIFs for the rate measurements (default: generated)"
    )
    ap.add_argument("--rate-gifs", type=int, default=300, help="GIFs for the rate measurements")
    ap.add_argument("--distinct", type=int, default=300, help="distinct generated GIFs")
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    ap.add_argument("--workers", type=int, default=None, help="decoder threads")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="gifsent-bench-") as tmp:
        tmp = Path(tmp)
        model = args.model or build_model(tmp / "bench.onnx")
        t = time.perf_counter()
        # distinct GIFs, then hard links up to --large files (every file is read and decoded;
        # the runtime does not deduplicate by content)
        distinct = make_gifs(tmp / "distinct", min(args.distinct, args.large))
        large_dir = tmp / "large"
        large_dir.mkdir()
        large = []
        for i in range(args.large):
            p = large_dir / f"g{i:05d}.gif"
            os.link(distinct[i % len(distinct)], p)
            large.append(p)
        small_dir = tmp / "small"
        small_dir.mkdir()
        for p in large[: args.small]:
            os.link(p, small_dir / p.name)
        gen_s = time.perf_counter() - t
        rate_paths = (
            sorted(args.gifs.glob("**/*.gif"))[: args.rate_gifs]
            if args.gifs
            else distinct[: args.rate_gifs]
        )
        size_kb = np.mean([p.stat().st_size for p in rate_paths]) / 1024

        print(
            f"machine: {os.cpu_count()} CPU(s); model {model.name}; {len(rate_paths)} GIFs of "
            f"{size_kb:.1f} KiB on average for rates (generated {len(distinct)} in {gen_s:.1f} s)"
        )
        print(
            f"batch size {args.batch_size}, onnxruntime threads {args.threads or 'default'}, "
            f"decoder workers {args.workers if args.workers is not None else 'default'}"
        )
        decode_rate, model_rate, provider = bench_decode_and_model(
            model, rate_paths, args.batch_size, args.threads
        )
        lib_rate = bench_library(model, rate_paths, args.batch_size, args.threads, args.workers)
        print(f"provider: {provider}")
        print(f"{'decode alone (1 thread)':<34}{decode_rate:9.1f} GIFs/s")
        print(f"{'model alone (pre-decoded frames)':<34}{model_rate:9.1f} GIFs/s")
        print(
            f"{'library end to end':<34}{lib_rate:9.1f} GIFs/s  ({lib_rate / model_rate:.0%} of the model alone)"
        )
        for label, folder, n in (("cli", small_dir, args.small), ("cli", large_dir, args.large)):
            rate, wall, rss = bench_cli(
                model, folder, tmp / f"out-{n}.csv", args.batch_size, args.workers
            )
            # two rates: the CLI's own (scoring only, from its summary line) and the wall
            # rate of the whole process, interpreter and imports included
            print(
                f"{label + f' {n} GIFs':<34}{rate:9.1f} GIFs/s scoring (CLI summary), "
                f"{n / wall:.1f} GIFs/s wall incl. start-up ({wall:.2f} s), peak RSS {rss:.0f} MiB"
            )


if __name__ == "__main__":
    main()
