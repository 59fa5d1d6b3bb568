"""Score GIFs on a Ray cluster with Ray Data: decode on CPU tasks, onnxruntime in an actor pool,
scores committed to a Delta Lake table.

    from gifsent_infer.scaleout.distributed import score_with_ray, read_scores
    summary = score_with_ray(["s3://bucket/gifs/", "https://x/y.gif"], "gifsent-rnn.onnx",
                             "s3://bucket/scores", address="auto", device="cuda", num_actors=4)
    rows = read_scores("s3://bucket/scores")   # one dict per input, the local CLI's columns

The pipeline (one Ray Data dataset, streamed):

    inputs (driver: expand files/folders/globs/URLs/object-store prefixes like gifsent-infer,
            or read a manifest listing them)
      -> read, hash, decode, sample     CPU tasks, `read_batch` inputs per task; object-store
                                        inputs are read by the workers straight from the store
      -> run the model                  actor pool, one ModelSession per actor, made once
      -> rows back to the driver        which commits them to the table (one writer)

Under Ray Client (ray://) the driver is not a Ray worker and cannot run Ray Data's
executor: the same pipeline then runs in a task on the cluster, which passes its blocks to
the driver through a queue actor.

The output is a Delta Lake table (delta_table.py) at a local path or an object-store URI:
one row per input keyed by `path`, every commit atomic, readers (DuckDB, Polars, pandas,
Spark, Trino, deltalake) always on a whole snapshot. Rows are committed every `shard_rows`
rows or `flush_seconds` seconds, whichever comes first, so a killed run keeps nearly
everything it scored; rows of inputs the table lacks are appended, rows that replace a row
are MERGEd on `path`. One driver per table at a time.

Resume matches the local CLI: an input is skipped when an ok row of the same model
(model id = sha256 of the model file) exists for its path with the same content hash (an
anti-join of the inputs against the table's rows for this model, then the hash check in the
decoding task).

Ray is optional (the `ray` extra, which brings deltalake) and imported inside functions only;
importing this module costs nothing.

Joining the cluster, the actor/CPU plan and the fault hooks are in ray_cluster.py, the table
in delta_table.py. Their public names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.errors import GifsentError
from gifsent_infer.options import ScoreOptions
from gifsent_infer.reading.gifio import DEFAULT_LIMITS, ReaderLimits, SampleInfo
from gifsent_infer.reading.inputs import (
    InputItem,
    expand_inputs,
    read_item,
    sha256,
)
from gifsent_infer.reading.stores import store_env
from gifsent_infer.running.rows import COLUMNS, arrow_schema, resume_plan, score_row
from gifsent_infer.running.scorer import failure_reason, sample_content
from gifsent_infer.scaleout.delta_table import (
    DEFAULT_RETENTION_HOURS,
    ScoresTableError,
    TableWriter,
    auto_commit_rows,
    delete_other_rows,
    ensure_table,
    read_scores,
    scan_keys,
    table_location,
    tidy,
)
from gifsent_infer.scaleout.phases import mark, phase_file, start_driver

# cluster plumbing and the output folder live in their own modules; their public names are
# re-exported here, where users and the README have always imported them from
from gifsent_infer.scaleout.ray_cluster import (
    DEFAULT_CONNECT_TIMEOUT_S,
    RAY_INSTALL_HINT,
    ClusterError,
    ResourcePlan,
    connect_ray,
    crash_once,
    fault_point,
    import_ray,
    node_cpus,
    plan_actors,
    refresh_ray_auth,
    reset_faults,
    resolve_address,
    use_auth_token_file,
    worker_fault_marker,
)

# cluster plumbing and the output folder live in their own modules; their public names are
# re-exported here, where users and the README have always imported them from

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_FLUSH_SECONDS",
    "DEFAULT_RETENTION_HOURS",
    "RAY_INSTALL_HINT",
    "ClusterError",
    "RayRunError",
    "RaySummary",
    "ResourcePlan",
    "ScoresTableError",
    "auto_commit_rows",
    "connect_ray",
    "import_ray",
    "node_cpus",
    "plan_actors",
    "read_scores",
    "refresh_ray_auth",
    "resolve_address",
    "score_with_ray",
    "use_auth_token_file",
]

DEFAULT_FLUSH_SECONDS = 10.0
# Bytes Ray reserves for each decoding task: what decoding one input of the reader's limits
# holds at its peak, with room; the memory budget over this caps the decoding tasks at once.
DEFAULT_DECODE_MEMORY = 256 << 20


class RayRunError(GifsentError, RuntimeError):
    """The Ray pipeline failed mid-run; the rows already written are kept (the CLI exits 1)."""


# --- stage 1: read, hash, decode and sample (CPU tasks) ----------------------------------------


def _read_batch(
    batch,
    *,
    spec: dict,
    limits: dict,
    timeout: float,
    done_ref: list,
    allow_private: bool = False,
    env: dict | None = None,
    phase_log: str | None = None,
):
    """pyarrow batch of inputs -> one row each with the sampled frames as bytes (or an error)."""
    import pyarrow as pa
    import ray

    for key, value in (env or {}).items():  # the stores' settings, unless this node has its own
        os.environ.setdefault(key, value)

    mark("decode_start", role="decode", file=phase_log, once=True)
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
            data = read_item(
                src, max_bytes=limits_.max_file_bytes, timeout=timeout, allow_private=allow_private
            )
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
    mark("decode_first_done", role="decode", file=phase_log, once=True)
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


# --- stage 2: the model (actor pool) -----------------------------------------------------------


class _ScoreActor:
    """One onnxruntime session per actor, created once; scores batches of prepared inputs."""

    def __init__(
        self,
        model_ref: list,
        model_id: str,
        device: str,
        threads: int | None,
        fault_marker: str | None = None,
        backend: str = "auto",
        precision: str = "auto",
        phase_log: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        mark("actor_start", role="actor", file=phase_log)
        import ray

        from gifsent_infer.running.session import ModelSession

        data = ray.get(model_ref[0])
        if sha256(data) != model_id:
            raise RuntimeError("the model bytes changed in transit")
        # the model travels through the object store, so workers need no shared filesystem
        self._dir = tempfile.mkdtemp(prefix="gifsent-model-")
        path = Path(self._dir) / "model.onnx"
        path.write_bytes(data)
        self.session = ModelSession(
            path, device=device, threads=threads, backend=backend, precision=precision
        )
        if batch_size:  # full batches run a static-batch graph where the engine has one
            self.session.expect_batch(batch_size)
        self.model_id = model_id
        self.fault_marker = fault_marker
        self.phase_log = phase_log
        mark("model_loaded", role="actor", file=phase_log)

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True)

    def __call__(self, batch):
        import pyarrow as pa

        crash_once(self.fault_marker)  # tests: a worker dying mid-run (ray_cluster)
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
        mark("first_scored", role="actor", file=self.phase_log, once=True)
        return pa.Table.from_pylist(rows, schema=_indexed_rows_schema())


def _indexed_rows_schema():
    import pyarrow as pa

    return pa.schema([("index", pa.int64()), *arrow_schema()])


@dataclass
class RaySummary:
    table: str  # the Delta table's location (a local path or an object-store URI)
    model_id: str
    version: int  # the table's version when the run ended
    inputs: int
    scored: int = 0  # ok rows committed by this run
    failed: int = 0  # error rows committed by this run
    skipped: int = 0  # already scored (resume)
    commits: int = 0  # table commits of this run's rows
    removed: int = 0  # rows of other inputs removed (resume=False)
    compacted: int = 0  # small files rewritten into larger ones after the run
    vacuumed: int = 0  # files past the retention deleted after the run
    seconds: float = 0.0
    device: str = "cpu"
    num_actors: int = 1
    actor_cpus: float = 1.0  # CPUs Ray reserves per model actor
    threads: int | None = 1  # onnxruntime threads per model actor
    decode_cpus: float = 1.0  # CPUs Ray reserves per decoding task
    decode_tasks: int | None = None  # most decoding tasks at once (None: as CPUs allow)
    shard_rows: int = 0  # rows per commit
    flush_seconds: float = DEFAULT_FLUSH_SECONDS


def score_with_ray(
    sources: Sequence[str | os.PathLike],
    model: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    options: ScoreOptions | None = None,
    address: str | None = None,
    num_actors: int | None = None,
    actor_cpus: float | None = None,
    resume: bool = True,
    read_batch: int = 8,
    shard_rows: int | None = None,
    flush_seconds: float = DEFAULT_FLUSH_SECONDS,
    decode_memory: int = DEFAULT_DECODE_MEMORY,
    decode_cpus: float | None = None,
    limits: ReaderLimits = DEFAULT_LIMITS,
    recursive: bool = True,
    progress_bars: bool = False,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    auth_token_file: str | os.PathLike | None = None,
    ray_init_kwargs: dict | None = None,
    manifest: str | os.PathLike | None = None,
    manifest_column: str | None = None,
    retention_hours: float = DEFAULT_RETENTION_HOURS,
    vacuum: bool = True,
    compact: bool = True,
    **scoring: Any,
) -> RaySummary:
    """Score GIFs with Ray Data into the Delta Lake table at `out_dir` (a path or a URI).

    sources: files, folders, globs, http(s) URLs and object-store URIs/prefixes, expanded
        as `gifsent-infer` does (local paths: on a shared filesystem; objects are read by
        the workers). manifest: a Parquet/CSV/JSONL file listing one more input per row
        (column `manifest_column`, default path/url/uri).
    model: the .onnx file (None: options.model, then $GIFSENT_MODEL, then gifsent-export's
        location); it is shipped to the actors through Ray's object store.
    options: the scoring options (gifsent_infer.options.ScoreOptions), as the local CLI takes
        them; `scoring` keywords (batch_size=2, device="cpu", top=0, ...) replace fields of
        it. On Ray: backend, device, precision and threads are each model actor's ("auto"
        device: cuda when the cluster has GPUs; threads None: the actor's CPUs); batch_size
        is GIFs per model call; workers caps the decoding tasks at once (None: as the CPUs
        allow, 0: one); memory_budget is what decoding may hold at once across the run
        (each decoding task reserves `decode_memory` of it from Ray's scheduler); max_bytes,
        timeout and allow_private_urls apply to every input; top, percentiles and clip add
        the local CLI's extra columns to the table.
    address: the Ray cluster ("auto", "host:6379", "ray://host:10001", "local"); used only
        when this process has not joined Ray yet (then Ray is left as it was found when
        done); None: $RAY_ADDRESS, else a new local instance. connect_timeout: a deadline
        for joining that holds whatever Ray does (ClusterError). auth_token_file: the
        cluster's token (or set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN[_PATH]).
    num_actors, actor_cpus, decode_cpus: the actor and decoding plan (default: plan_actors).
    read_batch: GIFs per decoding task; decode_memory: bytes Ray reserves per task.
    shard_rows, flush_seconds: commit every shard_rows rows (default: auto_commit_rows) or
        flush_seconds seconds, whichever first.
    limits: the reader's other limits (max_file_bytes is options.max_bytes). resume: skip
        inputs with an ok row of this model for the same content; False rescores all
        (MERGEd), then removes rows of inputs not named. retention_hours, vacuum, compact:
        what happens after the run (delta_table.tidy).
    Raises ImportError (the install hint), ValueError and GifsentErrors (ClusterError,
    NoInputsError, ManifestError, ScoresTableError, ModelError, ...); bad GIFs: error rows.
    """
    opts = ray_options(options, model, scoring)
    _check_arguments(
        opts, read_batch, shard_rows, flush_seconds, connect_timeout, actor_cpus, retention_hours
    )
    start_driver()  # GIFSENT_RAY_PHASES: where the start-up goes (phases.py)
    # listing the inputs (object stores: network round trips) overlaps importing Ray; its
    # errors still come first, before joining a cluster
    listing = _Background(lambda: _expand(sources, manifest, manifest_column, recursive))
    ray = import_ray(data=False)  # Ray Data: after joining, while the table is opened
    mark("ray_imported")
    start = time.perf_counter()
    reset_faults()

    job = _make_job(opts, limits, read_batch, decode_memory, progress_bars)
    mark("model_read")
    items = listing.result()
    mark("inputs_listed", inputs=len(items))
    location = table_location(out_dir)
    started_here = False
    if not ray.is_initialized():  # first, so that a cluster we cannot join changes nothing
        if auth_token_file is not None:
            use_auth_token_file(auth_token_file)
        connect_ray(ray, address, timeout=connect_timeout, init_kwargs=ray_init_kwargs)
        started_here = True
    mark("ray_joined")
    try:
        device, plan = _cluster_plan(ray, opts, num_actors, actor_cpus, decode_cpus, decode_memory)
        mark("plan_ready")
        # the table only now (a usage error above must leave it as it was), opened and
        # scanned for the resume rule on a thread (deltalake's Rust code runs without the
        # GIL) while this one imports Ray Data
        table = _Background(lambda: _open_and_scan(location, retention_hours, job.columns))
        import_ray()
        mark("ray_data_imported")
        dt, committed = table.result()
        mark("table_ready")
        summary = _score_into(
            ray, job, device, plan, items, (dt, committed), resume, shard_rows, flush_seconds
        )
    finally:
        if started_here:
            ray.shutdown()
    fault_point("scored")
    if not resume:
        summary.removed = delete_other_rows(dt, {i.name for i in items})
    summary.__dict__.update(tidy(dt, retention_hours, vacuum, compact))
    summary.version, summary.seconds = dt.version(), time.perf_counter() - start
    mark("run_done")
    return summary


def _make_job(
    opts: ScoreOptions,
    limits: ReaderLimits,
    read_batch: int,
    decode_memory: int,
    progress_bars: bool,
) -> _Job:
    """The run's model (read on the driver, ModelError without a document) and its rows."""
    from gifsent_infer.running.readable import Readable
    from gifsent_infer.running.session import read_document, resolve_model

    model_path = resolve_model(opts.model)
    document = read_document(model_path)  # ModelError for a graph without a document
    readable = Readable.for_options(document, opts)  # ReadableError: no percentiles here
    model_bytes = model_path.read_bytes()
    return _Job(
        opts=opts,
        spec=document.sampling,
        columns=readable.columns(COLUMNS),
        decorate=readable.decorate,
        model_bytes=model_bytes,
        model_id=sha256(model_bytes),
        limits=dataclasses.replace(limits, max_file_bytes=opts.max_bytes),
        read_batch=read_batch,
        decode_memory=decode_memory,
        progress_bars=progress_bars,
    )


class _Background:
    """fn() on a thread, started at once; result() waits and returns it or raises its error."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn()
            except BaseException as e:  # handed to the caller of result()
                self._error = e

        self._thread = threading.Thread(target=run, name="gifsent-ray-start", daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _open_and_scan(location: str, retention_hours: float, columns: tuple[str, ...]):
    """The table (created when missing) and its rows' keys (the resume rule's input)."""
    dt = ensure_table(location, retention_hours, columns)
    return dt, scan_keys(dt)


def _expand(
    sources: Sequence[str | os.PathLike] | str | os.PathLike,
    manifest: str | os.PathLike | None,
    manifest_column: str | None,
    recursive: bool,
) -> list[InputItem]:
    """The run's inputs: the sources expanded, then the manifest's rows (one item per name)."""
    from gifsent_infer.reading.inputs import NoInputsError
    from gifsent_infer.reading.manifest import manifest_items

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    items: list[InputItem] = []
    if sources:
        items = expand_inputs([str(s) for s in sources], recursive=recursive).items
    if manifest is not None:
        seen = {i.name for i in items}
        listed = [i for i in manifest_items(manifest, manifest_column) if i.name not in seen]
        if not listed and not items:
            raise NoInputsError(f"nothing to score (the manifest {manifest} lists no inputs)")
        items += listed
    if not items:
        raise NoInputsError("nothing to score (no inputs given)")
    return items


def ray_options(
    options: ScoreOptions | None, model: str | os.PathLike | None, changes: dict[str, Any]
) -> ScoreOptions:
    """`options` (default ScoreOptions()) with the keyword changes and the model applied;
    TypeError for a keyword that is no scoring option."""
    unknown = sorted(set(changes) - set(ScoreOptions.names()))
    if unknown:
        raise TypeError(
            f"score_with_ray() got unexpected keyword argument(s) {', '.join(unknown)}; "
            f"scoring options are {', '.join(ScoreOptions.names())}"
        )
    opts = (options or ScoreOptions()).replace(**changes)
    return opts.replace(model=os.fspath(model)) if model is not None else opts


def _check_arguments(
    opts: ScoreOptions,
    read_batch: int,
    shard_rows: int | None,
    flush_seconds: float,
    connect_timeout: float,
    actor_cpus: float | None = None,
    retention_hours: float = DEFAULT_RETENTION_HOURS,
) -> None:
    from gifsent_infer.running.precision import PRECISION_CHOICES
    from gifsent_infer.running.session import BACKENDS, DEVICES

    if actor_cpus is not None and not actor_cpus > 0:
        raise ValueError(f"actor_cpus must be > 0, got {actor_cpus}")
    if retention_hours < 0:
        raise ValueError(f"retention_hours must be >= 0, got {retention_hours}")
    for name, value, choices in (
        ("device", opts.device, DEVICES),
        ("backend", opts.backend, BACKENDS),
        ("precision", opts.precision, PRECISION_CHOICES),
    ):
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    for name, value in (("read_batch", read_batch), ("shard_rows", shard_rows or 1)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not flush_seconds > 0:
        raise ValueError(f"flush_seconds must be > 0, got {flush_seconds}")
    if not connect_timeout > 0:
        raise ValueError(f"connect_timeout must be > 0, got {connect_timeout}")


@dataclass(frozen=True)
class _Job:
    """What every part of one Ray run shares: the options, the model and the row's columns."""

    opts: ScoreOptions
    spec: SamplingSpec
    columns: tuple[str, ...]  # COLUMNS plus the readable extras
    decorate: Callable[[dict], dict]  # adds top/percentiles, clips (readable.Readable)
    model_bytes: bytes
    model_id: str
    limits: ReaderLimits
    read_batch: int
    decode_memory: int
    progress_bars: bool


