"""Embeddings: each scored GIF's pooled encoder features, as `.npy` shards and a Parquet index.

The layout follows clip-retrieval's, so retrieval tools (autofaiss, numpy, DuckDB) read it
as is::

    DIR/
      emb/emb-00000.npy     float32 [n, D]: one row per GIF scored ok, in scoring order
      index.parquet         path, sha256, model_id, shard, row (row within its shard), item
                            (the row over all shards)
      meta.json             the model's provenance (writing.provenance), D, the pooling,
                            the shard list and the row count

The vector is the fused graph's `features` output: the encoder's per-segment features
averaged over segments (the vector the model's head reads), computed in the same model call
as the scores. Shards are written atomically as they fill (`shard_rows` rows each); the
index and meta.json when the run finishes, so a folder with meta.json is complete. Error
rows get no vector. Only numpy is needed to write shards; the index needs pyarrow (the
`parquet` extra); without it the index is written as `index.jsonl` instead.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.files import atomic_write_bytes, atomic_write_text

__all__ = [
    "FEATURES_OUTPUT",
    "EmbeddingsError",
    "EmbeddingsWriter",
    "load_embeddings",
]

FEATURES_OUTPUT = "features"  # the fused graph's output name
POOLING = "mean over segments of the encoder's per-segment features"
DEFAULT_SHARD_ROWS = 10_000


class EmbeddingsError(GifsentError, ValueError):
    """An embeddings folder that cannot be written or read; the message says why."""

    exit_code = USAGE


class EmbeddingsWriter:
    """Collects (path, sha256, vector) rows and writes them as shards + index.

    The folder must be empty or an earlier embeddings folder (which is replaced)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        metadata: dict[str, Any] | None = None,
        shard_rows: int = DEFAULT_SHARD_ROWS,
    ) -> None:
        self.folder = Path(folder)
        self.metadata = dict(metadata or {})
        self.shard_rows = max(1, shard_rows)
        if self.folder.exists() and not self.folder.is_dir():
            raise EmbeddingsError(f"--embeddings {self.folder} is a file, not a folder")
        if self.folder.is_dir() and any(self.folder.iterdir()):
            if not (self.folder / "meta.json").is_file() and not (self.folder / "emb").is_dir():
                raise EmbeddingsError(
                    f"--embeddings {self.folder} holds other files; give an empty or new folder"
                )
            shutil.rmtree(self.folder / "emb", ignore_errors=True)
            for name in ("meta.json", "index.parquet", "index.jsonl"):
                (self.folder / name).unlink(missing_ok=True)
        (self.folder / "emb").mkdir(parents=True, exist_ok=True)
        self._vectors: list[np.ndarray] = []
        self._index: list[dict[str, Any]] = []
        self._shards: list[str] = []
        self._in_shard = 0
        self.dim: int | None = None

    def add(self, path: str, sha256: str, model_id: str, vector: np.ndarray) -> None:
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if self.dim is None:
            self.dim = int(vec.shape[0])
        self._index.append(
            {
                "path": path,
                "sha256": sha256,
                "model_id": model_id,
                "shard": len(self._shards),
                "row": self._in_shard,
                "item": len(self._index),
            }
        )
        self._vectors.append(vec)
        self._in_shard += 1
        if self._in_shard >= self.shard_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._vectors:
            return
        name = f"emb-{len(self._shards):05d}.npy"
        buf = io.BytesIO()
        np.save(buf, np.stack(self._vectors))
        atomic_write_bytes(self.folder / "emb" / name, buf.getvalue())
        self._shards.append(name)
        self._vectors, self._in_shard = [], 0

    def finish(self) -> Path:
        """Write the last shard, the index and meta.json; returns the folder."""
        self._flush()
        index_name = _write_index(self.folder, self._index)
        meta = {
            **self.metadata,
            "embeddings": 1,
            "output": FEATURES_OUTPUT,
            "pooling": POOLING,
            "dim": self.dim,
            "dtype": "float32",
            "rows": len(self._index),
            "shards": [f"emb/{n}" for n in self._shards],
            "index": index_name,
        }
        atomic_write_text(self.folder / "meta.json", json.dumps(meta, indent=2) + "\n")
        return self.folder

    @property
    def rows(self) -> int:
        return len(self._index)


def _write_index(folder: Path, index: list[dict[str, Any]]) -> str:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in index)
        atomic_write_text(folder / "index.jsonl", lines)
        return "index.jsonl"
    from gifsent_infer.files import atomic_path

    schema = pa.schema(
        [
            ("path", pa.string()),
            ("sha256", pa.string()),
            ("model_id", pa.string()),
            ("shard", pa.int64()),
            ("row", pa.int64()),
            ("item", pa.int64()),
        ]
    )
    with atomic_path(folder / "index.parquet") as tmp:
        pq.write_table(pa.Table.from_pylist(index, schema=schema), tmp)
    return "index.parquet"


def load_embeddings(folder: str | os.PathLike) -> tuple[np.ndarray, list[dict[str, Any]], dict]:
    """(vectors float32 [N, D] in `item` order, index rows, meta) of an embeddings folder."""
    folder = Path(folder)
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        raise EmbeddingsError(
            f"{folder} is not a finished embeddings folder (no meta.json); write one with "
            "`gifsent-infer GIFS -o scores.csv --embeddings DIR`"
        )
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("index") == "index.jsonl":
        lines = (folder / "index.jsonl").read_text(encoding="utf-8").splitlines()
        index = [json.loads(line) for line in lines if line.strip()]
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise EmbeddingsError("this index is Parquet: pip install 'gifsent[parquet]'") from None
        index = pq.read_table(folder / "index.parquet").to_pylist()
    shards = [np.load(folder / s) for s in meta.get("shards", [])]
    dim = int(meta.get("dim") or 0)
    vectors = np.concatenate(shards) if shards else np.zeros((0, dim), np.float32)
    if len(vectors) != len(index):
        raise EmbeddingsError(
            f"{folder}: {len(vectors)} vectors but {len(index)} index rows (a damaged folder?)"
        )
    return vectors.astype(np.float32, copy=False), index, meta
