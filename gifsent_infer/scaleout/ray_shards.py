"""The Ray output folder: shard names, the driver's shard writer, the exactly-once commit of
staged shards, the manifest, and reading the rows back (see distributed.py's docstring for
the layout and the protocol).

pyarrow is imported inside functions only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from gifsent_infer.files import atomic_open, atomic_path, fsync_dir, write_json
from gifsent_infer.running.rows import COLUMNS, arrow_schema
from gifsent_infer.scaleout.ray_cluster import fault_point
from gifsent_infer.writing.outputs import read_rows, write_rows

FORMATS = ("parquet", "jsonl")
MANIFEST = "_manifest.json"
MANIFEST_FORMAT = "gifsent-ray-scores"
STAGED_PREFIX = "_staged-"
STAGED_SUFFIX = ".staged"
_SHARD_RE = re.compile(r"^part-g(\d{4,})-([0-9a-f]{24})\.(parquet|jsonl)$")
_STAGED_RE = re.compile(r"^_staged-(part-g(\d{4,})-[0-9a-f]{24}\.(parquet|jsonl))\.staged$")


def row_schema(columns: tuple[str, ...] = COLUMNS):
    """The score row's pyarrow schema for `columns` (rows.py), built once on first use."""
    return arrow_schema(tuple(columns))


def shard_key(rows: Iterable[dict]) -> str:
    """24 hex digits of sha256 over the sorted (sha256, path) pairs of a shard's rows."""
    h = hashlib.sha256()
    for digest, path in sorted((r["sha256"] or "", r["path"]) for r in rows):
        h.update(f"{digest}\t{path}\n".encode())
    return h.hexdigest()[:24]


def shard_name(rows: Sequence[dict], generation: int, fmt: str) -> str:
    return f"part-g{generation:04d}-{shard_key(rows)}.{fmt}"


def _write_atomic(path: Path, rows: list[dict], fmt: str, columns: Sequence[str]) -> None:
    """Rows -> `path` atomically (files.py: a temporary "."-name in the same folder, fsync,
    rename, fsync the folder)."""
    columns = tuple(columns)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(
            [{c: r.get(c) for c in columns} for r in rows], schema=row_schema(columns)
        )
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    else:
        with atomic_open(path, "w", encoding="utf-8", newline="") as f:
            write_rows(f, rows, "jsonl", columns)


def write_shard(
    out_dir: Path,
    rows: list[dict],
    generation: int,
    fmt: str,
    *,
    staged: bool = False,
    columns: Sequence[str] = COLUMNS,
) -> str:
    """Write rows as one shard, atomically; returns its committed name.

    staged: write it as `_staged-<name>.staged` (ignored by readers) for `commit_staged`.
    columns: COLUMNS, plus the run's readable extras (top, percentiles).
    """
    name = shard_name(rows, generation, fmt)
    path = Path(out_dir) / (f"{STAGED_PREFIX}{name}{STAGED_SUFFIX}" if staged else name)
    _write_atomic(path, rows, fmt, columns)
    return name


def shard_columns(path: Path) -> tuple[str, ...]:
    """The columns a shard was written with (its Parquet schema, or its first JSON line's keys)."""
    if _shard_format(path) == "parquet":
        import pyarrow.parquet as pq

        return tuple(pq.read_schema(path).names)
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    return tuple(json.loads(first)) if first.strip() else ()


def check_columns(out_dir: Path, columns: Sequence[str]) -> None:
    """ValueError when a committed shard has other columns than `columns` (a folder written
    with other --top/--percentiles): one folder holds one kind of row, as readers expect."""
    for p in list_shards(out_dir):
        have = shard_columns(p)
        if have and have != tuple(columns):
            extra = lambda cols: sorted(set(cols) - set(COLUMNS)) or "none"  # noqa: E731
            raise ValueError(
                f"--out {out_dir} holds rows with other extra columns ({extra(have)}) than this "
                f"run's ({extra(columns)}): score with the options that wrote it (--top, "
                "--percentiles), or into another folder, or --no-resume to start it afresh"
            )


def list_shards(out_dir: str | os.PathLike) -> list[Path]:
    """The committed shards, the files readers see."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if _SHARD_RE.match(p.name))


def list_staged(out_dir: str | os.PathLike) -> list[Path]:
    """Staged shards, oldest generation first (the order they are committed in)."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    found = [(m, p) for p in out.iterdir() if (m := _STAGED_RE.match(p.name))]
    return [p for m, p in sorted(found, key=lambda mp: (int(mp[0].group(2)), mp[1].name))]


