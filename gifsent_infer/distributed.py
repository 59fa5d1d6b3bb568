"""Score GIFs on a Ray cluster with Ray Data: decode on CPU tasks, onnxruntime in an actor pool, shards on disk.

    from gifsent_infer.distributed import score_with_ray, read_scores
    summary = score_with_ray(["gifs/", "https://x/y.gif"], "gifsent-rnn.onnx", "scores/",
                             address="auto", device="cuda", num_actors=4)
    rows = read_scores("scores/")            # one dict per input, the local CLI's columns

The pipeline (one Ray Data dataset, streamed):

    inputs (driver: expand files/folders/globs/URLs like gifsent-infer)
      -> read, hash, decode, sample     CPU tasks, `read_batch` inputs per task
      -> run the model                  actor pool, one ModelSession per actor, made once
      -> write a shard                  CPU tasks, up to `shard_rows` rows per shard

Output folder (must be visible to every node: local disk for a one-machine cluster,
otherwise a shared filesystem)::

    out_dir/part-g<generation>-<key>.parquet|.jsonl   score rows, the local CLI's columns
    out_dir/_manifest.json                              rebuilt from the shards after each run

Exactly once: a shard's name is a hash of the (sha256, path) pairs of the rows it holds,
and it is written to a temporary name and renamed, so a retried task (a killed worker)
rewrites the same file instead of adding one, and a reader never sees half a shard. Each
run gets the next generation number; when an input has rows in several shards (an error
row retried by a later run, a file whose content changed), the newest generation wins and
the manifest rebuild rewrites the older shards without it. The manifest is derived data:
it is rebuilt from the shards, so a killed driver loses nothing that was written.

Resume matches the local CLI: an input is skipped when an ok row of the same model
(model id = sha256 of the model file) exists for its path with the same content hash.

Ray is optional (the `ray` extra) and imported inside functions only; importing this
module costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gifsent_infer.contract import EMOTIONS, SamplingSpec
from gifsent_infer.gifio import DEFAULT_LIMITS, ReaderLimits, SampleInfo
from gifsent_infer.inputs import (
    DEFAULT_TIMEOUT_S,
    InputItem,
    expand_inputs,
    read_item,
    sha256,
)
from gifsent_infer.outputs import COLUMNS, _fsync_dir, read_rows, write_rows
from gifsent_infer.scorer import _f32, failure_reason, sample_content

RAY_INSTALL_HINT = (
    "Ray is not installed; install the optional extra with `pip install 'gifsent[ray]'` "
    "(Ray Data, with pyarrow)"
)
FORMATS = ("parquet", "jsonl")
MANIFEST = "_manifest.json"
MANIFEST_FORMAT = "gifsent-ray-scores"
_SHARD_RE = re.compile(r"^part-g(\d{4,})-([0-9a-f]{24})\.(parquet|jsonl)$")


def import_ray():
    """`ray` and `ray.data`, or ImportError with the install hint."""
    try:
        import ray
        import ray.data  # Ray Data is the `data` extra of ray
    except ImportError as e:
        raise ImportError(f"{RAY_INSTALL_HINT} ({e})") from None
    return ray


# --- the score row schema ---------------------------------------------------------------------


def _row_schema():
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
    }
    # float64, not float32: a row holds the shortest float that round-trips the model's
    # float32 score (see scorer._f32), and float64 keeps that Python float exactly
    return pa.schema([(c, types.get(c, pa.float64())) for c in COLUMNS])


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
_ROWS = _LazySchema(_row_schema)


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
            row: dict[str, Any] = {
                "index": it["index"],
                "path": it["path"],
                "sha256": it["sha256"],
                "model_id": self.model_id,
                "status": it["status"],
                "error": it["error"],
                # as ScoreResult.to_row
                "format": info.format if info else None,
                "frames": info.n_frames if info else None,
                "duration": round(float(info.duration_s), 4) if info else None,
                "segments": info.segments if info else None,
                "padding": round(float(info.padding), 4) if info else None,
            }
            s = scores.get(i)
            for k, e in enumerate(EMOTIONS):
                row[e] = _f32(s[k]) if s is not None else None
            rows.append(row)
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


# --- stage 3: shards (CPU tasks) ---------------------------------------------------------------


def shard_key(rows: Iterable[dict]) -> str:
    """24 hex digits of sha256 over the sorted (sha256, path) pairs of a shard's rows."""
    h = hashlib.sha256()
    for digest, path in sorted((r["sha256"] or "", r["path"]) for r in rows):
        h.update(f"{digest}\t{path}\n".encode())
    return h.hexdigest()[:24]


