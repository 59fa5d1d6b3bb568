"""GPU check (one NVIDIA GPU, under 4 minutes): CUDA really runs gifsent graphs, fp16 agrees with fp32, throughput table.

Needs the repo installed with ``.[gpu,train,dev]`` (onnxruntime-gpu, never together with
onnxruntime). For each encoder (default: efficientnet-lite0 with its ImageNet weights, and
resnext101-kinetics with random weights unless --encoder-weights is given) with a fixed
random LSTM head, it:
  1. exports fp32 and fp16 graphs with gifsent-export's library (CPU parity checks included:
     fp32 vs PyTorch max abs <= 1e-4; fp16 vs fp32 mean per-emotion Spearman >= 0.98);
  2. opens both through the runtime's ModelSession(device="cuda") and asserts the CUDA
     provider is the session's first provider (no silent CPU fallback);
  3. checks, on the same GIFs: CUDA fp32 vs CPU fp32 (max abs <= CUDA_FP32_ATOL; CUDA may use
     TF32 convolutions) and CUDA fp16 vs CUDA fp32 (mean Spearman >= 0.98, max abs <= FP16_ATOL);
  4. prints clips/s for fp32 and fp16 on CUDA (and fp32 on CPU for scale);
  5. prints the table (scripts/gpu_bench.py): GIFs/s of the fused fp32 and fp16 graphs on the
     CUDA provider with I/O binding at batch 1, 8, 32, 128; the TensorRT provider when it
     loads; end to end with decoding in N worker processes (how many decode cores one GPU
     needs); device name, driver and onnxruntime-gpu version;
  6. runs `gifsent-infer score FOLDER --device cuda` and `--device cpu` as subprocesses on
     the same folder and compares their CSVs (same rows, statuses, scores within CUDA_FP32_ATOL).
Exit status 0 when every check passes, 1 otherwise; 2 with one line ("no CUDA device /
install gifsent[gpu]") on a machine without a usable CUDA device, before anything heavy loads.

    python scripts/gpu_check.py [--encoders efficientnet-lite0 resnext101-kinetics] [--gifs DIR]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CUDA_FP32_ATOL = 5e-3  # CUDA fp32 (TF32 convolutions allowed) vs CPU fp32, per score
FP16_ATOL = (
    5e-2  # fp16 vs fp32 on CUDA, per score (sanity bound; the ranking check is the real one)
)
MIN_MEAN_SPEARMAN = 0.98
BUDGET_S = 240
NO_CUDA = 2  # exit status: no usable CUDA device here
REPO = Path(__file__).resolve().parents[1]

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)
    if not ok:
        failures.append(what)


def make_checkpoint(path: Path, encoder_name: str, weights: Path | None) -> None:
    import torch

    from gifsent_infer.contract import HeadInfo, ModelDocument, TargetScale
    from gifsent_models.checkpoint import save_checkpoint
    from gifsent_models.heads import config_dict, create_head, head_config
    from gifsent_models.registry import create_encoder

    try:
        encoder = create_encoder(encoder_name, weights=weights)
    except (
        Exception
    ) as e:  # no pretrained weights on this machine: speed and agreement still mean something
        print(f"  ({encoder_name}: {str(e).splitlines()[0][:120]}; using random weights)")
        encoder = create_encoder(encoder_name, random_init=True)
    torch.manual_seed(0)
    cfg = head_config("rnn", None)
    head = create_head("rnn", encoder.feature_dim, cfg)
    doc = ModelDocument(
        sampling=encoder.spec,
        normalization=encoder.normalization,
        encoder=encoder.info(),
        head=HeadInfo("rnn", config_dict(cfg)),
        target=TargetScale("identity"),
    )
    save_checkpoint(
        path,
        encoder=encoder,
        head_name="rnn",
        head_config=cfg,
        head=head,
        document=doc,
        include_encoder_state=True,
    )


def clips_per_s(session, frames: np.ndarray, clips_per_gif: int, seconds: float = 5.0) -> float:
    session.run(frames)  # warm-up (cuDNN algorithm search)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(frames)
        n += 1
    return n * len(frames) * clips_per_gif / (time.perf_counter() - t0)


def read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def compare_cli(model: Path, folder: Path, tmp: Path) -> None:
    from gifsent_infer.contract import EMOTIONS

    exe = shutil.which("gifsent-infer", path=str(Path(sys.executable).parent)) or "gifsent-infer"
    outs = {}
    for device in ("cuda", "cpu"):
        out = tmp / f"scores-{device}.csv"
        t0 = time.perf_counter()
        res = subprocess.run(
            [
                exe,
                "score",
                str(folder),
                "--model",
                str(model),
                "--device",
                device,
                "--out",
                str(out),
                "--quiet",
            ],
            capture_output=True,
            text=True,
            timeout=150,
        )
        check(
            res.returncode == 0,
            f"gifsent-infer --device {device} exits 0 ({time.perf_counter() - t0:.1f} s)",
        )
        if res.returncode != 0:
            print(res.stderr[-2000:])
            return
        outs[device] = read_csv(out)
    cuda, cpu = outs["cuda"], outs["cpu"]
    check(set(cuda) == set(cpu) and len(cuda) > 0, f"same {len(cpu)} rows from both devices")
    same_status = all(cuda[p]["status"] == cpu[p]["status"] for p in cpu if p in cuda)
    check(same_status, "same per-GIF status on both devices")
    ok = [p for p in cpu if p in cuda and cpu[p]["status"] == "ok"]
    if ok:
        a = np.array([[float(cpu[p][e]) for e in EMOTIONS] for p in ok])
        b = np.array([[float(cuda[p][e]) for e in EMOTIONS] for p in ok])
        diff = float(np.abs(a - b).max())
        check(
            diff <= CUDA_FP32_ATOL,
            f"gifsent-infer cuda vs cpu on {len(ok)} GIFs: max abs {diff:.2e} <= {CUDA_FP32_ATOL}",
        )


def check_encoder(name, args, tmp, eval_gifs, cli_folder, t_start):
    """Export fp32/fp16 for one encoder, check CUDA against the CPU, print the table; the fp32
    graph's path (None when an export failed)."""
    from gifsent_export.api import export_checkpoint
    from gifsent_export.frames import load_frames
    from gifsent_export.parity import compare
    from gifsent_infer.running.session import ModelSession

    print(f"\n== {name}", flush=True)
    ckpt = tmp / f"{name}.pt"
    make_checkpoint(ckpt, name, args.encoder_weights if name.startswith("resnext101") else None)
    paths = {}
    for precision in ("fp32", "fp16"):
        t0 = time.perf_counter()
        try:
            r = export_checkpoint(
                ckpt,
                tmp / f"{name}-{precision}.onnx",
                precision=precision,
                parity_gifs=eval_gifs,
                eval_count=32,
                parity_count=8,
                measure=(),  # bf16 is a CPU/OpenVINO matter; not measured here
            )
        except Exception as e:
            check(False, f"export {precision}: {e}")
            return None
        paths[precision] = r.path
        extra = ""
        if r.deviation is not None:
            extra = f", vs fp32 (CPU): mean Spearman {r.deviation.mean_spearman:.4f}, max abs {r.deviation.max_abs:.2e}"
        check(
            True,
            f"export {precision} ({time.perf_counter() - t0:.0f} s): parity max abs {r.parity.max_abs:.2e}{extra}",
        )
    if len(paths) < 2:
        return None
    last_fp32 = paths["fp32"]
    s32 = ModelSession(paths["fp32"], device="cuda")
    s16 = ModelSession(paths["fp16"], device="cuda")
    cpu = ModelSession(paths["fp32"], device="cpu")
    check(
        s32.provider == "CUDAExecutionProvider" and s16.provider == "CUDAExecutionProvider",
        f"CUDA provider active (fp32: {s32.provider}, fp16: {s16.provider})",
    )
    frames, _ = load_frames(eval_gifs, s32.spec)
    on_cpu = np.concatenate([cpu.run(frames[i : i + 8]) for i in range(0, len(frames), 8)])
    on32 = np.concatenate([s32.run(frames[i : i + 8]) for i in range(0, len(frames), 8)])
    on16 = np.concatenate([s16.run(frames[i : i + 8]) for i in range(0, len(frames), 8)])
    d = float(np.abs(on32 - on_cpu).max())
    check(
        d <= CUDA_FP32_ATOL,
        f"CUDA fp32 vs CPU fp32 on {len(frames)} GIFs: max abs {d:.2e} <= {CUDA_FP32_ATOL}",
    )
    dev = compare(on32, on16)
    check(
        dev.mean_spearman >= MIN_MEAN_SPEARMAN and dev.max_abs <= FP16_ATOL,
        f"CUDA fp16 vs fp32: mean Spearman {dev.mean_spearman:.4f} (>= {MIN_MEAN_SPEARMAN}), "
        f"max abs {dev.max_abs:.2e} (<= {FP16_ATOL}), mean abs {dev.mean_abs:.2e}",
    )
    batch = frames[:8]
    clips = s32.spec.segments
    print(f"  throughput, batch {len(batch)} GIFs x {clips} clips:")
    for label, sess, secs in (
        ("CUDA fp32", s32, 5.0),
        ("CUDA fp16", s16, 5.0),
        ("CPU fp32", cpu, 3.0),
    ):
        print(
            f"    {label:10s} {clips_per_s(sess, batch, clips, secs):9.1f} clips/s",
            flush=True,
        )
    from gpu_bench import print_table

    print_table(
        paths,
        cli_folder,
        budget_s=max(20.0, BUDGET_S - 60 - (time.perf_counter() - t_start)),
        decode_procs=args.decode_procs,
    )
    return last_fp32


