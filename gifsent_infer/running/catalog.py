"""The models this machine knows: what `gifsent-infer models` lists and `--model NAME` picks from.

A model is known when it is `$GIFSENT_MODEL` or an .onnx file in the default lookup's folders
(`$GIFSENT_HOME/models`, and `./demo-home/models` when `$GIFSENT_HOME` is not set; see
gifsent_infer.paths). Each entry says what the model's own contract says: its id (sha256),
encoder, head, precision, which backends its reduced precision was checked on, and what it
was trained on (demo or real).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gifsent_infer.files import file_sha256
from gifsent_infer.running.modelfile import ModelError, known_model_files, read_document

__all__ = ["ModelEntry", "list_models"]


@dataclass(frozen=True)
class ModelEntry:
    path: Path
    model_id: str  # sha256 of the file
    name: str  # the file stem: what --model NAME takes
    encoder: str = ""
    head: str = ""
    precision: str = ""
    checks: str = ""  # "fp32" or "int8 checked on openvino (spearman 0.99)"
    provenance: str = ""  # "demo" or "real: gifgif ..."; "unknown" before schema 2
    is_demo: bool = False
    default: bool = False  # the model `gifsent-infer` picks when not told
    error: str = ""  # unreadable: why

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def _checks(metrics: dict[str, Any], precision: str) -> str:
    check = metrics.get("precision_check") if isinstance(metrics, dict) else None
    if precision == "fp32" or not isinstance(check, dict):
        return precision if precision == "fp32" else f"{precision} (no check recorded)"
    backends = ", ".join(check.get("backends") or ()) or "?"
    return f"{precision} checked on {backends}"


def describe_model(path: Path, default: Path | None = None) -> ModelEntry:
    sha = file_sha256(path)
    is_default = default is not None and path.resolve() == default.resolve()
    try:
        doc = read_document(path)
    except ModelError as e:
        return ModelEntry(path, sha, path.stem, default=is_default, error=str(e))
    prov = doc.provenance
    if prov is None:
        what = "unknown (exported before gifsent schema 2)"
    elif prov.is_demo:
        what = "demo: " + prov.summary()
    else:
        what = "real: " + prov.summary()
    return ModelEntry(
        path=path,
        model_id=sha,
        name=path.stem,
        encoder=doc.encoder.name,
        head=doc.head.name,
        precision=doc.precision,
        checks=_checks(doc.metrics, doc.precision),
        provenance=what,
        is_demo=doc.is_demo,
        default=is_default,
    )


def list_models() -> list[ModelEntry]:
    """Every known model, the default one marked."""
    from gifsent_infer.paths import find_default_model

    default = find_default_model()
    return [describe_model(p, default) for p in known_model_files()]
