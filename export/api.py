"""Export a gifsent checkpoint to one checked, self-describing ONNX graph (the library behind gifsent-export).

Order of work, so that nothing is written unless every check passes:
  load checkpoint -> export (full graph, or encoder and head for reduced precisions) ->
  optional simplification (kept only when it changes nothing) -> ONNX checker ->
  fp32 parity in onnxruntime vs PyTorch on frames decoded from GIFs (max abs <= 1e-4) ->
  for fp16/int8: convert the encoder, re-merge with the float head, compare with fp32 on
  GIFs not used for calibration (refuse when mean per-emotion Spearman < 0.98) ->
  metadata -> write to a temporary file and rename.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gifsent_export import checks as checks_mod
from gifsent_export import frames as gif_frames
from gifsent_export.checks import MEASURABLE
from gifsent_export.parity import (
    FP32_ATOL,
    MIN_MEAN_SPEARMAN,
    Deviation,
    ParityError,
    assert_fp32_parity,
    compare,
    graph_opset,
    installed_backends,
    open_graph,
    ort_session,
    run_session,
    torch_outputs,
)
from gifsent_infer.contract import (
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    PRECISIONS,
    SCHEMA_VERSION,
    SEGMENT_SCORES,
    STD_NAME,
    Intervals,
    ModelDocument,
    output_meanings,
)
from gifsent_infer.paths import default_model_path, models_dir
from gifsent_models.onnx import (
    DEFAULT_EXPORTER,
    DEFAULT_OPSET,
    FEATURES_NAME,
    ExportError,
    check_proto,
    export_proto,
    save_proto,
    set_metadata,
    simplify_proto,
)
from gifsent_train.run import RunLayout, run_for_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    import onnx

PARTS = ("full", "encoder", "head")
PART_METADATA_KEY = "gifsent_part"  # parts are not scoring models: no `gifsent` key, on purpose

Progress = Callable[[str], None]


@dataclass
class ExportResult:
    path: Path
    part: str
    precision: str
    opset: int
    exporter: str
    size_bytes: int
    parity: Deviation  # fp32 graph vs PyTorch fp32
    parity_atol: float
    parity_source: str  # where the parity GIFs came from
    deviation: Deviation | None = None  # fp16/int8 vs fp32, on GIFs not used for calibration
    calibration_source: str = ""
    simplified: str = ""
    document: ModelDocument | None = None
    checkpoint_sha256: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (what the CLI prints)."""
        out: dict[str, Any] = {
            "file": str(self.path),
            "size_bytes": self.size_bytes,
            "part": self.part,
            "precision": self.precision,
            "opset": self.opset,
            "exporter": self.exporter,
            "parity": {
                "gifs": self.parity.n_gifs,
                "source": self.parity_source,
                "max_abs": self.parity.max_abs,
                "mean_abs": self.parity.mean_abs,
                "atol": self.parity_atol,
            },
            "simplified": self.simplified,
            "checkpoint_sha256": self.checkpoint_sha256,
            "seconds": round(self.seconds, 2),
        }
        if self.deviation is not None:
            out["deviation_vs_fp32"] = self.deviation.to_dict()
            out["deviation_vs_fp32"]["calibration_source"] = self.calibration_source
            if self.document is not None and "precision_check" in self.document.metrics:
                out["precision_check"] = self.document.metrics["precision_check"]
        if self.document is not None and "precision_checks" in self.document.metrics:
            out["precision_checks"] = self.document.metrics["precision_checks"]
        return out


# -- locating things -----------------------------------------------------------------------


def _run_provenance(run: RunLayout | None, document: ModelDocument) -> dict[str, Any]:
    """Schema-2 fields from the run: what the model was trained on, and its training targets'
    quantiles. Without a run the checkpoint's own fields (if any) are kept."""
    from gifsent_train.provenance import run_provenance, run_score_quantiles

    fields: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    if run is not None:
        provenance = run_provenance(run, document.encoder)
        quantiles = run_score_quantiles(run)
        if provenance is not None:
            fields["provenance"] = provenance
        if quantiles is not None:
            fields["score_quantiles"] = quantiles
    return fields


def default_output(head: str, precision: str, part: str, encoder_name: str) -> Path:
    if part == "full":
        return default_model_path(head, precision)
    suffix = "" if precision == "fp32" else f"-{precision}"
    if part == "encoder":
        return models_dir() / f"gifsent-encoder-{encoder_name}{suffix}.onnx"
    return models_dir() / f"gifsent-{head}-head.onnx"


def _gif_source(
    explicit: Sequence[str | os.PathLike] | None,
    run_paths: list[Path],
    run_label: str,
    generated_dir: Path,
    n_generate: int,
    seed: int,
) -> tuple[list[Path], str]:
    if explicit:
        return gif_frames.gif_files(explicit), "given GIFs"
    if run_paths:
        return run_paths, run_label
    return gif_frames.generate_gifs(generated_dir, n_generate, seed=seed), "generated GIFs"


# -- the export ----------------------------------------------------------------------------


