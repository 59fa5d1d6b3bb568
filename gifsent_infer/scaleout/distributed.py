"""Score GIFs on a Ray cluster: decode on CPU tasks, onnxruntime in model actors, scores
committed to a Delta Lake table.

    from gifsent_infer.scaleout.distributed import score_with_ray, read_scores
    summary = score_with_ray(["s3://bucket/gifs/", "https://x/y.gif"], "gifsent-rnn.onnx",
                             "s3://bucket/scores", address="auto", device="cuda", num_actors=4)
    rows = read_scores("s3://bucket/scores")   # one dict per input, the local CLI's columns

The pipeline (plain Ray tasks and actors, streamed by the driver, _blocks):

    inputs (driver: expand files/folders/globs/URLs/object-store prefixes like gifsent-infer,
            or read a manifest listing them)
      -> read, hash, decode, sample     CPU tasks, `read_batch` inputs per task; object-store
                                        inputs are read by the workers straight from the store
      -> run the model                  model actors, one ModelSession each, asked for right
                                        after joining (their processes start meanwhile);
                                        decoded frames reach them through the object store
      -> rows back to the driver        which commits them to the table (one writer)

From before it joins until the cluster's first rows arrive, the driver scores the first
inputs itself (_WarmUp, `warm_up`), taking them from the same queue, while the cluster
starts the job's worker processes.

Under Ray Client (ray://) the same pipeline runs in a task on the cluster (with the
driver's actors), which passes its blocks to the driver through a queue actor.

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

import collections
import dataclasses
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
from typing import Any, NamedTuple

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
from gifsent_infer.running.rows import COLUMNS, resume_plan, score_row
from gifsent_infer.running.scorer import failure_reason, sample_content
from gifsent_infer.scaleout.delta_table import (
    DEFAULT_RETENTION_HOURS,
    ScoresTableError,
    TableWriter,
    auto_commit_rows,
    delete_other_rows,
    ensure_table,
    existing_table,
    read_scores,
    scan_keys,
    table_location,
    tidy,
    warm_writer,
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
    records: list[dict],
    done: dict[str, str],
    *,
    spec: dict,
    limits: dict,
    timeout: float,
    allow_private: bool = False,
    env: dict | None = None,
    phase_log: str | None = None,
) -> list[dict]:
    """Inputs (records of _run) -> one prepared row each: index, path, sha256, status, error,
    info (SampleInfo as a dict) and frames (the sampled frames, uint8 [S*T, crop, crop, 3],
    or None); `done`: path -> content hash of the rows this model already has (resume).
    Plain lists and arrays, no Arrow: a fresh worker process would spend 0.3-0.5 s importing
    pyarrow and pandas for its first block, on the way to the run's first row."""
    for key, value in (env or {}).items():  # the stores' settings, unless this node has its own
        os.environ.setdefault(key, value)

    if phase_log:  # (the driver's warm-up passes none: its lines are the driver's own)
        mark("decode_start", role="decode", file=phase_log, once=True)
    spec_ = SamplingSpec.from_dict(spec)
    limits_ = ReaderLimits(**limits)
    out: list[dict] = []
    for item in records:
        src = InputItem(
            name=item["name"],
            path=Path(item["path"]) if item["path"] is not None else None,
            url=item["url"],
            error=item["error"],
        )
        digest, status, error, info, frames = "", "ok", "", None, None
        try:
            data = read_item(
                src, max_bytes=limits_.max_file_bytes, timeout=timeout, allow_private=allow_private
            )
            digest = sha256(data)
            if done.get(src.name) == digest:
                status = "skipped"
            else:
                sampled = sample_content(data, spec_, limits_)
                info, frames = asdict(sampled.info), np.ascontiguousarray(sampled.frames)
        except Exception as e:  # the same reasons, in the same words, as the local CLI
            status, error = "error", failure_reason(e)
        out.append(
            {
                "index": item["index"],
                "path": src.name,
                "sha256": digest,
                "status": status,
                "error": error,
                "info": info,
                "frames": frames,
            }
        )
    if phase_log:
        mark("decode_first_done", role="decode", file=phase_log, once=True)
    return out


