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

from gifsent_export import frames as gif_frames
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
    ModelDocument,
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


def export_checkpoint(
    checkpoint_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    precision: str = "fp32",
    part: str = "full",
    parity_gifs: Sequence[str | os.PathLike] | None = None,
    calibration_gifs: Sequence[str | os.PathLike] | None = None,
    run: RunLayout | str | os.PathLike | None = None,
    exporter: str = DEFAULT_EXPORTER,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    encoder_weights: str | os.PathLike | None = None,
    parity_count: int = 8,
    eval_count: int = 32,
    calibration_count: int = 16,
    atol: float = FP32_ATOL,
    min_mean_spearman: float = MIN_MEAN_SPEARMAN,
    int8_recipe: str = "auto",
    check_backends: Sequence[str] | None = None,
    batch_size: int = 4,
    expect_head: str | None = None,
    progress: Progress | None = None,
    warn: Progress | None = None,
) -> ExportResult:
    """Export a checkpoint; raises ExportError/ParityError (and writes nothing) when a check fails.

    parity_gifs / calibration_gifs: files or folders; they win over the run's test / training
    GIFs, which win over generated GIFs. `run` defaults to the run holding the checkpoint.
    check_backends: the backends a reduced precision must keep the ranking on (default: every
    installed one); the document records which ones it was checked on.
    """
    from gifsent_models.checkpoint import load_checkpoint

    t0 = time.perf_counter()
    progress = progress or _noop
    warn = warn or _noop
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; expected one of {PARTS}")
    if part == "head" and precision != "fp32":
        raise ValueError(
            "the head is always exported in fp32 (only the encoder has reduced precisions)"
        )

    checkpoint_path = Path(checkpoint_path)
    progress(f"loading checkpoint {checkpoint_path}")
    loaded = load_checkpoint(checkpoint_path, encoder_weights=encoder_weights)
    if run is not None and not isinstance(run, RunLayout):
        run = RunLayout(Path(run))
    if expect_head is not None and loaded.head_name != expect_head:
        raise ValueError(f"{checkpoint_path} holds a {loaded.head_name} head, not {expect_head}")
    run = run if run is not None else run_for_checkpoint(checkpoint_path)
    encoder, head, scorer = loaded.encoder.eval(), loaded.head.eval(), loaded.scorer.eval()
    spec = encoder.spec
    head_name = loaded.head_name

    metrics = dict(loaded.document.metrics)
    test_metrics = run.test_metrics(head_name) if run is not None else None
    if test_metrics is not None:
        metrics["test"] = test_metrics
    document = dataclasses.replace(
        loaded.document,
        precision=precision,
        checkpoint_sha256=loaded.sha256,
        metrics=metrics,
        **_run_provenance(run, loaded.document),
    )
    out_path = (
        Path(out) if out is not None else default_output(head_name, precision, part, encoder.name)
    )

    with tempfile.TemporaryDirectory(prefix="gifsent-export-") as tmp:
        tmp = Path(tmp)
        reduced = precision != "fp32"
        n_eval = eval_count if reduced else parity_count
        eval_paths, eval_source = _gif_source(
            parity_gifs,
            run.split_files("test") if run is not None else [],
            "the run's test GIFs",
            tmp / "eval",
            n_eval,
            seed=1,
        )
        if eval_source == "generated GIFs":
            warn(
                "no test GIFs found for this checkpoint (no run, or its GIFs are missing); "
                "checking on generated GIFs (pass --parity-gifs to use real ones)"
            )
        progress(f"decoding up to {n_eval} parity GIFs ({eval_source})")
        eval_frames, eval_used = gif_frames.load_frames(eval_paths, spec, limit=n_eval, warn=warn)
        if len(eval_frames) == 0:
            raise ExportError(f"no parity GIFs could be read ({eval_source})")
        example = _example(eval_frames, spec)

        progress("PyTorch reference scores")
        ref_scores = torch_outputs(scorer, eval_frames, batch_size=batch_size)
        model, simplified, parity, deviation, calib_source = None, "", None, None, ""
        refusals: list[str] = []
        have = installed_backends()
        gate_backends = [b for b in have[::-1] if check_backends is None or b in check_backends]
        missing = sorted(set(check_backends or ()) - set(have))
        if missing or not gate_backends:
            raise ExportError(
                f"cannot check on {', '.join(missing) or 'no backend'}: not installed "
                f"(installed: {', '.join(have) or 'none'})"
            )

        if part == "full" and not reduced:
            progress(f"exporting the fused graph ({exporter} exporter, opset {opset})")
            model = export_fused(scorer, example=example, opset=opset, exporter=exporter)
            if simplify:
                model, simplified = _simplified(model, eval_frames[:2], warn)
            check_proto(model)
            progress(f"parity: {' and '.join(installed_backends())} vs PyTorch")
            parity = _fp32_parity(model, eval_frames, ref_scores, atol, batch_size)
            check_features_parity(model, scorer, eval_frames, atol, batch_size)
        elif part == "head":
            feats = torch_outputs(encoder, eval_frames, batch_size=batch_size)
            import torch

            progress(f"exporting the head ({exporter} exporter, opset {opset})")
            model = export_proto(
                head,
                example=torch.from_numpy(feats[:2] if len(feats) >= 2 else np.repeat(feats, 2, 0)),
                input_name=FEATURES_NAME,
                opset=opset,
                exporter=exporter,
            )
            check_proto(model)
            parity = _fp32_parity(model, feats, ref_scores, atol, batch_size)
        else:
            progress(f"exporting the encoder ({exporter} exporter, opset {opset})")
            enc_model = export_proto(
                encoder,
                example=example,
                output_names=(FEATURES_NAME,),
                opset=opset,
                exporter=exporter,
            )
            if simplify:
                enc_model, simplified = _simplified(enc_model, eval_frames[:2], warn)
            check_proto(enc_model)
            import torch

            feats = torch_outputs(encoder, eval_frames[:2], batch_size=batch_size)
            head_model = export_proto(
                head,
                example=torch.from_numpy(feats if len(feats) >= 2 else np.repeat(feats, 2, 0)),
                input_name=FEATURES_NAME,
                opset=opset,
                exporter=exporter,
            )
            from gifsent_export.precision import (
                int8_recipes,
                merge_encoder_head,
                quantize_encoder,
                to_fp16,
            )

            fused32 = merge_encoder_head(enc_model, head_model)
            check_proto(fused32)
            progress(f"parity: {' and '.join(installed_backends())} fp32 vs PyTorch")
            parity = _fp32_parity(fused32, eval_frames, ref_scores, atol, batch_size)
            model = enc_model
            if reduced:
                fp32_scores = run_session(ort_session(fused32), eval_frames, batch_size=batch_size)
                if precision == "fp16":
                    progress("converting the encoder to fp16")
                    low = to_fp16(enc_model)
                else:
                    calib_paths, calib_source = _gif_source(
                        calibration_gifs,
                        run.split_files("train") if run is not None else [],
                        "the run's training GIFs",
                        tmp / "calib",
                        calibration_count,
                        seed=2,
                    )
                    held = {p.resolve() for p in eval_used}
                    calib_paths = [p for p in calib_paths if Path(p).resolve() not in held]
                    if calib_source == "generated GIFs":
                        warn(
                            "no training GIFs found: calibrating int8 on generated GIFs "
                            "(pass --calibration-gifs to use real ones)"
                        )
                    progress(f"int8 calibration on up to {calibration_count} GIFs ({calib_source})")
                    calib, _ = gif_frames.load_frames(
                        calib_paths, spec, limit=calibration_count, warn=warn
                    )
                    low = None
                    for attempt in int8_recipes(int8_recipe):
                        progress(f"int8 ({attempt}): quantizing the encoder")
                        cand = quantize_encoder(enc_model, calib, recipe=attempt)
                        fused_cand = merge_encoder_head(cand, head_model)
                        try:
                            checks = _ranking_on_backends(
                                fused_cand,
                                eval_frames,
                                fp32_scores,
                                precision,
                                attempt,
                                min_mean_spearman,
                                batch_size,
                                progress,
                                backends=gate_backends,
                            )
                        except ParityError as e:
                            refusals.append(str(e))
                            continue
                        low, chosen_recipe = cand, attempt
                        break
                    if low is None:
                        raise ParityError(
                            "int8 cannot keep the ranking with any calibration tried; "
                            "refusing to write the graph:\n  " + "\n  ".join(refusals)
                        )
                if precision == "fp16":
                    chosen_recipe = "fp16"
                    checks = _ranking_on_backends(
                        merge_encoder_head(low, head_model),
                        eval_frames,
                        fp32_scores,
                        precision,
                        "fp16",
                        min_mean_spearman,
                        batch_size,
                        progress,
                        backends=["onnxruntime"],  # fp16 is the CUDA variant; ORT is its engine
                    )
                check_proto(low)
                fused_low = merge_encoder_head(low, head_model)
                check_proto(fused_low)
                deviation = checks[0][1]
                metrics["precision_check"] = {
                    "precision": precision,
                    "recipe": chosen_recipe,
                    "reference": "fp32 graph on onnxruntime",
                    "min_mean_spearman": min_mean_spearman,
                    "gifs": deviation.n_gifs,
                    "backends": {
                        b: {
                            "mean_spearman": round(d.mean_spearman, 6),
                            "min_spearman": round(d.min_spearman, 6),
                            "max_abs": round(d.max_abs, 6),
                        }
                        for b, d in checks
                    },
                }
                document = dataclasses.replace(document, metrics=metrics)
                model = fused_low if part == "full" else low
            if part == "encoder" and not reduced:
                # The written encoder graph itself must match PyTorch's features (fp32).
                feats_all = torch_outputs(encoder, eval_frames, batch_size=batch_size)
                got = run_session(ort_session(model), eval_frames, batch_size=batch_size)
                tol = _features_tolerance(feats_all, atol)
                worst = float(np.abs(feats_all - got).max())
                if not worst <= tol:
                    raise ParityError(f"encoder features disagree: max abs {worst:.3g} > {tol:.3g}")

        if part == "full":
            set_metadata(model, document)
        else:
            entry = model.metadata_props.add()
            entry.key = PART_METADATA_KEY
            entry.value = json.dumps({"part": part, "document": document.to_dict()}, sort_keys=True)
        check_proto(model)
        if part == "full":
            _verify_readback(model.SerializeToString(), document)
        progress(f"writing {out_path}")
        save_proto(model, out_path)

    return ExportResult(
        path=out_path,
        part=part,
        precision=precision,
        opset=graph_opset(model),
        exporter=exporter,
        size_bytes=out_path.stat().st_size,
        parity=parity,
        parity_atol=atol,
        parity_source=f"{parity.n_gifs} GIFs ({eval_source})",
        deviation=deviation,
        calibration_source=calib_source,
        simplified=simplified,
        document=document if part == "full" else None,
        checkpoint_sha256=loaded.sha256,
        seconds=time.perf_counter() - t0,
    )