def _noop(_msg: str) -> None:
    pass


def _example(frames: np.ndarray, spec) -> Any:
    import torch

    if len(frames) >= 2:
        return torch.from_numpy(np.ascontiguousarray(frames[:2]))
    g = torch.Generator().manual_seed(0)
    return torch.randint(
        0, 256, (2, spec.num_frames, spec.crop, spec.crop, 3), dtype=torch.uint8, generator=g
    )


def _simplified(
    model: onnx.ModelProto, probe: np.ndarray, warn: Progress
) -> tuple[onnx.ModelProto, str]:
    """Simplify, and keep the result only if it gives the same outputs on `probe` (else warn)."""
    candidate, what = simplify_proto(model, warn=warn)
    if candidate is model:
        return model, what
    try:
        a = run_session(ort_session(model), probe)
        b = run_session(ort_session(candidate), probe)
        scale = max(1.0, float(np.abs(a).max()))
        if not np.allclose(a, b, rtol=0, atol=1e-6 * scale):
            warn(
                f"graph simplification changed outputs (max {np.abs(a - b).max():.3g}); kept the original"
            )
            return model, "skipped (changed outputs)"
    except Exception as e:  # simplification must never make export fail
        warn(f"graph simplification skipped: {type(e).__name__}: {e}")
        return model, "skipped (could not be verified)"
    return candidate, what


def _features_tolerance(reference: np.ndarray, atol: float) -> float:
    """Encoder features can be large (ResNeXt activations): bound them relative to their size."""
    return atol * max(1.0, float(np.abs(reference).max()))


@dataclass(frozen=True)
class ExportOptions:
    """Everything an export can be told (one object; the CLI builds it from its flags).

    parity_gifs / calibration_gifs: files or folders; they win over the run's test / training
    GIFs, which win over generated GIFs. `run` defaults to the run holding the checkpoint.
    check_backends: the backends a reduced precision must keep the ranking on (default: every
    installed one); the document records which ones it was checked on.
    """

    precision: str = "fp32"
    part: str = "full"
    parity_gifs: Sequence[str | os.PathLike] | None = None
    calibration_gifs: Sequence[str | os.PathLike] | None = None
    run: RunLayout | str | os.PathLike | None = None
    exporter: str = DEFAULT_EXPORTER
    opset: int = DEFAULT_OPSET
    simplify: bool = True
    encoder_weights: str | os.PathLike | None = None
    parity_count: int = 8
    eval_count: int = 32
    calibration_count: int = 16
    atol: float = FP32_ATOL
    min_mean_spearman: float = MIN_MEAN_SPEARMAN
    int8_recipe: str = "auto"
    check_backends: Sequence[str] | None = None
    batch_size: int = 4
    expect_head: str | None = None
    # What an fp32 full export also measures against fp32 for the contract's recorded check
    # (export/checks.py): bf16 (OpenVINO, where the CPU has it: what --precision auto reads)
    # and optionally int8 (every recipe; slow on big encoders, so not by default).
    measure: tuple[str, ...] = ("bf16",)
    # Fuse the head with the run's seed refits of it (checkpoints/seed<r>-<head>.pt) into one
    # graph that runs the encoder once: `scores` is their mean, `scores_std` their spread.
    ensemble: bool = False
    progress: Progress | None = None
    warn: Progress | None = None

    @property
    def reduced(self) -> bool:
        return self.precision != "fp32"

    @property
    def measures(self) -> bool:
        """Does this export record a precision check of its fp32 graph?"""
        return self.part == "full" and not self.reduced and bool(self.measure)

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")
        if self.part not in PARTS:
            raise ValueError(f"unknown part {self.part!r}; expected one of {PARTS}")
        unknown = set(self.measure) - set(MEASURABLE)
        if unknown:
            raise ValueError(f"cannot measure {sorted(unknown)}; expected some of {MEASURABLE}")
        if self.part == "head" and self.precision != "fp32":
            raise ValueError(
                "the head is always exported in fp32 (only the encoder has reduced precisions)"
            )


@dataclass
class _Job:
    """What one export has loaded and measured so far (passed from stage to stage)."""

    opts: ExportOptions
    checkpoint: Path
    loaded: Any  # gifsent_models.checkpoint.LoadedCheckpoint
    run: RunLayout | None
    document: ModelDocument
    metrics: dict[str, Any]
    out_path: Path
    progress: Progress
    warn: Progress
    tmp: Path = Path()
    eval_frames: np.ndarray = field(default_factory=lambda: np.zeros(0))
    eval_used: list[Path] = field(default_factory=list)
    eval_source: str = ""
    ref_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gate_backends: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)  # the recorded precision check
    calibration_source: str = ""
    parity_n: int = 0  # the first parity_n held-out GIFs are the fp32 parity set

    @property
    def encoder(self):
        return self.loaded.encoder

    @property
    def head(self):
        return self.loaded.head


