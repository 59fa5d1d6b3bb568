"""Encoder features for training: sample GIFs with the shared reader, encode, cache on disk per GIF and view.

Sampling modes (the study's three):
- ``sparse``: the encoder's own sampling spec (the graph that ships uses it).
- ``dense``: the same spec with a larger fixed number of segments S.
- ``augmented``: sparse, plus extra views of each *training* GIF (a temporal offset,
  a shifted crop, a horizontal flip); dev and test always use view 0, the canonical view.

Cache layout, under ``gifsent_infer.paths.features_cache_dir()``::

    <encoder>/w-<weights key>/s-<spec key>/meta.json
    <encoder>/w-<weights key>/s-<spec key>/v<view>/<sha[:2]>/<sha256 of the GIF>.npy   float32 [S, D]

The weights key hashes the encoder's state_dict (so random-init encoders are keyed
by their actual weights); the spec key hashes the SamplingSpec's JSON. Each file is
written atomically (``gifsent_infer.files``: a temporary name in its folder, renamed), so an
interrupted or concurrent run leaves either a whole entry or none; stray temporary
files are ignored and an unreadable entry is recomputed. A GIF that fails to decode
is recorded (id, path, error) and skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.files import atomic_write_bytes, file_sha256
from gifsent_infer.files import write_json as atomic_write_json
from gifsent_infer.running.engine import BACKEND_TABLE

MODES = ("sparse", "dense", "augmented")
# the exported encoder graph runs on the engine's backends (its table); torch runs the module
GRAPH_BACKENDS = tuple(sorted(BACKEND_TABLE))
BACKENDS = ("auto", *GRAPH_BACKENDS, "torch")

Progress = Callable[[int, int], None]  # (GIFs done, GIFs total)


@dataclass
class FeatureOptions:
    mode: str = "sparse"
    views: int = 4  # augmented mode: views per training GIF, the canonical one included
    dense_segments: int = 16  # dense mode: S (the study's dense sampling took more clips)
    batch_size: int = 8  # GIF-views per encoder call; memory, not results, depends on it
    backend: str = "auto"  # auto: time every installed graph backend and torch on the first batch
    threads: int | None = None  # intra-op threads for the encoder; None: library default

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"sampling mode must be one of {MODES}, got {self.mode!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.views < 1 or self.dense_segments < 1 or self.batch_size < 1:
            raise ValueError("views, dense_segments and batch_size must be >= 1")

    def train_views(self) -> int:
        return self.views if self.mode == "augmented" else 1


def sampling_spec(encoder_spec: SamplingSpec, options: FeatureOptions) -> SamplingSpec:
    """The spec features are taken with: the encoder's, or with S = dense_segments."""
    if options.mode == "dense":
        return replace(encoder_spec, segments=int(options.dense_segments))
    return encoder_spec


def view_params(view: int, sha256: str) -> dict:
    """Augmentation of view `view` of the GIF with content hash `sha256`; view 0 is canonical.

    Deterministic per (view, GIF), so a cache entry's content never depends on run order.
    Odd views are flipped, so half the extra views are mirror images.
    """
    if view == 0:
        return {"offset": 0.0, "crop_shift": (0.0, 0.0), "flip": False}
    rng = np.random.default_rng([int(view), int(sha256[:15], 16)])
    offset = float(rng.uniform(0.0, 1.0))
    shift = tuple(float(v) for v in rng.uniform(-1.0, 1.0, size=2))
    return {"offset": offset, "crop_shift": shift, "flip": bool(view % 2 == 1)}