# --- stage 2: the model (actors of our own) ----------------------------------------------------


class ModelLoadError(RuntimeError):
    """A model actor (or the driver's warm-up) could not load the model with the run's options."""


class _ScoreActor:
    """One model session per actor, loaded once; scores blocks of prepared inputs,
    `batch_size` GIFs per model call (None: a block at a time).

    The model is not a constructor argument: Ray warns on every run (and cannot always
    restart the actor, ray-project/ray#53727) when an actor with restarts has constructor
    arguments in the object store. It comes with the calls instead, as [bytes] or [object
    ref] (a ref in a list is not fetched by Ray): `load` right after the actor is created,
    and every `score`, so that an actor Ray restarted after a crash loads it again from the
    call it retries."""

    def __init__(
        self,
        model_id: str,
        device: str,
        threads: int | None,
        fault_marker: str | None = None,
        backend: str = "auto",
        precision: str = "auto",
        phase_log: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        if phase_log:  # (none in the driver's warm-up)
            mark("actor_start", role="actor", file=phase_log)
        self.model_id, self.device, self.threads = model_id, device, threads
        self.backend, self.precision = backend, precision
        self.fault_marker = fault_marker
        self.phase_log = phase_log
        self.batch_size = batch_size
        self.session = None
        self.load_error: str | None = None

    def load(self, model: list) -> str | None:
        """Load the model (once): `model` is [its bytes] or [an object ref to them]. Returns
        None, or the error's text, which every `score` call then raises (ModelLoadError): a
        model the options cannot run fails the run with the engine's own words."""
        if self.session is not None or self.load_error is not None:
            return self.load_error
        try:
            self._load(model[0])
        except Exception as e:
            self.load_error = f"{type(e).__name__}: {e}"
        return self.load_error

    def _load(self, data) -> None:
        from gifsent_infer.running.session import ModelSession

        if not isinstance(data, bytes):
            import ray

            data = ray.get(data)
        if sha256(data) != self.model_id:
            raise RuntimeError("the model bytes changed in transit")
        # the model travels through the object store, so workers need no shared filesystem
        self._dir = tempfile.mkdtemp(prefix="gifsent-model-")
        path = Path(self._dir) / "model.onnx"
        path.write_bytes(data)
        session = ModelSession(
            path,
            device=self.device,
            threads=self.threads,
            backend=self.backend,
            precision=self.precision,
        )
        if self.batch_size:  # full batches run a static-batch graph where the engine has one
            session.expect_batch(self.batch_size)
        self.session = session
        if self.phase_log:
            mark("model_loaded", role="actor", file=self.phase_log)

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True)

    def score(self, model: list, *blocks: list[dict]) -> list[dict]:
        """Blocks of prepared inputs (_read_batch's rows) -> score rows (with their index);
        model: as for `load` (a restarted actor loads it here)."""
        crash_once(self.fault_marker)  # tests: a worker dying mid-run (ray_cluster)
        if self.load(model) is not None:
            raise ModelLoadError(self.load_error)
        return self.score_loaded(*blocks)

    def score_loaded(self, *blocks: list[dict]) -> list[dict]:
        """`score` once the model is loaded (the driver's warm-up, which loaded it itself)."""
        items = [it for b in blocks for it in b]
        todo = [i for i, it in enumerate(items) if it["frames"] is not None]
        scores: dict[int, np.ndarray] = {}
        step = self.batch_size or max(1, len(todo))
        for k in range(0, len(todo), step):
            part = todo[k : k + step]
            shape = (len(part), *self.session.input_shape)
            frames = np.stack([items[i]["frames"] for i in part])
            out = self.session.run(frames.reshape(shape))
            scores.update(zip(part, out, strict=True))
        rows = []
        for i, it in enumerate(items):
            info = SampleInfo(**it["info"]) if it["info"] else None
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
        if self.phase_log:
            mark("first_scored", role="actor", file=self.phase_log, once=True)
        return rows


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
    warm_up: bool = True,
    **scoring: Any,
) -> RaySummary:
    """Score GIFs on Ray into the Delta Lake table at `out_dir` (a path or a URI).

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
    warm_up: from before it joins until the cluster's first rows arrive, the driver scores
        the first inputs itself with the same code and model (each input once, by one or the
        other; nothing is written before joining). Only with a CPU model ("auto" on a cluster
        with GPUs: its rows are dropped), no --workers cap, and not through Ray Client.
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
    ray = import_ray(data=False)  # Ray's core: the scoring pipeline needs no Ray Data
    mark("ray_imported")
    start = time.perf_counter()
    reset_faults()
    warm_up = warm_up and not _through_client(address)  # (the pipeline runs remotely)
    job = _make_job(opts, limits, read_batch, decode_memory, progress_bars, warm_up)
    _Background(lambda: warm_writer(job.columns))  # the first commit's imports, meanwhile
    items, location, scan = _inputs_and_table(job, listing, out_dir)
    work = _Work.start(job, items, scan, resume)  # its warm-up scores while this joins
    started_here = False
    pool = None
    try:
        if not ray.is_initialized():  # first, so that a cluster we cannot join changes nothing
            if auth_token_file is not None:
                use_auth_token_file(auth_token_file)
            connect_ray(ray, address, timeout=connect_timeout, init_kwargs=ray_init_kwargs)
            started_here = True
        mark("ray_joined")
        plan = _run_plan(
            job, *_cluster_plan(ray, opts, num_actors, actor_cpus, decode_cpus, decode_memory)
        )
        mark("plan_ready")
        # the model actors first: Ray starts a new worker process for each (every driver is
        # a new job), which then loads the model, while this process opens the table
        pool = _ModelPool(ray, job.model_bytes, plan)
        mark("actors_asked")
        dt, committed = _table(scan, location, retention_hours, job.columns)
        mark("table_ready")
        summary = _score_into(
            ray, job, plan, pool, work, (dt, committed), resume, shard_rows, flush_seconds
        )
    finally:
        if work.warm is not None:
            work.warm.stop()  # (a run that failed, or could not join: nothing more is scored)
        if pool is not None:
            pool.close()
        if started_here:
            ray.shutdown()
    fault_point("scored")
    if not resume:
        summary.removed = delete_other_rows(dt, {i.name for i in items})
    summary.__dict__.update(tidy(dt, retention_hours, vacuum, compact))
    summary.version, summary.seconds = dt.version(), time.perf_counter() - start
    mark("run_done")
    return summary


def _table(scan: _Background, location: str, retention_hours: float, columns: tuple[str, ...]):
    """The table scanned while joining and its rows' keys; none yet: created now (or one
    made meanwhile, then scanned)."""
    dt, committed = scan.result()
    if dt is None:
        dt = ensure_table(location, retention_hours, columns)
        committed = scan_keys(dt)
    return dt, committed


class _Work(NamedTuple):
    """A run's inputs, made before it joins the cluster."""

    items: list[InputItem]
    records: list[dict]  # the items as decoding tasks take them (_records)
    todo: collections.deque  # their chunks, taken by the warm-up and the cluster (_chunks)
    warm: _WarmUp | None  # the driver's warm-up on `todo`, already scoring (None: none)

    @classmethod
    def start(cls, job: _Job, items: list[InputItem], scan: _Background, resume: bool) -> _Work:
        records = _records(items)
        todo = _chunks(records, job.read_batch)
        return cls(items, records, todo, _start_warm_up(job, todo, items, scan, resume))


