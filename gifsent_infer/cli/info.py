"""`gifsent-infer info`: a model's contract, provenance and the backends that can run it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gifsent_infer.cli.app import app
from gifsent_infer.cli.common import err, fail


@app.command()
def info(
    model: Path | None = typer.Argument(
        None, help="The .onnx model (default: $GIFSENT_MODEL, then gifsent-export's location)."
    ),
    model_opt: Path | None = typer.Option(
        None, "--model", "-m", help="The .onnx model, as `score --model` takes it."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the raw metadata document as JSON."),
) -> None:
    """Print a model's contract: provenance, emotions, sampling, encoder, head, metrics, precision."""
    from gifsent_infer.files import file_sha256
    from gifsent_infer.running.readable import demo_warning, provenance_line, scale_note
    from gifsent_infer.running.session import ModelError, read_document, resolve_model

    if model is not None and model_opt is not None and model != model_opt:
        raise fail("give the model once: either MODEL or --model, not both")
    model = model if model is not None else model_opt
    try:
        path = resolve_model(model)
        doc = read_document(path)
    except ModelError as e:
        raise fail(str(e)) from None
    if as_json:
        typer.echo(json.dumps(doc.to_dict(), indent=2, sort_keys=True))
        return
    s = doc.sampling
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("model", str(path)),
        ("model id", file_sha256(path)),
        ("size", f"{path.stat().st_size / 1e6:.1f} MB"),
        ("schema", str(doc.schema_version)),
        ("library", doc.library_version),
        ("precision", doc.precision),
        (
            "encoder",
            f"{doc.encoder.name} ({doc.encoder.feature_dim}-d per segment)"
            + (f", weights {doc.encoder.weights}" if doc.encoder.weights else ""),
        ),
        ("head", f"{doc.head.name} {json.dumps(doc.head.config, sort_keys=True)}"),
        (
            "sampling",
            f"{s.segments} segment(s) x {s.frames_per_segment} frame(s) at {s.fps:g} fps "
            f"= {s.num_frames} frames; resize shorter side to {s.size} ({s.resize_filter}), "
            f"centre crop {s.crop}x{s.crop}; matte {s.matte}; short GIFs: {s.short_gif}; "
            f"delays < {s.min_delay_ms} ms shown as {s.clamped_delay_ms} ms",
        ),
        ("input", f"frames uint8 [batch, {s.num_frames}, {s.crop}, {s.crop}, 3]"),
        ("output", f"scores float32 [batch, {len(doc.emotions)}]"),
        *((f"output {k}", v) for k, v in (doc.outputs or {}).items() if k != "scores"),
        (
            "intervals",
            (
                f"split-conformal on {doc.intervals.gifs} dev GIFs, coverage "
                f"{', '.join(f'{v:g}' for v in doc.intervals.levels)}, {doc.intervals.heads} "
                f"head(s), {sum(doc.intervals.normalized.values())} emotion(s) scaled by "
                "the heads' spread (--intervals)"
            )
            if doc.intervals
            else "none (--intervals needs a model exported with its run's calibration)",
        ),
        (
            "normalization",
            f"(x * {doc.normalization.scale:g} - mean {list(doc.normalization.mean)}) "
            f"/ std {list(doc.normalization.std)}",
        ),
        ("trained on", provenance_line(doc).removeprefix("trained on: ")),
        ("target", doc.target.kind),
        ("score scale", scale_note(doc)),
        (
            "percentiles",
            f"{len(doc.score_quantiles.levels)} quantiles per emotion over "
            f"{doc.score_quantiles.gifs:,} training GIFs ({doc.score_quantiles.source})"
            if doc.score_quantiles
            else "(not recorded: --percentiles needs a model exported with gifsent schema 2)",
        ),
        ("metrics", json.dumps(doc.metrics, sort_keys=True) if doc.metrics else "(none recorded)"),
        ("precision check", _checks_text(doc)),
        ("checkpoint", doc.checkpoint_sha256 or "(not recorded)"),
        ("emotions", ", ".join(doc.emotions)),
        ("backends", _backends_line()),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))
    Console(highlight=False, soft_wrap=False).print(table)
    warning = demo_warning(doc)
    if warning:
        sys.stdout.flush()  # the table first, then the warning, also when both are piped
        err.print(f"[bold yellow]{escape(warning)}[/]")


def _checks_text(doc) -> str:
    """The recorded precision check (gifsent-export), and what --precision auto runs here."""
    from gifsent_infer.running.engine import cpu_bf16_reason, installed_backends
    from gifsent_infer.running.precision import choose_precision, describe_checks, recorded_checks

    lines = describe_checks(recorded_checks(doc))
    if not lines:
        lines = [
            "(none recorded: --precision auto runs this model in fp32; re-export to record one)"
        ]
    if "openvino" in installed_backends():
        auto = choose_precision("auto", "openvino", doc, cpu_bf16_reason)
        lines.append(f"on openvino here, {auto.reason}")
    return "\n".join(lines)


def _backends_line() -> str:
    """Installed inference backends and what --backend auto would run this model on."""
    from gifsent_infer.running.engine import auto_choice, cpu_bf16_reason, installed_backends

    have = installed_backends()
    line = f"installed: {', '.join(have) or 'none'}; auto runs it with {auto_choice()}"
    if "openvino" in have:
        line += "; bf16: " + ("available" if cpu_bf16_reason() is None else "not on this CPU")
    return line
