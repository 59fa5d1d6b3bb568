"""Encoder features on a Ray cluster: the feature stage of features.py, with decoding on CPU tasks and the encoder in an actor pool.

    from gifsent_train.ray_features import extract_features_with_ray
    result = extract_features_with_ray(encoder, items, options, address="auto", num_actors=8)

It fills the same cache as ``gifsent_train.features.extract_features`` (same folder, same
keys: encoder weights hash, sampling spec hash, GIF sha256, view; same atomic writes) and
returns the same ExtractResult, so the two are interchangeable and a run may mix them:
entries written by one are cache hits for the other. Cache entries are keyed by content
and written by rename, so a task retried after a killed worker rewrites the same file:
exactly once by construction. The cache root must be visible to every node (a shared
filesystem) when the cluster has several machines.

Encoders run as features.py runs them: the exported encoder graph in onnxruntime
(backend "auto"/"onnxruntime"; the graph is exported once on the driver, into the same
place features.py keeps it, and shipped to the actors through the object store), or the
torch module itself (backend "torch"; the module is shipped to the actors). On CPUs.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from gifsent_infer.contract import SamplingSpec
from gifsent_train.features import (
    GRAPH_BACKENDS,
    ExtractResult,
    FeatureCache,
    FeatureItem,
    FeatureOptions,
    Progress,
    encode_segments,
    file_sha256,
    graph_path,
    sampling_spec,
    view_params,
    weights_key,
)


def _prepared_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("gid", pa.string()),
            ("sha256", pa.string()),
            ("view", pa.int64()),
            ("status", pa.string()),  # cached | encode | failed, then encoded
            ("error", pa.string()),
            ("file", pa.string()),  # the cache entry (.npy)
            ("pixels", pa.large_binary()),  # uint8 [S*T, crop, crop, 3] for "encode" rows
        ]
    )


def _read_batch(batch, *, spec: dict, cache: FeatureCache):
    """GIFs -> one row per view: already cached, sampled frames to encode, or a failure."""
    import pyarrow as pa

    from gifsent_infer.reading import gifio, media

    spec_ = SamplingSpec.from_dict(spec)
    out: dict[str, list] = {k: [] for k in _prepared_schema().names}

    def add(gid, sha, view, status, error="", file="", pixels=None):
        for k, v in zip(out, (gid, sha, view, status, error, file, pixels), strict=True):
            out[k].append(v)

    for it in batch.to_pylist():
        gid, path = it["gid"], Path(it["path"])
        # as extract_features: hash (failure: OSError), look up, decode the missing views
        try:
            sha = file_sha256(path)
        except OSError as e:
            add(gid, "", -1, "failed", f"{type(e).__name__}: {e}")
            continue
        missing = []
        for v in range(it["views"]):
            if cache.load(sha, v) is not None:
                add(gid, sha, v, "cached", file=str(cache.path(sha, v)))
            else:
                missing.append(v)
        if not missing:
            continue
        try:
            if len(missing) == 1:
                frames = [media.read_media(path, spec_, **view_params(missing[0], sha)).frames]
            else:
                decoded = media.decode_for_spec(path, spec_)
                frames = [
                    gifio.sample_decoded(decoded, spec_, **view_params(v, sha)).frames
                    for v in missing
                ]
        except Exception as e:  # GifError, OSError, anything a broken file can raise
            add(gid, sha, -1, "failed", f"{type(e).__name__}: {e}")
            continue
        for v, fr in zip(missing, frames, strict=True):
            add(gid, sha, v, "encode", pixels=np.ascontiguousarray(fr).tobytes())
    return pa.table(out, schema=_prepared_schema())


class _EncodeActor:
    """One encoder per actor, created once; encodes batches and writes their cache entries."""

    def __init__(
        self,
        encoder_ref: list,
        graph: bool,
        encoder_spec: dict,
        spec: dict,
        cache: FeatureCache,
        threads: int | None,
        fault_marker: str | None = None,
    ) -> None:
        import ray

        from gifsent_train.features import GraphRunner, TorchRunner

        payload = ray.get(encoder_ref[0])
        self._dir = ""
        if graph:  # the exported encoder graph's bytes
            self._dir = tempfile.mkdtemp(prefix="gifsent-encoder-")
            path = Path(self._dir) / "encoder.onnx"
            path.write_bytes(payload)
            backend = graph if isinstance(graph, str) else "onnxruntime"
            self.runner: Any = GraphRunner(None, path, threads, backend=backend)
        else:  # the torch module
            if threads:
                import torch

                torch.set_num_threads(int(threads))
            self.runner = TorchRunner(payload)
        self.encoder_spec = SamplingSpec.from_dict(encoder_spec)
        self.spec = SamplingSpec.from_dict(spec)
        self.cache = cache
        self.fault_marker = fault_marker

    def __del__(self) -> None:
        if getattr(self, "_dir", ""):
            shutil.rmtree(self._dir, ignore_errors=True)

    def __call__(self, batch):
        import pyarrow as pa

        from gifsent_infer.scaleout.ray_cluster import crash_once

        crash_once(self.fault_marker)  # tests: a worker dying mid-run (ray_cluster)
        rows = batch.to_pylist()
        todo = [r for r in rows if r["status"] == "encode"]
        if todo:
            shape = (len(todo), self.spec.num_frames, self.spec.crop, self.spec.crop, 3)
            frames = np.frombuffer(b"".join(r["pixels"] for r in todo), np.uint8).reshape(shape)
            feats = encode_segments(self.runner, frames, self.encoder_spec, self.spec.segments)
            for r, f in zip(todo, feats, strict=True):
                r["file"] = str(self.cache.save(r["sha256"], r["view"], f))
                r["status"] = "encoded"
        for r in rows:
            r["pixels"] = None
        return pa.Table.from_pylist(rows, schema=_prepared_schema())


def extract_features_with_ray(
    encoder,
    items: Iterable[FeatureItem],
    options: FeatureOptions | None = None,
    *,
    cache_root: Path | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    address: str | None = None,
    num_actors: int | None = None,
    actor_cpus: float | None = None,
    decode_cpus: float | None = None,
    read_batch: int = 4,
    decode_memory: int = 256 << 20,
    progress_bars: bool = False,
    ray_init_kwargs: dict | None = None,
) -> ExtractResult:
    """extract_features on Ray Data: same cache, same entries, same ExtractResult.

    address: the Ray cluster (None: the instance this process joined, else $RAY_ADDRESS,
    else a new local one; see gifsent_infer.scaleout.ray_cluster.connect_ray).
    num_actors, actor_cpus, decode_cpus: encoder actors, the CPUs (and encoder threads,
    unless options.threads) each reserves, and the CPUs each decoding task reserves
    (default: gifsent_infer.scaleout.ray_cluster.plan_actors); read_batch: GIFs per decoding task.
    """
    from gifsent_infer.paths import features_cache_dir
    from gifsent_infer.scaleout.ray_cluster import connect_ray, import_ray

    ray = import_ray()
    opts = options or FeatureOptions()
    items = list(items)
    spec = sampling_spec(encoder.spec, opts)
    root = Path(cache_root) if cache_root is not None else features_cache_dir()
    cache = FeatureCache(
        root, getattr(encoder, "name", type(encoder).__name__), weights_key(encoder), spec
    )
    cache.ensure()
    res = ExtractResult(spec=spec, cache_dir=cache.dir)
    t0 = time.perf_counter()
    if not items:
        return res

    # the encoder: the exported graph where features.py would use onnxruntime, else torch
    payload: Any = encoder
    graph: bool | str = False  # else the graph backend's name (actors open it with engine.py)
    if opts.backend == "auto" or opts.backend in GRAPH_BACKENDS:
        from gifsent_infer.running.engine import auto_backend
        from gifsent_train.features import GraphRunner

        want = opts.backend
        path = graph_path(root, cache, encoder)
        try:
            if want == "auto":  # the engine's one rule for the CPU (its backend table)
                want = auto_backend("cpu")
            GraphRunner(encoder, path, opts.threads, backend=want)  # exports once, checks it loads
            payload, graph = path.read_bytes(), want
        except Exception as e:
            if opts.backend != "auto":
                raise
            if log:
                log(f"{want} encoder unavailable ({type(e).__name__}: {e}); using torch")
    res.backend = graph or "torch"

    started_here = False
    if not ray.is_initialized():
        connect_ray(ray, address, init_kwargs=ray_init_kwargs)
        started_here = True
    try:
        _run(
            ray,
            res,
            items,
            opts,
            encoder.spec,
            spec,
            cache,
            payload,
            graph,
            num_actors=num_actors,
            actor_cpus=actor_cpus,
            decode_cpus=decode_cpus,
            read_batch=read_batch,
            decode_memory=decode_memory,
            progress=progress,
            log=log,
            progress_bars=progress_bars,
        )
    finally:
        if started_here:
            ray.shutdown()
    res.seconds = time.perf_counter() - t0
    return res


def _run(
    ray,
    res,
    items,
    opts,
    encoder_spec,
    spec,
    cache,
    payload,
    graph,
    *,
    num_actors,
    actor_cpus,
    decode_cpus,
    read_batch,
    decode_memory,
    progress,
    log,
    progress_bars,
) -> None:
    import ray.data

    from gifsent_infer.scaleout.ray_cluster import node_cpus, plan_actors, worker_fault_marker

    ray.data.DataContext.get_current().enable_progress_bars = progress_bars
    # as for scoring: an actor runs as many threads as the CPUs it reserves, and decoding
    # tasks keep room (or share the cores on a 1-CPU cluster)
    plan = plan_actors(
        node_cpus(ray) or [ray.cluster_resources().get("CPU", 1.0)],
        0,
        "cpu",
        num_actors,
        actor_cpus,
        decode_cpus,
        opts.threads,
    )
    records = [{"gid": it.gid, "path": str(it.path), "views": int(it.views)} for it in items]
    ds = ray.data.from_items(records, override_num_blocks=max(1, -(-len(records) // read_batch)))
    ds = ds.map_batches(
        _read_batch,
        batch_size=read_batch,
        batch_format="pyarrow",
        fn_kwargs={"spec": spec.to_dict(), "cache": cache},
        num_cpus=plan.decode_cpus,
        concurrency=plan.decode_tasks,
        memory=decode_memory,  # also keeps decoding from being fused into the actors
    )
    ds = ds.map_batches(
        _EncodeActor,
        batch_size=opts.batch_size,
        batch_format="pyarrow",
        fn_constructor_kwargs={
            "encoder_ref": [ray.put(payload)],
            "graph": graph,
            "encoder_spec": encoder_spec.to_dict(),
            "spec": spec.to_dict(),
            "cache": cache,
            "threads": plan.threads,
            "fault_marker": worker_fault_marker(),  # tests (ray_cluster)
        },
        compute=ray.data.ActorPoolStrategy(size=plan.num_actors),
        num_cpus=plan.actor_cpus,
    )
    views = {it.gid: it.views for it in items}
    paths = {it.gid: str(it.path) for it in items}
    seen: dict[str, int] = {}
    total, done = len(items), 0
    if progress:
        progress(0, total)
    for row in ds.iter_rows():
        gid = row["gid"]
        if row["sha256"]:
            res.sha256[gid] = row["sha256"]
        if row["status"] == "failed":
            res.failures[gid] = {"path": paths[gid], "error": row["error"]}
            if log:
                log(f"skipping {paths[gid]}: {row['error']}")
            seen[gid] = views[gid]
        else:
            res.entries.setdefault(gid, {})[row["view"]] = Path(row["file"])
            if row["status"] == "cached":
                res.cached += 1
            else:
                res.encoded += 1
            seen[gid] = seen.get(gid, 0) + 1
        if seen[gid] == views[gid]:
            done += 1
            if progress:
                progress(done, total)


__all__ = ["extract_features_with_ray"]