def decode_tasks_cap(
    plan_cap: int | None, slots: float, workers: int | None, budget: int, each: int
) -> int | None:
    """Most decoding tasks at once: --workers (0 counts as 1) and the memory budget over what
    each task reserves, where tighter than what the CPUs allow (`plan_cap`, else `slots`
    tasks); else the plan's cap (None: Ray schedules by its reservations, as before)."""
    allowed = plan_cap if plan_cap is not None else slots
    tight = max(1, budget // max(1, each))
    if workers is not None:
        tight = min(tight, max(1, workers))
    return tight if tight < allowed else plan_cap


def _cluster_plan(
    ray,
    opts: ScoreOptions,
    num_actors: int | None,
    actor_cpus: float | None,
    decode_cpus: float | None,
    decode_memory: int,
) -> tuple[str, ResourcePlan]:
    """The device ("auto": cuda when the cluster has GPUs) and the actor/decoding plan."""
    from gifsent_infer.running.session import DeviceError

    resources = {k: float(v) for k, v in ray.cluster_resources().items()}
    gpus = int(resources.get("GPU", 0))
    device = opts.device
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
        opts.threads,
    )
    cpus = sum(node_cpus(ray)) or resources.get("CPU", 1.0)
    free = cpus - plan.num_actors * plan.actor_cpus  # CPUs the decoding tasks may reserve
    slots = free / plan.decode_cpus if plan.decode_cpus > 0 else float("inf")
    cap = decode_tasks_cap(
        plan.decode_tasks, slots, opts.workers, opts.memory_budget, decode_memory
    )
    return device, dataclasses.replace(plan, decode_tasks=cap)


