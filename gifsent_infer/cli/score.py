"""`gifsent-infer score`: inputs -> one row each in a CSV/JSONL/JSON file or on stdout.

The scoring options are `gifsent_infer.options.ScoreOptions` fields (cli/scoreflags.py makes
their flags); this module parses the rest, builds one ScoreOptions and hands it to
`Scorer.from_options` and `score_to_file`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape

from gifsent_infer.cli.app import app
from gifsent_infer.cli.common import (
    err,
    exit_code_of,
    fail,
    lossless_stdout,
    print_provenance,
    rate_note,
    run_progress,
    short,
    silence_stdout,
)
from gifsent_infer.cli.scoreflags import check_engine_choices, flag, options_from
from gifsent_infer.options import ScoreOptions


@app.command()
def score(
    inputs: list[str] = typer.Argument(
        ...,
        metavar="PATH...",
        help="GIF files, folders (searched recursively), glob patterns, http(s) URLs, or - to "
        "read one of those per line from stdin. GIFs are recognised by content.",
    ),
    out: str = typer.Option(
        "-",
        "--out",
        "-o",
        help="Output file (.csv, .jsonl, .json or .parquet), or - for stdout.",
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        "-f",
        help="csv, jsonl, json or parquet (default: from --out's extension; CSV on stdout).",
    ),
    model: Path | None = flag("model", "-m"),
    device: str = flag("device", "-d"),
    threads: int | None = flag("threads", min=1),
    backend: str = flag("backend"),
    precision: str = flag("precision"),
    workers: int | None = flag("workers", min=0),
    batch_size: int = flag("batch_size", "-b", min=1),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Keep rows of an earlier (interrupted) run of the same model and score only the rest.",
    ),
    recursive: bool = typer.Option(
        True, "--recursive/--no-recursive", help="Search folders recursively."
    ),
    max_bytes: int = flag("max_bytes", min=1),
    timeout: float = flag("timeout", min=0.1),
    allow_private_urls: bool = flag("allow_private_urls"),
    memory_budget: str = flag("memory_budget"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
    top: int = flag("top", "-k", min=0, max=17),
    percentiles: bool = flag("percentiles"),
    clip: bool = flag("clip"),
    timeline: bool = flag("timeline"),
    segments: int | None = flag("segments", min=1),
    intervals: float | None = flag("intervals", min=0.0, max=1.0),
    embeddings: Path | None = flag("embeddings"),
    progress_mode: str = typer.Option(
        "auto",
        "--progress",
        help="auto (a bar on a terminal, else a line every --progress-every seconds), bar, "
        "lines or none.",
    ),
    progress_every: float = typer.Option(
        10.0, "--progress-every", min=0.1, help="Seconds between progress lines (--progress lines)."
    ),
) -> None:
    """Score GIFs: one row per input with path, sha256, model id, status, error, frames,
    duration, segments, padding, the top emotions and the 17 emotion scores (0 = the least
    of that emotion among the training GIFs, 1 = the most; new GIFs can fall outside)."""
    opts = options_from(locals())
    check_engine_choices(opts)
    from gifsent_infer.reading.budget import return_freed_memory

    return_freed_memory()  # so that RSS follows the budget, not the number of threads
    target, fmt = _output(out, fmt, resume)
    items = _inputs(inputs, recursive, opts.max_bytes, quiet)
    scorer = _scorer(opts)
    _print_model(scorer, quiet)
    progress = run_progress(progress_mode, quiet, progress_every)
    tally = _run(
        scorer, items, target, fmt, opts, resume=resume, out=out, progress=progress, quiet=quiet
    )
    if not quiet:
        _print_summary(tally, out, opts)
    raise typer.Exit(1 if tally.failed else 0)


def _output(out: str, fmt: str | None, resume: bool):
    """--out checked before anything is scored (a run must not fail at its very end), and
    the format: (outpath.OutputTarget, "csv" | "jsonl" | "json")."""
    from gifsent_infer.writing.outpath import FILE, STDOUT, STREAM, OutputPathError, check_output
    from gifsent_infer.writing.outputs import detect_format

    try:
        target = check_output(out)
    except OutputPathError as e:
        raise fail(str(e)) from None
    try:
        fmt = detect_format("-" if target.kind == STDOUT else out, fmt)
    except ValueError as e:
        if target.kind != STREAM:  # /dev/null, a FIFO: CSV unless --format says otherwise
            raise fail(str(e)) from None
        fmt = "csv"
    if fmt == "parquet" and target.kind != FILE:
        raise fail("Parquet needs an output file (--out scores.parquet), not stdout or a stream")
    if resume and target.kind != FILE:
        raise fail("--resume needs an output file (--out FILE), not stdout or a stream")
    return target, fmt


def _inputs(inputs: list[str], recursive: bool, max_bytes: int, quiet: bool):
    from gifsent_infer.reading.inputs import NoInputsError, expand_inputs

    try:
        expansion = expand_inputs(
            inputs,
            stdin=sys.stdin if "-" in inputs else None,
            recursive=recursive,
            max_stdin_bytes=max_bytes,
        )
    except NoInputsError as e:
        raise fail(str(e)) from None
    if not quiet:
        for note in expansion.notes:
            err.print(f"[yellow]note:[/] {escape(note)}")
    return expansion.items


def _scorer(opts: ScoreOptions):
    import warnings

    from gifsent_infer.running.extras import ExtrasError
    from gifsent_infer.running.scorer import DemoModelWarning, Scorer
    from gifsent_infer.running.session import DeviceError, ModelError

    try:
        with warnings.catch_warnings():  # the CLI prints the session's warnings itself
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", DemoModelWarning)  # print_provenance says it
            return Scorer.from_options(opts)
    except ImportError as e:  # the backend is missing: the message is the install line
        raise fail(str(e)) from None
    except (ModelError, DeviceError, ExtrasError) as e:  # ExtrasError: --timeline/--intervals
        raise fail(str(e), exit_code_of(e)) from None


def _print_model(scorer, quiet: bool) -> None:
    doc = scorer.document
    print_provenance(doc, quiet)
    if not quiet:
        session = scorer.session
        note = f" ({session.device_note})" if session.device_note else ""
        err.print(
            f"model {escape(str(scorer.model_path))} [dim](id {short(scorer.model_id)}, "
            f"{doc.head.name} head on {escape(doc.encoder.name)}, {doc.precision})[/]"
        )
        err.print(
            f"backend [bold]{scorer.backend}[/], device {session.device}, precision "
            f"{session.precision}, provider [bold]{escape(scorer.provider)}[/]{escape(note)}"
        )
        err.print(f"[dim]precision {escape(session.choice.precision.reason)}[/]")
    for warning in scorer.session.warnings:  # e.g. an int8 model on onnxruntime's CPU provider
        err.print(f"[yellow]warning:[/] {escape(warning)}")


def _run(
    scorer,
    items,
    target,
    fmt: str,
    opts: ScoreOptions,
    *,
    resume: bool,
    out: str,
    progress,
    quiet: bool,
):
    """score_to_file with progress (common.run_progress) and the resume note; user errors
    exit here."""
    from gifsent_infer.errors import GifsentError
    from gifsent_infer.writing.outpath import STDOUT
    from gifsent_infer.writing.run import score_to_file

    def on_resume(prev, n_done: int) -> None:
        if not quiet:
            src = prev.source or "nothing (no earlier output: starting afresh)"
            torn = f", {prev.dropped} torn line(s) dropped" if prev.dropped else ""
            err.print(
                f"resume: {n_done} of these inputs were scored by this model before, "
                f"per {escape(str(src))}{torn}; they are skipped unless their content changed"
            )

    started = False

    def on_start(n_inputs: int) -> None:
        nonlocal started
        if not quiet:
            dest = "stdout" if out == "-" else out
            err.print(f"scoring {n_inputs} input(s) -> {escape(dest)} ({fmt})")
        progress.start(n_inputs)
        started = True

    if target.kind == STDOUT:
        lossless_stdout()
    try:
        try:
            return score_to_file(
                scorer,
                items,
                target,
                fmt,
                options=opts,
                resume=resume,
                on_resume=on_resume,
                on_start=on_start,
                on_result=lambda r: progress.advance(r.status != "error"),
            )
        finally:
            if started:
                progress.stop()
    except BrokenPipeError:  # `gifsent-infer ... -o - | head`: the reader left; stop quietly
        silence_stdout()
        raise typer.Exit(141) from None
    except GifsentError as e:  # ScoreRunError, ReadableError (e.g. --percentiles)
        raise fail(str(e), exit_code_of(e)) from None


def _print_summary(tally, out: str, opts: ScoreOptions) -> None:
    from gifsent_infer.reading.inputs import display_name

    elapsed = tally.seconds
    resumed = f", {tally.skipped} already scored" if tally.skipped else ""
    colour = "red" if tally.failed else "green"
    err.print(
        f"[{colour}]scored {tally.ok}, failed {tally.failed}{resumed}[/] in {elapsed:.1f} s"
        + rate_note(tally.ok, elapsed)
        + ("" if out == "-" else f" -> {escape(out)}")
    )
    if opts.embeddings and tally.ok:
        err.print(f"embeddings of {tally.ok} GIF(s) -> {escape(opts.embeddings)}")
    for path, reason in tally.failures:
        err.print(f"  [red]failed[/] {escape(display_name(path))}: {escape(reason)}")
    if tally.failed > len(tally.failures):
        err.print(
            f"  ... and {tally.failed - len(tally.failures)} more (see the status/error columns)"
        )