def weights_key(encoder) -> str:
    """sha256 over the encoder's state_dict (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(encoder.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update((t.float() if t.dtype.is_floating_point else t).numpy().tobytes())
    return h.hexdigest()


def spec_key(spec: SamplingSpec) -> str:
    return hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


class FeatureCache:
    """One folder of cached features for an (encoder weights, sampling spec) pair."""

    def __init__(self, root: Path, encoder_name: str, wkey: str, spec: SamplingSpec):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder_name)
        self.dir = Path(root) / safe / f"w-{wkey[:16]}" / f"s-{spec_key(spec)[:16]}"
        self.spec = spec
        self.meta = {"encoder": encoder_name, "weights_key": wkey, "sampling": spec.to_dict()}

    def ensure(self) -> None:
        meta = self.dir / "meta.json"
        if not meta.is_file():
            atomic_write_json(meta, self.meta)

    def path(self, sha: str, view: int) -> Path:
        return self.dir / f"v{view}" / sha[:2] / f"{sha}.npy"

    def load(self, sha: str, view: int) -> np.ndarray | None:
        p = self.path(sha, view)
        if not p.is_file():
            return None
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # unreadable (e.g. written by something non-atomic): recompute
        if arr.ndim != 2 or arr.shape[0] != self.spec.segments or not np.isfinite(arr).all():
            return None
        return arr

    def save(self, sha: str, view: int, arr: np.ndarray) -> Path:
        p = self.path(sha, view)
        atomic_write_bytes(p, _npy_bytes(arr))
        return p


# ------------------------------------------------------------------ encoder backends


class TorchRunner:
    """Runs encoder(frames_u8) in torch eager, no grad (channels-last when asked)."""

    name = "torch"

    def __init__(self, encoder, channels_last: bool = False):
        self.encoder = encoder.eval()
        if channels_last and hasattr(encoder, "set_channels_last"):
            # Faster convolutions on CPUs (1.2-1.6x in benchmarks/bench_encoders.py).
            encoder.set_channels_last(True)
            self.name = "torch channels-last"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.encoder(torch.from_numpy(np.ascontiguousarray(frames))).float().numpy()


class GraphRunner:
    """Runs the exporter's encoder graph (uint8 frames -> features [B, S, D]) on an engine backend.

    backend: "onnxruntime" or "openvino" (gifsent_infer.running.engine opens it, on the CPU, at f32).
    """

    def __init__(
        self,
        encoder,
        graph_path: Path,
        threads: int | None = None,
        backend: str = "onnxruntime",
    ):
        """Exports `encoder` to `graph_path` unless that graph exists (then encoder may be None)."""
        from gifsent_infer.running.engine import open_engine

        if backend not in GRAPH_BACKENDS:
            raise ValueError(f"graph backend must be one of {GRAPH_BACKENDS}, got {backend!r}")
        self.name = backend
        graph_path = Path(graph_path)
        if not graph_path.is_file():
            from gifsent_models.onnx import export_encoder_graph

            if encoder is None:
                raise FileNotFoundError(f"no encoder graph at {graph_path}")
            graph_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = (
                graph_path.parent / f".{graph_path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.onnx"
            )
            try:
                export_encoder_graph(encoder, tmp)
                os.replace(tmp, graph_path)
            finally:
                if tmp.exists():
                    tmp.unlink()
        # No busy-waiting between ops (spin=False): the GIF decoder runs on another thread at
        # the same time, and spinning workers would take its core.
        self.engine = open_engine(
            graph_path, backend=backend, device="cpu", threads=threads, spin=False
        )

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if not getattr(self, "_announced", False) and len(frames) > 1:
            # the first real batch's size is the stage's batch size: OpenVINO runs it through
            # a static-batch twin (engine.expect_batch), the last partial batch dynamically
            self.engine.expect_batch(len(frames))
            self._announced = True
        return self.engine.run(np.ascontiguousarray(frames, dtype=np.uint8))


class OrtRunner(GraphRunner):
    """GraphRunner on onnxruntime (the name older callers use)."""

    def __init__(self, encoder, graph_path: Path, threads: int | None = None):
        super().__init__(encoder, graph_path, threads, backend="onnxruntime")


class AutoRunner:
    """backend "auto": times each candidate on the first batch and keeps the fastest.

    Which backend wins depends on the CPU and the network: on a 2-core AVX-512 Xeon
    onnxruntime ran EfficientNet-Lite0 1.5x faster than torch, but ResNeXt-101 3D 1.5x
    slower than torch channels-last (BENCHMARKS.md). Timing the first batch with each (after a
    warm-up call) costs a few batches once, against hours of encoding.
    """

    def __init__(self, candidates: list, log=None):
        self.candidates = candidates
        self.log = log
        self.chosen = None

    @property
    def name(self) -> str:
        return self.chosen.name if self.chosen is not None else "auto"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if self.chosen is None:
            seconds = {}
            for runner in self.candidates:
                runner(frames[:1])  # warm-up: graph optimisation, allocations
                runs = []
                for _ in range(2):  # best of two on the whole first batch: single calls are noisy
                    t0 = time.perf_counter()
                    out = runner(frames)
                    runs.append(time.perf_counter() - t0)
                seconds[runner.name] = min(runs)
            self.chosen = min(self.candidates, key=lambda r: seconds[r.name])
            if self.log:
                timed = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in seconds.items())
                self.log(f"encoder backend: {self.chosen.name} (first batch: {timed})")
            if self.chosen is self.candidates[-1]:
                return out  # the last candidate timed is the chosen one: reuse its output
        return self.chosen(frames)


def make_runner(encoder, options: FeatureOptions, graph_path: Path | None = None, log=None):
    """The encoder backend named by options.backend; "auto" times every installed one.

    auto: onnxruntime and OpenVINO (each when installed) on the exported graph, and torch
    channels-last, timed on the whole first batch; the fastest is kept.
    """
    if options.backend == "torch":
        return TorchRunner(encoder)
    from gifsent_infer.running.engine import installed_backends

    wanted = [options.backend] if options.backend in GRAPH_BACKENDS else list(GRAPH_BACKENDS)
    runners = []
    for backend in wanted:
        if options.backend == "auto" and backend not in installed_backends():
            continue
        try:
            if graph_path is None:
                raise ValueError(f"no graph path for the {backend} encoder")
            runners.append(GraphRunner(encoder, graph_path, options.threads, backend=backend))
        except Exception as e:  # export or runtime unavailable
            if options.backend == backend:
                raise
            if log:
                log(f"{backend} encoder unavailable ({type(e).__name__}: {e})")
    if options.backend in GRAPH_BACKENDS:
        return runners[0]
    # The ONNX graph was exported above from the encoder in its default layout, so switching
    # the torch module to channels-last now changes nothing the graph holds.
    torch_runner = TorchRunner(encoder, channels_last=True)
    if not runners:
        if log:
            log("no graph backend usable; using torch")
        return torch_runner
    return AutoRunner([*runners, torch_runner], log)


def encode_segments(
    runner, frames: np.ndarray, enc_spec: SamplingSpec, segments: int
) -> np.ndarray:
    """frames uint8 [B, S*T, H, W, 3] with any S -> features [B, S, D].

    The encoder graph takes exactly enc_spec.segments segments, so S segments are cut
    into chunks of that many (the last chunk padded by wrapping) and encoded as a batch;
    segments are encoded independently, so this equals encoding all S at once.
    """
    b = frames.shape[0]
    t = enc_spec.frames_per_segment
    se = enc_spec.segments
    if segments == se:
        return runner(frames)
    k = -(-segments // se)
    seg = frames.reshape(b, segments, t, *frames.shape[2:])
    pad = np.arange(k * se) % segments
    seg = seg[:, pad]  # [B, k*se, T, H, W, 3]
    chunks = seg.reshape(b * k, se * t, *frames.shape[2:])
    feats = runner(chunks)  # [B*k, se, D]
    return feats.reshape(b, k * se, -1)[:, :segments]


# ------------------------------------------------------------------ extraction


@dataclass
class FeatureItem:
    gid: str
    path: Path
    views: int = 1


@dataclass
class ExtractResult:
    spec: SamplingSpec
    cache_dir: Path
    entries: dict[str, dict[int, Path]] = field(default_factory=dict)  # id -> view -> .npy
    sha256: dict[str, str] = field(default_factory=dict)
    failures: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> {path, error}
    encoded: int = 0  # GIF-views run through the encoder now
    cached: int = 0  # GIF-views found in the cache
    backend: str = ""
    seconds: float = 0.0

    def load(self, ids: Sequence[str], views: int = 1) -> tuple[np.ndarray, list[str]]:
        """Stack views 0..views-1 of `ids` (skipping failed ones) -> ([N*, S, D], ids per row)."""
        rows, row_ids = [], []
        for gid in ids:
            got = self.entries.get(gid)
            if not got:
                continue
            for v in range(views):
                if v in got:
                    rows.append(np.load(got[v], allow_pickle=False))
                    row_ids.append(gid)
        if not rows:
            return np.zeros((0, self.spec.segments, 0), dtype=np.float32), []
        return np.stack(rows).astype(np.float32), row_ids

    def index(self) -> dict:
        return {
            "sampling": self.spec.to_dict(),
            "cache_dir": str(self.cache_dir),
            "entries": {g: {str(v): str(p) for v, p in e.items()} for g, e in self.entries.items()},
            "sha256": self.sha256,
            "failures": self.failures,
            "encoded": self.encoded,
            "cached": self.cached,
            "backend": self.backend,
            "seconds": self.seconds,
        }


def extract_features(
    encoder,
    items: Iterable[FeatureItem],
    options: FeatureOptions | None = None,
    *,
    cache_root: Path | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    runner=None,
) -> ExtractResult:
    """Features for every (GIF, view) requested, from the cache or by encoding them now."""
    from gifsent_infer.paths import features_cache_dir

    opts = options or FeatureOptions()
    items = list(items)
    spec = sampling_spec(encoder.spec, opts)
    root = Path(cache_root) if cache_root is not None else features_cache_dir()
    wkey = weights_key(encoder)
    cache = FeatureCache(root, getattr(encoder, "name", type(encoder).__name__), wkey, spec)
    cache.ensure()
    res = ExtractResult(spec=spec, cache_dir=cache.dir)
    t0 = time.perf_counter()

    todo = _look_up_cached(items, cache, res)  # 1. what is already cached
    count = _Count(len(items) - len(todo), len(items), progress)
    count.tick(0)
    if todo:
        # 2. decode + sample on a worker thread while the encoder runs on the main thread
        if runner is None:
            runner = make_runner(encoder, opts, graph_path(root, cache, encoder), log)
        batcher = _Batcher(runner, encoder.spec, spec.segments, cache, res, opts.batch_size)
        _encode_jobs(todo, spec, max(2 * opts.batch_size, 4), batcher, res, count, log)
        res.backend = getattr(runner, "name", type(runner).__name__)  # "auto" decides on use
    res.seconds = time.perf_counter() - t0
    return res


def graph_path(root: Path, cache: FeatureCache, encoder) -> Path:
    """Where the exported encoder graph of this cache's encoder and weights is kept."""
    name = f"{cache.dir.parent.parent.name}-{cache.dir.parent.name}"
    return root / "graphs" / f"{name}-e{spec_key(encoder.spec)[:16]}.onnx"