def _records(items: list[InputItem]) -> list[dict]:
    """The inputs as plain records (what a decoding task is given), numbered in order."""
    return [
        {
            "index": i,
            "name": it.name,
            "path": str(it.path) if it.path is not None else None,
            "url": it.url,
            "error": it.error,
        }
        for i, it in enumerate(items)
    ]


def _chunks(records: list[dict], size: int) -> collections.deque:
    """The queue the pipeline and the warm-up take inputs from: `size` records a chunk."""
    return collections.deque(records[i : i + size] for i in range(0, len(records), size))


def _start_warm_up(
    job: _Job, todo: collections.deque, items: list[InputItem], scan: _Background, resume: bool
) -> _WarmUp | None:
    """The driver's warm-up, started before joining the cluster (None: the run has none): it
    scores from `todo` as soon as its model session is loaded and the table is scanned (the
    resume rule's input), while this thread imports Ray, joins and asks for the actors.
    Nothing it scores is written before the table is opened after joining."""
    if not job.warm_up or job.local_scorer is None:
        return None
    names = {i.name for i in items}

    def done() -> dict[str, str]:
        _, committed = scan.result()  # (its error is raised again on the main thread)
        return resume_plan(committed, names, job.model_id)[1] if resume else {}

    # (no phase log: the warm-up's lines are the driver's own)
    return _WarmUp(job.local_scorer, todo, done, _decode_kwargs(job, None))


