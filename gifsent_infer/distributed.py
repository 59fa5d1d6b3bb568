"""Score GIFs on a Ray cluster with Ray Data: decode on CPU tasks, onnxruntime in an actor pool, shards on disk.

    from gifsent_infer.distributed import score_with_ray, read_scores
    summary = score_with_ray(["gifs/", "https://x/y.gif"], "gifsent-rnn.onnx", "scores/",
                             address="auto", device="cuda", num_actors=4)
    rows = read_scores("scores/")            # one dict per input, the local CLI's columns

The pipeline (one Ray Data dataset, streamed):

    inputs (driver: expand files/folders/globs/URLs like gifsent-infer)
      -> read, hash, decode, sample     CPU tasks, `read_batch` inputs per task
      -> run the model                  actor pool, one ModelSession per actor, made once
      -> rows back to the driver        which writes them as shards (one writer per folder)

Under Ray Client (ray://) the driver is not a Ray worker and cannot run Ray Data's
executor: the same pipeline then runs in a task on the cluster, which passes its blocks to
the driver through a queue actor.

Output folder (on the driver's disk; a shared filesystem only if other machines read it)::

    out_dir/part-g<generation>-<key>.parquet|.jsonl   committed score rows, the local CLI's columns
    out_dir/_staged-part-g...parquet|jsonl.staged       replacement rows not yet committed
    out_dir/_manifest.json                              a summary, rebuilt after each run

Exactly once, for any reader at any instant. Every file is written under a temporary
name starting with "." and renamed into place, so nobody sees half a file. Readers of
plain files (pandas, pyarrow, Spark: they skip names starting with "_" or "."; DuckDB and
shell globs: no "*.parquet" matches ".staged") see only the committed `part-*` shards,
and those never hold two rows for one input path:

- rows for inputs without a committed row yet are written as committed shards directly;
- rows that replace a committed row (an error retried, a file whose content changed,
  another model's row) are written as staged shards, which readers ignore; the commit
  then, per staged shard, first rewrites every committed shard holding one of its inputs
  without those rows (atomic replace under the same name; removed when empty), then
  renames the staged shard into place. In between an input may have no row, never two.

A driver killed at any point leaves a folder with at most one row per input; the next
run (or `commit_staged`) first finishes the commit (it is idempotent), so no finished
work is lost. Shards are flushed every `shard_rows` rows or `flush_seconds` seconds,
whichever comes first, so a killed run keeps nearly everything it scored. One driver
per output folder at a time.

Resume matches the local CLI: an input is skipped when an ok row of the same model
(model id = sha256 of the model file) exists for its path with the same content hash.

Ray is optional (the `ray` extra) and imported inside functions only; importing this
module costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.files import atomic_open, atomic_path, fsync_dir, write_json
from gifsent_infer.gifio import DEFAULT_LIMITS, ReaderLimits, SampleInfo
from gifsent_infer.inputs import (
    DEFAULT_TIMEOUT_S,
    InputItem,
    expand_inputs,
    read_item,
    sha256,
)
from gifsent_infer.outputs import read_rows, write_rows
from gifsent_infer.rows import COLUMNS, arrow_schema, resume_plan, score_row
from gifsent_infer.scorer import failure_reason, sample_content

RAY_INSTALL_HINT = (
    "Ray is not installed; install the optional extra with `pip install 'gifsent[ray]'` "
    "(Ray Data and Ray Client, with pyarrow)"
)
FORMATS = ("parquet", "jsonl")
MANIFEST = "_manifest.json"
MANIFEST_FORMAT = "gifsent-ray-scores"
STAGED_PREFIX = "_staged-"
STAGED_SUFFIX = ".staged"
_SHARD_RE = re.compile(r"^part-g(\d{4,})-([0-9a-f]{24})\.(parquet|jsonl)$")
_STAGED_RE = re.compile(r"^_staged-(part-g(\d{4,})-[0-9a-f]{24}\.(parquet|jsonl))\.staged$")
DEFAULT_FLUSH_SECONDS = 10.0
DEFAULT_CONNECT_TIMEOUT_S = 30.0

# Tests: a deterministic fault at a stage boundary of the driver. GIFSENT_RAY_FAULT=STAGE:N
# makes the driver exit hard (os._exit, no clean-up, like SIGKILL) at the Nth boundary
# named STAGE of a run; `_fault_hook(stage, n)`, if set, is called at every boundary.
# Stages: recovered, shard, scored, trimmed, published, committed (see _boundary calls).
FAULT_ENV = "GIFSENT_RAY_FAULT"
_fault_hook: Callable[[str, int], None] | None = None
_fault_counts: dict[str, int] = {}


def _boundary(stage: str) -> None:
    n = _fault_counts[stage] = _fault_counts.get(stage, 0) + 1
    if _fault_hook is not None:
        _fault_hook(stage, n)
    if os.environ.get(FAULT_ENV) == f"{stage}:{n}":
        os._exit(137)


class ClusterError(GifsentError, RuntimeError):
    """The Ray cluster cannot be reached, or refused this driver (the CLI exits 2)."""

    exit_code = USAGE


class RayRunError(GifsentError, RuntimeError):
    """The Ray pipeline failed mid-run; the rows already written are kept (the CLI exits 1)."""


def import_ray():
    """`ray` and `ray.data`, or ImportError with the install hint."""
    try:
        import ray
        import ray.data  # Ray Data is the `data` extra of ray
    except ImportError as e:
        raise ImportError(f"{RAY_INSTALL_HINT} ({e})") from None
    return ray


# --- stage 1: read, hash, decode and sample (CPU tasks) ----------------------------------------


def _read_batch(
    batch,
    *,
    spec: dict,
    limits: dict,
    timeout: float,
    done_ref: list,
):
    """pyarrow batch of inputs -> one row each with the sampled frames as bytes (or an error)."""
    import pyarrow as pa
    import ray

    spec_ = SamplingSpec.from_dict(spec)
    limits_ = ReaderLimits(**limits)
    done: dict[str, str] = ray.get(done_ref[0]) if done_ref else {}
    out: dict[str, list] = {k: [] for k in _PREPARED.get().names}
    for item in batch.to_pylist():
        src = InputItem(
            name=item["name"],
            path=Path(item["path"]) if item["path"] is not None else None,
            url=item["url"],
            error=item["error"],
        )
        digest, status, error, info, pixels = "", "ok", "", None, None
        try:
            data = read_item(src, max_bytes=limits_.max_file_bytes, timeout=timeout)
            digest = sha256(data)
            if done.get(src.name) == digest:
                status = "skipped"
            else:
                sampled = sample_content(data, spec_, limits_)
                info, pixels = sampled.info, np.ascontiguousarray(sampled.frames).tobytes()
        except Exception as e:  # the same reasons, in the same words, as the local CLI
            status, error = "error", failure_reason(e)
        out["index"].append(item["index"])
        out["path"].append(src.name)
        out["sha256"].append(digest)
        out["status"].append(status)
        out["error"].append(error)
        out["info"].append(json.dumps(asdict(info)) if info is not None else None)
        out["pixels"].append(pixels)
    return pa.table(out, schema=_PREPARED.get())


def _prepared_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("index", pa.int64()),
            ("path", pa.string()),
            ("sha256", pa.string()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("info", pa.string()),  # SampleInfo as JSON
            ("pixels", pa.large_binary()),  # uint8 [S*T, crop, crop, 3], C order
        ]
    )


class _LazySchema:
    """A pyarrow schema built on first use, so that importing this module needs no pyarrow."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._value = None

    def get(self):
        if self._value is None:
            self._value = self._make()
        return self._value


