"""Similarity search over an embeddings folder: the GIFs whose encoder features are nearest to
one GIF's, by cosine similarity.

    from gifsent_infer.views.similar import similar
    hits = similar("emb/", "cat.gif", top=10)

Exact (numpy: one matrix-vector product over the L2-normalised vectors) up to
`EXACT_LIMIT` GIFs; past that, with `method="auto"`, an approximate index (faiss HNSW on the
normalised vectors, inner product = cosine; the `ann` extra: `pip install 'gifsent[ann]'`)
when faiss is installed, else exact. BENCHMARKS.md measures both (benchmarks/bench_similar.py).
The query GIF is found in the index by path, else by its content's sha256; it is never its
own hit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.writing.embeddings import EmbeddingsError, load_embeddings

__all__ = ["METHODS", "SimilarError", "SimilarHit", "cosine_knn", "similar"]

EXACT_LIMIT = 100_000  # GIFs: up to here exact search takes milliseconds (BENCHMARKS.md)
METHODS = ("auto", "exact", "ann")


class SimilarError(GifsentError, ValueError):
    """The query GIF is not in the embeddings, or the folder cannot be read."""

    exit_code = USAGE


@dataclass(frozen=True)
class SimilarHit:
    rank: int  # 1-based
    path: str
    similarity: float  # cosine, -1..1
    sha256: str = ""


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def cosine_knn(
    unit: np.ndarray, query: np.ndarray, k: int, *, exclude: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact: indices and cosine similarities of the k rows of `unit` (L2-normalised) nearest
    to `query`, best first (ties by index); `exclude` is left out (the query itself)."""
    q = query / (np.linalg.norm(query) or 1.0)
    sims = unit @ q.astype(np.float32)
    if exclude is not None:
        sims[exclude] = -np.inf
    k = min(k, len(sims) - (exclude is not None))
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    part = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
    order = part[np.lexsort((part, -sims[part]))]
    return order, sims[order]


def ann_knn(
    unit: np.ndarray, query: np.ndarray, k: int, *, exclude: int | None = None, index=None
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate (faiss HNSW, inner product on normalised vectors); same answer shape."""
    if index is None:
        index = build_ann(unit)
    q = (query / (np.linalg.norm(query) or 1.0)).astype(np.float32)[None, :]
    want = k + (exclude is not None)
    sims, ids = index.search(q, want)
    keep = [(i, s) for i, s in zip(ids[0], sims[0], strict=True) if i >= 0 and i != exclude]
    keep = keep[:k]
    return np.array([i for i, _ in keep], np.int64), np.array([s for _, s in keep], np.float32)


def build_ann(unit: np.ndarray, m: int = 32, ef_search: int = 128):
    try:
        import faiss
    except ImportError:
        raise SimilarError(
            "approximate search needs faiss: pip install 'gifsent[ann]' (or use --method exact)"
        ) from None
    index = faiss.IndexHNSWFlat(unit.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = ef_search
    index.add(np.ascontiguousarray(unit, dtype=np.float32))
    return index


def _faiss_installed() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _find(index: list[dict[str, Any]], query: str) -> int:
    by_path = {row["path"]: i for i, row in enumerate(index)}
    if query in by_path:
        return by_path[query]
    p = Path(query)
    if p.is_file():
        resolved = str(p.resolve())
        for i, row in enumerate(index):
            if Path(row["path"]).is_absolute() and row["path"] == resolved:
                return i
        from gifsent_infer.files import file_sha256

        sha = file_sha256(p)
        for i, row in enumerate(index):
            if row.get("sha256") == sha:
                return i
    raise SimilarError(
        f"{query} is not in these embeddings (by path or content); score it with --embeddings first"
    )


def similar(
    folder: str | os.PathLike,
    query: str,
    *,
    top: int = 20,
    method: str = "auto",
) -> list[SimilarHit]:
    """The `top` GIFs of the embeddings `folder` most similar to the GIF `query`."""
    if method not in METHODS:
        raise SimilarError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    try:
        vectors, index, _meta = load_embeddings(folder)
    except EmbeddingsError as e:
        raise SimilarError(str(e)) from None
    at = _find(index, query)
    unit = normalise(vectors)
    use_ann = method == "ann" or (
        method == "auto" and len(unit) > EXACT_LIMIT and _faiss_installed()
    )
    knn = ann_knn if use_ann else cosine_knn
    ids, sims = knn(unit, unit[at], top, exclude=at)
    return [
        SimilarHit(r + 1, index[i]["path"], float(s), index[i].get("sha256") or "")
        for r, (i, s) in enumerate(zip(ids.tolist(), sims.tolist(), strict=True))
    ]
