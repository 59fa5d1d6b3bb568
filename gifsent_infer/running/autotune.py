"""`--backend auto` by measurement: on the CPU, time the model on each installed backend at the
precision it would run there, keep the faster, and remember the answer.

The rule (training's feature stage times a first batch on each backend the same way): one
warm-up batch per backend, then three interleaved timed batches of random frames of the
model's input shape; the backend with the best GIFs/s wins. The result is cached in
``$GIFSENT_HOME/cache/autotune/`` under a key made of the model's sha256, this machine (CPU
model, core count, thread setting) and the library versions (gifsent, onnxruntime, OpenVINO)
and the precision each backend runs, so later runs open one engine and do not re-time; any
change of model, machine, version or precision measures again.

On CUDA (device cuda, or auto with a working CUDA provider) nothing is measured: onnxruntime
runs the model, as the engine's own auto rule says. With one backend installed, it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gifsent_infer import paths
from gifsent_infer.contract import ModelDocument
from gifsent_infer.running import engine as engines
from gifsent_infer.running.ovcache import model_sha256
from gifsent_infer.running.precision import PrecisionChoice, choose_precision
from gifsent_infer.version import __version__


def cpu_candidates(precision: str) -> list[str]:
    """Installed backends of engine.BACKEND_TABLE that run on the CPU (in the table's order;
    a tie keeps the first); only those that compute in bf16 when bf16 is pinned."""
    have = engines.installed_backends()
    return [
        b.name
        for b in engines.BACKEND_TABLE.values()
        if "cpu" in b.devices and b.name in have and (precision != "bf16" or "bf16" in b.precisions)
    ]


MEASURE_BATCH = 4  # GIFs per timed batch: enough to amortise a call, cheap on big encoders
MEASURE_ROUNDS = 3


@dataclass(frozen=True)
class EngineChoice:
    """What runs the model and why (the start line and the run's provenance print it)."""

    backend: str
    precision: PrecisionChoice
    backend_reason: str
    gifs_per_s: dict[str, float] = field(default_factory=dict)  # measured (or cached) speeds
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "backend_reason": self.backend_reason,
            "precision": self.precision.precision,
            "precision_reason": self.precision.reason,
            "gifs_per_s": {b: round(v, 3) for b, v in self.gifs_per_s.items()},
            "cached": self.cached,
        }


def cache_folder() -> Path:
    return paths.cache_dir() / "autotune"


def machine_id() -> str:
    """The CPU model and core count (what the measurement depends on besides the model)."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} x{os.cpu_count()}"


def library_versions() -> dict[str, str]:
    out = {"gifsent": __version__}
    for name, load in (
        ("onnxruntime", engines.import_onnxruntime),
        ("openvino", engines.import_openvino),
    ):
        try:
            out[name] = load().__version__
        except ImportError:
            continue
    return out


def cache_key(
    model_sha256: str, threads: int | None, precisions: dict[str, str], machine: str | None = None
) -> dict[str, Any]:
    return {
        "model_sha256": model_sha256,
        "machine": machine or machine_id(),
        "threads": threads,
        "versions": library_versions(),
        "precisions": dict(sorted(precisions.items())),
    }


def _cache_file(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_folder() / f"{digest}.json"


def load_cached(key: dict[str, Any]) -> dict[str, Any] | None:
    path = _cache_file(key)
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key or "backend" not in entry:
        return None
    return entry


def save_cached(key: dict[str, Any], backend: str, gifs_per_s: dict[str, float]) -> None:
    """Best effort: a read-only home only means the next run measures again."""
    path = _cache_file(key)
    entry = {"key": key, "backend": backend, "gifs_per_s": gifs_per_s, "measured": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def measure(opened: dict[str, Any], document: ModelDocument, batch: int = MEASURE_BATCH) -> dict:
    """GIFs/s of each engine on random frames of the model's input shape (interleaved rounds,
    best round per engine, after one warm-up batch each)."""
    s = document.sampling
    frames = np.random.default_rng(0).integers(
        0, 256, (batch, s.num_frames, s.crop, s.crop, 3), dtype=np.uint8
    )
    for eng in opened.values():
        eng.run(frames)  # warm-up: first-call allocations and kernel selection
    best = {name: float("inf") for name in opened}
    for _ in range(MEASURE_ROUNDS):
        for name, eng in opened.items():
            t0 = time.perf_counter()
            eng.run(frames)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: batch / max(t, 1e-9) for name, t in best.items()}


def _cuda_available() -> bool:
    try:
        return engines.CUDA in engines.import_onnxruntime().get_available_providers()
    except ImportError:
        return False


def _on_cuda(device: str) -> bool:
    return device == "cuda" or (device == "auto" and _cuda_available())


def open_for(
    path: str | os.PathLike,
    document: ModelDocument,
    *,
    backend: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    precision: str = "auto",
    bf16_reason: Callable[[], str | None] | None = None,
) -> tuple[Any, EngineChoice]:
    """Open the engine that runs `document`'s model at `path`, and say why it was chosen.

    bf16_reason: the CPU capability probe (default: OpenVINO's; tests stand in for a CPU).
    """
    bf16_reason = bf16_reason or engines.cpu_bf16_reason
    if backend != "auto":
        pc = choose_precision(precision, backend, document, bf16_reason)
        eng = engines.open_engine(
            path, backend=backend, device=device, threads=threads, precision=pc.precision
        )
        return eng, EngineChoice(backend, pc, eng.note or f"--backend {backend}")
    have = cpu_candidates(precision)
    if _on_cuda(device) or len(have) < 2:
        # CUDA, or one CPU backend: the engine's own auto rule; fp32 unless bf16 is pinned
        only = have[0] if have and not _on_cuda(device) else "onnxruntime"
        pc = choose_precision(precision, only, document, bf16_reason)
        eng = engines.open_engine(
            path, backend="auto", device=device, threads=threads, precision=pc.precision
        )
        if eng.backend != only:
            pc = choose_precision(precision, eng.backend, document, bf16_reason)
        return eng, EngineChoice(eng.backend, pc, eng.note or f"auto: {eng.backend}")
    return _measured(path, document, have, threads, precision, bf16_reason)


def _measured(path, document, have, threads, precision, bf16_reason):
    choices = {b: choose_precision(precision, b, document, bf16_reason) for b in have}
    key = cache_key(model_sha256(path), threads, {b: c.precision for b, c in choices.items()})
    cached = load_cached(key)
    if cached is not None and cached["backend"] in choices:
        winner, speeds = cached["backend"], cached.get("gifs_per_s", {})
        eng = engines.open_engine(
            path, backend=winner, device="cpu", threads=threads, precision=choices[winner].precision
        )
    else:
        opened = {
            b: engines.open_engine(
                path, backend=b, device="cpu", threads=threads, precision=choices[b].precision
            )
            for b in have
        }
        speeds = measure(opened, document)
        winner = max(have, key=lambda b: (speeds[b], -have.index(b)))
        eng = opened.pop(winner)
        opened.clear()  # the slower engine goes now
        save_cached(key, winner, speeds)
    shown = ", ".join(f"{b} {choices[b].precision} {speeds.get(b, 0):.1f}" for b in have)
    how = "cached measurement" if cached is not None else "measured"
    reason = f"auto: CPU with {winner} ({how}, GIFs/s: {shown})"
    return eng, EngineChoice(winner, choices[winner], reason, dict(speeds), cached is not None)