@dataclass
class _Built:
    """A part's graphs: the one to write, and (encoder path) the pieces reduced precisions need."""

    model: onnx.ModelProto
    parity: Deviation
    simplified: str = ""
    encoder: onnx.ModelProto | None = None
    head: onnx.ModelProto | None = None
    fused32: onnx.ModelProto | None = None


@dataclass
class _Reduced:
    """A reduced-precision encoder that passed its gate, and the measurements that passed it."""

    encoder: onnx.ModelProto
    recipe: str
    checks: list[tuple[str, Deviation]]
    calibration_source: str = ""


def export_checkpoint(
    checkpoint_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    options: ExportOptions | None = None,
    **overrides: Any,
) -> ExportResult:
    """Export a checkpoint; raises ExportError/ParityError (and writes nothing) when a check fails.

    `options` (an ExportOptions) says how; keyword `overrides` replace its fields
    (``export_checkpoint(ckpt, out, precision="int8")``). Stages: load -> the part's graph
    (full, encoder, head) -> the reduced precision (fp16, int8) -> metadata and write.
    """
    t0 = time.perf_counter()
    opts = dataclasses.replace(options or ExportOptions(), **overrides)
    opts.validate()
    job = _load(Path(checkpoint_path), out, opts)
    with tempfile.TemporaryDirectory(prefix="gifsent-export-") as tmp:
        job.tmp = Path(tmp)
        _prepare_checks(job)
        built = _build_part(job)
        reduced = None
        if opts.reduced:
            reduced = _REDUCERS[opts.precision](job, built)
            model = _apply_reduced(job, built, reduced)
        else:
            model = built.model
            if opts.part == "encoder":
                _check_encoder_features(job, model)
            if opts.measures:
                _record_checks(job, built)
        _write(job, model)
    deviation = reduced.checks[0][1] if reduced is not None else None
    return ExportResult(
        path=job.out_path,
        part=opts.part,
        precision=opts.precision,
        opset=graph_opset(model),
        exporter=opts.exporter,
        size_bytes=job.out_path.stat().st_size,
        parity=built.parity,
        parity_atol=opts.atol,
        parity_source=f"{built.parity.n_gifs} GIFs ({job.eval_source})",
        deviation=deviation,
        calibration_source=reduced.calibration_source if reduced is not None else "",
        simplified=built.simplified,
        document=job.document if opts.part == "full" else None,
        checkpoint_sha256=job.loaded.sha256,
        seconds=time.perf_counter() - t0,
    )


# -- load ----------------------------------------------------------------------------------


def _load(checkpoint_path: Path, out: str | os.PathLike | None, opts: ExportOptions) -> _Job:
    """The checkpoint, its run, and the document the written graph will carry."""
    from gifsent_models.checkpoint import load_checkpoint

    progress = opts.progress or _noop
    progress(f"loading checkpoint {checkpoint_path}")
    loaded = load_checkpoint(checkpoint_path, encoder_weights=opts.encoder_weights)
    run = opts.run
    if run is not None and not isinstance(run, RunLayout):
        run = RunLayout(Path(run))
    if opts.expect_head is not None and loaded.head_name != opts.expect_head:
        raise ValueError(
            f"{checkpoint_path} holds a {loaded.head_name} head, not {opts.expect_head}"
        )
    run = run if run is not None else run_for_checkpoint(checkpoint_path)
    if opts.ensemble:
        loaded = _ensemble(loaded, run, opts)
    loaded.encoder.eval(), loaded.head.eval(), loaded.scorer.eval()

    metrics = dict(loaded.document.metrics)
    test_metrics = run.test_metrics(loaded.head_name) if run is not None else None
    if test_metrics is not None:
        metrics["test"] = test_metrics
    document = dataclasses.replace(
        loaded.document,
        precision=opts.precision,
        checkpoint_sha256=loaded.sha256,
        metrics=metrics,
        **_run_provenance(run, loaded.document),
        **_outputs_and_intervals(loaded, run, opts, progress),
    )
    out_path = (
        Path(out)
        if out is not None
        else default_output(loaded.head_name, opts.precision, opts.part, loaded.encoder.name)
    )
    return _Job(
        opts=opts,
        checkpoint=checkpoint_path,
        loaded=loaded,
        run=run,
        document=document,
        metrics=metrics,
        out_path=out_path,
        progress=progress,
        warn=opts.warn or _noop,
    )