def _inputs_and_table(job: _Job, listing: _Background, out_dir: str | os.PathLike):
    """The inputs (listed on a thread meanwhile), the table's location and its scan, started
    on a thread: the table, if there is one, is opened and scanned for the resume rule while
    this thread joins the cluster (deltalake's Rust code runs without the GIL); it is created
    only after joining, so that a cluster we cannot join or a usage error leaves everything
    as it was."""
    items = listing.result()
    mark("inputs_listed", inputs=len(items))
    location = table_location(out_dir)
    scan = _Background(lambda: _scan_existing(location, job.columns))
    return items, location, scan


def _make_job(
    opts: ScoreOptions,
    limits: ReaderLimits,
    read_batch: int,
    decode_memory: int,
    progress_bars: bool,
    warm_up: bool = True,
) -> _Job:
    """The run's model (read on the driver, ModelError without a document) and its rows."""
    from gifsent_infer.running.readable import Readable
    from gifsent_infer.running.session import read_document, resolve_model

    model_path = resolve_model(opts.model)
    document = read_document(model_path)  # ModelError for a graph without a document
    readable = Readable.for_options(document, opts)  # ReadableError: no percentiles here
    model_bytes = model_path.read_bytes()
    job = _Job(
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
        warm_up=warm_up and opts.workers is None and opts.device in ("auto", "cpu"),
    )
    mark("model_read")
    if job.warm_up:  # the driver's own model session, loaded while it joins the cluster
        local = _Background(lambda: _local_scorer(job))
        job = dataclasses.replace(job, local_scorer=local.result)
    return job


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


def _scan_existing(location: str, columns: tuple[str, ...]):
    """The table at `location` and its rows' keys (the resume rule's input), or (None, [])
    when there is no table yet."""
    dt = existing_table(location, columns)
    return (dt, scan_keys(dt)) if dt is not None else (None, [])


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
    warm_up: bool  # the driver scores the first inputs while the cluster's workers start
    local_scorer: Callable[[], _ScoreActor] | None = None  # the warm-up's (waits for it)


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
) -> tuple[str, ResourcePlan, int]:
    """The device ("auto": cuda when the cluster has GPUs), the actor/decoding plan and the
    decoding window (most decoding tasks the driver keeps submitted at once)."""
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
    # a cap is kept to; by the reservations, one task more than run at once waits queued in
    # Ray, so that a CPU never idles for the driver's round trip
    window = cap if cap is not None else max(1, int(min(slots, 1 << 16))) + 1
    return device, dataclasses.replace(plan, decode_tasks=cap), window