_PREPARED = _LazySchema(_prepared_schema)
_ROWS = _LazySchema(arrow_schema)  # the score row's schema (rows.py)


# --- stage 2: the model (actor pool) -----------------------------------------------------------


class _ScoreActor:
    """One onnxruntime session per actor, created once; scores batches of prepared inputs."""

    def __init__(
        self,
        model_ref: list,
        model_id: str,
        device: str,
        threads: int | None,
        crash_marker: str | None = None,
        backend: str = "auto",
    ) -> None:
        import ray

        from gifsent_infer.session import ModelSession

        data = ray.get(model_ref[0])
        if sha256(data) != model_id:
            raise RuntimeError("the model bytes changed in transit")
        # the model travels through the object store, so workers need no shared filesystem
        self._dir = tempfile.mkdtemp(prefix="gifsent-model-")
        path = Path(self._dir) / "model.onnx"
        path.write_bytes(data)
        self.session = ModelSession(path, device=device, threads=threads, backend=backend)
        self.model_id = model_id
        self.crash_marker = crash_marker

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True)

    def __call__(self, batch):
        import pyarrow as pa

        _crash_once(self.crash_marker)  # tests: a worker dying mid-run
        items = batch.to_pylist()
        todo = [i for i, it in enumerate(items) if it["pixels"] is not None]
        scores: dict[int, np.ndarray] = {}
        if todo:
            shape = (len(todo), *self.session.input_shape)
            frames = np.frombuffer(b"".join(items[i]["pixels"] for i in todo), np.uint8)
            out = self.session.run(frames.reshape(shape))
            scores = dict(zip(todo, out, strict=True))
        rows = []
        for i, it in enumerate(items):
            info = SampleInfo(**json.loads(it["info"])) if it["info"] else None
            row = score_row(
                it["path"],
                it["sha256"],
                self.model_id,
                it["status"],
                it["error"],
                info,
                scores.get(i),  # the model's raw [17] output, f32-rounded by score_row
            )
            rows.append({"index": it["index"], **row})
        return pa.Table.from_pylist(rows, schema=_indexed_rows_schema())


