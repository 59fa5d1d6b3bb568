"""`gifsent-export`: turn a training run's best checkpoint into one checked ONNX graph.

The summary goes to stdout (``--json`` for machine-readable); progress, warnings and errors
go to stderr. Exit status 1 when a check fails (nothing is written then), 2 for usage errors.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

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


@app.command()
def export(
    model: Head | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Which head's best checkpoint to export: rnn (LSTM), maxpool, linear (ridge), or best (the head best on dev).",
    ),
    run: Path | None = typer.Option(
        None, "--run", help="Training run folder (default: the latest run under GIFSENT_HOME)."
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Export this checkpoint file instead of a run's best."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Output file (default: where gifsent-infer looks, under GIFSENT_HOME/models).",
    ),
    precision: Precision = typer.Option(
        Precision.fp32,
        "--precision",
        help="fp32; fp16 (for CUDA; encoder in fp16, head in fp32); int8 (static QDQ encoder for CPUs).",
    ),
    part: Part = typer.Option(
        Part.full,
        "--part",
        help="full graph, or only the encoder (frames -> features) or the head.",
    ),
    exporter: Exporter = typer.Option(
        Exporter.torchscript,
        "--exporter",
        help="torchscript (default: fast, works on every supported torch) or dynamo (needs onnxscript).",
    ),
    opset: int = typer.Option(18, "--opset", min=17, max=21, help="ONNX opset."),
    simplify: bool = typer.Option(
        True,
        "--simplify/--no-simplify",
        help="Simplify the graph (kept only if outputs are unchanged).",
    ),
    parity_gifs: list[Path] | None = typer.Option(
        None,
        "--parity-gifs",
        help="GIF files/folders for the parity check (default: the run's test GIFs).",
    ),
    calibration_gifs: list[Path] | None = typer.Option(
        None,
        "--calibration-gifs",
        help="GIF files/folders for int8 calibration (default: the run's training GIFs).",
    ),
    parity_count: int = typer.Option(
        8, "--parity-count", min=1, help="GIFs for the fp32 parity check."
    ),
    eval_count: int = typer.Option(
        32,
        "--eval-count",
        min=3,
        help="GIFs for judging fp16/int8 against fp32 (Spearman per emotion).",
    ),
    calibration_count: int = typer.Option(
        16, "--calibration-count", min=1, help="GIFs for int8 calibration."
    ),
    int8_recipe: Int8Recipe = typer.Option(
        Int8Recipe.auto,
        "--int8-recipe",
        help="int8 calibration: minmax (every conv in int8), percentile (99.999th-percentile "
        "ranges), sensitive (percentile; first/last/depthwise convs kept float), or auto (try "
        "them in that order, keep the first that passes the ranking gate on every backend).",
    ),
    check_on: list[str] | None = typer.Option(
        None,
        "--check-on",
        help="Backend(s) an int8/fp16 graph must keep the ranking on (repeatable; default: every "
        "installed one). The model records where it was checked; other backends warn at load.",
    ),
    encoder_weights: Path | None = typer.Option(
        None, "--encoder-weights", help="The encoder's weights file, if it moved since training."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    version: bool = version_option("gifsent-export"),
) -> None:
    """Export a checkpoint: fuse preprocessing, encoder and head; check; write one ONNX graph."""
    from gifsent_infer.contract import ContractError
    from gifsent_train.run import RunLayout, latest_run

    run_layout = None
    if run is not None:
        if not run.is_dir():
            _fail(f"run folder {run} does not exist", code=USAGE)
        run_layout = RunLayout(run)
    if checkpoint is None:
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
    elif not checkpoint.is_file():
        _fail(f"checkpoint {checkpoint} does not exist", code=USAGE)

    from gifsent_export.api import export_checkpoint
    from gifsent_export.parity import ParityError
    from gifsent_models.checkpoint import CheckpointError
    from gifsent_models.onnx import ExportError

    def progress(msg: str) -> None:
        err.print(f"[dim]·[/] {msg}")

    def warn(msg: str) -> None:
        err.print(f"[yellow]warning:[/] {msg}")

    try:
        result = export_checkpoint(
            checkpoint,
            out,
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
            expect_head=model.value if model not in (None, Head.best) else None,
            progress=progress,
            warn=warn,
        )
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

    summary = result.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
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
    typer.echo("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="gifsent-export")