def preflight() -> str | None:
    """None when onnxruntime has the CUDA provider and the driver sees a GPU; else the one line
    that says what is missing (cheap: no torch, no model)."""
    hint = "install gifsent[gpu] (onnxruntime-gpu, instead of onnxruntime) on a machine with an NVIDIA GPU"
    try:
        import onnxruntime as ort
    except ImportError:
        return f"no CUDA device / install gifsent[gpu]: onnxruntime is not installed; {hint}"
    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return (
            f"no CUDA device / install gifsent[gpu]: onnxruntime {ort.__version__} has no CUDA "
            f"provider (providers: {', '.join(providers)}); {hint}"
        )
    smi = shutil.which("nvidia-smi")
    listed = ""
    if smi:
        try:
            listed = subprocess.run(
                [smi, "-L"], capture_output=True, text=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            listed = ""
    if "GPU" not in listed:
        return (
            "no CUDA device / install gifsent[gpu]: onnxruntime has the CUDA provider but no "
            "NVIDIA GPU is visible (nvidia-smi -L lists none); run this on the GPU machine"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", nargs="+", default=["efficientnet-lite0", "resnext101-kinetics"])
    ap.add_argument(
        "--encoder-weights", type=Path, default=None, help="weights file for resnext101-kinetics"
    )
    ap.add_argument(
        "--gifs",
        type=Path,
        default=None,
        help="GIF folder for the CLI comparison (default: ../shared/gifs/real, else generated)",
    )
    ap.add_argument(
        "--decode-procs",
        type=int,
        nargs="+",
        default=None,
        help="decode process counts for the end-to-end rows (default: 1, 2, 4, ... up to the cores)",
    )
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    missing = preflight()
    if missing:
        print(missing, file=sys.stderr)
        return NO_CUDA

    from gifsent_export.frames import generate_gifs
    from gifsent_infer.running.engine import import_onnxruntime

    ort = import_onnxruntime()
    from gpu_bench import device_line

    print(device_line(ort))
    check(
        "CUDAExecutionProvider" in ort.get_available_providers(),
        "onnxruntime has the CUDA provider",
    )
    if failures:
        print("onnxruntime-gpu is missing: pip install 'gifsent[gpu]' (and uninstall onnxruntime)")
        return 1

    with tempfile.TemporaryDirectory(prefix="gifsent-gpu-") as tmp:
        tmp = Path(tmp)
        eval_gifs = generate_gifs(tmp / "eval", 32, seed=21)
        cli_folder = args.gifs or (REPO.parent / "shared" / "gifs" / "real")
        if not cli_folder.is_dir():
            cli_folder = tmp / "eval"
        last_fp32 = None
        for name in args.encoders:
            last_fp32 = check_encoder(name, args, tmp, eval_gifs, cli_folder, t_start) or last_fp32
            if time.perf_counter() - t_start > BUDGET_S - 60:
                print("  (skipping remaining encoders to stay within the time budget)")
                break
        if last_fp32 is not None:
            print(f"\n== gifsent-infer on {cli_folder}")
            compare_cli(last_fp32, cli_folder, tmp)

    elapsed = time.perf_counter() - t_start
    check(elapsed <= BUDGET_S, f"finished in {elapsed:.0f} s (budget {BUDGET_S} s)")
    print("\nGPU check " + ("PASSED" if not failures else f"FAILED: {len(failures)} check(s)"))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