def export_fused(scorer, *, example, opset: int, exporter: str):
    """The fused graph with its named outputs (gifsent_models.scorer.OUTPUTS): `scores`
    [B, 17] and `features` [B, D], the segment-mean encoder features, from one encoder pass."""
    from gifsent_models.scorer import FEATURES, SCORES, NamedOutputs

    names = (SCORES, FEATURES)
    return export_proto(
        NamedOutputs(scorer, names),
        example=example,
        output_names=names,
        opset=opset,
        exporter=exporter,
    )


def check_features_parity(model, scorer, frames: np.ndarray, atol: float, batch_size: int) -> None:
    """The graph's `features` output equals PyTorch's pooled encoder features on every
    installed backend (tolerance scaled to the features' size, like the encoder's)."""
    import torch

    from gifsent_models.scorer import FEATURES

    with torch.inference_mode():
        ref = np.concatenate(
            [
                scorer.named_outputs(torch.from_numpy(np.ascontiguousarray(frames[i : i + 4])))[
                    FEATURES
                ].numpy()
                for i in range(0, len(frames), 4)
            ]
        )
    tol = _features_tolerance(ref, atol)
    for backend in installed_backends():
        got = run_session(
            open_graph(model, backend=backend), frames, batch_size=batch_size, output=FEATURES
        )
        worst = float(np.abs(got - ref).max())
        if not worst <= tol:
            raise ParityError(
                f"the graph's {FEATURES} output differs from PyTorch on {backend} by {worst:.3g} "
                f"(tolerance {tol:.3g})"
            )


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
) -> list[tuple[str, Deviation]]:
    """The reduced graph vs fp32 on each backend; ParityError (with every measurement) on failure."""
    out = []
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
