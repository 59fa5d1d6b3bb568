"""Turn any torch module with one uint8 `frames` input into a checked ONNX graph with a dynamic batch.

The mechanism only (torch module -> ModelProto -> checker -> atomic file), shared by
training (its encoder graph for fast feature extraction) and export (the fused scoring
graph, its metadata, parity and precision checks, which stay in ``gifsent_export``).

Exporter choice: the default is the TorchScript-based exporter (``dynamo=False``). It is
deprecated in torch 2.x but works on every torch the project declares (``torch>=2.1``; the
``dynamo=True`` path of ``torch.onnx.export`` only exists from torch 2.5), exports in well
under a second where the dynamo exporter takes seconds to minutes (training exports its
encoder for every feature-extraction run), and both emit the same ops for our models (Conv,
LSTM, Gemm). Every export is checked numerically against PyTorch, so if a future torch
breaks the TorchScript path it fails loudly; ``exporter="dynamo"`` (needs ``onnxscript``)
is the maintained path and is covered by the tests.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gifsent_infer.contract import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ModelDocument
from gifsent_infer.errors import GifsentError
from gifsent_infer.files import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import torch

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_EXPORTER = "torchscript"
DEFAULT_OPSET = (
    18  # Opset 18: ReduceMean & co. take axes as inputs; supported by onnxruntime >= 1.14
)
FEATURES_NAME = "features"
BATCH_DIM = "batch"


class ExportError(GifsentError, RuntimeError):
    """Export could not produce a graph that passes its checks; the message says which one."""


def _wrap(module: torch.nn.Module) -> torch.nn.Module:
    """A module whose forward argument is literally named `frames` (dynamo keys shapes by name)."""
    import torch

    class FramesModule(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            return self.inner(frames)

    return FramesModule(module).eval()


def export_proto(
    module: torch.nn.Module,
    *,
    example: torch.Tensor,
    input_name: str = INPUT_NAME,
    output_names: Sequence[str] = (OUTPUT_NAME,),
    opset: int = DEFAULT_OPSET,
    exporter: str = DEFAULT_EXPORTER,
) -> onnx.ModelProto:
    """Export `module(example)` to an in-memory ModelProto; axis 0 of input and outputs is `batch`.

    `example` should have a batch of at least 2 so that no exporter specialises the batch to 1.
    """
    import onnx
    import torch

    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; expected one of {EXPORTERS}")
    if example.shape[0] < 2:
        raise ValueError("export example needs a batch of at least 2 (batch 1 gets specialised)")
    wrapped = _wrap(module.eval())
    output_names = list(output_names)
    # Both exporters print progress to stdout; gifsent keeps stdout for results.
    sink = io.StringIO()
    with (
        torch.no_grad(),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(sink),
    ):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            try:
                import onnxscript  # noqa: F401
            except ImportError as e:
                raise ExportError(
                    "exporter 'dynamo' needs the onnxscript package: pip install 'gifsent[train]'"
                ) from e
            program = torch.onnx.export(
                wrapped,
                (example,),
                None,
                dynamo=True,
                input_names=[input_name],
                output_names=output_names,
                opset_version=opset,
                dynamic_shapes={"frames": {0: torch.export.Dim(BATCH_DIM, min=1, max=4096)}},
                optimize=True,
                verbose=False,
            )
            model = program.model_proto
        else:
            with tempfile.TemporaryDirectory(prefix="gifsent-export-") as tmp:
                f = Path(tmp) / "model.onnx"
                torch.onnx.export(
                    wrapped,
                    (example,),
                    str(f),
                    dynamo=False,
                    input_names=[input_name],
                    output_names=output_names,
                    opset_version=opset,
                    dynamic_axes={n: {0: BATCH_DIM} for n in [input_name, *output_names]},
                    do_constant_folding=True,
                )
                model = onnx.load(str(f))
    _name_batch_axes(model)
    return model


def _name_batch_axes(model: onnx.ModelProto) -> None:
    """Both exporters name the dynamic axis differently (`batch`, `s0`, ...): call it `batch`."""
    for vi in [*model.graph.input, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def check_proto(model: onnx.ModelProto) -> None:
    """The ONNX checker (full, with shape inference); raises ExportError."""
    import onnx

    try:
        if model.ByteSize() < 2_000_000_000:
            onnx.checker.check_model(model, full_check=True)
        else:  # protobuf limit: the checker must read it from a file
            with tempfile.TemporaryDirectory() as tmp:
                p = Path(tmp) / "m.onnx"
                onnx.save(model, str(p), save_as_external_data=True)
                onnx.checker.check_model(str(p), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"the ONNX checker rejected the graph: {e}") from e


def set_metadata(model: onnx.ModelProto, document: ModelDocument) -> None:
    """Store `document` as JSON under metadata key `gifsent` (replacing an earlier one)."""
    props = model.metadata_props
    keep = [p for p in props if p.key != METADATA_KEY]
    del props[:]
    props.extend(keep)
    entry = props.add()
    entry.key = METADATA_KEY
    entry.value = document.to_json()
    model.producer_name = "gifsent"
    model.producer_version = document.library_version
    model.doc_string = (
        f"gifsent {document.encoder.name} + {document.head.name} ({document.precision}); "
        f"input {INPUT_NAME} uint8 [batch, {document.sampling.num_frames}, "
        f"{document.sampling.crop}, {document.sampling.crop}, 3] RGB, output {OUTPUT_NAME} "
        f"float32 [batch, {len(document.emotions)}]; metadata key {METADATA_KEY!r}"
    )


def add_metadata(path: str | os.PathLike, document: ModelDocument) -> None:
    """Write `document` under metadata key `gifsent` into the ONNX file at `path` (atomically)."""
    import onnx

    model = onnx.load(str(path))
    set_metadata(model, document)
    save_proto(model, path)


def read_metadata(path_or_model) -> ModelDocument:
    """The `gifsent` document of an ONNX file or ModelProto (the export-side reader)."""
    import onnx

    model = path_or_model
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(path_or_model), load_external_data=False)
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            return ModelDocument.from_json(p.value)
    raise ExportError(f"no {METADATA_KEY!r} metadata in the graph")


def save_proto(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Save atomically (gifsent_infer.files: a temporary file next to `path`, fsynced, renamed)."""
    import onnx

    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