def shard_name(rows: Sequence[dict], generation: int, fmt: str) -> str:
    return f"part-g{generation:04d}-{shard_key(rows)}.{fmt}"


def write_shard(out_dir: Path, rows: list[dict], generation: int, fmt: str) -> str:
    """Write rows as one shard, atomically (temporary name, fsync, rename); returns its name."""
    out_dir = Path(out_dir)
    name = shard_name(rows, generation, fmt)
    tmp = out_dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(
                [{c: r.get(c) for c in COLUMNS} for r in rows], schema=_ROWS.get()
            )
            pq.write_table(table, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                write_rows(f, rows, "jsonl")
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, out_dir / name)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(out_dir)
    return name


def _write_batch(batch, *, out_dir: str, generation: int, fmt: str, crash_marker: str | None):
    """Score rows -> one shard; returns one summary row (shard name and counts)."""
    import pyarrow as pa

    rows = sorted(batch.to_pylist(), key=lambda r: r["index"])
    keep = [r for r in rows if r["status"] != "skipped"]
    name = write_shard(Path(out_dir), keep, generation, fmt) if keep else ""
    _crash_once(
        crash_marker
    )  # tests: killed after the rename, before reporting: the retry rewrites
    return pa.table(
        {
            "shard": [name],
            "rows": [len(keep)],
            "ok": [sum(r["status"] == "ok" for r in keep)],
            "error": [sum(r["status"] == "error" for r in keep)],
            "skipped": [len(rows) - len(keep)],
        }
    )


# --- reading shards back and rebuilding the manifest -------------------------------------------


def list_shards(out_dir: str | os.PathLike) -> list[Path]:
    out = Path(out_dir)
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if _SHARD_RE.match(p.name))


def _generation(path: Path) -> int:
    m = _SHARD_RE.match(path.name)
    assert m is not None
    return int(m.group(1))


def read_shard(path: Path, columns: Sequence[str] | None = None) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path, columns=list(columns) if columns else None).to_pylist()
    rows = read_rows(path, "jsonl").rows
    if columns:
        rows = [{c: r.get(c) for c in columns} for r in rows]
    return rows


def _winner_key(gen: int, status: str | None, name: str) -> tuple:
    # newest generation first, then an ok row before an error row, then the smaller name
    return (-gen, status != "ok", name)


def rebuild_manifest(out_dir: str | os.PathLike) -> dict:
    """Make every input appear in exactly one shard and rewrite `_manifest.json` from the shards.

    Where an input (path) has rows in several shards, the row of the newest generation
    wins (ties: ok before error, then the smaller shard name); shards holding losing rows
    are rewritten without them (new shard first, then the old one removed). Idempotent:
    run it again after a crash at any point and it converges.
    """
    out = Path(out_dir)
    shards = list_shards(out)
    best: dict[str, tuple] = {}
    meta: dict[Path, list[dict]] = {}
    for p in shards:
        rows = read_shard(p, ["path", "status"])
        meta[p] = rows
        for r in rows:
            key = _winner_key(_generation(p), r["status"], p.name)
            if r["path"] not in best or key < best[r["path"]]:
                best[r["path"]] = key
    entries = []
    for p in shards:
        rows = meta[p]
        gen = _generation(p)
        keep = [
            i
            for i, r in enumerate(rows)
            if best[r["path"]] == _winner_key(gen, r["status"], p.name)
        ]
        # two rows of one path in one shard cannot both win: keep the first
        first: dict[str, int] = {}
        for i in keep:
            first.setdefault(rows[i]["path"], i)
        keep = sorted(first.values())
        if len(keep) < len(rows):
            full = read_shard(p)
            kept = [full[i] for i in keep]
            if kept:
                fmt = p.suffix.lstrip(".")
                name = write_shard(out, kept, gen, fmt)
                if name != p.name:
                    p.unlink(missing_ok=True)
                p = out / name
                rows = [{"path": r["path"], "status": r["status"]} for r in kept]
                for r in rows:  # the rewritten shard is where these rows win now
                    best[r["path"]] = _winner_key(gen, r["status"], name)
            else:
                p.unlink(missing_ok=True)
                continue
        entries.append(
            {
                "name": p.name,
                "generation": gen,
                "rows": len(rows),
                "ok": sum(r["status"] == "ok" for r in rows),
                "error": sum(r["status"] == "error" for r in rows),
            }
        )
    entries.sort(key=lambda e: e["name"])
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "columns": list(COLUMNS),
        "shards": entries,
        "rows": sum(e["rows"] for e in entries),
        "ok": sum(e["ok"] for e in entries),
        "error": sum(e["error"] for e in entries),
        "generation": max((e["generation"] for e in entries), default=0),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    old = read_manifest(out)
    if old is not None:  # what the runs recorded about themselves survives the rebuild
        manifest["runs"] = old.get("runs", [])
    _write_json(out / MANIFEST, manifest)
    return manifest