def _score_into(
    ray,
    job: _Job,
    plan: dict,
    pool: _ModelPool,
    work: _Work,
    table: tuple[Any, list[dict]],
    resume: bool,
    shard_rows: int | None,
    flush_seconds: float,
) -> RaySummary:
    """Decide what the table lacks (the anti-join on path for this model, over `table`: the
    table and its scanned keys), then run the pipeline into it. work: the run's inputs and
    its warm-up (_Work), made before joining."""
    fault_point("recovered")
    items = work.items
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
        device=plan["device"],
        num_actors=plan["num_actors"],
        actor_cpus=plan["actor_cpus"],
        threads=plan["threads"],
        decode_cpus=plan["decode_cpus"],
        decode_tasks=plan["decode_tasks"],
        shard_rows=rows_per_commit,
        flush_seconds=flush_seconds,
    )
    # rows per commit chosen here (not by --commit-rows): the first block commits at once
    eager = shard_rows is None
    writer = TableWriter(dt, rows_per_commit, flush_seconds, replaces, job.columns, eager)
    try:
        _run(ray, summary, work, writer, job, done, plan, (pool.model, pool.actors))
    except Exception as e:  # Ray's and the table's failures: one line
        first = _error_line(e)
        raise RayRunError(
            f"the Ray run failed: {type(e).__name__}: {first[:300]}; the {writer.commits} "
            f"commit(s) it made are kept, and rerunning the command resumes"
        ) from e
    return summary


def _error_line(e: Exception) -> str:
    """One line for a failed run: the first of the error's text, or for a model actor that
    could not load the model (the model, the options: ModelLoadError) or whose constructor
    raised, that error's own last line, which Ray puts at the end of a traceback."""
    text = str(getattr(e, "error_msg", None) or e)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if ("creation task" in text or "ModelLoadError" in text) and lines:
        last = lines[-1].removeprefix("gifsent_infer.scaleout.distributed.")
        return f"a model actor could not start: {last.removeprefix('ModelLoadError: ')}"
    return lines[0] if lines else ""


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
                    close()  # cancels the pipeline's tasks when the driver gave up early

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
            rows = batch.to_pylist() if hasattr(batch, "to_pylist") else list(batch)
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


def _through_client(address: str | None) -> bool:
    """Whether this process drives the cluster through Ray Client (ray://): joined so, or
    about to join `address` so (decided before Ray is imported: a process that has not
    imported it has not joined). (No warm-up then: the pipeline runs on the cluster, and a
    session made on a thread while joining would fork under Ray Client's gRPC threads.)"""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None:
        try:
            from ray.util.client import ray as client_ray

            if client_ray.is_connected():
                return True
        except Exception:
            pass
        if ray.is_initialized():
            return False
    return resolve_address(address).startswith("ray://")


def _run_plan(job: _Job, device: str, plan: ResourcePlan, window: int) -> dict:
    """What the decoding tasks and model actors of a run need to know (plain values: under
    Ray Client it travels to the task that runs the pipeline)."""
    opts = job.opts
    return {
        "model_id": job.model_id,
        "device": device,
        "num_actors": plan.num_actors,
        "actor_cpus": plan.actor_cpus,
        "threads": plan.threads,
        "decode_cpus": plan.decode_cpus,
        "decode_tasks": plan.decode_tasks,
        "window": window,
        "decode": _decode_kwargs(job, phase_file()),  # each decoding task's keywords
        "batch_size": opts.batch_size,
        "read_batch": job.read_batch,
        "decode_memory": job.decode_memory,
        "progress_bars": job.progress_bars,
        "fault_marker": worker_fault_marker(),  # tests (ray_cluster)
        "backend": opts.backend,
        "precision": opts.precision,
        "phase_log": phase_file(),  # GIFSENT_RAY_PHASES (phases.py), for the workers' lines
    }