def simplify_proto(model: onnx.ModelProto, *, warn=None) -> tuple[onnx.ModelProto, str]:
    """Graph simplification (onnxscript's optimizer: constant folding, dead-code removal).

    Never raises: on any problem it calls `warn(message)` and returns the model unchanged.
    Returns (model, what was done). Callers verify the result numerically.
    """
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    try:
        import onnxscript.optimizer
    except ImportError:
        warn("graph simplification skipped: onnxscript is not installed")
        return model, "skipped (onnxscript missing)"
    try:
        sink = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            optimized = onnxscript.optimizer.optimize(model)
        check_proto(optimized)
    except Exception as e:  # the optimizer is best effort: any failure keeps the original graph
        warn(f"graph simplification skipped: {type(e).__name__}: {e}")
        return model, "skipped (optimizer failed)"
    before, after = len(model.graph.node), len(optimized.graph.node)
    return optimized, f"onnxscript optimizer: {before} -> {after} nodes"


def export_module(
    module: torch.nn.Module,
    path: str | os.PathLike,
    *,
    example: torch.Tensor,
    output_names: Sequence[str] = (OUTPUT_NAME,),
    opset: int = DEFAULT_OPSET,
    exporter: str = DEFAULT_EXPORTER,
    input_name: str = INPUT_NAME,
) -> Path:
    """Export `module` (one uint8 input, dynamic batch) to `path`, run the checker, save atomically."""
    model = export_proto(
        module,
        example=example,
        input_name=input_name,
        output_names=output_names,
        opset=opset,
        exporter=exporter,
    )
    check_proto(model)
    return save_proto(model, path)


def encoder_example(encoder, batch: int = 2) -> torch.Tensor:
    """Random uint8 frames [batch, S*T, crop, crop, 3] shaped for `encoder.spec`."""
    import torch

    spec = encoder.spec
    g = torch.Generator().manual_seed(0)
    shape = (batch, spec.num_frames, spec.crop, spec.crop, 3)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)


def export_encoder_graph(
    encoder,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: str = DEFAULT_EXPORTER,
    check: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export an Encoder: uint8 `frames` [B, S*T, crop, crop, 3] -> float32 `features` [B, S, D].

    Used by training to extract features in onnxruntime (several times faster than eager
    PyTorch on a CPU). The graph carries no gifsent metadata (it is not a scoring model).
    check: before writing, run the graph in onnxruntime on a random batch of 2 and require
    max |ort - torch| <= atol * max(1, max |torch|) (features are not bounded like scores).
    """
    import numpy as np
    import torch

    encoder = encoder.eval()
    example = encoder_example(encoder)
    model = export_proto(
        encoder, example=example, output_names=(FEATURES_NAME,), opset=opset, exporter=exporter
    )
    check_proto(model)
    if check:
        from gifsent_infer.running.engine import open_engine

        with torch.no_grad():
            want = encoder(example).float().numpy()
        # export's checks use onnxruntime's CPU provider as the reference backend
        engine = open_engine(model, backend="onnxruntime", device="cpu", quiet=True)
        got = engine.run(example.numpy(), FEATURES_NAME)
        tol = atol * max(1.0, float(np.abs(want).max()))
        worst = float(np.abs(got - want).max())
        if not worst <= tol:
            raise ExportError(
                f"encoder graph disagrees with PyTorch: max abs {worst:.3g} > {tol:.3g}; not written"
            )
    return save_proto(model, path)