def _score_into(
    ray,
    job: _Job,
    device: str,
    plan: ResourcePlan,
    items: list[InputItem],
    table: tuple[Any, list[dict]],
    resume: bool,
    shard_rows: int | None,
    flush_seconds: float,
) -> RaySummary:
    """Decide what the table lacks (the anti-join on path for this model, over `table`: the
    table and its scanned keys), then run the pipeline into it."""
    fault_point("recovered")
    names = {i.name for i in items}
    dt, committed = table
    _, done = resume_plan(committed, names, job.model_id) if resume else ([], {})
    replaces = {r["path"] for r in committed} & names
    mark("resume_scanned", rows=len(committed), done=len(done))
    rows_per_commit = shard_rows or auto_commit_rows(len(items) - len(done))
    summary = RaySummary(
        table=dt.table_uri,
        model_id=job.model_id,
        version=dt.version(),
        inputs=len(items),
        device=device,
        num_actors=plan.num_actors,
        actor_cpus=plan.actor_cpus,
        threads=plan.threads,
        decode_cpus=plan.decode_cpus,
        decode_tasks=plan.decode_tasks,
        shard_rows=rows_per_commit,
        flush_seconds=flush_seconds,
    )
    # rows per commit chosen here (not by --commit-rows): the first block commits at once
    eager = shard_rows is None
    writer = TableWriter(dt, rows_per_commit, flush_seconds, replaces, job.columns, eager)
    try:
        _run(ray, summary, items, writer, job, done)
    except Exception as e:  # Ray's, Ray Data's and the table's failures: one line
        first = (str(e).strip().splitlines() or [""])[0]
        raise RayRunError(
            f"the Ray run failed: {type(e).__name__}: {first[:300]}; the {writer.commits} "
            f"commit(s) it made are kept, and rerunning the command resumes"
        ) from e
    return summary


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


