"""The embeddable scoring API: a Scorer turns GIFs (paths, URLs, bytes, file objects, frames) into 17 named scores.

Example::

    from gifsent_infer.running.scorer import Scorer

    scorer = Scorer("gifsent-rnn.onnx", device="cpu")   # or Scorer() for the default model
    result = scorer.score("cat.gif")
    if result.ok:
        print(result.scores["happiness"], result.top(3))
    for r in scorer.score_many(["a.gif", "b.gif", "https://example.com/c.gif"]):
        print(r.path, r.status, r.error or r.scores["surprise"])

A Scorer is safe to share between threads: onnxruntime's InferenceSession.run is thread-safe
and every call keeps its state local. Bad inputs never raise; they come back as results with
status "error" and a reason. Model and device problems raise ModelError / DeviceError when
the Scorer is created. Importing this module pulls in neither torch, typer nor rich.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gifsent_infer.contract import (
    EMOTIONS,
    OUTPUT_NAME,
    SEGMENT_SCORES,
    ModelDocument,
    Provenance,
    SamplingSpec,
)
from gifsent_infer.options import ScoreOptions
from gifsent_infer.reading.budget import DEFAULT_MEMORY_BUDGET, MemoryBudget, estimate_decode_bytes
from gifsent_infer.reading.gifio import (
    DEFAULT_LIMITS,
    DecodedGif,
    GifError,
    ReaderLimits,
    SampledGif,
    SampleInfo,
    sample_decoded,
)
from gifsent_infer.reading.inputs import (
    DEFAULT_TIMEOUT_S,
    InputError,
    InputItem,
    fetch_url,
    is_url,
    read_item,
    sha256,
)
from gifsent_infer.reading.media import read_media
from gifsent_infer.reading.selftest import check_gif_decoder
from gifsent_infer.running.batch import run_pipeline
from gifsent_infer.running.extras import RowExtras
from gifsent_infer.running.rows import f32, score_row
from gifsent_infer.running.session import DeviceError, ModelError, ModelSession, resolve_model

__all__ = [
    "DemoModelWarning",
    "DeviceError",
    "ModelError",
    "Prepared",
    "ScoreResult",
    "Scorer",
    "Source",
]

# What can be scored: a path, an http(s) URL (str), raw bytes, a binary file object, or an
# InputItem from gifsent_infer.reading.inputs.
Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | InputItem

OK, ERROR, SKIPPED = "ok", "error", "skipped"


@dataclass(frozen=True)
class ScoreResult:
    """The outcome for one input.

    status "ok": `scores` maps the 17 emotions (EMOTIONS order) to the model's scores.
    status "error": `error` says why (not a GIF, truncated, too large, download failed...).
    status "skipped": the caller's `skip` hook said it was already scored (resume).
    """

    path: str  # the file path or URL; "<bytes>" or the file object's name otherwise
    status: str
    error: str = ""
    sha256: str = ""  # of the input's bytes; empty when they could not be read
    model_id: str = ""  # sha256 of the model file
    info: SampleInfo | None = None  # frames, duration, segments, padding of the GIF
    scores: dict[str, float] | None = None
    # The model's further outputs asked for by name (score_many(outputs=...)), this input's
    # slice of each: e.g. "segment_scores" float32 [S, 17], "features" float32 [D].
    extras: dict[str, np.ndarray] | None = None
    # With timeline=True: {"start_s": [S seconds], "<emotion>": [S scores], ...} (extras.py).
    timeline: dict[str, list[float]] | None = None
    # With intervals=c: "<emotion>_lo" / "<emotion>_hi" (and "<emotion>_std" for a K-head
    # model) -> value: the calibrated interval holding the true score with probability c.
    intervals: dict[str, float] | None = None
    # What kind of failure an error row is: the reader's exception class ("InputError" for
    # reading/downloading, "GifError"/"MediaError" for content, "MemoryError"...); "" when ok.
    error_kind: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def array(self) -> np.ndarray:
        """The scores as float32 [17] in EMOTIONS order (NaN when there are none)."""
        if self.scores is None:
            return np.full(len(EMOTIONS), np.nan, np.float32)
        return np.array([self.scores[e] for e in EMOTIONS], np.float32)

    def top(self, n: int = 3) -> list[tuple[str, float]]:
        """The n highest-scoring emotions, best first."""
        if self.scores is None:
            return []
        return sorted(self.scores.items(), key=lambda kv: -kv[1])[:n]

    def to_row(self) -> dict[str, Any]:
        """One output row: path, sha256, model_id, status, error, format, frames, duration, segments,
        padding, then the 17 scores (None where not available)."""
        row = score_row(
            self.path, self.sha256, self.model_id, self.status, self.error, self.info, self.scores
        )
        if self.intervals is not None:
            row.update(self.intervals)
        if self.timeline is not None:
            row["timeline"] = self.timeline
        return row

    def interval(self, emotion: str) -> tuple[float, float] | None:
        """(lo, hi) of `emotion`'s calibrated interval, or None without intervals."""
        if not self.intervals:
            return None
        return self.intervals[emotion + "_lo"], self.intervals[emotion + "_hi"]