def shard_generation(path: Path) -> int:
    m = _SHARD_RE.match(path.name) or _STAGED_RE.match(path.name)
    assert m is not None
    return int(m.group(1) if m.re is _SHARD_RE else m.group(2))


def _shard_format(path: Path) -> str:
    return path.name.removesuffix(STAGED_SUFFIX).rsplit(".", 1)[1]


def read_shard(path: Path, columns: Sequence[str] | None = None) -> list[dict]:
    if _shard_format(path) == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path, columns=list(columns) if columns else None).to_pylist()
    rows = read_rows(path, "jsonl").rows
    if columns:
        rows = [{c: r.get(c) for c in columns} for r in rows]
    return rows


def _drop_rows(path: Path, drop: Callable[[int, dict], bool]) -> int:
    """Rewrite a committed shard without the rows `drop` selects, in place (atomic replace
    under the same name, so a reader sees the old file or the new one); removed when no row
    is left. Returns the rows kept."""
    rows = read_shard(path)
    kept = [r for i, r in enumerate(rows) if not drop(i, r)]
    if len(kept) == len(rows):
        return len(kept)
    if kept:
        _write_atomic(path, kept, _shard_format(path), tuple(kept[0]))
    else:
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)
    return len(kept)


def commit_staged(out_dir: str | os.PathLike) -> list[str]:
    """Commit the staged shards of `out_dir` (oldest first); returns their committed names.

    For each staged shard: every committed shard holding a row for one of its inputs is
    rewritten without those rows (or removed), then the staged shard is renamed into
    place. At no instant do two committed shards hold rows for one input. Idempotent: run
    it again after a crash at any point and it finishes the job.
    """
    out = Path(out_dir)
    staged = list_staged(out)
    if not staged:
        return []
    index = {p: {r["path"] for r in read_shard(p, ["path"])} for p in list_shards(out)}
    names = []
    for s in staged:
        replaces = {r["path"] for r in read_shard(s, ["path"])}
        for p in sorted(index):
            if index[p] & replaces:
                _drop_rows(p, lambda _i, r, drop=replaces: r["path"] in drop)
                index[p] -= replaces
                if not index[p]:
                    del index[p]
                fault_point("trimmed")
        target = out / _STAGED_RE.match(s.name).group(1)  # type: ignore[union-attr]
        os.replace(s, target)
        fsync_dir(out)
        index[target] = replaces
        names.append(target.name)
        fault_point("published")
    return names


# --- reading shards back and rebuilding the manifest -------------------------------------------


def _winner_key(gen: int, status: str | None, name: str) -> tuple:
    # newest generation first, then an ok row before an error row, then the smaller name
    return (-gen, status != "ok", name)


def _winners(meta: dict[Path, list[dict]]) -> dict[Path, list[int]]:
    """shard -> indices of its rows that win: one row per path over all shards."""
    best: dict[str, tuple] = {}
    for p, rows in meta.items():
        for i, r in enumerate(rows):
            key = (*_winner_key(shard_generation(p), r["status"], p.name), i)
            if r["path"] not in best or key < best[r["path"]]:
                best[r["path"]] = key
    return {
        p: [
            i
            for i, r in enumerate(rows)
            if best[r["path"]] == (*_winner_key(shard_generation(p), r["status"], p.name), i)
        ]
        for p, rows in meta.items()
    }


def rebuild_manifest(
    out_dir: str | os.PathLike, run: dict | None = None, columns: Sequence[str] | None = None
) -> dict:
    """Rewrite `_manifest.json` from the committed shards (and append `run` to its runs).

    The commit protocol never leaves two rows for one input; a folder written otherwise
    (by hand, or by an older gifsent that wrote replacements in place) is repaired: where
    an input has several rows, the newest generation wins (ties: ok before error, then
    the smaller shard name), and losing rows are removed shard by shard, in place.
    """
    out = Path(out_dir)
    shards = list_shards(out)
    meta = {p: read_shard(p, ["path", "status"]) for p in shards}
    wins = _winners(meta)
    entries = []
    for p in shards:
        rows, keep = meta[p], set(wins[p])
        if len(keep) < len(rows):
            if not _drop_rows(p, lambda i, _r, keep=keep: i not in keep):
                continue
            rows = [r for i, r in enumerate(rows) if i in keep]
        entries.append(
            {
                "name": p.name,
                "generation": shard_generation(p),
                "rows": len(rows),
                "ok": sum(r["status"] == "ok" for r in rows),
                "error": sum(r["status"] == "error" for r in rows),
            }
        )
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "columns": list(columns or (shard_columns(shards[0]) if shards else COLUMNS)),
        "shards": entries,
        "rows": sum(e["rows"] for e in entries),
        "ok": sum(e["ok"] for e in entries),
        "error": sum(e["error"] for e in entries),
        "generation": max((e["generation"] for e in entries), default=0),
        "staged": [p.name for p in list_staged(out)],
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    old = read_manifest(out)
    # what the runs recorded about themselves survives the rebuild
    manifest["runs"] = [*(old.get("runs", []) if old else []), *([run] if run else [])]
    write_json(out / MANIFEST, manifest, indent=1)
    return manifest


