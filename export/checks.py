"""The recorded precision check: how each reduced precision ranks GIFs against fp32, per model.

gifsent-export measures, on the run's held-out GIFs, every precision it can for the graph it
writes and records the result in the contract (metrics "precision_checks"), where
`gifsent-infer info` shows it and `--precision auto` reads it:

    {"reference": "fp32 graph on onnxruntime", "gifs": 32,
     "bf16": {"backend": "openvino", "mean_spearman": 0.997, "min_spearman": 0.99,
              "max_abs": 0.004, "holds": true}               # or {"skipped": "why"}
     "int8": {"minmax": {"backends": {"onnxruntime": {...}, "openvino": {...}},
                         "holds": false}, ...}}               # each recipe tried, kept or not

bf16 "holds" at AUTO_BF16_MIN_MEAN_SPEARMAN (the runtime's rule); an int8 recipe holds at the
export's gate (--min-mean-spearman, default 0.98) on every backend it was checked on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gifsent_export.parity import Deviation, compare, installed_backends, open_graph, run_session
from gifsent_infer.contract import AUTO_BF16_MIN_MEAN_SPEARMAN
from gifsent_infer.running.precision import CHECKS_KEY, describe_checks  # noqa: F401 (re-exported)

REFERENCE = "fp32 graph on onnxruntime"
MEASURABLE = ("bf16", "int8")  # what an fp32 export can be asked to measure (--measure)


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)


def deviation_record(dev: Deviation) -> dict[str, Any]:
    return {
        "mean_spearman": _num(dev.mean_spearman),
        "min_spearman": _num(dev.min_spearman),
        "max_abs": _num(dev.max_abs),
    }


def holds(dev: Deviation, gate: float) -> bool:
    return not math.isnan(dev.mean_spearman) and dev.mean_spearman >= gate


def bf16_unavailable() -> str | None:
    """None when bf16 can be measured here (OpenVINO with native bf16), else why not."""
    if "openvino" not in installed_backends():
        return "OpenVINO is not installed where the model was exported"
    from gifsent_infer.running.engine import cpu_bf16_reason

    reason = cpu_bf16_reason()
    return None if reason is None else "the exporting CPU has no native bf16"


def measure_bf16(model, frames: np.ndarray, fp32_scores: np.ndarray, batch_size: int) -> dict:
    """The fp32 graph run in bf16 on OpenVINO vs the fp32 reference (a record for the contract)."""
    why = bf16_unavailable()
    if why is not None:
        return {"skipped": why}
    got = run_session(
        open_graph(model, backend="openvino", precision="bf16"), frames, batch_size=batch_size
    )
    dev = compare(fp32_scores, got)
    return {
        "backend": "openvino",
        **deviation_record(dev),
        "holds": holds(dev, AUTO_BF16_MIN_MEAN_SPEARMAN),
        "gate": AUTO_BF16_MIN_MEAN_SPEARMAN,
    }


def int8_record(checks: list[tuple[str, Deviation]], gate: float) -> dict[str, Any]:
    return {
        "backends": {b: deviation_record(d) for b, d in checks},
        "holds": all(holds(d, gate) for _, d in checks),
        "gate": gate,
    }


def new_checks(n_gifs: int) -> dict[str, Any]:
    return {"reference": REFERENCE, "gifs": n_gifs}
