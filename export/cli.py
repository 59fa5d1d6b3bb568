"""`gifsent-export`: turn a training run's best checkpoint into one checked ONNX graph.

The summary goes to stdout (``--json`` for machine-readable); progress, warnings and errors
go to stderr. Exit status 1 when a check fails (nothing is written then), 2 for usage errors.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gifsent_infer.cli.common import FAILED, USAGE, fail, version_option

app = typer.Typer(
    help="Export a trained gifsent model to one self-describing ONNX graph, proven equal to PyTorch.",
    add_completion=False,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, highlight=False)


class Head(str, Enum):
    rnn = "rnn"
    maxpool = "maxpool"
    linear = "linear"
    best = "best"  # whichever head won on dev: the run's checkpoints/best.pt


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class Int8Recipe(str, Enum):
    auto = "auto"
    minmax = "minmax"
    percentile = "percentile"
    sensitive = "sensitive"
    mixed = "mixed"
    nncf = "nncf"


class Part(str, Enum):
    full = "full"
    encoder = "encoder"
    head = "head"


class Exporter(str, Enum):
    torchscript = "torchscript"
    dynamo = "dynamo"


def _fail(message: str, code: int = FAILED) -> None:
    """Exit 1 when an export or its checks fail, 2 for usage errors (as gifsent-infer does)."""
    raise fail(message, code, prefix="error")


def _human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"


# The command's options, one alias each (the command's signature stays one line per option).
ModelOpt = Annotated[
    Head | None,
    typer.Option(
        "--model",
        "-m",
        help="Which head's best checkpoint to export: rnn (LSTM), maxpool, linear (ridge), or best (the head best on dev).",
    ),
]
RunOpt = Annotated[
    Path | None,
    typer.Option("--run", help="Training run folder (default: the latest run under GIFSENT_HOME)."),
]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option("--checkpoint", help="Export this checkpoint file instead of a run's best."),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Output file (default: where gifsent-infer looks, under GIFSENT_HOME/models).",
    ),
]
PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="fp32; fp16 (for CUDA; encoder in fp16, head in fp32); int8 (static QDQ encoder for CPUs).",
    ),
]
PartOpt = Annotated[
    Part,
    typer.Option(
        "--part", help="full graph, or only the encoder (frames -> features) or the head."
    ),
]
ExporterOpt = Annotated[
    Exporter,
    typer.Option(
        "--exporter",
        help="torchscript (default: fast, works on every supported torch) or dynamo (needs onnxscript).",
    ),
]
OpsetOpt = Annotated[int, typer.Option("--opset", min=17, max=21, help="ONNX opset.")]
SimplifyOpt = Annotated[
    bool,
    typer.Option(
        "--simplify/--no-simplify",
        help="Simplify the graph (kept only if outputs are unchanged).",
    ),
]
ParityGifsOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--parity-gifs",
        help="GIF files/folders for the parity check (default: the run's test GIFs).",
    ),
]
CalibrationGifsOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--calibration-gifs",
        help="GIF files/folders for int8 calibration (default: the run's training GIFs).",
    ),
]
ParityCountOpt = Annotated[
    int, typer.Option("--parity-count", min=1, help="GIFs for the fp32 parity check.")
]
EvalCountOpt = Annotated[
    int,
    typer.Option(
        "--eval-count",
        min=3,
        help="GIFs for judging fp16/int8 against fp32 (Spearman per emotion).",
    ),
]
CalibrationCountOpt = Annotated[
    int, typer.Option("--calibration-count", min=1, help="GIFs for int8 calibration.")
]
Int8RecipeOpt = Annotated[
    Int8Recipe,
    typer.Option(
        "--int8-recipe",
        help="int8 calibration: minmax (every conv in int8), percentile (99.999th-percentile "
        "ranges), sensitive (percentile; first/last/depthwise convs kept float), mixed "
        "(percentile; the layers that most change the ranking, measured one by one on held-out "
        "GIFs, kept float until the gate holds), or auto (try them in that order, keep the "
        "first that passes the ranking gate on every backend). nncf (not in auto; "
        "pip install 'gifsent[nncf]'): NNCF's accuracy control with the same Spearman gate.",
    ),
]
CheckOnOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--check-on",
        help="Backend(s) an int8/fp16 graph must keep the ranking on (repeatable; default: every "
        "installed one). The model records where it was checked; other backends warn at load.",
    ),
]
EncoderWeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--encoder-weights", help="The encoder's weights file, if it moved since training."
    ),
]
MeasureOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--measure",
        help="What an fp32 export also measures against fp32 and records in the model "
        "(repeatable): bf16 (default; OpenVINO on a CPU with native bf16, what --precision auto "
        "reads) and int8 (every int8 recipe; slow on big encoders). --measure none records nothing.",
    ),
]
EnsembleOpt = Annotated[
    bool,
    typer.Option(
        "--ensemble",
        help="Fuse the head with the run's seed refits of it into one graph (the encoder runs "
        "once): scores are their mean, and a scores_std output gives their spread, which "
        "scales the calibrated intervals (gifsent-infer --intervals).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


@app.command()
def export(
    model: ModelOpt = None,
    run: RunOpt = None,
    checkpoint: CheckpointOpt = None,
    out: OutOpt = None,
    precision: PrecisionOpt = Precision.fp32,
    part: PartOpt = Part.full,
    exporter: ExporterOpt = Exporter.torchscript,
    opset: OpsetOpt = 18,
    simplify: SimplifyOpt = True,
    parity_gifs: ParityGifsOpt = None,
    calibration_gifs: CalibrationGifsOpt = None,
    parity_count: ParityCountOpt = 8,
    eval_count: EvalCountOpt = 32,
    calibration_count: CalibrationCountOpt = 16,
    int8_recipe: Int8RecipeOpt = Int8Recipe.auto,
    check_on: CheckOnOpt = None,
    measure: MeasureOpt = None,
    encoder_weights: EncoderWeightsOpt = None,
    ensemble: EnsembleOpt = False,
    as_json: JsonOpt = False,
    version: bool = version_option("gifsent-export"),
) -> None:
    """Export a checkpoint: fuse preprocessing, encoder and head; check; write one ONNX graph."""
    from gifsent_export.api import ExportOptions

    checkpoint, run_layout = _resolve_checkpoint(model, run, checkpoint)
    options = ExportOptions(
        precision=precision.value,
        part=part.value,
        parity_gifs=parity_gifs or None,
        calibration_gifs=calibration_gifs or None,
        run=run_layout,
        exporter=exporter.value,
        opset=opset,
        simplify=simplify,
        encoder_weights=encoder_weights,
        parity_count=parity_count,
        eval_count=eval_count,
        calibration_count=calibration_count,
        int8_recipe=int8_recipe.value,
        check_backends=check_on or None,
        measure=_measure(measure),
        expect_head=model.value if model not in (None, Head.best) else None,
        ensemble=ensemble,
        progress=lambda msg: err.print(f"[dim]·[/] {msg}"),
        warn=lambda msg: err.print(f"[yellow]warning:[/] {msg}"),
    )
    result = _run_export(checkpoint, out, options)
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    typer.echo("\n".join(_summary_lines(result, summary)))


def _measure(values: list[str] | None) -> tuple[str, ...]:
    from gifsent_export.checks import MEASURABLE

    if not values:
        return ("bf16",)
    if values == ["none"]:
        return ()
    bad = sorted(set(values) - set(MEASURABLE))
    if bad:
        _fail(
            f"--measure: {', '.join(bad)} is not one of {', '.join(MEASURABLE)} or none", code=USAGE
        )
    return tuple(dict.fromkeys(values))


def _resolve_checkpoint(model: Head | None, run: Path | None, checkpoint: Path | None):
    """The checkpoint file to export and the run it belongs to (usage errors exit 2)."""
    from gifsent_train.run import RunLayout, latest_run

    run_layout = None
    if run is not None:
        if not run.is_dir():
            _fail(f"run folder {run} does not exist", code=USAGE)
        run_layout = RunLayout(run)
    if checkpoint is not None:
        if not checkpoint.is_file():
            _fail(f"checkpoint {checkpoint} does not exist", code=USAGE)
        return checkpoint, run_layout
    if model is None:
        _fail(
            "say which model to export: --model best, rnn, maxpool or linear (or --checkpoint FILE)",
            code=USAGE,
        )
    run_layout = run_layout or latest_run()
    if run_layout is None:
        _fail(
            "no training run found (run gifsent-train first, or pass --run DIR or --checkpoint FILE)",
            code=USAGE,
        )
    if model is Head.best:
        checkpoint = run_layout.checkpoints / "best.pt"  # a link to best-<head>.pt
        if checkpoint.is_file():
            checkpoint = checkpoint.resolve()
    else:
        checkpoint = run_layout.checkpoint(model.value)
    if not checkpoint.is_file():
        _fail(
            f"run {run_layout.root} has no best {model.value} checkpoint ({checkpoint})",
            code=USAGE,
        )
    return checkpoint, run_layout


def _run_export(checkpoint: Path, out: Path | None, options):
    """export_checkpoint, with every failure it can report turned into one error line (exit 1)."""
    from gifsent_export.api import export_checkpoint
    from gifsent_export.parity import ParityError
    from gifsent_infer.contract import ContractError
    from gifsent_models.checkpoint import CheckpointError
    from gifsent_models.onnx import ExportError

    try:
        return export_checkpoint(checkpoint, out, options)
    except ParityError as e:
        _fail(f"parity check failed, nothing written: {e}")
    except (
        ExportError,
        CheckpointError,
        ContractError,
        ValueError,
        FileNotFoundError,
        ImportError,
    ) as e:
        _fail(str(e))


def _summary_lines(result, summary: dict) -> list[str]:
    p = result.parity
    lines = [
        f"file       {result.path}",
        f"size       {_human_size(result.size_bytes)}",
        f"graph      {result.part}, opset {result.opset}, {result.exporter} exporter, {result.simplified or 'not simplified'}",
        f"precision  {result.precision}",
        f"parity     fp32 vs PyTorch on {result.parity_source}: max abs {p.max_abs:.2e} (<= {result.parity_atol:g})",
    ]
    d = result.deviation
    if d is not None:
        lines.append(
            f"vs fp32    {d.n_gifs} GIFs not used for calibration: max abs {d.max_abs:.2e}, "
            f"mean abs {d.mean_abs:.2e}, mean Spearman {d.mean_spearman:.4f} (min {d.min_spearman:.4f})"
        )
    check = summary.get("precision_check")
    if check:
        on = ", ".join(
            f"{b} {v['mean_spearman']:.4f}" for b, v in sorted(check["backends"].items())
        )
        lines.append(f"gate       recipe {check['recipe']}; mean Spearman per backend: {on}")
    from gifsent_infer.running.precision import describe_checks

    lines += [f"checked    {line}" for line in describe_checks(summary.get("precision_checks"))]
    return lines


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="gifsent-export")