_Job = tuple  # (FeatureItem, sha256, [views to encode])


def _look_up_cached(items: list[FeatureItem], cache: FeatureCache, res: ExtractResult) -> list:
    """Record the cached (GIF, view) features and unreadable GIFs in `res`; the jobs left."""
    todo: list[_Job] = []
    for it in items:
        try:
            sha = file_sha256(it.path)
        except OSError as e:
            res.failures[it.gid] = {"path": str(it.path), "error": f"{type(e).__name__}: {e}"}
            continue
        res.sha256[it.gid] = sha
        missing = []
        for v in range(it.views):
            if cache.load(sha, v) is not None:
                res.entries.setdefault(it.gid, {})[v] = cache.path(sha, v)
                res.cached += 1
            else:
                missing.append(v)
        if missing:
            todo.append((it, sha, missing))
    return todo


@dataclass
class _Count:
    """GIFs done of the total, reported to `progress` as they finish."""

    done: int
    total: int
    progress: Progress | None

    def tick(self, n: int = 1) -> None:
        self.done += n
        if self.progress:
            self.progress(self.done, self.total)


def _prepare(job: _Job, spec: SamplingSpec):
    """Decode and sample one GIF's views: (job, [frames per view], None) or (job, None, error)."""
    from gifsent_infer.reading import gifio, media

    it, sha, views = job
    try:
        if len(views) == 1:  # one view: read_gif composites only the sampled frames
            frames = [media.read_media(it.path, spec, **view_params(views[0], sha)).frames]
        else:  # several views: decode once, sample each view
            decoded = media.decode_for_spec(it.path, spec)
            frames = [
                gifio.sample_decoded(decoded, spec, **view_params(v, sha)).frames for v in views
            ]
        return job, frames, None
    except Exception as e:  # GifError, OSError, anything a broken file can raise
        return job, None, f"{type(e).__name__}: {e}"