class DemoModelWarning(UserWarning):
    """A Scorer was made on a model trained on the procedural demo data: its scores on real
    GIFs mean nothing. Silence it the usual way:
    `warnings.filterwarnings("ignore", category=DemoModelWarning)`."""


def warn_demo(model_path: Path) -> None:
    import warnings

    from gifsent_infer.contract import DEMO_WARNING

    # one warning site: Python's default filter shows it once per process
    warnings.warn(f"{model_path.name}: {DEMO_WARNING}", DemoModelWarning, stacklevel=3)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class _Context:
    path: str
    sha256: str
    info: SampleInfo | None
    status: str
    error: str = ""
    error_kind: str = ""


# What Scorer.prepare hands to Scorer.complete: the input's name, sha256, sample info, status.
Prepared = _Context


class Scorer:
    """Scores GIFs with an exported gifsent model.

    model: the .onnx file; None means $GIFSENT_MODEL, then where `gifsent-export` writes
        (raises ModelError saying how to get a model when there is none).
    device: "auto" (CUDA when it works, else CPU), "cpu", or "cuda" (DeviceError when CUDA
        cannot run, never a silent CPU fallback).
    threads: the engine's intra-op threads (None: one per core).
    backend: "auto" (CUDA -> onnxruntime; CPU -> openvino when installed, else onnxruntime),
        "onnxruntime" or "openvino" (ImportError with the install line when not installed).
    precision: "auto" (default: bf16 only on OpenVINO with native bf16 and a recorded bf16
        check of the model that holds; else fp32), "fp32" (bit-reproducible) or "bf16"
        (OpenVINO on CPUs with native bf16; DeviceError elsewhere).
    limits: the GIF reader's limits; `limits.max_file_bytes` also caps downloads.
    timeout: seconds allowed for downloading one URL (connect, headers and body together).
    allow_private_urls: also fetch URLs on loopback, private and link-local addresses (off by
        default, so a service scoring its users' URLs cannot be turned on its own network;
        see gifsent_infer.reading.netpolicy).
    memory_budget: bytes that decoding inputs may hold at once, across all workers and
        threads sharing this Scorer (see gifsent_infer.reading.budget).
    timeline: every result carries `timeline` (the model's `segment_scores`, with each
        segment's start time); ExtrasError (exit 2) for a model without that output.
    intervals: a coverage level the model was calibrated for (e.g. 0.9): every result carries
        `intervals` (<emotion>_lo/_hi, and _std for a K-head model); ExtrasError otherwise.
    segments: with timeline, sample the timeline at this many segments (a multiple of the
        model's S; MaxPool and linear heads) while scores keep the model's sampling.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        device: str = "auto",
        threads: int | None = None,
        limits: ReaderLimits = DEFAULT_LIMITS,
        timeout: float = DEFAULT_TIMEOUT_S,
        allow_private_urls: bool = False,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        backend: str = "auto",
        precision: str = "auto",
        timeline: bool = False,
        intervals: float | None = None,
        segments: int | None = None,
    ) -> None:
        check_gif_decoder()  # once per process: a Pillow upgrade must fail loudly, not decode wrongly
        self.model_path: Path = resolve_model(model)
        self.session = ModelSession(
            self.model_path, device=device, threads=threads, backend=backend, precision=precision
        )
        if self.session.document.is_demo:
            warn_demo(self.model_path)
        self.limits = limits
        self.timeout = timeout
        self.allow_private_urls = allow_private_urls
        self.budget = MemoryBudget(memory_budget)  # shared by all workers and threads
        self.row_extras = RowExtras.for_model(
            self.session.document,
            self.session.output_names,
            timeline=timeline,
            intervals=intervals,
            segments=segments,
        )
        self.options = ScoreOptions(
            model=str(self.model_path),
            device=device,
            threads=threads,
            backend=backend,
            precision=precision,
            max_bytes=limits.max_file_bytes,
            timeout=timeout,
            allow_private_urls=allow_private_urls,
            memory_budget=memory_budget,
            timeline=timeline,
            intervals=intervals,
            segments=segments,
        )

    @classmethod
    def from_options(
        cls, options: ScoreOptions, *, limits: ReaderLimits = DEFAULT_LIMITS
    ) -> Scorer:
        """A Scorer for `options` (gifsent_infer.options.ScoreOptions), the one definition of
        the scoring options that the CLI, Ray and the service share. `limits` gives the
        reader's other limits; its max_file_bytes is options.max_bytes."""
        scorer = cls(
            options.model,
            device=options.device,
            threads=options.threads,
            limits=replace_limits(limits, max_file_bytes=options.max_bytes),
            timeout=options.timeout,
            allow_private_urls=options.allow_private_urls,
            memory_budget=options.memory_budget,
            backend=options.backend,
            precision=options.precision,
            timeline=options.timeline,
            intervals=options.intervals,
            segments=options.segments,
        )
        # the caller's batch, workers and row extras, with the model resolved to its file
        scorer.options = options.replace(model=str(scorer.model_path))
        # full batches (score_many's, the service's busy ones) run a static-batch graph
        scorer.session.expect_batch(options.batch_size)
        return scorer

    # --- what the model is -----------------------------------------------------------------
    @property
    def document(self) -> ModelDocument:
        return self.session.document

    @property
    def spec(self) -> SamplingSpec:
        return self.session.spec

    @property
    def provider(self) -> str:
        """What runs the graph, e.g. "CPUExecutionProvider" (onnxruntime) or "OpenVINO CPU"."""
        return self.session.provider

    @property
    def backend(self) -> str:
        """The inference backend in use: "onnxruntime" or "openvino"."""
        return self.session.backend

    @property
    def model_id(self) -> str:
        """sha256 of the model file; every result carries it."""
        return self.session.model_id

    emotions = EMOTIONS

    @property
    def provenance(self) -> Provenance | None:
        """What the model was trained on (dataset kind, name, counts, run); None for models
        exported before gifsent schema 2."""
        return self.document.provenance

    @property
    def is_demo(self) -> bool:
        """True for a model trained on the procedural demo data: its scores on real GIFs
        mean nothing."""
        return self.document.is_demo

    def percentiles(self, result: ScoreResult | dict[str, float]) -> dict[str, float]:
        """Each emotion's percentile (0..100) among the training GIFs, for a result or a
        scores dict; ReadableError when the model carries no training quantiles."""
        from gifsent_infer.running.readable import Readable, percentiles

        scores = result.scores if isinstance(result, ScoreResult) else result
        if scores is None:
            return dict.fromkeys(EMOTIONS, float("nan"))
        quantiles = Readable.for_model(self.document, percentiles=True).quantiles
        return percentiles(quantiles, scores)

    # --- scoring ---------------------------------------------------------------------------
    def score(self, source: Source) -> ScoreResult:
        """Score one input. Never raises for a bad input: see ScoreResult.status/error."""
        return next(self.score_many([source], batch_size=1, workers=0))

    def score_many(
        self,
        sources: Iterable[Source],
        *,
        batch_size: int = 8,
        workers: int | None = None,
        skip: Callable[[str, str], bool] | None = None,
        outputs: Sequence[str] = (),
    ) -> Iterator[ScoreResult]:
        """Score many inputs, yielding one result per input in input order.

        Inputs are read and decoded by `workers` threads (None: one per core, 0: in this
        thread) while the model runs on batches of `batch_size`; memory stays bounded
        however many inputs there are. `skip(path, sha256)` returning True yields a
        "skipped" result without decoding (used by --resume). `outputs` names further graph
        outputs to return on each result's `extras` (from the same model call);
        MissingOutputError (exit 2) at once when the model lacks one.
        """
        model_id = self.model_id
        self.session.expect_batch(batch_size)
        return run_pipeline(
            sources,
            lambda s: self._prepare(s, skip),
            self._infer(outputs),
            lambda ctx, row: self._complete(ctx, row, model_id),
            batch_size=batch_size,
            workers=workers,
        )

    def _infer(self, outputs: Sequence[str] = ()) -> Callable[[np.ndarray], Any]:
        """The model call for stacked frames: scores [B, 17], or with extra outputs (asked
        here or by the row extras: timeline, intervals) one dict of this input's outputs per
        row. MissingOutputError at once when the model lacks one."""
        wanted = (*outputs, *self.row_extras.outputs)
        extra = tuple(dict.fromkeys(n for n in wanted if n != OUTPUT_NAME))
        self.session.require_outputs(extra)
        if not extra:
            return self.session.run

        def infer(frames: np.ndarray) -> list[dict[str, np.ndarray]]:
            out = self._run_extra(frames, extra)
            return [{k: v[i] for k, v in out.items()} for i in range(len(frames))]

        return infer

    def _run_extra(self, frames: np.ndarray, extra: tuple[str, ...]) -> dict[str, np.ndarray]:
        """One batch with extra outputs. With a finer timeline (--segments N) each input's
        frames hold the model's sampling, then the N-segment one: the first gives the scores,
        the second runs as N / S groups of S segments whose segment_scores are put end to end."""
        if self.row_extras.segments is None:
            return self.session.run_outputs(frames, (OUTPUT_NAME, *extra))
        n = self.spec.num_frames
        rest = tuple(x for x in extra if x != SEGMENT_SCORES)
        out = self.session.run_outputs(np.ascontiguousarray(frames[:, :n]), (OUTPUT_NAME, *rest))
        groups = np.ascontiguousarray(frames[:, n:]).reshape(-1, *frames.shape[2:])
        groups = groups.reshape(-1, n, *frames.shape[2:])  # [B * N / S, S * T, H, W, 3]
        seg = self.session.run_outputs(groups, (SEGMENT_SCORES,))[SEGMENT_SCORES]
        out[SEGMENT_SCORES] = seg.reshape(len(frames), self.row_extras.segments, seg.shape[-1])
        return out

    def score_frames(self, frames: np.ndarray) -> np.ndarray:
        """Run the model on frames already sampled for it.

        uint8 [S*T, crop, crop, 3] -> float32 [17], or [B, S*T, crop, crop, 3] -> [B, 17];
        sample with gifsent_infer.reading.gifio.read_gif(source, scorer.spec) to get them.
        """
        frames = np.asarray(frames)
        if frames.ndim == 4:
            return self.session.run(frames[None])[0]
        return self.session.run(frames)

    def score_decoded(self, decoded: DecodedGif) -> np.ndarray:
        """Sample a decoded GIF (gifio.decode_gif) with the model's spec and score it: float32 [17]."""
        return self.score_frames(sample_decoded(decoded, self.spec).frames)

    # --- the two halves of the pipeline, for callers that batch themselves (the service) ----
    def prepare(self, source: Source) -> tuple[np.ndarray | None, Prepared]:
        """Read and decode one input under the memory budget, as score_many does: (frames
        uint8 [S*T, crop, crop, 3], context) or (None, context) for an error row. Never raises
        for a bad input. Stack the frames of several inputs, run them with `run_batch` and
        turn each row back into a result with `complete`."""
        return self._prepare(source, None)

    def run_batch(self, frames: np.ndarray) -> Sequence[Any]:
        """The model on stacked frames [B, S*T, crop, crop, 3] in one call: one row per input
        for `complete` (float32 [17] scores, or a dict with the row extras' outputs)."""
        return self._infer()(frames)

    def complete(self, prepared: Prepared, row: np.ndarray | None) -> ScoreResult:
        """The result for a prepared input and its row of run_batch's output (None for an
        error row): the same result score_many gives."""
        return self._complete(prepared, row, self.model_id)

    def _read(self, source: Source) -> tuple[str, bytes]:
        max_bytes = self.limits.max_file_bytes
        if isinstance(source, InputItem):
            return source.name, read_item(
                source,
                max_bytes=max_bytes,
                timeout=self.timeout,
                allow_private=self.allow_private_urls,
            )
        if isinstance(source, (bytes, bytearray, memoryview)):
            return "<bytes>", bytes(source)
        if isinstance(source, str) and is_url(source):
            return source, fetch_url(
                source,
                max_bytes=max_bytes,
                timeout=self.timeout,
                allow_private=self.allow_private_urls,
            )
        if isinstance(source, (str, os.PathLike)):
            return str(source), read_item(
                InputItem(str(source), path=Path(source)), max_bytes=max_bytes
            )
        if hasattr(source, "read"):
            name = getattr(source, "name", None)
            name = name if isinstance(name, str) else "<file>"
            try:
                data = source.read(max_bytes + 1)
            except (OSError, ValueError) as e:
                raise InputError(f"cannot read: {e}") from None
            if not isinstance(data, (bytes, bytearray)):
                raise InputError("file object must be opened in binary mode")
            if len(data) > max_bytes:
                raise InputError(f"input is over the {max_bytes} byte limit")
            return name, bytes(data)
        raise TypeError(f"cannot score a {type(source).__name__}")

    def _prepare(
        self, source: Source, skip: Callable[[str, str], bool] | None
    ) -> tuple[np.ndarray | None, _Context]:
        if not isinstance(
            source, (InputItem, str, os.PathLike, bytes, bytearray, memoryview)
        ) and not hasattr(source, "read"):
            raise TypeError(
                f"cannot score a {type(source).__name__}: pass a path, URL, bytes or binary file object"
            )
        path, digest = _source_name(source), ""
        try:
            path, data = self._read(source)
            digest = sha256(data)
            if skip is not None and skip(path, digest):
                return None, _Context(path, digest, None, SKIPPED)
            with self.budget.hold(estimate_decode_bytes(data, self.spec, self.limits)):
                sampled = sample_content(data, self.spec, self.limits)
                fine = self.row_extras.fine_spec
                if fine is not None:  # --segments: the timeline's own sampling, after it
                    more = sample_content(data, fine, self.limits).frames
                    sampled = dataclasses.replace(
                        sampled, frames=np.concatenate([sampled.frames, more])
                    )
        except Exception as e:  # one odd file must not stop a run of thousands: it gets a row
            return None, _Context(path, digest, None, ERROR, failure_reason(e), type(e).__name__)
        return sampled.frames, _Context(path, digest, sampled.info, OK)

    def _complete(
        self, ctx: _Context, row: np.ndarray | dict[str, np.ndarray] | None, model_id: str
    ) -> ScoreResult:
        scores, extras = None, None
        if isinstance(row, dict):  # scores plus the extra outputs asked for
            extras = {k: v for k, v in row.items() if k != OUTPUT_NAME}
            row = row[OUTPUT_NAME]
        if row is not None:
            scores = {e: f32(v) for e, v in zip(EMOTIONS, row, strict=True)}
        more = self.row_extras.values(
            scores, extras, ctx.info.duration_s if ctx.info is not None else None
        )
        return ScoreResult(
            path=ctx.path,
            status=ctx.status,
            error=ctx.error,
            sha256=ctx.sha256,
            model_id=model_id,
            info=ctx.info,
            scores=scores,
            extras=extras,
            timeline=more.pop("timeline", None),
            intervals=more or None,
            error_kind=ctx.error_kind,
        )


def sample_content(data: bytes, spec: SamplingSpec, limits: ReaderLimits) -> SampledGif:
    """An input's bytes (any format of the registry, gifsent_infer.reading.formats) -> its
    sampled frames; a GifError (media.MediaError) for unsupported or bad content. Local
    scoring and Ray scoring both prepare inputs here."""
    return read_media(data, spec, limits=limits)


def failure_reason(exc: BaseException) -> str:
    """The one-line reason an error row carries, in the same words on every path."""
    if isinstance(exc, (InputError, GifError)):
        return _one_line(str(exc))
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    return _one_line(f"cannot decode: {type(exc).__name__}: {exc}")


def _source_name(source: Any) -> str:
    if isinstance(source, InputItem):
        return source.name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<file>"


def replace_limits(limits: ReaderLimits, **changes: Any) -> ReaderLimits:
    """A copy of `limits` with some fields changed (e.g. max_file_bytes from --max-bytes)."""
    return dataclasses.replace(limits, **changes)
