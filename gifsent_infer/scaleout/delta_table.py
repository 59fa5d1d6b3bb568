"""Ray's scores as a Delta Lake table (the `deltalake` library: no JVM), at a local path or an
object-store URI (s3://, gs://, abfss://, az://; credentials and endpoints from the usual
environment variables, e.g. AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_ALLOW_HTTP).

    from gifsent_infer.scaleout.delta_table import read_scores
    rows = read_scores("s3://bucket/scores")    # one dict per input, the local CLI's columns

One row per input, keyed by `path` (the row key), the local CLI's columns. Every change is
one Delta commit (a new JSON file in `_delta_log/`, written put-if-absent), so a reader
always sees a whole snapshot: the rows of a committed version, never part of a commit, and
never a data file removed under it before the retention has passed.

- Rows of inputs the table has no row for are appended (a commit per batch).
- Rows that replace a row (an error retried, changed content, another model, --no-resume)
  are MERGEd on `path` (matched: update, else insert), one commit per batch: a reader sees
  the old row or the new one, never both, never neither.
- A driver killed at any instant leaves the table at its last commit; data files it wrote
  for a commit that never happened are in no snapshot, and vacuum removes them once they
  are older than the retention.

Retention: `delta.deletedFileRetentionDuration` (default 168 h, Delta's own default) is how
long a file a commit removed stays for readers of older snapshots; vacuum (after each run,
by default) deletes only files older than that. One writer per table at a time.

deltalake and pyarrow are imported inside functions only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from contextlib import suppress
from typing import Any

from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.running.rows import COLUMNS, arrow_schema
from gifsent_infer.scaleout.phases import mark
from gifsent_infer.scaleout.ray_cluster import fault_point

__all__ = [
    "DEFAULT_RETENTION_HOURS",
    "DELTA_INSTALL_HINT",
    "ROW_KEY",
    "ScoresTableError",
    "ensure_table",
    "is_score_table",
    "open_table",
    "read_scores",
    "table_location",
]

ROW_KEY = "path"
DEFAULT_RETENTION_HOURS = 168  # Delta's default: readers of week-old snapshots still work
TABLE_NAME = "gifsent_scores"
DELTA_INSTALL_HINT = (
    "the Delta Lake library is not installed; install the optional extra with "
    "`pip install 'gifsent[ray]'` (it brings `deltalake`)"
)


class ScoresTableError(GifsentError, ValueError):
    """The output is not a score table (or cannot be one); the message says what to do."""

    exit_code = USAGE


def import_deltalake():
    try:
        import deltalake
    except ImportError as e:
        raise ImportError(f"{DELTA_INSTALL_HINT} ({e})") from None
    return deltalake


def is_uri(text: str | os.PathLike) -> bool:
    return "://" in str(text) and not str(text).startswith("file://")


def table_location(out: str | os.PathLike) -> str:
    """The table's URI as deltalake takes it: an object-store URI as given, a local path
    absolute (file:// removed)."""
    text = os.fspath(out)
    if is_uri(text):
        return text.rstrip("/")
    text = text.removeprefix("file://")
    return os.path.abspath(os.path.expanduser(text))


def is_score_table(out: str | os.PathLike) -> bool:
    """True when `out` holds a Delta table (any, not only ours)."""
    loc = table_location(out)
    if not is_uri(loc):
        return os.path.isdir(os.path.join(loc, "_delta_log"))
    deltalake = import_deltalake()
    try:
        return bool(deltalake.DeltaTable.is_deltatable(loc))
    except Exception:
        return False


def open_table(out: str | os.PathLike, version: int | None = None):
    """The DeltaTable at `out` (at `version`: time travel), or None when there is none."""
    deltalake = import_deltalake()
    loc = table_location(out)
    if not is_uri(loc) and not os.path.isdir(os.path.join(loc, "_delta_log")):
        return None
    try:
        return deltalake.DeltaTable(loc, version=version)
    except deltalake.exceptions.TableNotFoundError:
        return None


def _check_local_folder(loc: str) -> None:
    """A local --out must be a new or empty folder, or a table already: never mix a table's
    files into a folder of other files (the old shard folders included)."""
    if is_uri(loc) or not os.path.exists(loc):
        return
    if not os.path.isdir(loc):
        raise ScoresTableError(f"--out {loc} is a file; give a folder (or URI) for the table")
    if os.path.isdir(os.path.join(loc, "_delta_log")):
        return
    names = [n for n in os.listdir(loc) if not n.startswith(".")]
    if names:
        old = any(n.startswith("part-g") or n == "_manifest.json" for n in names)
        why = (
            "it holds score shards of an older gifsent (part-g*, _manifest.json); "
            "read them with pandas.read_parquet and start a new table"
            if old
            else f"it holds {len(names)} other file(s)"
        )
        raise ScoresTableError(
            f"--out {loc} is a folder but not a Delta table ({why}); give a new or empty "
            "folder, or an existing score table"
        )


def ensure_table(
    out: str | os.PathLike,
    retention_hours: float = DEFAULT_RETENTION_HOURS,
    columns: Sequence[str] = COLUMNS,
):
    """The score table at `out`, created (empty, with the row schema for `columns`: COLUMNS
    plus the run's readable extras) when missing; ScoresTableError when it holds other
    columns."""
    deltalake = import_deltalake()
    loc = table_location(out)
    dt = existing_table(loc, columns)
    if dt is None:
        if not is_uri(loc):
            os.makedirs(loc, exist_ok=True)
        dt = deltalake.DeltaTable.create(
            loc,
            arrow_schema(tuple(columns)),
            mode="ignore",  # another driver created it meanwhile: use theirs
            name=TABLE_NAME,
            description="gifsent scores: one row per input, keyed by path",
            configuration=_retention_config(retention_hours),
        )
    _check_schema(dt, loc, tuple(columns))
    return dt


def existing_table(out: str | os.PathLike, columns: Sequence[str] = COLUMNS):
    """The score table at `out` (checked as ensure_table checks it), or None when there is
    none yet; creates nothing."""
    loc = table_location(out)
    _check_local_folder(loc)
    dt = open_table(loc)
    if dt is not None:
        _check_schema(dt, loc, tuple(columns))
    return dt


def _retention_config(hours: float) -> dict[str, str]:
    return {"delta.deletedFileRetentionDuration": f"interval {int(hours)} hours"}


def _check_schema(dt, loc: str, columns: tuple[str, ...]) -> None:
    names = tuple(f.name for f in dt.schema().fields)
    if not set(COLUMNS) <= set(names):
        raise ScoresTableError(
            f"{loc} is a Delta table but not a gifsent score table (its columns are "
            f"{', '.join(names[:6])}...); give a new location"
        )
    if names != columns:
        extra = lambda cols: ", ".join(sorted(set(cols) - set(COLUMNS))) or "none"  # noqa: E731
        raise ScoresTableError(
            f"{loc} holds rows with other extra columns ({extra(names)}) than this run's "
            f"({extra(columns)}): one table holds one kind of row; score with the options "
            "that wrote it (--top, --percentiles) or into another table"
        )


def scan_keys(dt) -> list[dict[str, Any]]:
    """path, sha256, model_id and status of every row (the resume rule's input)."""
    if not dt.file_uris():  # a new or empty table: skip the scan's set-up (0.3 s cold)
        return []
    cols = ["path", "sha256", "model_id", "status"]
    return dt.to_pyarrow_table(columns=cols).to_pylist()


def warm_writer(columns: Sequence[str]) -> None:
    """Pay now what the first commit of a process would (pyarrow's JSON reader, the schema),
    while the driver joins the cluster, so that its first rows are committed at once."""
    with suppress(Exception):
        _arrow_rows([{}], tuple(columns))


def _arrow_rows(rows: Sequence[dict], columns: tuple[str, ...]):
    """Rows as an Arrow table of the run's schema, through pyarrow's JSON reader: building it
    from Python values (pa.array) imports pandas the first time (0.2-0.5 s of a fresh driver,
    on the way to its first commit); the reader does not. Floats keep their exact value (the
    shortest repr round-trips); NaN and inf become null, as in every other output."""
    import io
    import json
    import math

    import pyarrow.json as pj

    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    text = "\n".join(json.dumps({c: clean(r.get(c)) for c in columns}) for r in rows)
    options = pj.ParseOptions(explicit_schema=arrow_schema(columns))
    return pj.read_json(io.BytesIO(text.encode()), parse_options=options).select(list(columns))


def _columns(dt) -> tuple[str, ...]:
    return tuple(f.name for f in dt.schema().fields)


def append_rows(dt, rows: Sequence[dict]) -> None:
    """Rows of inputs the table has no row for: one append commit."""
    deltalake = import_deltalake()
    fault_point("commit")
    deltalake.write_deltalake(dt, _arrow_rows(rows, _columns(dt)), mode="append")
    fault_point("committed")


def merge_rows(dt, rows: Sequence[dict]) -> None:
    """Rows that may replace rows: one MERGE commit on the row key (update, else insert)."""
    fault_point("commit")
    (
        dt.merge(
            _arrow_rows(rows, _columns(dt)),
            predicate=f"t.{ROW_KEY} = s.{ROW_KEY}",
            source_alias="s",
            target_alias="t",
        )
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )
    fault_point("committed")


def delete_other_rows(dt, keep: Iterable[str]) -> int:
    """Remove the rows whose path is not in `keep` (one commit; none when nothing to remove)."""
    import pyarrow as pa

    keep = set(keep)
    present = set(dt.to_pyarrow_table(columns=[ROW_KEY]).column(ROW_KEY).to_pylist())
    if not present - keep:
        return 0
    source = pa.table({ROW_KEY: pa.array(sorted(keep), pa.string())})
    (
        dt.merge(source, predicate=f"t.{ROW_KEY} = s.{ROW_KEY}", source_alias="s", target_alias="t")
        .when_not_matched_by_source_delete()
        .execute()
    )
    return len(present - keep)


def tidy(dt, retention_hours: float, vacuum: bool, compact: bool) -> dict[str, int]:
    """After a run: compact small files (a commit that changes no row), then vacuum the files
    no snapshot of the last `retention_hours` needs. Returns counts for the summary."""
    done = {"compacted": 0, "vacuumed": 0}
    if compact and len(dt.file_uris()) > 1:
        metrics = dt.optimize.compact()
        done["compacted"] = int(metrics.get("numFilesRemoved", 0))
    if vacuum:
        removed = dt.vacuum(
            retention_hours=int(retention_hours),
            dry_run=False,
            # below the table's own retention only when asked for explicitly
            enforce_retention_duration=retention_hours >= DEFAULT_RETENTION_HOURS,
        )
        done["vacuumed"] = len(removed)
    return done


def read_scores(out: str | os.PathLike, version: int | None = None) -> list[dict]:
    """The score rows of the table at `out` (a snapshot: the latest version, or `version`),
    one per input, sorted by path, the local CLI's columns (and the extras the table was
    written with: top, percentiles). Writes nothing."""
    dt = open_table(out, version=version)
    if dt is None:
        raise ScoresTableError(f"{out} is not a Delta table of scores (no _delta_log)")
    rows = dt.to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: r[ROW_KEY])