def _indexed_rows_schema():
    import pyarrow as pa

    return pa.schema([("index", pa.int64()), *_ROWS.get()])


def _crash_once(marker: str | None) -> None:
    """Test hook: the first process to get here exits hard (like an OOM kill), once per marker."""
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(1)


# --- shards: committed, staged, and the commit ---------------------------------------------------


def shard_key(rows: Iterable[dict]) -> str:
    """24 hex digits of sha256 over the sorted (sha256, path) pairs of a shard's rows."""
    h = hashlib.sha256()
    for digest, path in sorted((r["sha256"] or "", r["path"]) for r in rows):
        h.update(f"{digest}\t{path}\n".encode())
    return h.hexdigest()[:24]


def shard_name(rows: Sequence[dict], generation: int, fmt: str) -> str:
    return f"part-g{generation:04d}-{shard_key(rows)}.{fmt}"


def _write_atomic(path: Path, rows: list[dict], fmt: str) -> None:
    """Rows -> `path` atomically (files.py: a temporary "."-name in the same folder, fsync,
    rename, fsync the folder)."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(
            [{c: r.get(c) for c in COLUMNS} for r in rows], schema=_ROWS.get()
        )
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    else:
        with atomic_open(path, "w", encoding="utf-8", newline="") as f:
            write_rows(f, rows, "jsonl")


def write_shard(
    out_dir: Path, rows: list[dict], generation: int, fmt: str, *, staged: bool = False
) -> str:
    """Write rows as one shard, atomically; returns its committed name.

    staged: write it as `_staged-<name>.staged` (ignored by readers) for `commit_staged`.
    """
    name = shard_name(rows, generation, fmt)
    path = Path(out_dir) / (f"{STAGED_PREFIX}{name}{STAGED_SUFFIX}" if staged else name)
    _write_atomic(path, rows, fmt)
    return name


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


def _generation(path: Path) -> int:
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
        _write_atomic(path, kept, _shard_format(path))
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
                _boundary("trimmed")
        target = out / _STAGED_RE.match(s.name).group(1)  # type: ignore[union-attr]
        os.replace(s, target)
        fsync_dir(out)
        index[target] = replaces
        names.append(target.name)
        _boundary("published")
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
            key = (*_winner_key(_generation(p), r["status"], p.name), i)
            if r["path"] not in best or key < best[r["path"]]:
                best[r["path"]] = key
    return {
        p: [
            i
            for i, r in enumerate(rows)
            if best[r["path"]] == (*_winner_key(_generation(p), r["status"], p.name), i)
        ]
        for p, rows in meta.items()
    }


def rebuild_manifest(out_dir: str | os.PathLike, run: dict | None = None) -> dict:
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
                "generation": _generation(p),
                "rows": len(rows),
                "ok": sum(r["status"] == "ok" for r in rows),
                "error": sum(r["status"] == "error" for r in rows),
            }
        )
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "columns": list(COLUMNS),
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


# --- connecting to Ray --------------------------------------------------------------------------


def resolve_address(address: str | None) -> str:
    """The address to use: `address`, else $RAY_ADDRESS, else "local" (a new local instance;
    unlike plain `ray.init()`, never a cluster that `ray start` left on this machine)."""
    return address or os.environ.get("RAY_ADDRESS") or "local"


def _host_port(address: str) -> tuple[str, int]:
    """ "ray://h:10001" / "h:6379" / "[::1]:6379" -> (host, port); Ray's default ports."""
    client = address.startswith("ray://")
    rest = address.removeprefix("ray://").split("/", 1)[0]
    if rest.startswith("["):  # IPv6 literal
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not port:
        return host, 10001 if client else 6379
    try:
        return host, int(port)
    except ValueError:
        raise ClusterError(f"--address {address!r}: the port is not a number") from None


def _probe(host: str, port: int, deadline: float, address: str) -> None:
    """Wait until something accepts TCP connections at host:port, or raise ClusterError at
    `deadline` (time.monotonic()). Retries, so a cluster that is still starting is found."""
    reason = "no answer"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClusterError(
                f"cannot reach the Ray cluster at {address} ({reason}) within the connect "
                "timeout; check --address / $RAY_ADDRESS and that the cluster is running "
                "(`ray start --head`; Ray Client listens on port 10001), or raise "
                "--connect-timeout"
            )
        try:
            with socket.create_connection((host, port), timeout=min(left, 2.0)):
                return
        except socket.gaierror as e:
            raise ClusterError(f"--address {address}: unknown host {host!r} ({e})") from None
        except OSError as e:
            reason = e.strerror or type(e).__name__
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


