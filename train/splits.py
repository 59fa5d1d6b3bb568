"""Deterministic train/dev/test splits of GIF ids, saved as JSON with the run.

Each id is ranked by SHA-256 of ``"<seed>:<id>"`` and the ranking is cut at exact counts,
so a split depends only on the set of ids and the seed: not on their order, not on Python's
hash seed, and adding a few ids moves only a few others across a boundary.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from gifsent_infer.files import write_json

SPLITS = ("train", "dev", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def _rank_key(seed: int, gif_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:{gif_id}".encode()).digest()


def make_splits(
    ids: Iterable[str], seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, list[str]]:
    """Split ids into {"train", "dev", "test"} (lists sorted by id).

    dev and test get ``round(n * fraction)`` ids each; train gets the rest.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    unique = sorted(set(ids))
    n = len(unique)
    ranked = sorted(unique, key=lambda g: _rank_key(seed, g))
    n_dev = round(n * fractions[1])
    n_test = round(n * fractions[2])
    n_train = n - n_dev - n_test
    return {
        "train": sorted(ranked[:n_train]),
        "dev": sorted(ranked[n_train : n_train + n_dev]),
        "test": sorted(ranked[n_train + n_dev :]),
    }


def save_splits(
    path: str | os.PathLike,
    splits: dict[str, list[str]],
    *,
    seed: int | None = None,
    fractions: Sequence[float] | None = None,
) -> Path:
    """Write splits (and how they were made) as JSON, atomically."""
    _check(splits)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": "gifsent-splits",
        "version": 1,
        "seed": seed,
        "fractions": list(fractions) if fractions is not None else None,
        "counts": {k: len(splits[k]) for k in SPLITS},
        **{k: list(splits[k]) for k in SPLITS},
    }
    return write_json(path, doc, indent=1, sort_keys=False)


def load_splits(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read :func:`save_splits` output: {"train": [...], "dev": [...], "test": [...]}."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != "gifsent-splits":
        raise ValueError(f"{path}: not a gifsent splits file")
    splits = {k: [str(g) for g in doc[k]] for k in SPLITS}
    _check(splits)
    return splits


def _check(splits: dict[str, list[str]]) -> None:
    missing = [k for k in SPLITS if k not in splits]
    if missing:
        raise ValueError(f"splits lack {missing}")
    seen: set[str] = set()
    for k in SPLITS:
        overlap = seen.intersection(splits[k])
        if overlap:
            raise ValueError(
                f"split {k!r} shares ids with another split, e.g. {sorted(overlap)[:3]}"
            )
        seen.update(splits[k])
