"""The score row: its columns and their types, its Arrow schema, how a result becomes one, and
the one resume rule. Every writer of scores (the CLI's files, Ray's shards, apps embedding
`Scorer`) takes the row from here, so a new column or a change to what resume keeps is made
in this module and nowhere else.

Columns, in file order: path, sha256 (of the input's bytes), model_id (sha256 of the model
file), status (ok / error), error, format, frames, duration (seconds), segments, padding
(fraction of the sampled frames that repeat the last one), then the 17 emotion scores in
`contract.EMOTIONS` order. readable.py adds its optional top/percentile columns on top.

Resume, for an app that embeds `Scorer`::

    keep, done = resume_plan(previous_rows, {str(p) for p in inputs}, scorer.model_id)
    for r in scorer.score_many(inputs, skip=lambda path, sha: done.get(path) == sha):
        ...  # write `keep` first, then each new row (r.to_row())
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gifsent_infer.contract import EMOTIONS

if TYPE_CHECKING:
    from gifsent_infer.reading.gifio import SampleInfo

__all__ = [
    "COLUMNS",
    "FLOAT_COLUMNS",
    "INFO_COLUMNS",
    "INT_COLUMNS",
    "arrow_schema",
    "arrow_schema_for",
    "arrow_table",
    "f32",
    "resume_plan",
    "score_row",
]

INFO_COLUMNS = (
    "path",
    "sha256",
    "model_id",
    "status",
    "error",
    "format",  # gif, webp, apng, png, mp4, mov, webm, mkv; empty for error rows
    "frames",
    "duration",
    "segments",
    "padding",
)
COLUMNS: tuple[str, ...] = (*INFO_COLUMNS, *EMOTIONS)
INT_COLUMNS = {"frames", "segments"}
FLOAT_COLUMNS = {"duration", "padding", *EMOTIONS}


def f32(x: float) -> float:
    """A float32 score as the shortest Python float that round-trips it (0.3, not 0.30000001192)."""
    return float(str(np.float32(x)))


def score_row(
    path: str,
    sha256: str,
    model_id: str,
    status: str,
    error: str,
    info: SampleInfo | None,
    scores: Mapping[str, float] | Sequence[float] | np.ndarray | None,
) -> dict[str, Any]:
    """One output row (COLUMNS order; None where a value is not available).

    scores: a mapping emotion -> score (already f32-rounded, as ScoreResult holds them) or
    the model's raw [17] output in EMOTIONS order (rounded here with `f32`).
    """
    row: dict[str, Any] = {
        "path": path,
        "sha256": sha256,
        "model_id": model_id,
        "status": status,
        "error": error,
        "format": info.format if info else None,  # gif, webp, apng, png, mp4, webm...
        "frames": info.n_frames if info else None,
        "duration": round(float(info.duration_s), 4) if info else None,
        "segments": info.segments if info else None,
        "padding": round(float(info.padding), 4) if info else None,
    }
    if scores is None:
        row.update(dict.fromkeys(EMOTIONS))
    elif isinstance(scores, Mapping):
        row.update({e: scores[e] for e in EMOTIONS})
    else:
        row.update({e: f32(v) for e, v in zip(EMOTIONS, scores, strict=True)})
    return row


@functools.cache
def arrow_schema(columns: tuple[str, ...] = COLUMNS):
    """The row as a pyarrow schema (Parquet shards, Ray blocks); pyarrow is imported only here.

    columns: COLUMNS, or them with readable.py's extras: `top` (a list of {emotion, score})
    and the `<emotion>_pct` percentiles (float64)."""
    import pyarrow as pa

    types = {
        "path": pa.string(),
        "sha256": pa.string(),
        "model_id": pa.string(),
        "status": pa.string(),
        "error": pa.string(),
        "format": pa.string(),
        "frames": pa.int64(),
        "duration": pa.float64(),
        "segments": pa.int64(),
        "padding": pa.float64(),
        "top": pa.list_(pa.struct([("emotion", pa.string()), ("score", pa.float64())])),
    }
    # float64, not float32: a row holds the shortest float that round-trips the model's
    # float32 score (see f32), and float64 keeps that Python float exactly
    for c in columns:
        if c not in types:
            types[c] = (
                pa.int64()
                if c in INT_COLUMNS
                else pa.float64()
                if c in FLOAT_COLUMNS or c.endswith("_pct")
                else pa.string()
            )
    return pa.schema([(c, types[c]) for c in columns])


def arrow_schema_for(columns: Sequence[str] = COLUMNS):
    """The Arrow schema of a row with `columns`: `arrow_schema()`'s types for the row's own
    columns (so a local Parquet file and Ray's shards agree), readable.py's extras after them:
    `<emotion>_pct` float64, `top` a list of {emotion, score}."""
    import pyarrow as pa

    base = arrow_schema()
    fields = []
    for c in columns:
        if c in base.names:
            fields.append(base.field(c))
        elif c == "top":
            item = pa.struct([("emotion", pa.string()), ("score", pa.float64())])
            fields.append(pa.field(c, pa.list_(item)))
        elif c.endswith("_pct"):
            fields.append(pa.field(c, pa.float64()))
        else:
            fields.append(pa.field(c, pa.string()))
    return pa.schema(fields)


def arrow_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] = COLUMNS):
    """Rows as a pyarrow Table of `arrow_schema_for(columns)` (NaN/inf scores become null)."""
    import math

    import pyarrow as pa

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    data = [{c: clean(r.get(c)) for c in columns} for r in rows]
    return pa.Table.from_pylist(data, schema=arrow_schema_for(columns))


def resume_plan(
    previous_rows: Iterable[dict[str, Any]], names: Collection[str], model_id: str
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """What an earlier run's rows mean for a run over the inputs `names` with model `model_id`.

    Returns (keep, done):
    keep: the earlier rows to carry over — rows of inputs this run does not touch, and rows
        this model scored ok (error rows and rows of another model are dropped: retried).
    done: path -> sha256 of those ok rows; an input whose content still has that sha256 is
        skipped (`skip=lambda path, sha: done.get(path) == sha`), a changed one is rescored.
    """
    keep: list[dict[str, Any]] = []
    done: dict[str, str] = {}
    for row in previous_rows:
        if row.get("path") not in names:
            keep.append(row)  # an input of an earlier run that this run does not touch
        elif row.get("status") == "ok" and row.get("model_id") == model_id:
            keep.append(row)
            done[row["path"]] = row.get("sha256") or ""
    return keep, done