class _Batcher:
    """Collects sampled views into encoder batches and caches each one's features."""

    def __init__(self, runner, enc_spec, segments, cache, res, batch_size) -> None:
        self.runner, self.enc_spec, self.segments = runner, enc_spec, segments
        self.cache, self.res, self.batch_size = cache, res, batch_size
        self.pending: list[tuple[str, str, int, np.ndarray]] = []  # (gid, sha, view, frames)

    def add(self, gid: str, sha: str, view: int, frames: np.ndarray) -> None:
        self.pending.append((gid, sha, view, frames))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batch = np.stack([p[3] for p in self.pending])
        feats = encode_segments(self.runner, batch, self.enc_spec, self.segments)
        for (gid, sha, v, _), f in zip(self.pending, feats, strict=True):
            self.res.entries.setdefault(gid, {})[v] = self.cache.save(sha, v, f)
            self.res.encoded += 1
        self.pending.clear()


def _encode_jobs(todo, spec, window: int, batcher: _Batcher, res, count: _Count, log) -> None:
    """Decode the jobs on a worker thread, at most `window` ahead (memory stays flat on big
    datasets), and encode them in batches here; a GIF that fails is recorded and skipped."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        futures = [pool.submit(_prepare, j, spec) for j in todo[:window]]
        nxt = len(futures)
        i = 0
        while i < len(futures):
            (it, sha, views), frames, err = futures[i].result()
            futures[i] = None  # release the frames
            i += 1
            if nxt < len(todo):
                futures.append(pool.submit(_prepare, todo[nxt], spec))
                nxt += 1
            if err is not None:
                res.failures[it.gid] = {"path": str(it.path), "error": err}
                if log:
                    log(f"skipping {it.path}: {err}")
            else:
                for v, fr in zip(views, frames, strict=True):
                    batcher.add(it.gid, sha, v, fr)
            count.tick()
        batcher.flush()


def write_failures(path: Path, result: ExtractResult) -> None:
    atomic_write_json(Path(path), result.failures)