@contextmanager
def _time_limit(seconds: float | None, what: str):
    """Raise ClusterError if the body runs past `seconds` (None: no limit; main thread only:
    SIGALRM)."""
    if (
        seconds is None
        or threading.current_thread() is not threading.main_thread()
        or not hasattr(signal, "setitimer")
    ):
        yield
        return

    def expire(_sig, _frame):
        raise ClusterError(what)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _auth_hint(message: str) -> str:
    if re.search(r"auth|token|unauthenticated", message, re.IGNORECASE):
        return (
            "; if the cluster uses token authentication (Ray's default for new clusters), "
            "set RAY_AUTH_MODE=token and the "
            "cluster's token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (or --auth-token-file; "
            "`ray get-auth-token` prints it on the head node)"
        )
    return ""


def use_auth_token_file(path: str | os.PathLike) -> None:
    """Token authentication for this process (and the Ray processes it starts): sets
    RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH, as Ray reads them."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ClusterError(f"--auth-token-file {path}: no such file")
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(p.resolve())
    os.environ.pop("RAY_AUTH_TOKEN", None)  # Ray prefers RAY_AUTH_TOKEN over the file
    refresh_ray_auth()


def refresh_ray_auth() -> None:
    """Make an already imported Ray see RAY_AUTH_* as they are now: Ray caches its config
    and the token when first imported (as its own token set-up does on `ray start`)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # not installed, or a Ray without token authentication
        return
    with suppress(Exception):
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def connect_ray(
    ray,
    address: str | None,
    *,
    timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    init_kwargs: dict | None = None,
) -> None:
    """ray.init for `address` (see resolve_address), within `timeout` seconds, or ClusterError
    with a one-line reason. A remote address is first probed over TCP (retried until the
    timeout), so an address where nobody listens fails fast instead of hanging."""
    addr = resolve_address(address)
    deadline = time.monotonic() + timeout
    # Ray's own INFO lines ("Connecting to existing Ray cluster...") are not ours to print
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if addr == "local":
        kwargs["include_dashboard"] = False
    elif addr.startswith("ray://"):  # Ray Client would pass these on to the server's ray.init
        kwargs = {}
    elif addr == "auto":  # the cluster `ray start` made on this machine: probe its address
        try:
            from ray._private.services import canonicalize_bootstrap_address

            found = canonicalize_bootstrap_address("auto")
        except Exception as e:
            raise ClusterError(
                f"--address auto: no Ray cluster found on this machine ({str(e).splitlines()[0]}); "
                "start one with `ray start --head` or give its address"
            ) from None
        if found:
            addr = found
    if addr != "local":
        host, port = _host_port(addr)
        _probe(host, port, deadline, addr)
    kwargs.update(init_kwargs or {})
    left = deadline - time.monotonic()
    # a local instance's processes would inherit the capture: only joining is captured
    log = _CapturedStderr(enabled=addr != "local")
    try:
        with (
            log,
            _time_limit(
                None if addr == "local" else left,  # starting a local instance: no limit
                f"the Ray cluster at {addr} accepted a connection but did not let this driver "
                f"join within {timeout:g} s (is it a Ray port? does it expect token "
                "authentication?); raise --connect-timeout or check the address",
            ),
        ):
            ray.init(address=addr, **kwargs)
    except ClusterError as e:
        _quiet_shutdown(ray)
        raise ClusterError(f"{e}{_auth_hint(log.text)}") from None
    except Exception as e:
        _quiet_shutdown(ray)
        first = (str(e).strip().splitlines() or [""])[0]
        # Ray reports a refused token only in its C++ log (captured); its exception just
        # says that it failed to connect
        refused = re.search(r"InvalidAuthToken|Unauthenticated", log.text)
        reason = "the cluster refused this driver's token (InvalidAuthToken)" if refused else ""
        raise ClusterError(
            f"cannot join the Ray cluster at {addr}: {reason or f'{type(e).__name__}: {first}'}"
            f"{_auth_hint(f'{e} {log.text}')}"
        ) from None
    log.replay()


class _CapturedStderr:
    """Holds what Ray's C++ core writes to file descriptor 2 while joining a cluster (one
    warning per second per failed attempt); replayed when joining works, read for the reason
    when it fails."""

    def __init__(self, enabled: bool = True) -> None:
        self.text = ""
        self.enabled = enabled
        self._saved: int | None = None
        self._file: Any = None

    def __enter__(self):
        if not self.enabled:
            return self
        try:
            sys.stderr.flush()
            self._file = tempfile.TemporaryFile(mode="w+b")
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except (OSError, ValueError, AttributeError):  # no real fd 2: capture nothing
            self._saved = None
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is None:
            return
        with suppress(Exception):
            sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()

    def replay(self) -> None:
        if self.text:
            sys.stderr.write(self.text)
            sys.stderr.flush()


def _quiet_shutdown(ray) -> None:
    with suppress(Exception):
        ray.shutdown()


# --- the driver -------------------------------------------------------------------------------