def read_manifest(out_dir: str | os.PathLike) -> dict | None:
    path = Path(out_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_scores(out_dir: str | os.PathLike) -> list[dict]:
    """All score rows of an output folder, one per input, sorted by path (the local CLI's columns)."""
    out = Path(out_dir)
    manifest = read_manifest(out)
    if manifest is None or any(not (out / s["name"]).is_file() for s in manifest["shards"]):
        manifest = rebuild_manifest(out)
    rows = [r for s in manifest["shards"] for r in read_shard(out / s["name"])]
    return sorted(rows, key=lambda r: r["path"])


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
    shards: list[str] = field(default_factory=list)  # written by this run
    seconds: float = 0.0
    device: str = "cpu"
    num_actors: int = 1


def _cluster_resources(ray) -> dict:
    return {k: float(v) for k, v in ray.cluster_resources().items()}


def _done_inputs(out: Path, model_id: str, names: set[str]) -> dict[str, str]:
    """path -> sha256 of inputs with an ok row of this model (what resume skips)."""
    done: dict[str, str] = {}
    for p in list_shards(out):
        for r in read_shard(p, ["path", "sha256", "model_id", "status"]):
            if r["path"] in names and r["status"] == "ok" and r["model_id"] == model_id:
                done[r["path"]] = r["sha256"] or ""
    return done


def _clear(out: Path) -> None:
    for p in list_shards(out):
        p.unlink()
    (out / MANIFEST).unlink(missing_ok=True)


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
    actor_cpus: float = 1.0,
    resume: bool = True,
    format: str = "parquet",
    read_batch: int = 8,
    shard_rows: int = 1024,
    decode_memory: int = 256 << 20,
    limits: ReaderLimits = DEFAULT_LIMITS,
    timeout: float = DEFAULT_TIMEOUT_S,
    recursive: bool = True,
    progress_bars: bool = False,
    ray_init_kwargs: dict | None = None,
    _crash_markers: dict[str, str] | None = None,
) -> RaySummary:
    """Score GIFs with Ray Data into Parquet/JSONL shards plus a manifest under `out_dir`.

    sources: files, folders, glob patterns and http(s) URLs, expanded on the driver as
        `gifsent-infer` does; paths must be readable by the workers (a shared filesystem).
    model: the .onnx file (None: $GIFSENT_MODEL, then gifsent-export's location); it is
        shipped to the actors through Ray's object store.
    address: the Ray cluster ("auto", "host:6379", "ray://host:10001"); used only when this
        process has not joined Ray yet (then Ray is left as it was found when done); None:
        $RAY_ADDRESS, else a new local instance.
    num_actors: model actors (default: one per GPU for cuda, half the CPUs for cpu).
    batch_size: GIFs per model call; read_batch: GIFs per decoding task; shard_rows: the
        most rows per output shard. decode_memory: bytes Ray reserves per decoding task.
    device: "cpu", "cuda" (each actor asks Ray for a GPU) or "auto" (cuda when the
        cluster has GPUs). threads: inference threads per CPU actor (default actor_cpus).
    backend: "auto", "onnxruntime" or "openvino", resolved in each actor (engine.py).
    resume: keep the rows already in `out_dir` and skip inputs scored before by this
        model with the same content; False empties `out_dir` first.
    Raises ImportError (with the install hint) without Ray, NoInputsError, ModelError,
    DeviceError; bad GIFs become error rows.
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
        ("shard_rows", shard_rows),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    ray = import_ray()
    start = time.perf_counter()

    model_path = resolve_model(model)
    spec = read_document(model_path).sampling  # ModelError for a graph without a document
    model_bytes = model_path.read_bytes()
    model_id = sha256(model_bytes)

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    items = expand_inputs([str(s) for s in sources], recursive=recursive).items
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".part-g*.tmp"):  # a killed writer's leftovers (one driver per folder)
        stale.unlink(missing_ok=True)
    if not resume:
        _clear(out)
    elif list_shards(out):
        rebuild_manifest(out)  # settle what a killed run left before deciding what is done
    generation = max((_generation(p) for p in list_shards(out)), default=0) + 1
    done = _done_inputs(out, model_id, {i.name for i in items}) if resume else {}

    started_here = False
    if not ray.is_initialized():
        kwargs = {"include_dashboard": False, "log_to_driver": False, **(ray_init_kwargs or {})}
        ray.init(address=address, **kwargs)
        started_here = True
    try:
        resources = _cluster_resources(ray)
        gpus = int(resources.get("GPU", 0))
        if device == "auto":
            device = "cuda" if gpus else "cpu"
        if device == "cuda" and not gpus:
            raise DeviceError(
                f"--device cuda: the Ray cluster has no GPUs (CPU={resources.get('CPU', 0):g}, "
                "GPU=0); start the workers with GPUs (`ray start --num-gpus N`) or use --device cpu"
            )
        if num_actors is None:
            num_actors = (
                max(1, gpus) if device == "cuda" else max(1, int(resources.get("CPU", 2)) // 2)
            )
        summary = RaySummary(
            out_dir=out,
            manifest=out / MANIFEST,
            model_id=model_id,
            generation=generation,
            inputs=len(items),
            device=device,
            num_actors=num_actors,
        )
        _run(
            ray,
            summary,
            items,
            model_bytes=model_bytes,
            spec=spec,
            done=done,
            batch_size=batch_size,
            threads=threads,
            backend=backend,
            actor_cpus=actor_cpus,
            fmt=format,
            read_batch=read_batch,
            shard_rows=shard_rows,
            decode_memory=decode_memory,
            limits=limits,
            timeout=timeout,
            progress_bars=progress_bars,
            crash=_crash_markers or {},
        )
    finally:
        if started_here:
            ray.shutdown()
    manifest = rebuild_manifest(out)
    summary.seconds = time.perf_counter() - start
    runs = manifest.get("runs", [])
    runs.append(
        {
            "generation": generation,
            "model_id": model_id,
            "inputs": summary.inputs,
            "scored": summary.scored,
            "failed": summary.failed,
            "skipped": summary.skipped,
            "device": device,
            "num_actors": summary.num_actors,
            "seconds": round(summary.seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    manifest["runs"] = runs
    _write_json(out / MANIFEST, manifest)
    return summary


def _run(
    ray,
    summary: RaySummary,
    items: list[InputItem],
    *,
    model_bytes: bytes,
    spec: SamplingSpec,
    done: dict[str, str],
    batch_size: int,
    threads: int | None,
    backend: str,
    actor_cpus: float,
    fmt: str,
    read_batch: int,
    shard_rows: int,
    decode_memory: int,
    limits: ReaderLimits,
    timeout: float,
    progress_bars: bool,
    crash: dict[str, str],
) -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress_bars
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
    blocks = max(1, math.ceil(len(records) / read_batch))
    ds = ray.data.from_items(records, override_num_blocks=blocks)
    ds = ds.map_batches(
        _read_batch,
        batch_size=read_batch,
        batch_format="pyarrow",
        fn_kwargs={
            "spec": spec.to_dict(),
            "limits": asdict(limits),
            "timeout": timeout,
            "done_ref": [ray.put(done)] if done else [],
        },
        num_cpus=1,
        # a scheduling hint for the decoder's peak memory; being different from the
        # actors' remote args, it also keeps Ray Data from fusing decoding into the model
        # actors (decoding must not hold a GPU actor, nor run one GIF at a time per actor)
        memory=decode_memory,
    )
    cuda = summary.device == "cuda"
    ds = ds.map_batches(
        _ScoreActor,
        batch_size=batch_size,
        batch_format="pyarrow",
        fn_constructor_kwargs={
            "model_ref": [ray.put(model_bytes)],
            "model_id": summary.model_id,
            "device": summary.device,
            "threads": threads or (None if cuda else max(1, int(actor_cpus))),
            "crash_marker": crash.get("actor"),
            "backend": backend,
        },
        # Ray Data restarts a dead actor and retries its batch (max_restarts=-1 and
        # max_task_retries=-1 are its defaults for actor pools); tasks are retried too
        compute=ray.data.ActorPoolStrategy(size=summary.num_actors),
        num_cpus=actor_cpus,
        num_gpus=1 if cuda else 0,
    )
    ds = ds.map_batches(
        _write_batch,
        batch_size=shard_rows,
        batch_format="pyarrow",
        fn_kwargs={
            "out_dir": str(summary.out_dir.resolve()),
            "generation": summary.generation,
            "fmt": fmt,
            "crash_marker": crash.get("writer"),
        },
        num_cpus=0.25,  # light: it must not wait behind the decoders for a whole core
    )
    shards: set[str] = set()
    for row in ds.iter_rows():
        if row["shard"]:
            shards.add(row["shard"])
        summary.scored += row["ok"]
        summary.failed += row["error"]
        summary.skipped += row["skipped"]
    summary.shards = sorted(shards)
