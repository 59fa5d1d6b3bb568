"""The GPU throughput table that scripts/gpu_check.py prints (its set-up, shared, not copied).

For the fused fp32 and fp16 graphs of one encoder:
  - GIFs/s on the CUDA provider with I/O binding (input copied to the GPU once, output left
    there: the model's own speed) at batch 1, 8, 32, 128;
  - the TensorRT provider at batch 8 and 32, when it loads (fp16 where it is asked for);
  - end to end: GIFs decoded from a folder by N worker processes (gifsent's reader), batched
    by 32 and scored on CUDA fp32 in the main process, for N = 1, 2, 4, ... up to the cores:
    the row where GIFs/s stops growing says how many decode cores one GPU needs.
Each figure is timed for a fixed short window, so the whole table stays within its budget.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

BATCHES = (1, 8, 32, 128)
E2E_BATCH = 32


def device_line(ort) -> str:
    """Device name, driver, memory, and onnxruntime(-gpu)'s version and providers."""
    gpu = "nvidia-smi not found"
    smi = shutil.which("nvidia-smi")
    if smi:
        gpu = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    return (
        f"GPU: {gpu}; onnxruntime {ort.__version__} ({ort.get_device()}), providers: "
        f"{', '.join(ort.get_available_providers())}"
    )


def _session(path: Path, providers):
    from gifsent_infer.running.engine import raw_ort_session

    return raw_ort_session(path, providers)


def bound_gifs_per_s(sess, frames: np.ndarray, seconds: float) -> float:
    """GIFs/s with I/O binding: the batch lives on the GPU, outputs stay there."""
    import onnxruntime as ort

    binding = sess.io_binding()
    x = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(frames), "cuda", 0)
    binding.bind_ortvalue_input(sess.get_inputs()[0].name, x)
    for o in sess.get_outputs():
        binding.bind_output(o.name, "cuda")
    sess.run_with_iobinding(binding)  # warm-up: cuDNN algorithm search, allocations
    binding.synchronize_outputs()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()
        n += 1
    return n * len(frames) / (time.perf_counter() - t0)


def _batch(frames: np.ndarray, size: int) -> np.ndarray:
    reps = -(-size // len(frames))
    return np.concatenate([frames] * reps)[:size]


def _decode(args):
    path, spec = args
    from gifsent_infer.reading.gifio import read_gif

    try:
        return read_gif(path, spec).frames
    except Exception:
        return None


def end_to_end(path: Path, folder: Path, spec, procs: int, seconds: float) -> float:
    """GIFs/s: `procs` processes decode the folder's GIFs (cycled) while CUDA scores batches."""
    gifs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".gif")
    if not gifs:
        return float("nan")
    sess = _session(path, ["CUDAExecutionProvider"])
    name = sess.get_inputs()[0].name
    done, t0 = 0, time.perf_counter()
    with ProcessPoolExecutor(max_workers=procs) as pool:
        stream = pool.map(_decode, ((gifs[i % len(gifs)], spec) for i in range(10**6)), chunksize=2)
        batch: list[np.ndarray] = []
        for frames in stream:
            if frames is not None:
                batch.append(frames)
            if len(batch) == E2E_BATCH:
                sess.run(None, {name: np.stack(batch)})
                done += len(batch)
                batch = []
                if time.perf_counter() - t0 > seconds:
                    break
        pool.shutdown(wait=False, cancel_futures=True)
    return done / (time.perf_counter() - t0)


def _trt_row(path: Path, frames: np.ndarray, fp16: bool, seconds: float) -> str:
    providers = [
        (
            "TensorrtExecutionProvider",
            {
                "trt_fp16_enable": fp16,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(path.parent / "trt-cache"),
            },
        ),
        "CUDAExecutionProvider",
    ]
    try:
        sess = _session(path, providers)
    except Exception as e:  # TensorRT libraries missing or the graph unsupported
        return f"not loaded ({str(e).splitlines()[0][:100]})"
    if sess.get_providers()[0] != "TensorrtExecutionProvider":
        return "not loaded (TensorRT provider unavailable)"
    cells = [f"b{b} {bound_gifs_per_s(sess, _batch(frames, b), seconds):8.1f}" for b in (8, 32)]
    return "  ".join(cells)


def print_table(
    paths: dict[str, Path], folder: Path, *, budget_s: float, decode_procs=None
) -> None:
    """Print the GIFs/s table for the fused fp32 and fp16 graphs in `paths`."""
    from gifsent_infer.reading.gifio import read_gif
    from gifsent_infer.running.session import read_document

    spec = read_document(paths["fp32"]).sampling
    gifs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".gif")[:8]
    frames = np.stack([read_gif(p, spec).frames for p in gifs])
    cores = os.cpu_count() or 1
    procs = decode_procs or [n for n in (1, 2, 4, 8, 16, 32) if n <= cores]
    n_cells = 2 * len(BATCHES) + 4 + len(procs)
    slot = max(0.5, min(3.0, budget_s / n_cells - 0.5))
    print(f"  GIFs/s ({spec.segments} clip(s) of {spec.num_frames // spec.segments} frames each):")
    for precision in ("fp32", "fp16"):
        sess = _session(paths[precision], ["CUDAExecutionProvider"])
        cells = [f"b{b} {bound_gifs_per_s(sess, _batch(frames, b), slot):8.1f}" for b in BATCHES]
        print(f"    CUDA {precision} (I/O binding)  " + "  ".join(cells), flush=True)
    for precision in ("fp32", "fp16"):
        row = _trt_row(paths[precision], frames, precision == "fp16", slot)
        print(f"    TensorRT {precision}          {row}", flush=True)
    for n in procs:
        rate = end_to_end(paths["fp32"], folder, spec, n, max(2 * slot, 3.0))
        print(
            f"    end to end, {n:2d} decode process(es), CUDA fp32 b{E2E_BATCH}: {rate:8.1f}",
            flush=True,
        )