def _prepare_checks(job: _Job) -> None:
    """Decode the held-out GIFs, score them in PyTorch, and settle the backends to gate on."""
    opts, run = job.opts, job.run
    n_eval = opts.eval_count if opts.reduced else opts.parity_count
    if opts.measures:  # the parity GIFs first, then more for a ranking check
        n_eval = max(opts.parity_count, opts.eval_count)
    eval_paths, job.eval_source = _gif_source(
        opts.parity_gifs,
        run.split_files("test") if run is not None else [],
        "the run's test GIFs",
        job.tmp / "eval",
        n_eval,
        seed=1,
    )
    if job.eval_source == "generated GIFs":
        job.warn(
            "no test GIFs found for this checkpoint (no run, or its GIFs are missing); "
            "checking on generated GIFs (pass --parity-gifs to use real ones)"
        )
    job.progress(f"decoding up to {n_eval} parity GIFs ({job.eval_source})")
    job.eval_frames, job.eval_used = gif_frames.load_frames(
        eval_paths, job.encoder.spec, limit=n_eval, warn=job.warn
    )
    if len(job.eval_frames) == 0:
        raise ExportError(f"no parity GIFs could be read ({job.eval_source})")
    job.parity_n = len(job.eval_frames) if opts.reduced else opts.parity_count

    job.progress("PyTorch reference scores")
    job.ref_scores = torch_outputs(job.loaded.scorer, job.eval_frames, batch_size=opts.batch_size)
    have = installed_backends()
    check = opts.check_backends
    job.gate_backends = [b for b in have[::-1] if check is None or b in check]
    missing = sorted(set(check or ()) - set(have))
    if missing or not job.gate_backends:
        raise ExportError(
            f"cannot check on {', '.join(missing) or 'no backend'}: not installed "
            f"(installed: {', '.join(have) or 'none'})"
        )


# -- one function per part -----------------------------------------------------------------


def _build_part(job: _Job) -> _Built:
    if job.opts.part == "head":
        return _build_head(job)
    if job.opts.part == "full" and not job.opts.reduced:
        return _build_full(job)
    return _build_encoder(job)


def graph_outputs(loaded) -> tuple[str, ...]:
    """The fp32 full graph's output names: scores, the timeline, and an ensemble's spread."""
    from gifsent_models.heads import EnsembleHead

    names = (OUTPUT_NAME, SEGMENT_SCORES)
    return (*names, STD_NAME) if isinstance(loaded.head, EnsembleHead) else names


def fused_module(loaded) -> tuple[Any, tuple[str, ...]]:
    """The torch module the fused graph is exported from, and its output names.

    The one place that says what the full graph computes (frames -> named outputs): a new
    output of the fused graph is added here (gifsent_models.scorer.OUTPUTS and graph_outputs).
    """
    names = (*graph_outputs(loaded), *fused_extra_outputs(loaded.scorer))
    return loaded.scorer.with_outputs(names), names


def _ensemble(loaded, run: RunLayout | None, opts: ExportOptions):
    """`loaded` with its head replaced by an EnsembleHead of it and the run's seed refits."""
    from gifsent_models.checkpoint import load_checkpoint
    from gifsent_models.heads import EnsembleHead
    from gifsent_models.scorer import GifScorer

    paths = run.seed_checkpoints(loaded.head_name) if run is not None else []
    if len(paths) < 2 or paths[0].resolve() != Path(loaded.path).resolve():
        raise ExportError(
            f"--ensemble needs the run's seed refits of the {loaded.head_name} head next to "
            f"{loaded.path} (checkpoints/seed1-{loaded.head_name}.pt ...; trained with seeds >= 2 "
            "by this version of gifsent-train); found none"
        )
    heads = [loaded.head]
    for p in paths[1:]:
        other = load_checkpoint(p, encoder_weights=opts.encoder_weights)
        if other.head_name != loaded.head_name or not _same_weights(other.encoder, loaded.encoder):
            raise ExportError(f"{p} does not share {loaded.path}'s encoder and head kind")
        heads.append(other.head)
    head = EnsembleHead(heads).eval()
    return dataclasses.replace(loaded, head=head, scorer=GifScorer(loaded.encoder, head).eval())


def _same_weights(a, b) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _outputs_and_intervals(loaded, run: RunLayout | None, opts: ExportOptions, progress) -> dict:
    """Schema-3 fields: what each output means and, from the run, the conformal calibration of
    this many heads. Reduced precisions (encoder merged with a scores-only head) carry scores."""
    from gifsent_models.heads import EnsembleHead

    k = len(loaded.head.heads) if isinstance(loaded.head, EnsembleHead) else 1
    timeline = getattr(loaded.head_config, "timeline", "")  # MaxPool: "mil" or "shared"
    outputs = output_meanings(loaded.head_name, k, timeline)
    if opts.reduced or opts.part != "full":
        outputs = {OUTPUT_NAME: outputs[OUTPUT_NAME]}
    found = run.intervals(loaded.head_name, k) if run is not None else None
    intervals = Intervals.from_dict(found) if found else None
    if intervals is not None and intervals.needs_std and STD_NAME not in outputs:
        intervals = None
    if intervals is None:
        progress("no conformal calibration in the run for this graph: no intervals")
    return {"outputs": outputs, "intervals": intervals}