@dataclass
class RaySummary:
    out_dir: Path
    manifest: Path
    model_id: str
    generation: int
    inputs: int
    scored: int = 0  # ok rows written by this run
    failed: int = 0  # error rows written by this run
    skipped: int = 0  # already scored (resume)
    shards: list[str] = field(default_factory=list)  # written by this run (committed names)
    seconds: float = 0.0
    device: str = "cpu"
    num_actors: int = 1
    actor_cpus: float = 1.0  # CPUs Ray reserves per model actor
    threads: int | None = 1  # onnxruntime threads per model actor
    decode_cpus: float = 1.0  # CPUs Ray reserves per decoding task
    decode_tasks: int | None = None  # most decoding tasks at once (None: as CPUs allow)
    shard_rows: int = 0
    flush_seconds: float = DEFAULT_FLUSH_SECONDS
    recovered: int = 0  # staged shards a killed run left, committed before this run


def auto_shard_rows(todo: int) -> int:
    """Rows per shard for about `todo` inputs: ~32 shards per run, 8 to 1,024 rows each, so a
    killed small run still keeps most of its rows and a large one makes few files."""
    return int(min(1024, max(8, math.ceil(todo / 32))))


@dataclass(frozen=True)
class ResourcePlan:
    """How the work is laid on the cluster (see plan_actors)."""

    num_actors: int  # model actors
    actor_cpus: float  # CPUs Ray reserves per actor
    threads: int  # onnxruntime intra-op threads per actor (= its CPUs, unless told otherwise)
    decode_cpus: float  # CPUs Ray reserves per decoding task
    decode_tasks: int | None  # most decoding tasks at once (None: as the reservations allow)