def _drain(
    make_iter: Callable[[], Iterator],
    writer: TableWriter,
    threaded: bool = True,
    decorate: Callable[[dict], dict] | None = None,
) -> None:
    """Blocks of score rows (pyarrow tables) -> the writer, flushing by rows and by time
    (threaded=False: iterate here, and flush by time only when a block arrives); decorate:
    the run's readable extras (top, percentiles, clip), added here on the driver."""
    blocks = _stream(make_iter, writer.wait) if threaded else iter(make_iter())
    for batch in blocks:
        if batch is not None:
            rows = batch.to_pylist()
            mark("first_rows", once=True, rows=len(rows))
            rows.sort(key=lambda r: r["index"])
            if decorate is not None:
                rows = [decorate(r) for r in rows]
            writer.add(rows)
            for _ in rows:
                fault_point("received")  # tests and benchmarks: "killed at N% of the inputs"
        wait = writer.wait()
        if wait is not None and wait <= 0:
            writer.flush()
    writer.flush()
    mark("rows_done", commits=writer.commits)


def _run(
    ray,
    summary: RaySummary,
    items: list[InputItem],
    writer: TableWriter,
    job: _Job,
    done: dict[str, str],
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
    opts = job.opts
    plan = {
        "model_id": summary.model_id,
        "device": summary.device,
        "num_actors": summary.num_actors,
        "actor_cpus": summary.actor_cpus,
        "threads": summary.threads,
        "decode_cpus": summary.decode_cpus,
        "decode_tasks": summary.decode_tasks,
        "spec": job.spec.to_dict(),
        "limits": asdict(job.limits),
        "timeout": opts.timeout,
        "allow_private": opts.allow_private_urls,
        "batch_size": opts.batch_size,
        "read_batch": job.read_batch,
        "decode_memory": job.decode_memory,
        "progress_bars": job.progress_bars,
        "store_env": store_env(),  # workers read object stores with the driver's settings
        "fault_marker": worker_fault_marker(),  # tests (ray_cluster)
        "backend": opts.backend,
        "precision": opts.precision,
        "phase_log": phase_file(),  # GIFSENT_RAY_PHASES (phases.py), for the workers' lines
    }
    model_bytes, decorate = job.model_bytes, job.decorate
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
            _drain(lambda: _from_queue(ray, q, ref), writer, threaded=False, decorate=decorate)
        finally:
            with suppress(Exception):
                ray.cancel(ref, force=True)
            with suppress(Exception):
                q.shutdown()
    else:
        _drain(lambda: _blocks(records, model_bytes, done, plan), writer, decorate=decorate)
    summary.scored, summary.failed, summary.skipped = writer.scored, writer.failed, writer.skipped
    summary.commits = writer.commits


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
            "allow_private": plan["allow_private"],
            "env": plan["store_env"],
            "done_ref": [ray.put(done)] if done else [],
            "phase_log": plan["phase_log"],
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
            "fault_marker": plan["fault_marker"],
            "backend": plan["backend"],
            "precision": plan["precision"],
            "phase_log": plan["phase_log"],
            "batch_size": plan["batch_size"],
        },
        # Ray Data restarts a dead actor and retries its batch (max_restarts=-1 and
        # max_task_retries=-1 are its defaults for actor pools); tasks are retried too
        compute=ray.data.ActorPoolStrategy(size=plan["num_actors"]),
        num_cpus=plan["actor_cpus"],
        num_gpus=1 if cuda else 0,
    )
    mark("pipeline_started", file=plan["phase_log"])
    yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
