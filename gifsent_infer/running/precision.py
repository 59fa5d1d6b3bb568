"""`--precision auto`: what a model runs in, chosen from its recorded precision check.

gifsent-export records how bf16 ranks GIFs against fp32 for each model (metrics
"precision_checks", gifsent_export.checks). `auto` runs bf16 only when all three hold:

  1. the backend is OpenVINO (onnxruntime's CPU provider has no bf16 kernels for these graphs),
  2. the CPU has native bf16 (OpenVINO's CPU plugin reports BF16; emulated bf16 is slower),
  3. the model's recorded bf16 check kept mean per-emotion Spearman >= 0.99 against fp32.

Otherwise fp32, and a model without a recorded check runs fp32 as before. Every choice comes
with its reason, which the start line and the run's provenance print. `fp32` and `bf16` pin
the precision (`fp32` for bit-reproducible runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gifsent_infer.contract import AUTO_BF16_MIN_MEAN_SPEARMAN, ModelDocument

CHECKS_KEY = "precision_checks"
PRECISION_CHOICES = ("auto", "fp32", "bf16")  # what --precision takes (engines run fp32/bf16)


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # "fp32" or "bf16": what the engine computes the float parts in
    reason: str  # one clause, for the start line and provenance

    def to_dict(self) -> dict[str, str]:
        return {"precision": self.precision, "reason": self.reason}


def recorded_checks(document: ModelDocument) -> dict[str, Any] | None:
    checks = document.metrics.get(CHECKS_KEY)
    return checks if isinstance(checks, dict) else None


def recorded_bf16(document: ModelDocument) -> dict[str, Any] | None:
    """The model's recorded bf16 check, or None when it has none (or it was not measured)."""
    checks = recorded_checks(document) or {}
    bf16 = checks.get("bf16")
    if not isinstance(bf16, dict) or "skipped" in bf16:
        return None
    return bf16


def choose_precision(
    requested: str,
    backend: str,
    document: ModelDocument,
    cpu_bf16_reason: Callable[[], str | None],
) -> PrecisionChoice:
    """The precision to run `document`'s model in on `backend` (a concrete backend).

    cpu_bf16_reason(): None when the CPU has native bf16, else why not (tests pass their own,
    to stand for a CPU with or without it).
    """
    if requested not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {requested!r}")
    if requested != "auto":
        return PrecisionChoice(requested, f"--precision {requested}")
    if backend != "openvino":
        return PrecisionChoice("fp32", f"auto: fp32 ({backend} has no bf16 on the CPU)")
    if document.precision != "fp32":
        return PrecisionChoice("fp32", f"auto: fp32 (a {document.precision} model's float parts)")
    check = recorded_bf16(document)
    if check is None:
        return PrecisionChoice(
            "fp32", "auto: fp32 (the model has no recorded bf16 check; re-export to record one)"
        )
    mean = check.get("mean_spearman")
    if mean is None or mean < AUTO_BF16_MIN_MEAN_SPEARMAN:
        shown = "undefined" if mean is None else f"{mean:.4f}"
        return PrecisionChoice(
            "fp32",
            f"auto: fp32 (recorded bf16 mean Spearman {shown} < {AUTO_BF16_MIN_MEAN_SPEARMAN})",
        )
    why_not = cpu_bf16_reason()
    if why_not is not None:
        return PrecisionChoice("fp32", "auto: fp32 (this CPU has no native bf16)")
    return PrecisionChoice(
        "bf16",
        f"auto: bf16 (native on this CPU; recorded mean Spearman {mean:.4f} "
        f">= {AUTO_BF16_MIN_MEAN_SPEARMAN} vs fp32)",
    )


def describe_checks(checks: dict[str, Any] | None) -> list[str]:
    """One line per recorded precision (for `gifsent-infer info` and `gifsent-export`)."""
    if not checks:
        return []
    lines = []
    bf16 = checks.get("bf16")
    if isinstance(bf16, dict):
        lines.append(_bf16_line(bf16, checks))
    for recipe, rec in (checks.get("int8") or {}).items():
        on = "; ".join(f"{b} {_dev(d)}" for b, d in sorted(rec.get("backends", {}).items()))
        verdict = "holds" if rec.get("holds") else "refused"
        kept = rec.get("kept_float")
        total = (rec.get("search") or {}).get("weight_layers")
        of = f" of {total} weight layers" if total else ""
        extra = f"; {len(kept)}{of} kept float" if kept else ""
        lines.append(
            f"int8 {recipe}: {on or 'not measured'}; {verdict} at >= {rec.get('gate')}{extra}"
        )
    return lines


def _dev(d: dict) -> str:
    mean, low = d.get("mean_spearman"), d.get("min_spearman")
    if mean is None:
        return "mean Spearman undefined (fp32 scores have no spread)"
    return f"mean Spearman {mean:.4f} (min {low:.4f}), max abs {d.get('max_abs') or 0:.3g}"


def _bf16_line(bf16: dict, checks: dict) -> str:
    if "skipped" in bf16:
        return f"bf16: not measured ({bf16['skipped']})"
    verdict = "holds" if bf16.get("holds") else "misses"
    return (
        f"bf16 on {bf16.get('backend')}: {_dev(bf16)} on {checks.get('gifs', '?')} held-out "
        f"GIFs; {verdict} the auto gate >= {bf16.get('gate', AUTO_BF16_MIN_MEAN_SPEARMAN)}"
    )
