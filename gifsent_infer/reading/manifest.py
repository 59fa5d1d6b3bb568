"""A manifest input: a Parquet, CSV or JSONL file listing one input per row (a path, an
http(s) URL or an object-store URI), for collections too large to list or expand.

    from gifsent_infer.reading.manifest import manifest_items
    items = manifest_items("s3://bucket/todo.parquet")      # column: path, url or uri

The file itself may be local or in object storage. Every row names one input exactly (no
folder walking, no globs); each becomes one item, read later with the same size limit, the
same SSRF policy for URLs and the same error rows as an input named on the command line.
Blank values are skipped; a value listed twice is one input. pyarrow is imported inside
functions only.
"""

from __future__ import annotations

import os

from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.reading.inputs import InputItem, explicit_item
from gifsent_infer.reading.stores import StoreError, is_store_uri, open_object

__all__ = ["MANIFEST_COLUMNS", "ManifestError", "manifest_items", "read_manifest_names"]

MANIFEST_COLUMNS = ("path", "url", "uri")  # looked for in this order when none is named
_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
}


class ManifestError(GifsentError, ValueError):
    """The manifest cannot be read, or has no column of inputs; the message says why."""

    exit_code = USAGE


def _format(source: str) -> str:
    name = source.lower().removesuffix(".gz")
    for suffix, fmt in _FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise ManifestError(
        f"--manifest {source}: name it .parquet, .csv or .jsonl (the format is taken from the name)"
    )


def _read_table(source: str, fmt: str):
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    if is_store_uri(source):
        stream = open_object(source, random_access=fmt == "parquet")
    else:
        if not os.path.isfile(source):
            raise ManifestError(f"--manifest {source}: no such file")
        stream = source
    if fmt == "parquet":
        return pq.read_table(stream)
    if fmt == "csv":
        # every column as text: a path of digits stays a path
        opts = pcsv.ConvertOptions(strings_can_be_null=False, auto_dict_encode=False)
        table = pcsv.read_csv(stream, convert_options=opts)
        import pyarrow as pa

        return table.cast(pa.schema([(f.name, pa.string()) for f in table.schema]))
    return pjson.read_json(stream)


def read_manifest_names(source: str | os.PathLike, column: str | None = None) -> list[str]:
    """The inputs a manifest lists, in order, blanks skipped and duplicates removed."""
    source = os.fspath(source)
    fmt = _format(source)
    try:
        table = _read_table(source, fmt)
    except ManifestError:
        raise
    except (StoreError, OSError, ValueError, Exception) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ManifestError(
            f"--manifest {source}: cannot read it as {fmt} ({first[:200]})"
        ) from None
    names = table.column_names
    if column is None:
        found = [c for c in MANIFEST_COLUMNS if c in names]
        if not found and len(names) != 1:
            raise ManifestError(
                f"--manifest {source}: no column named {', '.join(MANIFEST_COLUMNS)} among "
                f"{', '.join(names[:8])}; name it with --manifest-column"
            )
        column = found[0] if found else names[0]
    elif column not in names:
        raise ManifestError(
            f"--manifest {source}: no column {column!r} (it has {', '.join(names[:8])})"
        )
    out: list[str] = []
    seen: set[str] = set()
    for value in table.column(column).to_pylist():
        text = "" if value is None else str(value).strip()
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def manifest_items(source: str | os.PathLike, column: str | None = None) -> list[InputItem]:
    """One item per input the manifest lists (see explicit_item)."""
    return [explicit_item(name) for name in read_manifest_names(source, column)]