def read_manifest(out_dir: str | os.PathLike) -> dict | None:
    path = Path(out_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


def read_scores(out_dir: str | os.PathLike) -> list[dict]:
    """The committed score rows of an output folder, one per input, sorted by path (the
    local CLI's columns). Reads the files as any reader would (the manifest is not
    needed) and writes nothing; inputs whose replacement a killed run left staged are
    absent until the next run commits it."""
    shards = list_shards(out_dir)
    meta = {p: read_shard(p) for p in shards}
    wins = _winners(
        {p: [{"path": r["path"], "status": r["status"]} for r in meta[p]] for p in shards}
    )
    rows = [meta[p][i] for p in shards for i in wins[p]]
    return sorted(rows, key=lambda r: r["path"])


def auto_shard_rows(todo: int) -> int:
    """Rows per shard for about `todo` inputs: ~32 shards per run, 8 to 1,024 rows each, so a
    killed small run still keeps most of its rows and a large one makes few files."""
    return int(min(1024, max(8, math.ceil(todo / 32))))


def scan_committed(out: Path) -> list[dict]:
    """path, sha256, model_id and status of every committed row (the resume rule's input)."""
    rows = []
    for p in list_shards(out):
        rows.extend(read_shard(p, ["path", "sha256", "model_id", "status"]))
    return rows


def clear_folder(out: Path) -> None:
    """Remove every shard, staged shard and the manifest (a run without resume)."""
    for p in [*list_shards(out), *list_staged(out)]:
        p.unlink()
    (out / MANIFEST).unlink(missing_ok=True)
    fsync_dir(out)


def remove_temporaries(out: Path) -> None:
    """A killed writer's half-written files (one driver per folder, so none is in use)."""
    for p in out.iterdir():
        if p.name.endswith(".tmp") and (
            p.name.startswith((".part-g", f".{STAGED_PREFIX}", f".{MANIFEST}"))
        ):
            p.unlink(missing_ok=True)


class ShardWriter:
    """The driver's one writer: buffers rows, flushes a shard every `rows` rows or `seconds`
    seconds. Rows for inputs in `replaces` (a committed row exists) go to staged shards."""

    def __init__(
        self,
        out: Path,
        generation: int,
        fmt: str,
        rows: int,
        seconds: float,
        replaces: set[str],
        columns: Sequence[str] = COLUMNS,
    ) -> None:
        self.out, self.generation, self.fmt, self.columns = out, generation, fmt, tuple(columns)
        self.rows, self.seconds, self.replaces = rows, seconds, replaces
        self.fresh: list[dict] = []
        self.staged: list[dict] = []
        self.since: float | None = None  # monotonic time of the oldest buffered row
        self.seen: set[str] = set()
        self.names: list[str] = []
        self.scored = self.failed = self.skipped = 0

    def add(self, rows: Iterable[dict]) -> None:
        for r in rows:
            if r["status"] == "skipped":
                self.skipped += 1
                continue
            if r["path"] in self.seen:  # an input listed twice: its first row stands
                continue
            self.seen.add(r["path"])
            self.scored += r["status"] == "ok"
            self.failed += r["status"] == "error"
            (self.staged if r["path"] in self.replaces else self.fresh).append(r)
            if self.since is None:
                self.since = time.monotonic()
            if len(self.fresh) + len(self.staged) >= self.rows:
                self.flush()

    def wait(self) -> float | None:
        """Seconds until a time flush is due (None: nothing buffered)."""
        if self.since is None:
            return None
        return max(0.0, self.since + self.seconds - time.monotonic())

    def flush(self) -> None:
        for rows, staged in ((self.fresh, False), (self.staged, True)):
            if rows:
                rows.sort(key=lambda r: r["path"])
                self.names.append(
                    write_shard(
                        self.out,
                        rows,
                        self.generation,
                        self.fmt,
                        staged=staged,
                        columns=self.columns,
                    )
                )
                rows.clear()
                fault_point("shard")
        self.since = None