class _ModelPool:
    """The run's model actors, created as soon as the plan is known (before the table is
    opened and the inputs are decoded), so that their worker processes start and load the
    model meanwhile. Ray restarts an actor that dies and retries its calls (max_restarts and
    max_task_retries -1: a batch in flight on a lost node or a crashed actor is scored
    again, its rows reach the driver once). close() ends them (the next run's job needs
    their CPUs)."""

    def __init__(self, ray, model_bytes: bytes, plan: dict) -> None:
        self._ray = ray
        self._model_ref = ray.put(model_bytes)  # held for the run: restarts read it again
        self.model = [self._model_ref]  # in a list: the actor fetches it (Ray does not)
        cls = ray.remote(_ScoreActor).options(
            num_cpus=plan["actor_cpus"],
            num_gpus=1 if plan["device"] == "cuda" else 0,
            max_restarts=-1,
            max_task_retries=-1,
        )
        self.actors = [
            cls.remote(
                plan["model_id"],
                plan["device"],
                plan["threads"],
                plan["fault_marker"],
                plan["backend"],
                plan["precision"],
                plan["phase_log"],
                plan["batch_size"],
            )
            for _ in range(plan["num_actors"])
        ]
        for actor in self.actors:  # loading starts as soon as each actor's process is up
            actor.load.remote(self.model)

    def close(self) -> None:
        for actor in self.actors:
            with suppress(Exception):
                self._ray.kill(actor, no_restart=True)


def _run(
    ray,
    summary: RaySummary,
    work: _Work,
    writer: TableWriter,
    job: _Job,
    done: dict[str, str],
    plan: dict,
    cluster: tuple[list, list],  # the model ([its object ref]) and the model actors
) -> None:
    records, todo, warm = work.records, work.todo, work.warm
    model, actors = cluster
    decorate = job.decorate
    progress = _Progress(len(records)) if job.progress_bars else None
    if _through_client(None):
        # Ray Client (ray://): a client cannot wait on and hand over the objects of
        # thousands of tasks cheaply, and has no streaming tasks; so the pipeline runs in a
        # task on the cluster (with this driver's actors) and hands its blocks over through
        # a queue actor
        from ray.util.queue import Queue

        q = Queue(maxsize=4, actor_options={"num_cpus": 0})
        task = ray.remote(num_cpus=0, max_retries=0)(_remote_blocks)
        ref = task.remote(records, done, plan, model, actors, q)
        try:
            _drain(
                lambda: _counted(_from_queue(ray, q, ref), progress),
                writer,
                threaded=False,
                decorate=decorate,
            )
        finally:
            with suppress(Exception):
                ray.cancel(ref, force=True)
            with suppress(Exception):
                q.shutdown()
    else:
        if warm is not None and plan["device"] != "cpu":  # "auto" found GPUs: they score all
            warm.discard()  # (passed on still: the pipeline waits for what it hands back)
        _drain(
            lambda: _counted(_blocks(records, done, plan, model, actors, todo, warm), progress),
            writer,
            decorate=decorate,
        )
    if progress is not None:
        progress.close()
    summary.scored, summary.failed, summary.skipped = writer.scored, writer.failed, writer.skipped
    summary.commits = writer.commits