def _check_named_outputs(job: _Job, model: onnx.ModelProto, names: tuple[str, ...]) -> None:
    """Every output besides scores equals PyTorch's on every installed backend."""
    import torch

    opts = job.opts
    extra = [n for n in names if n != OUTPUT_NAME]
    if not extra:
        return
    frames = job.eval_frames
    with torch.inference_mode():
        parts = [
            job.loaded.scorer.named_outputs(
                torch.from_numpy(np.ascontiguousarray(frames[i : i + opts.batch_size])), extra
            )
            for i in range(0, len(frames), opts.batch_size)
        ]
    for name in extra:
        ref = np.concatenate([p[name].numpy() for p in parts])
        for backend in installed_backends():
            got = run_session(
                open_graph(model, backend=backend), frames, batch_size=opts.batch_size, output=name
            )
            worst = float(np.abs(got - ref).max())
            if not worst <= opts.atol:
                raise ParityError(
                    f"the graph's {name} output differs from PyTorch on {backend} by {worst:.3g} "
                    f"(tolerance {opts.atol:.3g})"
                )


def fused_extra_outputs(scorer) -> tuple[str, ...]:
    """The fused graph's outputs beyond `scores`: `features` [B, D], the segment-mean
    encoder features (embeddings; gifsent_models.scorer.pool_features)."""
    return ("features",) if "features" in scorer.available_outputs else ()


def document_with_features(document: ModelDocument) -> ModelDocument:
    """The document with `features` in its `outputs` mapping (schema 3)."""
    from gifsent_infer.contract import features_meaning

    base = document.outputs or {OUTPUT_NAME: "scores [batch, 17] in the target scale"}
    return dataclasses.replace(document, outputs={**base, **features_meaning()})


def check_features_parity(model, scorer, frames: np.ndarray, atol: float, batch_size: int) -> None:
    """The graph's `features` output equals PyTorch's pooled encoder features on every
    installed backend (tolerance scaled to the features' size, like the encoder's)."""
    import torch

    with torch.inference_mode():
        ref = np.concatenate(
            [
                scorer.compute(
                    torch.from_numpy(np.ascontiguousarray(frames[i : i + 4])), ("features",)
                )["features"].numpy()
                for i in range(0, len(frames), 4)
            ]
        )
    tol = _features_tolerance(ref, atol)
    for backend in installed_backends():
        engine = open_graph(model, backend=backend)
        got = run_session(engine, frames, batch_size=batch_size, output="features")
        worst = float(np.abs(got - ref).max())
        if not worst <= tol:
            raise ParityError(
                f"the graph's features output differs from PyTorch on {backend} by {worst:.3g} "
                f"(tolerance {tol:.3g})"
            )


def _exported(job: _Job, module, output_names: Sequence[str]) -> tuple[onnx.ModelProto, str]:
    """`module` exported at the job's opset with its exporter, simplified when asked (with what
    simplifying did), and checked."""
    opts = job.opts
    model = export_proto(
        module,
        example=_example(job.eval_frames, job.encoder.spec),
        output_names=output_names,
        opset=opts.opset,
        exporter=opts.exporter,
    )
    simplified = ""
    if opts.simplify:
        model, simplified = _simplified(model, job.eval_frames[:2], job.warn)
    check_proto(model)
    return model, simplified


def _build_full(job: _Job) -> _Built:
    """fp32 full graph: the fused module exported in one piece, simplified, PyTorch parity."""
    opts = job.opts
    module, outputs = fused_module(job.loaded)
    job.progress(f"exporting the fused graph ({opts.exporter} exporter, opset {opts.opset})")
    model, simplified = _exported(job, module, outputs)
    job.progress(f"parity: {' and '.join(installed_backends())} vs PyTorch")
    n = job.parity_n
    parity = _fp32_parity(
        model, job.eval_frames[:n], job.ref_scores[:n], opts.atol, opts.batch_size
    )
    # the timeline and an ensemble's spread against PyTorch; features with its own tolerance
    _check_named_outputs(job, model, tuple(n for n in outputs if n != "features"))
    if "features" in outputs:
        check_features_parity(model, job.loaded.scorer, job.eval_frames, opts.atol, opts.batch_size)
        job.document = document_with_features(job.document)
    return _Built(model=model, parity=parity, simplified=simplified)


def _export_head(job: _Job, feats: np.ndarray) -> onnx.ModelProto:
    import torch

    opts = job.opts
    return export_proto(
        job.head,
        example=torch.from_numpy(feats[:2] if len(feats) >= 2 else np.repeat(feats, 2, 0)),
        input_name=FEATURES_NAME,
        opset=opts.opset,
        exporter=opts.exporter,
    )


def _build_head(job: _Job) -> _Built:
    """The head alone (features -> scores), fp32, checked against PyTorch on real features."""
    opts = job.opts
    feats = torch_outputs(job.encoder, job.eval_frames, batch_size=opts.batch_size)
    job.progress(f"exporting the head ({opts.exporter} exporter, opset {opts.opset})")
    model = _export_head(job, feats)
    check_proto(model)
    n = job.parity_n
    parity = _fp32_parity(model, feats[:n], job.ref_scores[:n], opts.atol, opts.batch_size)
    return _Built(model=model, parity=parity)


