"""Score files: CSV, JSON Lines and JSON writers that survive being killed, and a tolerant reader.

While a run goes on, rows are appended line by line to ``<out>.partial`` beside the output
(CSV for a .csv output, JSON Lines otherwise) and flushed as they finish, so a killed run
keeps every row it finished. At the end the partial file becomes the output atomically
(os.replace); a JSON array is written only then. ``--resume`` reads the partial file, or the
finished output when there is no partial one, dropping a torn last line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.files import atomic_open, fsync_dir

# the row's columns and types are rows.py's; re-exported here, where they were first
from gifsent_infer.running.rows import COLUMNS, FLOAT_COLUMNS, INFO_COLUMNS, INT_COLUMNS  # noqa: F401

FORMATS = ("csv", "jsonl", "json", "parquet")
_EXTENSIONS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
}
PARQUET_INSTALL = "Parquet output needs pyarrow: pip install 'gifsent[parquet]'"


class ScoresFileError(GifsentError, ValueError):
    """A file that is not a gifsent scores file (or not in the format asked for)."""

    exit_code = USAGE


def detect_format(out: str | os.PathLike, explicit: str | None = None) -> str:
    """The output format: `explicit` (--format), else the file's extension; stdout ("-") is CSV."""
    if explicit:
        if explicit not in FORMATS:
            raise ValueError(f"unknown format {explicit!r}; use one of {', '.join(FORMATS)}")
        return explicit
    if str(out) == "-":
        return "csv"
    fmt = _EXTENSIONS.get(Path(out).suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {out} from its extension; name it .csv, .jsonl, .json "
            "or .parquet, or pass --format csv|jsonl|json|parquet"
        )
    return fmt


