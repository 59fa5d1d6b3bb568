"""A score file's provenance: which model made its rows, what that model knows, and how it ran.

Every scores file `gifsent-infer` writes to a path says where its scores come from, so that
a demo model's meaningless scores never travel looking real:

- Parquet: the file's key-value metadata, key ``gifsent`` (a JSON document);
- CSV, JSON Lines and JSON: a sidecar ``<out>.meta.json`` beside the file, written
  atomically just before the scores file is renamed into place (so whenever the scores file
  exists, its sidecar does, and a rerun replaces both). JSON Lines does not carry it as a
  first record: line readers (pandas, DuckDB, jq) would take it for a row. A JSON array
  stays an array for the same reason.

The document (``SCHEMA`` = 1)::

    {"gifsent_score_file": 1, "model_id": sha256, "model_file": "gifsent-rnn.onnx",
     "model_sha256": sha256, "is_demo": true, "provenance": "procedural-demo: ...",
     "dataset_kind": "procedural-demo", "encoder": ..., "head": ..., "backend": "openvino",
     "device": "cpu", "precision": "fp32", "backend_reason": "auto: ...",
     "precision_reason": "auto: fp32 (...)", "gifsent_version": "...", "written": ISO time (UTC)}

`report` and `search` read it with `read_score_metadata` (the demo banner from the score
file alone); `stream` outputs (stdout, a FIFO) carry none.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from gifsent_infer.files import atomic_write_text
from gifsent_infer.version import __version__

__all__ = [
    "METADATA_KEY",
    "SCHEMA",
    "read_score_metadata",
    "score_file_metadata",
    "sidecar_path",
    "write_sidecar",
]

METADATA_KEY = "gifsent"  # Parquet key-value metadata key
SCHEMA = 1
SIDECAR_SUFFIX = ".meta.json"


def score_file_metadata(scorer: Any) -> dict[str, Any]:
    """The provenance document of a run of `scorer` (a running.scorer.Scorer)."""
    doc = scorer.document
    prov = doc.provenance
    return {
        "gifsent_score_file": SCHEMA,
        "model_id": scorer.model_id,
        "model_sha256": scorer.model_id,
        "model_file": Path(scorer.model_path).name,
        "is_demo": bool(doc.is_demo),
        "dataset_kind": prov.dataset_kind if prov is not None else "",
        "provenance": prov.summary() if prov is not None else "not recorded",
        "encoder": doc.encoder.name,
        "head": doc.head.name,
        "model_precision": doc.precision,
        "backend": scorer.backend,
        "device": scorer.session.device,
        "precision": scorer.session.precision,
        # why: --backend/--precision auto's choice (a measurement, the recorded check) or the flag
        "backend_reason": scorer.session.choice.backend_reason,
        "precision_reason": scorer.session.choice.precision.reason,
        "gifsent_version": __version__,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def sidecar_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + SIDECAR_SUFFIX)


def write_sidecar(out: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """`<out>.meta.json`, atomically (files.atomic_write_text)."""
    text = json.dumps(metadata, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return atomic_write_text(sidecar_path(out), text)


def _valid(doc: Any) -> dict[str, Any] | None:
    return doc if isinstance(doc, dict) and "gifsent_score_file" in doc else None


def read_score_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance document of a scores file (Parquet metadata or the sidecar), or of a
    Ray output folder's first Parquet shard; None when there is none (older files, streams)."""
    path = Path(path)
    candidates = []
    if path.is_dir():
        candidates = sorted(path.glob("part-*.parquet"))[:1]
    elif path.suffix.lower() == ".parquet":
        candidates = [path]
    for pq_file in candidates:
        try:
            import pyarrow.parquet as pq

            meta = pq.read_schema(pq_file).metadata or {}
        except (ImportError, OSError, ValueError):
            return None
        raw = meta.get(METADATA_KEY.encode())
        try:
            return _valid(json.loads(raw)) if raw else None
        except ValueError:
            return None
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        return _valid(json.loads(side.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
