"""Numeric checks of an exported graph: run it on the engine's backends, compare with a reference, rank-correlate.

fp32 parity is an absolute bound on every score (default 1e-4); reduced precisions are judged
by how well they keep the ranking of GIFs per emotion (Spearman against fp32), since that is
what search uses, plus their max and mean absolute deviation for the record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.errors import GifsentError

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import torch

FP32_ATOL = 1e-4  # max abs difference on every score, onnxruntime fp32 vs PyTorch fp32
MIN_MEAN_SPEARMAN = 0.98  # fp16/int8 vs fp32, mean over emotions, on GIFs not used for calibration


class ParityError(GifsentError, RuntimeError):
    """The exported graph disagrees with PyTorch (or with fp32) beyond the tolerance."""


def installed_backends() -> list[str]:
    """The inference backends installed here (export checks its graphs on every one)."""
    from gifsent_infer.running.engine import installed_backends as installed

    return installed()


def open_graph(
    model, *, backend: str = "onnxruntime", precision: str = "fp32", threads: int | None = None
):
    """An engine (gifsent_infer.running.engine) on the CPU for a path, serialized bytes or an onnx.ModelProto."""
    from gifsent_infer.running.engine import open_engine

    return open_engine(
        model, backend=backend, device="cpu", precision=precision, threads=threads, quiet=True
    )


def ort_session(model, *, threads: int | None = None):
    """The graph on onnxruntime's CPU provider (the reference backend of export's checks)."""
    return open_graph(model, backend="onnxruntime", threads=threads)


def run_session(
    engine, frames: np.ndarray, *, batch_size: int = 4, output: str | None = None
) -> np.ndarray:
    """Run `engine` on uint8 frames [N, ...] in batches; returns the first (or named) output."""
    return engine.run_batched(frames, batch_size=batch_size, output=output)


def torch_outputs(
    module: torch.nn.Module, frames: np.ndarray, *, batch_size: int = 4
) -> np.ndarray:
    """Eager PyTorch reference on the same uint8 frames."""
    import torch

    module = module.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(frames), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch_size]))
            outs.append(module(x).float().numpy())
    return np.concatenate(outs, axis=0)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of a 1-D array, ties averaged (as Spearman's rho needs)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two 1-D arrays; nan when either has no spread."""
    ra, rb = _ranks(np.asarray(a, np.float64)), _ranks(np.asarray(b, np.float64))
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


@dataclass(frozen=True)
class Deviation:
    """How a candidate's scores differ from a reference's on the same GIFs."""

    n_gifs: int
    max_abs: float
    mean_abs: float
    spearman: tuple[float, ...]  # per emotion (per output column); nan where fp32 has no spread
    mean_spearman: float  # over the emotions where it is defined

    @property
    def min_spearman(self) -> float:
        vals = [v for v in self.spearman if not np.isnan(v)]
        return min(vals) if vals else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spearman"] = {
            (EMOTIONS[i] if len(self.spearman) == len(EMOTIONS) else str(i)): (
                None if np.isnan(v) else round(v, 6)
            )
            for i, v in enumerate(self.spearman)
        }
        d["mean_spearman"] = None if np.isnan(self.mean_spearman) else self.mean_spearman
        return d


def compare(reference: np.ndarray, candidate: np.ndarray) -> Deviation:
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    cand = np.asarray(candidate, np.float64).reshape(len(candidate), -1)
    if ref.shape != cand.shape:
        raise ParityError(f"output shapes differ: reference {ref.shape}, candidate {cand.shape}")
    if not np.all(np.isfinite(cand)):
        return Deviation(
            len(ref), float("inf"), float("inf"), (float("nan"),) * ref.shape[1], float("nan")
        )
    diff = np.abs(ref - cand)
    rhos = tuple(
        spearman(ref[:, k], cand[:, k]) if len(ref) >= 3 else float("nan")
        for k in range(ref.shape[1])
    )
    defined = [r for r in rhos if not np.isnan(r)]
    return Deviation(
        n_gifs=len(ref),
        max_abs=float(diff.max()) if diff.size else 0.0,
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        spearman=rhos,
        mean_spearman=float(np.mean(defined)) if defined else float("nan"),
    )


def assert_fp32_parity(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    atol: float = FP32_ATOL,
    backend: str = "onnxruntime",
) -> Deviation:
    """Raise ParityError unless every score agrees within `atol`."""
    dev = compare(reference, candidate)
    if not dev.max_abs <= atol:  # also catches nan/inf
        worst = np.unravel_index(
            np.nanargmax(
                np.abs(np.asarray(reference, np.float64) - np.asarray(candidate, np.float64))
            ),
            np.shape(reference),
        )
        raise ParityError(
            f"{backend} and PyTorch disagree: max abs difference {dev.max_abs:.3g} > {atol:g} "
            f"(GIF #{worst[0]}, output {worst[1]}); refusing to write the graph"
        )
    return dev


def assert_ranking_kept(
    dev: Deviation, *, precision: str, min_mean_spearman: float = MIN_MEAN_SPEARMAN
) -> None:
    """Raise ParityError when a reduced precision reorders GIFs (mean per-emotion Spearman too low)."""
    if np.isnan(dev.mean_spearman):
        raise ParityError(
            f"{precision}: cannot judge the ranking (no emotion has any spread over "
            f"{dev.n_gifs} GIFs, or the outputs are not finite); refusing to write the graph"
        )
    if dev.mean_spearman < min_mean_spearman:
        raise ParityError(
            f"{precision} reorders GIFs: mean per-emotion Spearman vs fp32 {dev.mean_spearman:.4f} "
            f"< {min_mean_spearman} on {dev.n_gifs} GIFs (max abs diff {dev.max_abs:.3g}); "
            "refusing to write the graph"
        )


def graph_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0