def partial_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _partial_format(fmt: str) -> str:
    return "csv" if fmt == "csv" else "jsonl"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_cell(value: Any) -> str:
    value = _clean(value)
    if value is None:
        return ""
    if isinstance(value, dict):  # the `timeline` column: compact JSON
        from gifsent_infer.running.extras import timeline_cell

        return timeline_cell(value)
    if isinstance(value, list):  # the `top` column: "happiness:0.91 amusement:0.85"
        from gifsent_infer.running.readable import format_top

        return format_top(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


# readable.PCT_SUFFIX and extras' LO/HI/STD suffixes: float columns beside the 17 scores
_FLOAT_SUFFIXES = ("_pct", "_lo", "_hi", "_std")


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    """A row read from CSV (all strings) with numbers and empty cells typed back."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if value is None or value == "":
            out[key] = "" if key in ("path", "sha256", "model_id", "status", "error") else None
        elif key in INT_COLUMNS:
            out[key] = int(value)
        elif key in FLOAT_COLUMNS or key.endswith(_FLOAT_SUFFIXES):
            out[key] = float(value)
        else:
            out[key] = value
    if isinstance(out.get("timeline"), str):  # extras.TIMELINE_COLUMN: JSON back to a dict
        from gifsent_infer.running.extras import timeline_from_cell

        out["timeline"] = timeline_from_cell(out["timeline"])
    if isinstance(out.get("top"), str):  # "happiness:0.91 ..." back to the JSON form
        from gifsent_infer.running.readable import top_from_cell

        out["top"] = top_from_cell(out["top"], out)
    return out


# Score files are UTF-8, except that a file name which is not UTF-8 (Python holds its bytes as
# lone surrogates, PEP 383) is written as its original bytes: lossless, and read back the same.
ENCODING, ERRORS = "utf-8", "surrogateescape"


def json_row(row: dict[str, Any], columns: tuple[str, ...] = COLUMNS) -> dict[str, Any]:
    """A row as the JSON and JSON Lines outputs hold it: `columns` in order, NaN/inf as null
    (the service answers with these too)."""
    return {c: _clean(row.get(c)) for c in columns}


def _encode(row: dict[str, Any], fmt: str, columns: tuple[str, ...] = COLUMNS) -> str:
    if fmt == "csv":
        cells = [_csv_cell(row.get(c)) for c in columns]
        buf = io.StringIO()
        # The csv module quotes only for the delimiter, quotes and the line terminator ("\n"),
        # so a "\r" in a file name would go out bare and split the row when read back.
        quoting = csv.QUOTE_ALL if any("\r" in c for c in cells) else csv.QUOTE_MINIMAL
        csv.writer(buf, lineterminator="\n", quoting=quoting).writerow(cells)
        return buf.getvalue()
    return json.dumps(json_row(row, columns), ensure_ascii=False) + "\n"


def _csv_header(columns: tuple[str, ...] = COLUMNS) -> str:
    return ",".join(columns) + "\n"


# --- reading -----------------------------------------------------------------------------------


@dataclass
class ReadResult:
    rows: list[dict[str, Any]]
    dropped: int = 0  # torn or unparseable lines left out


def _sniff(text: str) -> str:
    head = text.lstrip()[:1]
    return "json" if head == "[" else "jsonl" if head == "{" else "csv"


def _read_text(path: Path) -> str:
    # newline="": a "\r" inside a quoted CSV cell is data, not a line break
    try:
        with open(path, encoding=ENCODING, errors=ERRORS, newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise ScoresFileError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise ScoresFileError(f"{path} is a folder, not a scores file") from None
    if "\0" in text:
        raise ScoresFileError(f"{path} is not a text scores file")
    return text


def _check_columns(columns: Iterable[str], path: Path) -> None:
    missing = [c for c in ("path", "status") if c not in set(columns)]
    if missing:
        raise ScoresFileError(
            f"{path} is not a gifsent scores file (no {', '.join(missing)} column)"
        )


def parse_rows(text: str, fmt: str, path: Path = Path("<text>")) -> ReadResult:
    """Rows of a scores file's text. A last line without its newline is torn and dropped."""
    dropped = 0
    if fmt in ("csv", "jsonl") and text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        dropped += 1
    rows: list[dict[str, Any]] = []
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ScoresFileError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ScoresFileError(f"{path} is not a JSON array of score rows")
        if data:
            _check_columns(data[0], path)
        return ReadResult(data, 0)
    if fmt == "jsonl":
        for line in text.split("\n"):  # not splitlines(): U+2028 etc. may be in a name
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if isinstance(row, dict) and "path" in row and "status" in row:
                rows.append(row)
            else:
                dropped += 1
        return ReadResult(rows, dropped)
    if not text.strip():
        return ReadResult([], dropped)
    reader = csv.DictReader(io.StringIO(text))
    _check_columns(reader.fieldnames or [], path)
    width = len(reader.fieldnames or [])
    try:
        raws = list(reader)
    except csv.Error as e:
        raise ScoresFileError(f"{path} is not a readable CSV file: {e}") from None
    for raw in raws:
        if None in raw or len(raw) != width or any(v is None for v in raw.values()):
            dropped += 1  # too many or too few cells: a torn or damaged line
            continue
        try:
            rows.append(_typed(raw))
        except ValueError:
            dropped += 1
    return ReadResult(rows, dropped)


def read_parquet_rows(path: Path) -> ReadResult:
    """Rows of a Parquet scores file (pyarrow needed)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ScoresFileError(PARQUET_INSTALL) from None
    if not path.is_file():
        raise ScoresFileError(f"{path} does not exist")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise ScoresFileError(f"{path} is not a readable Parquet file: {e}") from None
    _check_columns(table.column_names, path)
    return ReadResult(table.to_pylist(), 0)


def read_rows(path: str | os.PathLike, fmt: str | None = None) -> ReadResult:
    """Read a scores file (CSV, JSON Lines, JSON or Parquet; by `fmt`, extension, or content)."""
    path = Path(path)
    if fmt == "parquet" or (fmt is None and path.suffix.lower() == ".parquet"):
        return read_parquet_rows(path)
    text = _read_text(path)
    if fmt is None:
        fmt = _EXTENSIONS.get(path.suffix.lower()) or _sniff(text)
    return parse_rows(text, fmt, path)


@dataclass
class Previous:
    """What an earlier run left: its rows, and where they came from."""

    rows: list[dict[str, Any]]
    source: Path | None  # the partial file, the final output, or None
    dropped: int = 0


def load_previous(out: str | os.PathLike, fmt: str) -> Previous:
    """Rows of an earlier run for --resume: the partial file if there is one, else the output."""
    out = Path(out)
    partial = partial_path(out)
    if partial.is_file():
        text = _read_text(partial)
        got = parse_rows(
            text, "jsonl" if _sniff(text) == "jsonl" else _partial_format(fmt), partial
        )
        return Previous(got.rows, partial, got.dropped)
    if out.is_file():
        got = read_rows(out, fmt)
        return Previous(got.rows, out, got.dropped)
    return Previous([], None)


# --- writing -----------------------------------------------------------------------------------


class RowSink:
    """Where score rows go. write() each row; finish() on success; abort() otherwise."""

    def write(self, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


class StreamSink(RowSink):
    """Rows to an open text stream (stdout), flushed line by line; JSON is streamed as an array."""

    def __init__(
        self, stream: TextIO | None = None, fmt: str = "csv", columns: tuple[str, ...] = COLUMNS
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.fmt = fmt
        self.columns = tuple(columns)  # COLUMNS, plus readable.py's top/percentile columns
        self.count = 0
        if fmt == "csv":
            self.stream.write(_csv_header(self.columns))
        elif fmt == "json":
            self.stream.write("[")
        self.stream.flush()

    def write(self, row: dict[str, Any]) -> None:
        line = _encode(row, "csv" if self.fmt == "csv" else "jsonl", self.columns)
        if self.fmt == "json":
            line = ("\n" if self.count == 0 else ",\n") + line.rstrip("\n")
        self.stream.write(line)
        self.stream.flush()
        self.count += 1

    def finish(self) -> None:
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.count else "]\n")
        self.stream.flush()

    def abort(self) -> None:
        self.finish()


def _fsync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


class FileSink(RowSink):
    """Rows to `<out>.partial`, turned into `out` atomically by finish().

    `keep` are rows of an earlier run to carry over (--resume); they are written to a fresh
    partial file first (via a temporary file and os.replace, so nothing is lost if killed
    now). With `keep`, finish() keeps only the last row of each path, since a rescored input
    appends a newer row.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        fmt: str,
        keep: list[dict[str, Any]] | None = None,
        columns: tuple[str, ...] = COLUMNS,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.out = Path(out)
        self.metadata = metadata  # provenance: Parquet metadata, else the .meta.json sidecar
        self.fmt = fmt
        self.columns = tuple(columns)  # COLUMNS, plus readable.py's top/percentile columns
        self.partial = partial_path(self.out)
        self.pfmt = _partial_format(fmt)
        self.dedupe = keep is not None
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.partial, "w", encoding=ENCODING, errors=ERRORS, newline="") as f:
            if self.pfmt == "csv":
                f.write(_csv_header(self.columns))
            for row in keep or ():
                f.write(_encode(row, self.pfmt, self.columns))
        self._file: TextIO | None = open(  # noqa: SIM115
            self.partial, "a", encoding=ENCODING, errors=ERRORS, newline=""
        )

    def write(self, row: dict[str, Any]) -> None:
        assert self._file is not None, "write after finish/abort"
        self._file.write(_encode(row, self.pfmt, self.columns))
        self._file.flush()  # in the OS's hands now: survives SIGKILL of this process

    def _close(self) -> None:
        if self._file is not None:
            _fsync(self._file)
            self._file.close()
            self._file = None

    def abort(self) -> None:
        self._close()  # the partial file stays, for --resume

    def finish(self) -> None:
        self._close()
        if self.metadata is not None and self.fmt != "parquet":
            # first the sidecar, then the scores file: whenever it exists, so does its sidecar
            from gifsent_infer.writing.provenance import write_sidecar

            write_sidecar(self.out, self.metadata)
        if self.fmt == self.pfmt and not self.dedupe:
            os.replace(self.partial, self.out)
            fsync_dir(self.out.parent)
            return
        rows = read_rows(self.partial, self.pfmt).rows
        if self.dedupe:
            last = {row["path"]: i for i, row in enumerate(rows)}
            rows = [row for i, row in enumerate(rows) if last[row["path"]] == i]
        if self.fmt == "parquet":
            write_parquet(self.out, rows, self.columns, self.metadata)
        else:
            with atomic_open(self.out, "w", encoding=ENCODING, errors=ERRORS, newline="") as f:
                write_rows(f, rows, self.fmt, self.columns)
        self.partial.unlink(missing_ok=True)
        fsync_dir(self.out.parent)


