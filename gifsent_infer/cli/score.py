"""`gifsent-infer score`: inputs -> one row each in a CSV/JSONL/JSON file or on stdout."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import typer
from rich.markup import escape

from gifsent_infer.cli.app import app
from gifsent_infer.cli.common import (
    check_choice,
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
from gifsent_infer.errors import GifsentError


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
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Exported .onnx model, or a name or id from `gifsent-infer models` (default: "
        "$GIFSENT_MODEL, then gifsent-export's location, then ./demo-home/models).",
    ),
    device: str = typer.Option(
        "auto", "--device", "-d", help="auto, cpu or cuda (cuda never falls back silently)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="Inference intra-op threads (default: one per core)."
    ),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto (CUDA: onnxruntime; CPU: openvino when installed, else onnxruntime), "
        "onnxruntime or openvino.",
    ),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        help="fp32 (default), or bf16: opt-in, OpenVINO on CPUs with native bf16 only "
        "(about 2x faster, scores differ slightly from fp32).",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=0,
        help="Threads reading and decoding GIFs (default: one per core, max 8; 0: none).",
    ),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="GIFs per model call."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Keep rows of an earlier (interrupted) run of the same model and score only the rest.",
    ),
    recursive: bool = typer.Option(
        True, "--recursive/--no-recursive", help="Search folders recursively."
    ),
    max_bytes: int | None = typer.Option(
        None,
        "--max-bytes",
        min=1,
        help="Largest input file or download, in bytes (default 64 MiB).",
    ),
    timeout: float = typer.Option(
        30.0,
        "--timeout",
        min=0.1,
        help="Seconds allowed to download one URL: connect, headers, redirects and body in all.",
    ),
    allow_private_urls: bool = typer.Option(
        False,
        "--allow-private-urls",
        help="Also fetch URLs on loopback, private and link-local addresses (refused by "
        "default, so that scoring users' URLs cannot reach this machine's network).",
    ),
    memory_budget: str = typer.Option(
        "1G",
        "--memory-budget",
        help="Memory that decoding may use at once, whatever --workers is (e.g. 512M, 2G); "
        "a larger input waits, then decodes alone.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
    progress_mode: str = typer.Option(
        "auto",
        "--progress",
        help="auto (a bar on a terminal, else a line every --progress-every seconds), bar, "
        "lines or none.",
    ),
    progress_every: float = typer.Option(
        10.0, "--progress-every", min=0.1, help="Seconds between progress lines (--progress lines)."
    ),
    embeddings: Path | None = typer.Option(
        None,
        "--embeddings",
        help="Also write each GIF's pooled encoder features (the vector the head reads) to "
        "this folder: .npy shards + index.parquet, for similarity search "
        "(`gifsent-infer search --like GIF --embeddings DIR`).",
    ),
    top: int = typer.Option(
        3,
        "--top",
        "-k",
        min=0,
        max=17,
        help="A `top` column with the K highest emotions ('happiness:0.91 amusement:0.85' in "
        "CSV, a list in JSON); 0 leaves it out.",
    ),
    with_percentiles: bool = typer.Option(
        False,
        "--percentiles",
        help="Add <emotion>_pct columns: the percentile (0-100) of each score among the "
        "model's training GIFs.",
    ),
    clip: bool = typer.Option(
        False,
        "--clip",
        help="Clip scores to [0, 1] (new GIFs can score outside the training GIFs' range).",
    ),
    timeline: bool = typer.Option(
        False,
        "--timeline",
        help="Add a `timeline` column: each segment's 17 scores and start time in seconds "
        "(compact JSON in CSV), to see when in the GIF an emotion happens. Needs a model "
        "exported with segment scores.",
    ),
    intervals: float | None = typer.Option(
        None,
        "--intervals",
        min=0.0,
        max=1.0,
        help="Add <emotion>_lo/<emotion>_hi columns holding the true score with this "
        "probability (e.g. 0.9; calibrated on the model's dev split), and <emotion>_std for a "
        "model fusing several heads.",
    ),
) -> None:
    """Score GIFs: one row per input with path, sha256, model id, status, error, frames,
    duration, segments, padding, the top emotions and the 17 emotion scores (0 = the least
    of that emotion among the training GIFs, 1 = the most; new GIFs can fall outside)."""
    from gifsent_infer.reading.gifio import DEFAULT_LIMITS
    from gifsent_infer.reading.inputs import NoInputsError, display_name, expand_inputs
    from gifsent_infer.running.extras import ExtrasError
    from gifsent_infer.running.session import (
        BACKENDS,
        DEVICES,
        RUN_PRECISIONS,
        DeviceError,
        ModelError,
    )
    from gifsent_infer.writing.outputs import detect_format

    check_choice("--device", device, DEVICES)
    check_choice("--backend", backend, BACKENDS)
    check_choice("--precision", precision, RUN_PRECISIONS)
    from gifsent_infer.reading.budget import parse_size, return_freed_memory

    try:
        budget_bytes = parse_size(memory_budget)
    except ValueError as e:
        raise fail(f"--memory-budget: {e}") from None
    return_freed_memory()  # so that RSS follows the budget, not the number of threads
    from gifsent_infer.writing.outpath import FILE, STDOUT, STREAM, OutputPathError, check_output

    try:  # before anything is scored: a run must not fail at its very end
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

    try:
        expansion = expand_inputs(
            inputs,
            stdin=sys.stdin if "-" in inputs else None,
            recursive=recursive,
            max_stdin_bytes=max_bytes or DEFAULT_LIMITS.max_file_bytes,
        )
    except NoInputsError as e:
        raise fail(str(e)) from None
    for note in expansion.notes:
        if not quiet:
            err.print(f"[yellow]note:[/] {escape(note)}")
    items = expansion.items

    try:
        from gifsent_infer.running.scorer import DemoModelWarning, Scorer

        limits = (
            DEFAULT_LIMITS
            if max_bytes is None
            else dataclasses.replace(DEFAULT_LIMITS, max_file_bytes=max_bytes)
        )
        import warnings

        with warnings.catch_warnings():  # the CLI prints the session's warnings itself, below
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", DemoModelWarning)  # printed by print_provenance
            scorer = Scorer(
                model,
                device=device,
                threads=threads,
                limits=limits,
                timeout=timeout,
                allow_private_urls=allow_private_urls,
                memory_budget=budget_bytes,
                backend=backend,
                precision=precision,
                timeline=timeline,
                intervals=intervals,
            )
    except ImportError as e:  # the backend is missing: the message is the install line
        raise fail(str(e)) from None
    except (ModelError, DeviceError, ExtrasError) as e:
        raise fail(str(e), exit_code_of(e)) from None

    doc = scorer.document
    from gifsent_infer.running.readable import Readable, ReadableError
    from gifsent_infer.running.rows import COLUMNS

    try:
        readable = Readable.for_model(doc, top=top, percentiles=with_percentiles, clip=clip)
    except ReadableError as e:
        raise fail(str(e)) from None
    columns = (*readable.columns(COLUMNS), *scorer.row_extras.columns())
    print_provenance(doc, quiet)
    if not quiet:
        note = f" ({scorer.session.device_note})" if scorer.session.device_note else ""
        err.print(
            f"model {escape(str(scorer.model_path))} [dim](id {short(scorer.model_id)}, "
            f"{doc.head.name} head on {escape(doc.encoder.name)}, {doc.precision})[/]"
        )
        err.print(
            f"backend [bold]{scorer.backend}[/], device {scorer.session.device}, precision "
            f"{scorer.session.precision}, provider [bold]{escape(scorer.provider)}[/]{escape(note)}"
        )
    for warning in scorer.session.warnings:  # e.g. an int8 model on onnxruntime's CPU provider
        err.print(f"[yellow]warning:[/] {escape(warning)}")

    from gifsent_infer.writing.run import ScoreRunError, score_to_file

    def on_resume(prev, n_done: int) -> None:
        if not quiet:
            src = prev.source or "nothing (no earlier output: starting afresh)"
            torn = f", {prev.dropped} torn line(s) dropped" if prev.dropped else ""
            err.print(
                f"resume: {n_done} of these inputs were scored by this model before, "
                f"per {escape(str(src))}{torn}; they are skipped unless their content changed"
            )

    progress = run_progress(progress_mode, quiet, progress_every)
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
            tally = score_to_file(
                scorer,
                items,
                target,
                fmt,
                columns=columns,
                decorate=readable.decorate,
                resume=resume,
                batch_size=batch_size,
                workers=workers,
                on_resume=on_resume,
                on_start=on_start,
                on_result=lambda r: progress.advance(r.status != "error"),
                embeddings=embeddings,
            )
        finally:
            if started:
                progress.stop()
    except BrokenPipeError:  # `gifsent-infer ... -o - | head`: the reader left; stop quietly
        silence_stdout()
        raise typer.Exit(141) from None
    except (ScoreRunError, GifsentError) as e:  # GifsentError: e.g. no `features` output
        raise fail(str(e), exit_code_of(e)) from None
    elapsed = tally.seconds

    if not quiet:
        resumed = f", {tally.skipped} already scored" if tally.skipped else ""
        colour = "red" if tally.failed else "green"
        err.print(
            f"[{colour}]scored {tally.ok}, failed {tally.failed}{resumed}[/] in {elapsed:.1f} s"
            + rate_note(tally.ok, elapsed)
            + ("" if out == "-" else f" -> {escape(out)}")
        )
        if embeddings is not None and tally.ok:
            err.print(f"embeddings of {tally.ok} GIF(s) -> {escape(str(embeddings))}")
        for path, reason in tally.failures:
            err.print(f"  [red]failed[/] {escape(display_name(path))}: {escape(reason)}")
        if tally.failed > len(tally.failures):
            err.print(
                f"  ... and {tally.failed - len(tally.failures)} more (see the status/error columns)"
            )
    raise typer.Exit(1 if tally.failed else 0)