class _Progress:
    """`inputs done/total` on stderr, rewritten in place (a terminal, without --quiet)."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def add(self, n: int) -> None:
        import sys

        self.done += n
        sys.stderr.write(f"\rscored {self.done}/{self.total} inputs")
        sys.stderr.flush()

    def close(self) -> None:
        import sys

        if self.done:
            sys.stderr.write("\n")


def _counted(blocks: Iterator, progress: _Progress | None) -> Iterator:
    for block in blocks:
        if progress is not None:
            progress.add(len(block))
        yield block


def _remote_blocks(
    records: list[dict], done: dict, plan: dict, model: list, actors: list, q
) -> int:
    """The pipeline as a task (for Ray Client drivers): its blocks go into the queue `q`."""
    n = 0
    for block in _blocks(records, done, plan, model, actors):
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


# A decoding task lost with its worker or node is run again (it only reads and decodes);
# an error inside one is an error row, never a retry.
DECODE_RETRIES = 5
# Calls queued on each model actor: one running, one waiting, so that it never idles for the
# driver's round trip between batches.
CALLS_PER_ACTOR = 2


def _blocks(
    records: list[dict],
    done: dict,
    plan: dict,
    model: list,
    actors: list,
    todo: collections.deque | None = None,
    warm: _WarmUp | None = None,
) -> Iterator[list[dict]]:
    """The pipeline, streamed: decoding tasks (at most plan["window"] submitted at once) ->
    the model actors (CALLS_PER_ACTOR calls each) -> blocks of score rows, yielded as they
    are scored. Decoded frames go from the decoding task to the actor through Ray's object
    store, never through this process. model: [the model's object ref], passed with every
    actor call (an actor Ray restarted loads it from there). todo: the chunks of `records`
    left to score (None:
    all of them); warm: this process's own warm-up (_WarmUp), taking chunks from `todo` too
    until the cluster's first block arrives (None: none)."""
    import ray

    decode = ray.remote(_read_batch).options(
        num_cpus=plan["decode_cpus"],
        memory=plan["decode_memory"],  # a scheduling hint for the decoder's peak memory
        max_retries=DECODE_RETRIES,
        retry_exceptions=False,
    )
    kwargs = plan["decode"]
    if todo is None:
        todo = _chunks(records, plan["read_batch"])
    done_ref = ray.put(done)
    decoding: dict[Any, int] = {}  # decoding task -> its inputs
    decoded: collections.deque = collections.deque()  # (task, inputs) waiting for an actor
    scoring: dict[Any, int] = {}  # actor call -> the actor's number
    calls = [0] * len(actors)
    window, waiting = plan["window"], plan["window"] + CALLS_PER_ACTOR * len(actors)
    mark("pipeline_started", file=plan["phase_log"])
    try:
        while True:
            helping = warm is not None and warm.running()  # first: then its blocks are in
            if warm is not None:
                yield from warm.blocks()
            if not (todo or decoding or decoded or scoring or helping):
                return
            while todo and len(decoding) < window and len(decoded) < waiting:
                chunk = _pop(todo)
                if chunk is not None:
                    decoding[decode.remote(chunk, done_ref, **kwargs)] = len(chunk)
            while decoded and min(calls) < CALLS_PER_ACTOR:
                a = calls.index(min(calls))
                call = actors[a].score.remote(model, *_take(decoded, plan["batch_size"]))
                scoring[call] = a
                calls[a] += 1
            if not (decoding or scoring):  # only the warm-up has work (its last chunks)
                time.sleep(0.02)
                continue
            # fetch_local=False: a decoded block stays where it is until its actor reads it
            ready, _ = ray.wait(
                [*scoring, *decoding],
                num_returns=1,
                timeout=0.05 if helping else None,
                fetch_local=False,
            )
            for ref in ready:
                if ref in decoding:
                    decoded.append((ref, decoding.pop(ref)))
                    continue
                calls[scoring.pop(ref)] -= 1
                if warm is not None:
                    warm.stop()  # the cluster delivers: this process stops scoring
                yield ray.get(ref)
    finally:
        if warm is not None:
            warm.stop()
        for ref in [*decoding, *scoring]:  # the driver gave up early (an error, a kill)
            with suppress(Exception):
                ray.cancel(ref)


def _decode_kwargs(job: _Job, phase_log: str | None) -> dict:
    """_read_batch's keywords for this run (plain values: they travel to the workers)."""
    return {
        "spec": job.spec.to_dict(),
        "limits": asdict(job.limits),
        "timeout": job.opts.timeout,
        "allow_private": job.opts.allow_private_urls,
        "env": store_env(),  # workers read object stores with the driver's settings
        "phase_log": phase_log,
    }


def _pop(todo: collections.deque) -> list[dict] | None:
    """The next chunk of inputs (None: none left); the warm-up's thread takes from the same
    deque (popleft is atomic), so that every chunk is scored by one of the two."""
    try:
        return todo.popleft()
    except IndexError:
        return None


def _take(decoded: collections.deque, rows: int) -> list:
    """Decoded blocks for one actor call: the first, and more while they fit in `rows`."""
    ref, n = decoded.popleft()
    refs = [ref]
    while decoded and n + decoded[0][1] <= rows:
        ref, k = decoded.popleft()
        refs.append(ref)
        n += k
    return refs


def _local_scorer(job: _Job) -> _ScoreActor:
    """The driver's own model session for the warm-up: the actors' code and options, on
    the CPU, with one thread (it runs next to the cluster's processes starting)."""
    opts = job.opts
    scorer = _ScoreActor(
        job.model_id,
        "cpu",
        opts.threads or 1,
        None,  # the test hook that kills a model actor is the actors'
        opts.backend,
        opts.precision,
        None,  # its phases are the driver's own
        opts.batch_size,
    )
    if scorer.load([job.model_bytes]) is not None:
        raise ModelLoadError(scorer.load_error)
    return scorer


class _WarmUp:
    """The driver scores inputs itself while the cluster starts this run's worker processes
    (Ray starts them anew for every driver, 1-2 s before a model actor has loaded its
    model), so that the first rows are committed about a second sooner and a run killed
    early keeps more. Started before the driver joins the cluster (_start_warm_up), it takes
    chunks from the pipeline's own queue (so each input is scored once, here or on the
    cluster), with the actors' code, model and settings (so the rows are the same), and
    stops at the cluster's first block. Two threads: one decodes the next chunk while the
    other scores the last (decoding is mostly Python, onnxruntime runs without the GIL). A
    chunk it fails on goes back to the queue, and the cluster scores it (and reports the
    failure, if it is one); a chunk decoded when it is told to stop is still scored here."""

    def __init__(
        self,
        local: Callable[[], _ScoreActor],
        todo: collections.deque,
        done: Callable[[], dict],
        kwargs: dict,
    ) -> None:
        self._local, self._todo, self._done, self._kwargs = local, todo, done, kwargs
        self._out: queue.Queue = queue.Queue()  # (chunk, its rows)
        self._decoded: queue.Queue = queue.Queue(maxsize=1)  # one chunk decoded ahead
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._discarded = False
        self._threads = [
            threading.Thread(target=self._decode, name="gifsent-ray-warmup-decode", daemon=True),
            threading.Thread(target=self._score, name="gifsent-ray-warmup", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _decode(self) -> None:
        """Chunks from the queue -> prepared inputs for the scoring thread; None: the end."""
        try:
            done = self._done()  # waits for the table's scan
            while not self._stop.is_set():
                chunk = _pop(self._todo)
                if chunk is None:
                    return
                try:
                    prepared = _read_batch(chunk, done, **self._kwargs)
                except Exception:
                    self._todo.appendleft(chunk)  # the cluster decodes it
                    return
                self._decoded.put((chunk, prepared))
        except Exception:
            return  # (the scan failed: the main thread raises its error)
        finally:
            self._decoded.put(None)

    def _score(self) -> None:
        scorer = None
        with suppress(Exception):  # the actors load the same model: their error is the run's
            scorer = self._local()
        if scorer is not None:
            mark("warmup_ready")
        failed = scorer is None
        while (item := self._decoded.get()) is not None:
            chunk, prepared = item
            rows = None
            if not (failed or self._discarded):
                try:
                    rows = scorer.score_loaded(prepared)
                except Exception:
                    failed = True
            with self._lock:
                if rows is None or self._discarded:
                    self._stop.set()
                    self._todo.appendleft(chunk)  # the cluster scores it
                    continue  # (and what the decoding thread still passes on)
                mark("warmup_first_rows", once=True)
                self._out.put((chunk, rows))

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def blocks(self) -> Iterator[list[dict]]:
        """The rows scored here since the last call."""
        while True:
            try:
                yield self._out.get_nowait()[1]
            except queue.Empty:
                return

    def discard(self) -> None:
        """Score no more, and give every chunk not yet handed over back to the queue (the
        run's device turned out to be the cluster's GPUs, whose rows differ slightly from
        the CPU's). running() stays true until its threads have handed theirs back."""
        with self._lock:
            self._discarded = True
            self._stop.set()
            while True:
                try:
                    self._todo.appendleft(self._out.get_nowait()[0])
                except queue.Empty:
                    return

    def stop(self) -> None:
        """Take no more chunks (the one being scored is finished and handed over)."""
        self._stop.set()