def auto_commit_rows(todo: int) -> int:
    """Rows per commit for about `todo` inputs: ~32 commits per run, 8 to 1,024 rows each, so a
    killed small run still keeps most of its rows and a large one makes few files."""
    import math

    return int(min(1024, max(8, math.ceil(todo / 32))))


class TableWriter:
    """The driver's one writer: buffers rows and commits them every `rows` rows or `seconds`
    seconds. Rows of inputs in `replaces` (the table has a row for them) are MERGEd, the
    others appended. eager_first: commit the first rows received at once (the first block),
    so that a run killed early keeps what it scored; later commits by rows or time."""

    def __init__(
        self,
        dt,
        rows: int,
        seconds: float,
        replaces: set[str],
        columns: Sequence[str] = (),
        eager_first: bool = False,
    ) -> None:
        # columns: the run's (checked against the table's by ensure_table)
        self.dt, self.rows, self.seconds, self.replaces = dt, rows, seconds, replaces
        self.eager_first = eager_first
        self.fresh: list[dict] = []
        self.replacing: list[dict] = []
        self.since: float | None = None  # monotonic time of the oldest buffered row
        self.seen: set[str] = set()
        self.commits = 0
        self.committed = 0  # rows committed so far
        self.scored = self.failed = self.skipped = 0

    def add(self, rows: Iterable[dict]) -> None:
        import time

        for r in rows:
            if r["status"] == "skipped":
                self.skipped += 1
                continue
            if r["path"] in self.seen:  # an input listed twice: its first row stands
                continue
            self.seen.add(r["path"])
            self.scored += r["status"] == "ok"
            self.failed += r["status"] == "error"
            (self.replacing if r["path"] in self.replaces else self.fresh).append(r)
            if self.since is None:
                self.since = time.monotonic()
            if len(self.fresh) + len(self.replacing) >= self.rows:
                self.flush()
        if self.eager_first and not self.commits and (self.fresh or self.replacing):
            self.flush()

    def wait(self) -> float | None:
        """Seconds until a time flush is due (None: nothing buffered)."""
        import time

        if self.since is None:
            return None
        return max(0.0, self.since + self.seconds - time.monotonic())

    def flush(self) -> None:
        for rows, commit in ((self.fresh, append_rows), (self.replacing, merge_rows)):
            if rows:
                rows.sort(key=lambda r: r["path"])
                commit(self.dt, rows)
                self.commits += 1
                self.committed += len(rows)
                mark("first_commit", once=True, rows=len(rows))
                mark("commit", rows=self.committed)  # (benchmarks: rows kept by time t)
                rows.clear()
        self.since = None