def _build_encoder(job: _Job) -> _Built:
    """Encoder and head graphs apart (reduced precisions convert the encoder only), and their
    fp32 merge checked against PyTorch."""
    from gifsent_export.precision import merge_encoder_head

    opts = job.opts
    job.progress(f"exporting the encoder ({opts.exporter} exporter, opset {opts.opset})")
    enc_model, simplified = _exported(job, job.encoder, (FEATURES_NAME,))
    feats = torch_outputs(job.encoder, job.eval_frames[:2], batch_size=opts.batch_size)
    head_model = _export_head(job, feats)
    fused32 = merge_encoder_head(enc_model, head_model)
    check_proto(fused32)
    job.progress(f"parity: {' and '.join(installed_backends())} fp32 vs PyTorch")
    n = job.parity_n
    parity = _fp32_parity(
        fused32, job.eval_frames[:n], job.ref_scores[:n], opts.atol, opts.batch_size
    )
    return _Built(
        model=enc_model,
        parity=parity,
        simplified=simplified,
        encoder=enc_model,
        head=head_model,
        fused32=fused32,
    )


def _check_encoder_features(job: _Job, model: onnx.ModelProto) -> None:
    """The written fp32 encoder graph itself must match PyTorch's features."""
    opts = job.opts
    frames = job.eval_frames[: job.parity_n]
    feats_all = torch_outputs(job.encoder, frames, batch_size=opts.batch_size)
    got = run_session(ort_session(model), frames, batch_size=opts.batch_size)
    tol = _features_tolerance(feats_all, opts.atol)
    worst = float(np.abs(feats_all - got).max())
    if not worst <= tol:
        raise ParityError(f"encoder features disagree: max abs {worst:.3g} > {tol:.3g}")


# -- one function per reduced precision ----------------------------------------------------


def _fp32_reference(job: _Job, built: _Built) -> np.ndarray:
    return run_session(ort_session(built.fused32), job.eval_frames, batch_size=job.opts.batch_size)


def _reduce_fp16(job: _Job, built: _Built) -> _Reduced:
    from gifsent_export.precision import merge_encoder_head, to_fp16

    opts = job.opts
    fp32_scores = _fp32_reference(job, built)
    job.progress("converting the encoder to fp16")
    low = to_fp16(built.encoder)
    checks = _ranking_on_backends(
        merge_encoder_head(low, built.head),
        job.eval_frames,
        fp32_scores,
        "fp16",
        "fp16",
        opts.min_mean_spearman,
        opts.batch_size,
        job.progress,
        backends=["onnxruntime"],  # fp16 is the CUDA variant; ORT is its engine
    )
    return _Reduced(encoder=low, recipe="fp16", checks=checks)


def _calibration_frames(job: _Job) -> tuple[np.ndarray, str]:
    """Frames of the calibration GIFs (never the held-out ones the gate is judged on)."""
    opts, run = job.opts, job.run
    calib_paths, source = _gif_source(
        opts.calibration_gifs,
        run.split_files("train") if run is not None else [],
        "the run's training GIFs",
        job.tmp / "calib",
        opts.calibration_count,
        seed=2,
    )
    held = {p.resolve() for p in job.eval_used}
    calib_paths = [p for p in calib_paths if Path(p).resolve() not in held]
    if source == "generated GIFs":
        job.warn(
            "no training GIFs found: calibrating int8 on generated GIFs "
            "(pass --calibration-gifs to use real ones)"
        )
    job.progress(f"int8 calibration on up to {opts.calibration_count} GIFs ({source})")
    calib, _ = gif_frames.load_frames(
        calib_paths, job.encoder.spec, limit=opts.calibration_count, warn=job.warn
    )
    return calib, source


def _int8_attempts(job: _Job, built: _Built, recipes, *, keep_going: bool):
    """Quantize with each recipe in turn and judge it on the gate backends; yields
    (recipe, encoder, checks, refusal or None). Records every recipe in the job's checks."""
    from gifsent_export.precision import merge_encoder_head, quantize_encoder

    opts = job.opts
    fp32_scores = _fp32_reference(job, built)
    calib, source = _calibration_frames(job)
    job.calibration_source = source
    records = job.checks.setdefault("int8", {})
    for attempt in recipes:
        job.progress(f"int8 ({attempt}): quantizing the encoder")
        report: dict[str, Any] = {}
        judge = _MixedJudge(job, built, fp32_scores) if attempt in ("mixed", "nncf") else None
        t0 = time.perf_counter()
        cand = quantize_encoder(built.encoder, calib, recipe=attempt, judge=judge, report=report)
        seconds = round(time.perf_counter() - t0, 1)
        kept = report.get("kept_float")
        refusal, checks = None, []
        try:
            checks = _ranking_on_backends(
                merge_encoder_head(cand, built.head),
                job.eval_frames,
                fp32_scores,
                "int8",
                attempt,
                opts.min_mean_spearman,
                opts.batch_size,
                job.progress,
                backends=job.gate_backends,
                measurements=checks,
            )
        except ParityError as e:
            refusal = str(e)
        if refusal is None and report.get("int8_weight_layers") == 0:
            refusal = (
                f"int8 ({attempt}) holds the gate only with every weight layer in float: "
                "no int8 left to run"
            )
        records[attempt] = checks_mod.int8_record(checks, opts.min_mean_spearman)
        if refusal is not None:
            records[attempt]["holds"] = False
        records[attempt]["quantize_seconds"] = seconds
        if kept is not None and judge is not None:
            records[attempt]["kept_float"] = kept
            records[attempt]["search"] = {
                "probes": judge.probes,
                "candidates_judged": judge.judged,
                "weight_layers": report.get("weight_layers"),
                "int8_weight_layers": report.get("int8_weight_layers"),
            }
        yield attempt, cand, checks, refusal
        if refusal is None and not keep_going:
            return