def plan_actors(
    node_cpus: Sequence[float],
    gpus: int,
    device: str,
    num_actors: int | None = None,
    actor_cpus: float | None = None,
    decode_cpus: float | None = None,
    threads: int | None = None,
) -> ResourcePlan:
    """Model actors and decoding tasks for a cluster whose alive nodes have `node_cpus` CPUs.

    An actor runs as many onnxruntime threads as the CPUs it reserves (threads=None), and
    lives on one node, so by default it reserves at most the largest node's CPUs.
    - cuda: one actor per GPU, 1 CPU each; decoding tasks 1 CPU each.
    - cpu: about half the CPUs go to actors of up to 4 CPUs each (onnxruntime scales
      sublinearly beyond that), the rest to decoding tasks of 1 CPU each: on 2 CPUs, one
      actor of 1 CPU (1 thread) next to one decoding task (measured in BENCHMARKS.md).
    - decode_cpus=0 ("shared"): decoding tasks reserve no CPU, at most one per CPU at a
      time, so actors may reserve every CPU and model and decoding share the cores as
      the local CLI's threads do. Chosen by default when the cluster has a single CPU.
    Explicit values win; a plan whose actors would leave decoding tasks no CPU is refused.
    """
    cpus = [c for c in node_cpus if c > 0] or [1.0]
    total, largest = sum(cpus), max(cpus)
    if device == "cuda":
        n = num_actors or max(1, gpus)
        each = float(actor_cpus or 1.0)
        dec = 1.0 if decode_cpus is None else float(decode_cpus)
        return ResourcePlan(n, each, threads or max(1, int(each)), dec, None)
    if decode_cpus is None and total < 2:
        decode_cpus = 0.0  # one CPU: the model and the decoding share it
    shared = decode_cpus is not None and decode_cpus == 0
    budget = total if shared else total / 2  # CPUs for all model actors together
    if actor_cpus is None:
        per_actor = budget / (num_actors or 1)
        actor_cpus = float(max(1, min(4, int(largest), int(per_actor))))
    if num_actors is None:
        num_actors = max(1, int(budget // actor_cpus))
    dec = 1.0 if decode_cpus is None else float(decode_cpus)
    if dec > 0 and num_actors * actor_cpus > total - dec:
        raise ValueError(
            f"{num_actors} model actor(s) x {actor_cpus:g} CPUs leave no CPU for decoding on a "
            f"cluster with {total:g} CPUs; lower --num-actors or --actor-cpus, or let decoding "
            "share the cores with --decode-cpus 0"
        )
    return ResourcePlan(
        num_actors,
        float(actor_cpus),
        threads or max(1, int(actor_cpus)),
        dec,
        max(1, int(total)) if dec == 0 else None,
    )


def node_cpus(ray) -> list[float]:
    """CPUs of each alive node of the cluster."""
    return [
        float(n.get("Resources", {}).get("CPU", 0))
        for n in ray.nodes()
        if n.get("Alive", n.get("alive", False))
    ]


def _scan(out: Path) -> list[dict]:
    rows = []
    for p in list_shards(out):
        rows.extend(read_shard(p, ["path", "sha256", "model_id", "status"]))
    return rows


def _clear(out: Path) -> None:
    for p in [*list_shards(out), *list_staged(out)]:
        p.unlink()
    (out / MANIFEST).unlink(missing_ok=True)
    fsync_dir(out)


def _remove_temporaries(out: Path) -> None:
    """A killed writer's half-written files (one driver per folder, so none is in use)."""
    for p in out.iterdir():
        if p.name.endswith(".tmp") and (
            p.name.startswith((".part-g", f".{STAGED_PREFIX}", f".{MANIFEST}"))
        ):
            p.unlink(missing_ok=True)


def score_with_ray(
    sources: Sequence[str | os.PathLike],
    model: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    address: str | None = None,
    num_actors: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    threads: int | None = None,
    backend: str = "auto",
    actor_cpus: float | None = None,
    resume: bool = True,
    format: str = "parquet",
    read_batch: int = 8,
    shard_rows: int | None = None,
    flush_seconds: float = DEFAULT_FLUSH_SECONDS,
    decode_memory: int = 256 << 20,
    decode_cpus: float | None = None,
    limits: ReaderLimits = DEFAULT_LIMITS,
    timeout: float = DEFAULT_TIMEOUT_S,
    recursive: bool = True,
    progress_bars: bool = False,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    auth_token_file: str | os.PathLike | None = None,
    ray_init_kwargs: dict | None = None,
    _crash_markers: dict[str, str] | None = None,
) -> RaySummary:
    """Score GIFs with Ray Data into Parquet/JSONL shards plus a manifest under `out_dir`.

    sources: files, folders, glob patterns and http(s) URLs, expanded on the driver as
        `gifsent-infer` does; paths must be readable by the workers (a shared filesystem).
    model: the .onnx file (None: $GIFSENT_MODEL, then gifsent-export's location); it is
        shipped to the actors through Ray's object store.
    address: the Ray cluster ("auto", "host:6379", "ray://host:10001", "local"); used only
        when this process has not joined Ray yet (then Ray is left as it was found when
        done); None: $RAY_ADDRESS, else a new local instance. connect_timeout: seconds to
        reach and join it before ClusterError. auth_token_file: the cluster's token
        (token authentication; or set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN[_PATH]).
    num_actors, actor_cpus, decode_cpus: model actors, the CPUs each reserves, and the CPUs
        each decoding task reserves (default: plan_actors); threads: onnxruntime threads
        per actor (default: its CPUs).
    batch_size: GIFs per model call; read_batch: GIFs per decoding task; decode_memory:
        bytes Ray reserves per decoding task.
    shard_rows, flush_seconds: a shard is written every shard_rows rows (default:
        auto_shard_rows of the inputs to score) or flush_seconds seconds, whichever first.
    device: "cpu", "cuda" (each actor asks Ray for a GPU) or "auto" (cuda when the
        cluster has GPUs).
    backend: "auto", "onnxruntime" or "openvino", resolved in each actor (engine.py).
    resume: keep the rows already in `out_dir` and skip inputs scored before by this
        model with the same content; False empties `out_dir` first.
    Raises ImportError (with the install hint) without Ray, ClusterError, NoInputsError,
    ModelError, DeviceError, ValueError; bad GIFs become error rows.
    """
    from gifsent_infer.session import (
        DEVICES,
        DeviceError,
        read_document,
        resolve_model,
    )

    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    for name, value in (
        ("batch_size", batch_size),
        ("read_batch", read_batch),
        ("shard_rows", shard_rows or 1),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not flush_seconds > 0:
        raise ValueError(f"flush_seconds must be > 0, got {flush_seconds}")
    if not connect_timeout > 0:
        raise ValueError(f"connect_timeout must be > 0, got {connect_timeout}")
    if actor_cpus is not None and not actor_cpus > 0:
        raise ValueError(f"actor_cpus must be > 0, got {actor_cpus}")
    ray = import_ray()
    start = time.perf_counter()
    _fault_counts.clear()

    model_path = resolve_model(model)
    spec = read_document(model_path).sampling  # ModelError for a graph without a document
    model_bytes = model_path.read_bytes()
    model_id = sha256(model_bytes)

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    items = expand_inputs([str(s) for s in sources], recursive=recursive).items
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the shards")

    started_here = False
    if not ray.is_initialized():  # first, so that a cluster we cannot join changes nothing
        if auth_token_file is not None:
            use_auth_token_file(auth_token_file)
        connect_ray(ray, address, timeout=connect_timeout, init_kwargs=ray_init_kwargs)
        started_here = True
    try:
        resources = {k: float(v) for k, v in ray.cluster_resources().items()}
        gpus = int(resources.get("GPU", 0))
        if device == "auto":
            device = "cuda" if gpus else "cpu"
        if device == "cuda" and not gpus:
            raise DeviceError(
                f"--device cuda: the Ray cluster has no GPUs (CPU={resources.get('CPU', 0):g}, "
                "GPU=0); start the workers with GPUs (`ray start --num-gpus N`) or use --device cpu"
            )
        plan = plan_actors(
            node_cpus(ray) or [resources.get("CPU", 1.0)],
            gpus,
            device,
            num_actors,
            actor_cpus,
            decode_cpus,
            threads,
        )
        # the folder only now: a usage error above must leave it as it was
        out.mkdir(parents=True, exist_ok=True)
        _remove_temporaries(out)
        recovered = 0
        if not resume:
            _clear(out)
        else:  # finish what a killed run left (its staged replacements) before deciding
            recovered = len(commit_staged(out))
        _boundary("recovered")
        committed = _scan(out)
        generation = max((_generation(p) for p in list_shards(out)), default=0) + 1
        names = {i.name for i in items}
        _, done = resume_plan(committed, names, model_id)  # the rows stay in their shards
        replaces = {r["path"] for r in committed} & names
        rows_per_shard = shard_rows or auto_shard_rows(len(items) - len(done))
        summary = RaySummary(
            out_dir=out,
            manifest=out / MANIFEST,
            model_id=model_id,
            generation=generation,
            inputs=len(items),
            device=device,
            num_actors=plan.num_actors,
            actor_cpus=plan.actor_cpus,
            threads=plan.threads,
            decode_cpus=plan.decode_cpus,
            decode_tasks=plan.decode_tasks,
            shard_rows=rows_per_shard,
            flush_seconds=flush_seconds,
            recovered=recovered,
        )
        writer = _ShardWriter(out, generation, format, rows_per_shard, flush_seconds, replaces)
        try:
            _run(
                ray,
                summary,
                items,
                writer,
                model_bytes=model_bytes,
                spec=spec,
                done=done,
                batch_size=batch_size,
                backend=backend,
                read_batch=read_batch,
                decode_memory=decode_memory,
                limits=limits,
                timeout=timeout,
                progress_bars=progress_bars,
                crash=_crash_markers or {},
            )
        except Exception as e:  # Ray's and Ray Data's failures: say it in one line
            first = (str(e).strip().splitlines() or [""])[0]
            raise RayRunError(
                f"the Ray run failed: {type(e).__name__}: {first[:300]}; the {len(writer.names)} "
                f"shard(s) it wrote are kept, and rerunning the command resumes"
            ) from e
    finally:
        if started_here:
            ray.shutdown()
    _boundary("scored")
    commit_staged(out)
    _boundary("committed")
    summary.seconds = time.perf_counter() - start
    rebuild_manifest(
        out,
        run={
            "generation": generation,
            "model_id": model_id,
            "inputs": summary.inputs,
            "scored": summary.scored,
            "failed": summary.failed,
            "skipped": summary.skipped,
            "device": device,
            "num_actors": summary.num_actors,
            "actor_cpus": summary.actor_cpus,
            "shard_rows": rows_per_shard,
            "seconds": round(summary.seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    return summary


class _ShardWriter:
    """The driver's one writer: buffers rows, flushes a shard every `rows` rows or `seconds`
    seconds. Rows for inputs in `replaces` (a committed row exists) go to staged shards."""

    def __init__(
        self, out: Path, generation: int, fmt: str, rows: int, seconds: float, replaces: set[str]
    ) -> None:
        self.out, self.generation, self.fmt = out, generation, fmt
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
                    write_shard(self.out, rows, self.generation, self.fmt, staged=staged)
                )
                rows.clear()
                _boundary("shard")
        self.since = None


def _stream(make_iter: Callable[[], Iterator], wait: Callable[[], float | None]) -> Iterator:
    """Items of make_iter(), iterated on a thread, with None yielded whenever wait() seconds
    pass without one (so the caller can flush by time while the pipeline is busy)."""
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(msg) -> bool:
        while not stop.is_set():
            try:
                q.put(msg, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = None
        try:
            it = make_iter()
            for x in it:
                if not put(("item", x)):
                    return
            put(("end", None))
        except BaseException as e:
            put(("error", e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                with suppress(Exception):
                    close()  # stops Ray Data's executor when the driver gave up early

    thread = threading.Thread(target=produce, name="gifsent-ray-rows", daemon=True)
    thread.start()
    try:
        while True:
            w = wait()
            try:
                kind, x = q.get(timeout=None if w is None else max(w, 0.01))
            except queue.Empty:
                yield None
                continue
            if kind == "end":
                return
            if kind == "error":
                raise x
            yield x
    finally:
        stop.set()
        thread.join(timeout=60)


def _drain(make_iter: Callable[[], Iterator], writer: _ShardWriter, threaded: bool = True) -> None:
    """Blocks of score rows (pyarrow tables) -> the writer, flushing by rows and by time
    (threaded=False: iterate here, and flush by time only when a block arrives)."""
    blocks = _stream(make_iter, writer.wait) if threaded else iter(make_iter())
    for batch in blocks:
        if batch is not None:
            rows = batch.to_pylist()
            rows.sort(key=lambda r: r["index"])
            writer.add(rows)
            for _ in rows:
                _boundary("received")  # tests and benchmarks: "killed at N% of the inputs"
        wait = writer.wait()
        if wait is not None and wait <= 0:
            writer.flush()
    writer.flush()


def _run(
    ray,
    summary: RaySummary,
    items: list[InputItem],
    writer: _ShardWriter,
    *,
    model_bytes: bytes,
    spec: SamplingSpec,
    done: dict[str, str],
    batch_size: int,
    backend: str,
    read_batch: int,
    decode_memory: int,
    limits: ReaderLimits,
    timeout: float,
    progress_bars: bool,
    crash: dict[str, str],
) -> None:
    records = [
        {
            "index": i,
            "name": it.name,
            "path": str(it.path) if it.path is not None else None,
            "url": it.url,
            "error": it.error,
        }
        for i, it in enumerate(items)
    ]
    plan = {
        "model_id": summary.model_id,
        "device": summary.device,
        "num_actors": summary.num_actors,
        "actor_cpus": summary.actor_cpus,
        "threads": summary.threads,
        "decode_cpus": summary.decode_cpus,
        "decode_tasks": summary.decode_tasks,
        "spec": spec.to_dict(),
        "limits": asdict(limits),
        "timeout": timeout,
        "batch_size": batch_size,
        "read_batch": read_batch,
        "decode_memory": decode_memory,
        "progress_bars": progress_bars,
        "crash_actor": crash.get("actor"),
        "backend": backend,
    }
    try:
        from ray.util.client import ray as client_ray

        client = bool(client_ray.is_connected())
    except Exception:
        client = False
    if client:
        # Ray Client (ray://): Ray Data's executor needs a real Ray worker, which a client
        # is not, and Ray Client has no streaming tasks; so the pipeline runs in a task on
        # the cluster and hands its blocks over through a queue actor
        from ray.util.queue import Queue

        q = Queue(maxsize=4, actor_options={"num_cpus": 0})
        task = ray.remote(num_cpus=0, max_retries=0)(_remote_blocks)
        ref = task.remote(records, model_bytes, done, plan, q)
        try:
            _drain(lambda: _from_queue(ray, q, ref), writer, threaded=False)
        finally:
            with suppress(Exception):
                ray.cancel(ref, force=True)
            with suppress(Exception):
                q.shutdown()
    else:
        _drain(lambda: _blocks(records, model_bytes, done, plan), writer)
    summary.scored, summary.failed, summary.skipped = writer.scored, writer.failed, writer.skipped
    summary.shards = sorted(writer.names)


def _remote_blocks(records: list[dict], model_bytes: bytes, done: dict, plan: dict, q) -> int:
    """The pipeline as a task (for Ray Client drivers): its blocks go into the queue `q`."""
    n = 0
    for block in _blocks(records, model_bytes, done, plan):
        q.put(block)
        n += 1
    q.put(None)  # the end
    return n


def _from_queue(ray, q, ref) -> Iterator:
    """Blocks from the queue the remote pipeline fills, until its end mark; its failure is
    raised here."""
    from ray.util.queue import Empty

    while True:
        try:
            block = q.get(timeout=1.0)
        except Empty:
            ready, _ = ray.wait([ref], timeout=0)
            if ready:
                ray.get(ref)  # raises the task's error; if it ended well, the mark is queued
            continue
        if block is None:
            return
        yield block


def _blocks(records: list[dict], model_bytes: bytes, done: dict, plan: dict) -> Iterator:
    """Build the Ray Data pipeline and yield its blocks of score rows (pyarrow tables)."""
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = plan["progress_bars"]
    read_batch = plan["read_batch"]
    blocks = max(1, math.ceil(len(records) / read_batch))
    ds = ray.data.from_items(records, override_num_blocks=blocks)
    ds = ds.map_batches(
        _read_batch,
        batch_size=read_batch,
        batch_format="pyarrow",
        fn_kwargs={
            "spec": plan["spec"],
            "limits": plan["limits"],
            "timeout": plan["timeout"],
            "done_ref": [ray.put(done)] if done else [],
        },
        num_cpus=plan["decode_cpus"],
        concurrency=plan["decode_tasks"],
        # a scheduling hint for the decoder's peak memory; being different from the
        # actors' remote args, it also keeps Ray Data from fusing decoding into the model
        # actors (decoding must not hold a GPU actor, nor run one GIF at a time per actor)
        memory=plan["decode_memory"],
    )
    cuda = plan["device"] == "cuda"
    ds = ds.map_batches(
        _ScoreActor,
        batch_size=plan["batch_size"],
        batch_format="pyarrow",
        fn_constructor_kwargs={
            "model_ref": [ray.put(model_bytes)],
            "model_id": plan["model_id"],
            "device": plan["device"],
            "threads": plan["threads"],
            "crash_marker": plan["crash_actor"],
            "backend": plan["backend"],
        },
        # Ray Data restarts a dead actor and retries its batch (max_restarts=-1 and
        # max_task_retries=-1 are its defaults for actor pools); tasks are retried too
        compute=ray.data.ActorPoolStrategy(size=plan["num_actors"]),
        num_cpus=plan["actor_cpus"],
        num_gpus=1 if cuda else 0,
    )
    yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