def write_parquet(
    out: str | os.PathLike,
    rows: Iterable[dict[str, Any]],
    columns: tuple[str, ...] = COLUMNS,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Rows as one Parquet file (rows.arrow_table's schema, Ray's shard types), atomically;
    `metadata` (the provenance document) under the file's key-value metadata key "gifsent"."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ScoresFileError(PARQUET_INSTALL) from None
    from gifsent_infer.files import atomic_path
    from gifsent_infer.running.rows import arrow_table

    table = arrow_table(rows, columns)
    if metadata is not None:
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"gifsent": json.dumps(metadata).encode()}
        )
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)


def write_rows(
    stream: TextIO,
    rows: Iterable[dict[str, Any]],
    fmt: str,
    columns: tuple[str, ...] = COLUMNS,
) -> None:
    """Write whole rows to a stream in one go (CSV with header, JSON Lines, or a JSON array)."""
    if fmt == "json":  # one row per line, streamed: bounded memory however many rows
        stream.write("[")
        for i, row in enumerate(rows):
            line = _encode(row, "jsonl", columns).rstrip("\n")
            stream.write(("\n" if i == 0 else ",\n") + line)
        stream.write("\n]\n")
        return
    if fmt == "csv":
        stream.write(_csv_header(columns))
    for row in rows:
        stream.write(_encode(row, fmt, columns))


def iter_ok(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows whose status is ok."""
    return (r for r in rows if r.get("status") == "ok")