class _MixedJudge:
    """The mixed int8 recipe's measurements (gifsent_export.precision.MixedJudge).

    probe: R² of the scores against fp32 on the first PROBE_GIFS held-out GIFs, onnxruntime;
    the candidate encoder runs alone and its features go through one head session compiled
    once (the head is float in every candidate). judge: mean per-emotion Spearman on every
    held-out GIF and gate backend, the lowest; counts are kept for the record.
    """

    PROBE_GIFS = 12

    def __init__(self, job: _Job, built: _Built, fp32_scores: np.ndarray) -> None:
        self.job, self.built, self.fp32 = job, built, fp32_scores
        self.gate = job.opts.min_mean_spearman
        self._head = ort_session(built.head)
        self.probes = self.judged = 0
        self.last = float("nan")

    def _scores(self, encoder, frames: np.ndarray) -> np.ndarray:
        bs = self.job.opts.batch_size
        feats = run_session(ort_session(encoder), frames, batch_size=bs)
        return run_session(self._head, feats, batch_size=bs)

    def held_out(self) -> np.ndarray:
        return self.job.eval_frames

    def validate(self, encoder, indices: list[int]) -> float:
        self.probes += 1
        idx = np.asarray(indices, dtype=int)
        value = compare(self.fp32[idx], self._scores(encoder, self.job.eval_frames[idx]))
        return -1.0 if np.isnan(value.mean_spearman) else float(value.mean_spearman)

    def probe(self, encoder) -> float:
        self.probes += 1
        got = self._scores(encoder, self.job.eval_frames[: self.PROBE_GIFS])
        ref = self.fp32[: len(got)]
        err = ((got - ref) ** 2).mean(axis=0) / np.maximum(ref.var(axis=0), 1e-12)
        return float(1.0 - err.mean())

    def _mean(self, encoder, backend: str) -> float:
        from gifsent_export.precision import merge_encoder_head

        fused = merge_encoder_head(encoder, self.built.head)
        got = run_session(
            open_graph(fused, backend=backend),
            self.job.eval_frames,
            batch_size=self.job.opts.batch_size,
        )
        value = compare(self.fp32, got).mean_spearman
        return -1.0 if np.isnan(value) else value

    def judge(self, encoder) -> float:
        self.judged += 1
        self.last = min(self._mean(encoder, b) for b in self.job.gate_backends)
        self.job.progress(f"int8 (mixed): candidate {self.judged} mean Spearman {self.last:.4f}")
        return self.last


def _reduce_int8(job: _Job, built: _Built) -> _Reduced:
    """Try the int8 recipes in order; keep the first that holds the ranking gate everywhere."""
    from gifsent_export.precision import int8_recipes

    refusals: list[str] = []
    for attempt, cand, checks, refusal in _int8_attempts(
        job, built, int8_recipes(job.opts.int8_recipe), keep_going=False
    ):
        if refusal is None:
            return _Reduced(
                encoder=cand,
                recipe=attempt,
                checks=checks,
                calibration_source=job.calibration_source,
            )
        refusals.append(refusal)
    raise ParityError(
        "int8 cannot keep the ranking with any calibration tried; "
        "refusing to write the graph:\n  " + "\n  ".join(refusals)
    )


_REDUCERS: dict[str, Callable[[_Job, _Built], _Reduced]] = {
    "fp16": _reduce_fp16,
    "int8": _reduce_int8,
}


def _apply_reduced(job: _Job, built: _Built, reduced: _Reduced) -> onnx.ModelProto:
    """Record the gate's measurements in the document; the graph to write (fused or encoder)."""
    from gifsent_export.precision import merge_encoder_head

    check_proto(reduced.encoder)
    fused_low = merge_encoder_head(reduced.encoder, built.head)
    check_proto(fused_low)
    deviation = reduced.checks[0][1]
    job.metrics["precision_check"] = {
        "precision": job.opts.precision,
        "recipe": reduced.recipe,
        "reference": "fp32 graph on onnxruntime",
        "min_mean_spearman": job.opts.min_mean_spearman,
        "gifs": deviation.n_gifs,
        "backends": {
            b: {
                "mean_spearman": round(d.mean_spearman, 6),
                "min_spearman": round(d.min_spearman, 6),
                "max_abs": round(d.max_abs, 6),
            }
            for b, d in reduced.checks
        },
    }
    job.metrics[checks_mod.CHECKS_KEY] = {
        **checks_mod.new_checks(deviation.n_gifs),
        **job.checks,
    }
    job.document = dataclasses.replace(job.document, metrics=job.metrics)
    return fused_low if job.opts.part == "full" else reduced.encoder


def _record_checks(job: _Job, built: _Built) -> None:
    """An fp32 full export's recorded precision check: bf16 (and int8 if asked) vs fp32."""
    opts = job.opts
    job.progress(
        f"recording the precision check ({', '.join(opts.measure)}) on {len(job.eval_frames)} GIFs"
    )
    fp32_scores = run_session(ort_session(built.model), job.eval_frames, batch_size=opts.batch_size)
    record = checks_mod.new_checks(len(job.eval_frames))
    if "bf16" in opts.measure:
        record["bf16"] = checks_mod.measure_bf16(
            built.model, job.eval_frames, fp32_scores, opts.batch_size
        )
    if "int8" in opts.measure:
        from gifsent_export.precision import int8_recipes

        parts = _build_encoder(job)
        for _ in _int8_attempts(job, parts, int8_recipes(opts.int8_recipe), keep_going=True):
            pass
        record["int8"] = job.checks["int8"]
    job.metrics[checks_mod.CHECKS_KEY] = record
    job.document = dataclasses.replace(job.document, metrics=job.metrics)


# -- write ---------------------------------------------------------------------------------


def _write(job: _Job, model: onnx.ModelProto) -> None:
    """Metadata (the contract for a full graph, a part label otherwise), read-back, atomic write."""
    part = job.opts.part
    if part == "full":
        set_metadata(model, job.document)
    else:
        entry = model.metadata_props.add()
        entry.key = PART_METADATA_KEY
        entry.value = json.dumps({"part": part, "document": job.document.to_dict()}, sort_keys=True)
    check_proto(model)
    if part == "full":
        _verify_readback(model.SerializeToString(), job.document)
    job.progress(f"writing {job.out_path}")
    save_proto(model, job.out_path)


def _fp32_parity(
    model, frames: np.ndarray, reference: np.ndarray, atol: float, batch_size: int
) -> Deviation:
    """Scores of `model` on every installed backend (at f32) vs PyTorch; also at batch size 1.

    Returns onnxruntime's deviation (the first backend's when onnxruntime is absent).
    """
    devs = []
    for backend in installed_backends()[::-1]:  # onnxruntime first: it is the reference
        engine = open_graph(model, backend=backend)
        got = run_session(engine, frames, batch_size=batch_size)
        devs.append(assert_fp32_parity(reference, got, atol=atol, backend=backend))
        single = run_session(engine, frames[:1], batch_size=1)
        if not np.abs(single - got[:1]).max() <= atol:
            raise ParityError(
                f"the graph gives different scores at batch size 1 on {backend} "
                "(batch axis not dynamic?)"
            )
    return devs[0]


def _ranking_on_backends(
    fused_low,
    frames: np.ndarray,
    fp32_scores: np.ndarray,
    precision: str,
    recipe: str,
    min_mean_spearman: float,
    batch_size: int,
    progress: Progress,
    backends: list[str] | None = None,
    measurements: list[tuple[str, Deviation]] | None = None,
) -> list[tuple[str, Deviation]]:
    """The reduced graph vs fp32 on each backend; ParityError (with every measurement) on failure.

    `measurements`, when given, receives every (backend, deviation) even when the gate fails.
    """
    out = measurements if measurements is not None else []
    for backend in backends or installed_backends()[::-1]:
        progress(f"{precision} ({recipe}) on {backend} vs fp32 on {len(frames)} GIFs")
        low_scores = run_session(
            open_graph(fused_low, backend=backend), frames, batch_size=batch_size
        )
        dev = compare(fp32_scores, low_scores)
        out.append((backend, dev))
    failed = [
        (b, d) for b, d in out if np.isnan(d.mean_spearman) or d.mean_spearman < min_mean_spearman
    ]
    if failed:
        measured = ", ".join(
            f"{b} mean Spearman {d.mean_spearman:.4f} (min {d.min_spearman:.4f}, max abs {d.max_abs:.3g})"
            for b, d in out
        )
        raise ParityError(
            f"{precision} ({recipe}) reorders GIFs vs fp32 on {len(frames)} held-out GIFs: "
            f"{measured}; the gate is mean >= {min_mean_spearman} on every backend"
        )
    return out


def _verify_readback(serialized: bytes, document: ModelDocument) -> None:
    """Read the graph the way the runtime does (onnxruntime's custom metadata) before writing it."""
    engine = ort_session(serialized)
    meta = engine.metadata()
    if METADATA_KEY not in meta or ModelDocument.from_json(meta[METADATA_KEY]) != document:
        raise ExportError("the graph's metadata does not read back through onnxruntime")
    names_in = [i.name for i in engine.inputs]
    names_out = [o.name for o in engine.outputs]
    if names_in != [INPUT_NAME] or OUTPUT_NAME not in names_out:
        raise ExportError(f"graph I/O {names_in} -> {names_out} breaks the contract")
