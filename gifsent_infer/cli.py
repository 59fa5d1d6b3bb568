"""`gifsent-infer`: score GIFs into a CSV/JSONL/JSON file, show a model's contract, search scores.

    gifsent-infer ./gifs --out scores.csv          # `score` is the default command
    gifsent-infer score a.gif https://x/y.gif -o - # rows to stdout
    gifsent-infer info [MODEL]                     # the model's contract
    gifsent-infer search scores.csv --emotion happiness --top 20
    gifsent-infer search scores.csv --like happiness=0.9,surprise=0.6

A thin layer over the library (gifsent_infer.scorer, .outputs, .search): it prints and
exits, the library raises. Results go to stdout or the output file; progress, warnings and
the summary go to stderr. Exit codes: 0 all inputs scored, 1 some inputs failed, 2 usage,
model or device errors. This is the only module that imports typer and rich.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from gifsent_infer import __version__
from gifsent_infer.contract import EMOTIONS

SUBCOMMANDS = ("score", "info", "search", "report", "ray")
_GROUP_OPTIONS = ("--help", "-h", "--version")


def suggest_command(name: str, commands) -> str | None:
    """The command `name` is probably a typo of ("scroe" -> "score"), or None."""
    import difflib

    close = difflib.get_close_matches(name.lower(), list(commands), n=1, cutoff=0.6)
    return close[0] if close else None


class SuggestingGroup(TyperGroup):
    """A command group whose unknown-command error says "did you mean ...?" and lists the
    commands (used by all three CLIs)."""

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            guess = suggest_command(name, self.list_commands(ctx))
            hint = f" Did you mean '{guess}'?" if guess else ""
            ctx.fail(
                f"No such command '{name}'.{hint} Commands: {', '.join(self.list_commands(ctx))}."
            )
        return super().resolve_command(ctx, args)


class _ScoreByDefault(SuggestingGroup):
    """A group whose default command is `score`: `gifsent-infer ./gifs -o x.csv` means
    `gifsent-infer score ./gifs -o x.csv`. Anything that is not a subcommand name or a
    group option goes to `score` (a file literally named `info` needs `score info`), except
    a word that looks like a mistyped command and is not an existing file or folder
    (`gifsent-infer scroe a.gif` is a usage error saying "did you mean 'score'?")."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in _GROUP_OPTIONS:
            first = args[0]
            guess = None if first.startswith("-") else suggest_command(first, self.commands)
            if guess and not os.path.lexists(first):
                ctx.fail(
                    f"No such command '{first}'. Did you mean '{guess}'? "
                    f"(To score a file named {first!r}, it must exist; "
                    f"`gifsent-infer score ./{first}` is explicit.)"
                )
            args = ["score", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ScoreByDefault,
    help="Score the emotions of animated GIFs with an exported gifsent model (no torch needed).\n\n"
    "`gifsent-infer PATH... --out scores.csv` runs `score`; see `gifsent-infer score --help`.",
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)

err = Console(stderr=True, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gifsent-infer {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Score the emotions of animated GIFs."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]gifsent-infer:[/] {escape(message)}")
    return typer.Exit(code)


def _short(sha: str) -> str:
    return sha[:12]


# --- score ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Tally:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@app.command()
def score(
    inputs: list[str] = typer.Argument(
        ...,
        metavar="PATH...",
        help="GIF files, folders (searched recursively), glob patterns, http(s) URLs, or - to "
        "read one of those per line from stdin. GIFs are recognised by content.",
    ),
    out: str = typer.Option(
        "-", "--out", "-o", help="Output file (.csv, .jsonl or .json), or - for stdout."
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        "-f",
        help="csv, jsonl or json (default: from --out's extension; CSV on stdout).",
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Exported .onnx model (default: $GIFSENT_MODEL, then gifsent-export's location).",
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
) -> None:
    """Score GIFs: one row per input with path, sha256, model id, status, error, frames,
    duration, segments, padding, the top emotions and the 17 emotion scores (0 = the least
    of that emotion among the training GIFs, 1 = the most; new GIFs can fall outside)."""
    from gifsent_infer.gifio import DEFAULT_LIMITS
    from gifsent_infer.inputs import NoInputsError, display_name, expand_inputs
    from gifsent_infer.outputs import (
        FileSink,
        RowSink,
        ScoresFileError,
        StreamSink,
        detect_format,
        load_previous,
    )
    from gifsent_infer.session import BACKENDS, DEVICES, RUN_PRECISIONS, DeviceError, ModelError

    if device not in DEVICES:
        raise _fail(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    if backend not in BACKENDS:
        raise _fail(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if precision not in RUN_PRECISIONS:
        raise _fail(f"--precision must be one of {', '.join(RUN_PRECISIONS)}, not {precision!r}")
    from gifsent_infer.budget import parse_size, return_freed_memory

    try:
        budget_bytes = parse_size(memory_budget)
    except ValueError as e:
        raise _fail(f"--memory-budget: {e}") from None
    return_freed_memory()  # so that RSS follows the budget, not the number of threads
    from gifsent_infer.outpath import FILE, STDOUT, STREAM, OutputPathError, check_output

    try:  # before anything is scored: a run must not fail at its very end
        target = check_output(out)
    except OutputPathError as e:
        raise _fail(str(e)) from None
    try:
        fmt = detect_format("-" if target.kind == STDOUT else out, fmt)
    except ValueError as e:
        if target.kind != STREAM:  # /dev/null, a FIFO: CSV unless --format says otherwise
            raise _fail(str(e)) from None
        fmt = "csv"
    if resume and target.kind != FILE:
        raise _fail("--resume needs an output file (--out FILE), not stdout or a stream")

    try:
        expansion = expand_inputs(
            inputs,
            stdin=sys.stdin if "-" in inputs else None,
            recursive=recursive,
            max_stdin_bytes=max_bytes or DEFAULT_LIMITS.max_file_bytes,
        )
    except NoInputsError as e:
        raise _fail(str(e)) from None
    for note in expansion.notes:
        if not quiet:
            err.print(f"[yellow]note:[/] {escape(note)}")
    items = expansion.items

    try:
        from gifsent_infer.scorer import Scorer

        limits = (
            DEFAULT_LIMITS
            if max_bytes is None
            else dataclasses.replace(DEFAULT_LIMITS, max_file_bytes=max_bytes)
        )
        import warnings

        with warnings.catch_warnings():  # the CLI prints the session's warnings itself, below
            warnings.simplefilter("ignore", RuntimeWarning)
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
            )
    except ImportError as e:  # the backend is missing: the message is the install line
        raise _fail(str(e)) from None
    except (ModelError, DeviceError) as e:
        raise _fail(str(e)) from None

    doc = scorer.document
    from gifsent_infer.outputs import COLUMNS
    from gifsent_infer.readable import Readable, ReadableError

    try:
        readable = Readable.for_model(doc, top=top, percentiles=with_percentiles, clip=clip)
    except ReadableError as e:
        raise _fail(str(e)) from None
    columns = readable.columns(COLUMNS)
    _print_provenance(doc, quiet)
    if not quiet:
        note = f" ({scorer.session.device_note})" if scorer.session.device_note else ""
        err.print(
            f"model {escape(str(scorer.model_path))} [dim](id {_short(scorer.model_id)}, "
            f"{doc.head.name} head on {escape(doc.encoder.name)}, {doc.precision})[/]"
        )
        err.print(
            f"backend [bold]{scorer.backend}[/], device {scorer.session.device}, precision "
            f"{scorer.session.precision}, provider [bold]{escape(scorer.provider)}[/]{escape(note)}"
        )
    for warning in scorer.session.warnings:  # e.g. an int8 model on onnxruntime's CPU provider
        err.print(f"[yellow]warning:[/] {escape(warning)}")

    keep = None
    done: dict[str, str] = {}
    if resume:
        try:
            prev = load_previous(target.path, fmt)
        except ScoresFileError as e:
            raise _fail(f"cannot resume: {e}") from None
        from gifsent_infer.rows import resume_plan

        keep, done = resume_plan(prev.rows, {item.name for item in items}, scorer.model_id)
        if not quiet:
            src = prev.source or "nothing (no earlier output: starting afresh)"
            torn = f", {prev.dropped} torn line(s) dropped" if prev.dropped else ""
            err.print(
                f"resume: {len(done)} of these inputs were scored by this model before, "
                f"per {escape(str(src))}{torn}; they are skipped unless their content changed"
            )

    sink: RowSink
    if target.kind == STDOUT:
        _lossless_stdout()
        sink, kept_in = StreamSink(sys.stdout, fmt, columns), ""
    elif target.kind == STREAM:  # written in place, never replaced (/dev/null, a FIFO)
        try:
            stream = open(target.path, "a", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        except OSError as e:
            raise _fail(f"cannot open --out {out}: {e.strerror or e}") from None
        sink, kept_in = StreamSink(stream, fmt, columns), ""
    else:
        try:
            file_sink = FileSink(target.path, fmt, keep, columns)
        except OSError as e:
            raise _fail(f"cannot write --out {out}: {e.strerror or e}") from None
        sink, kept_in = file_sink, f"; rows so far are in {file_sink.partial}"
    if not quiet:
        dest = "stdout" if out == "-" else out
        err.print(f"scoring {len(items)} input(s) -> {escape(dest)} ({fmt})")

    tally = _Tally()
    start = time.perf_counter()
    progress = _progress(quiet)
    try:
        with progress:
            task = progress.add_task("scoring", total=len(items))
            results = scorer.score_many(
                items,
                batch_size=batch_size,
                workers=workers,
                skip=(lambda path, sha: done.get(path) == sha) if done else None,
            )
            for r in results:
                if r.status == "skipped":
                    tally.skipped += 1
                else:
                    sink.write(readable.decorate(r.to_row()))
                    if r.ok:
                        tally.ok += 1
                    else:
                        tally.failed += 1
                        if len(tally.failures) < 5:
                            tally.failures.append((r.path, r.error))
                progress.advance(task)
    except BrokenPipeError:  # `gifsent-infer ... -o - | head`: the reader left; stop quietly
        _silence_stdout()
        raise typer.Exit(141) from None
    except KeyboardInterrupt:
        sink.abort()
        again = ", rerun with --resume" if kept_in else ""
        raise _fail(f"interrupted{kept_in}{again}", 130) from None
    except Exception as e:  # the model failed on a batch: keep what is done, explain
        sink.abort()
        again = " (fix the cause and rerun with --resume)" if kept_in else ""
        raise _fail(f"scoring stopped: {type(e).__name__}: {e}{kept_in}{again}") from None
    try:
        sink.finish()
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(141) from None
    elapsed = time.perf_counter() - start

    if not quiet:
        rate = (tally.ok + tally.failed) / elapsed if elapsed > 0 else 0.0
        resumed = f", {tally.skipped} already scored" if tally.skipped else ""
        colour = "red" if tally.failed else "green"
        err.print(
            f"[{colour}]scored {tally.ok}, failed {tally.failed}{resumed}[/] in {elapsed:.1f} s "
            f"({rate:.1f} GIFs/s)" + ("" if out == "-" else f" -> {escape(out)}")
        )
        for path, reason in tally.failures:
            err.print(f"  [red]failed[/] {escape(display_name(path))}: {escape(reason)}")
        if tally.failed > len(tally.failures):
            err.print(
                f"  ... and {tally.failed - len(tally.failures)} more (see the status/error columns)"
            )
    raise typer.Exit(1 if tally.failed else 0)


def _lossless_stdout() -> None:
    # A file name that is not UTF-8 goes to stdout as its own bytes (as in score files).
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stdout.reconfigure(errors="surrogateescape")  # type: ignore[union-attr]


def _print_provenance(doc, quiet: bool) -> None:
    """What the model was trained on, at the start of every run; the demo warning even with
    --quiet, since it changes what every score means."""
    from gifsent_infer.readable import demo_warning, provenance_line

    if not quiet:
        err.print(escape(provenance_line(doc)))
    warning = demo_warning(doc)
    if warning:
        err.print(f"[bold yellow]{escape(warning)}[/]")


def _silence_stdout() -> None:
    # Point stdout at /dev/null so that Python's exit-time flush does not raise again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _progress(quiet: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
        transient=True,
    )


# --- info ----------------------------------------------------------------------------------------


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
    from gifsent_infer.readable import demo_warning, provenance_line, scale_note
    from gifsent_infer.session import ModelError, read_document, resolve_model

    if model is not None and model_opt is not None and model != model_opt:
        raise _fail("give the model once: either MODEL or --model, not both")
    model = model if model is not None else model_opt
    try:
        path = resolve_model(model)
        doc = read_document(path)
    except ModelError as e:
        raise _fail(str(e)) from None
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


def _backends_line() -> str:
    """Installed inference backends and what --backend auto would run this model on."""
    from gifsent_infer.engine import auto_choice, cpu_bf16_reason, installed_backends

    have = installed_backends()
    line = f"installed: {', '.join(have) or 'none'}; auto runs it with {auto_choice()}"
    if "openvino" in have:
        line += "; bf16: " + ("available" if cpu_bf16_reason() is None else "not on this CPU")
    return line


# --- search --------------------------------------------------------------------------------------


@app.command()
def search(
    scores: Path = typer.Argument(
        ..., help="A scores file written by `gifsent-infer` (CSV, JSONL or JSON)."
    ),
    emotion: str | None = typer.Option(
        None, "--emotion", "-e", help="Rank by this emotion, highest first."
    ),
    like: str | None = typer.Option(
        None, "--like", help="Rank by closeness to a profile, e.g. happiness=0.9,surprise=0.6."
    ),
    top: int = typer.Option(20, "--top", "-n", min=1, help="How many GIFs to show."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
) -> None:
    """Rank the GIFs of a scores file by one emotion or by closeness to an emotion profile."""
    from gifsent_infer.inputs import display_name
    from gifsent_infer.outputs import ScoresFileError
    from gifsent_infer.search import SearchError, parse_profile
    from gifsent_infer.search import search as run_search

    if fmt not in ("table", "csv", "json"):
        raise _fail(f"--format must be table, csv or json, not {fmt!r}")
    try:
        profile = parse_profile(like) if like is not None else None
        hits = run_search(scores, emotion=emotion, like=profile, top=top)
    except (SearchError, ScoresFileError) as e:
        raise _fail(str(e)) from None
    value_name = emotion.strip().lower() if emotion else "distance"
    _lossless_stdout()  # paths that are not UTF-8 come out as their own bytes
    if fmt == "json":
        typer.echo(
            json.dumps(
                [
                    {
                        "rank": h.rank,
                        "path": h.path,
                        "sha256": h.sha256,
                        value_name: h.value,
                        "scores": h.scores,
                    }
                    for h in hits
                ],
                indent=1,
            )
        )
    elif fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        # The ranked emotion comes first and once; the other emotions follow in GIFGIF order.
        rest = [e for e in EMOTIONS if e != value_name]
        w.writerow(["rank", "path", "sha256", value_name, *rest])
        for h in hits:
            w.writerow(
                [h.rank, h.path, h.sha256, repr(h.value), *(repr(h.scores[e]) for e in rest)]
            )
    else:
        shown = [value_name] if emotion else list(profile or {})
        table = Table(title=f"{len(hits)} GIF(s) from {escape(str(scores))}")
        table.add_column("#", justify="right")
        table.add_column("path", overflow="fold")
        if not emotion:
            table.add_column("distance", justify="right")
        for e in shown:
            table.add_column(e, justify="right")
        table.add_column("top emotions")
        for h in hits:
            top3 = ", ".join(e for e, _ in sorted(h.scores.items(), key=lambda kv: -kv[1])[:3])
            cells = [str(h.rank), escape(display_name(h.path))]
            if not emotion:
                cells.append(f"{h.value:.4f}")
            cells += [f"{h.scores[e]:.4f}" for e in shown]
            table.add_row(*cells, top3)
        Console(highlight=False).print(table)
    if not hits:
        err.print("[yellow]no scored GIFs in this file[/]")


# --- report --------------------------------------------------------------------------------------


@app.command()
def report(
    scores: Path = typer.Argument(
        ...,
        help="A scores file written by `gifsent-infer` (CSV, JSONL or JSON) or a "
        "`gifsent-infer ray` output folder.",
    ),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="The model that scored the rows, for provenance and percentiles (default: the "
        "default model, or any in $GIFSENT_HOME/models whose sha256 is the rows' model_id).",
    ),
    top_n: int = typer.Option(
        8, "--top-n", "-n", min=1, max=200, help="GIFs in each emotion's gallery."
    ),
    embed: bool = typer.Option(
        False,
        "--embed",
        help="Embed small animated thumbnails (data: URIs) instead of linking the GIFs by "
        "relative path, so the HTML file can be moved or mailed on its own.",
    ),
    page_size: int = typer.Option(50, "--page-size", min=1, help="Table rows per page."),
    title: str | None = typer.Option(None, "--title", help="Page title."),
) -> None:
    """Write a self-contained HTML report: per-emotion galleries of the top GIFs, a bar chart
    of each GIF's 17 emotions, a sortable/filterable table, error rows, and the model's
    provenance. Works offline; open it in any browser."""
    from gifsent_infer.report import ReportError, write_report

    try:
        s = write_report(
            scores, out, model=model, top_n=top_n, page_size=page_size, embed=embed, title=title
        )
    except ReportError as e:
        raise _fail(str(e)) from None
    for note in s.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    embedded = f", {s.embedded} thumbnails embedded" if embed else ""
    err.print(
        f"report of {s.rows} rows ({s.ok} scored, {s.errors} errors{embedded}), "
        f"{s.bytes / 1e6:.1f} MB"
    )
    typer.echo(str(s.out))


# --- ray -----------------------------------------------------------------------------------------


@app.command("ray")
def ray_score(
    inputs: list[str] = typer.Argument(
        ...,
        metavar="PATH...",
        help="GIF files, folders, glob patterns or http(s) URLs, expanded as `score` does; "
        "paths must be readable on every Ray node.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output folder on this (the driver's) machine: score shards "
        "(part-*.parquet|jsonl) and _manifest.json; read it with pandas.read_parquet.",
    ),
    fmt: str = typer.Option("parquet", "--format", "-f", help="Shard format: parquet or jsonl."),
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Exported .onnx model (default: $GIFSENT_MODEL, then gifsent-export's location); "
        "shipped to the workers through Ray's object store.",
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="Ray cluster to join: auto, HOST:6379 or ray://HOST:10001 "
        "(default: $RAY_ADDRESS, else a new local Ray instance on this machine).",
    ),
    connect_timeout: float = typer.Option(
        30.0,
        "--connect-timeout",
        min=0.1,
        help="Seconds to reach and join the cluster before giving up (exit 2).",
    ),
    auth_token_file: Path | None = typer.Option(
        None,
        "--auth-token-file",
        help="The cluster's token, for token authentication (sets RAY_AUTH_MODE=token and "
        "RAY_AUTH_TOKEN_PATH; or set those, or RAY_AUTH_TOKEN, yourself).",
    ),
    device: str = typer.Option(
        "cpu", "--device", "-d", help="cpu, cuda (one GPU per model actor) or auto."
    ),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto, onnxruntime or openvino, chosen in each model actor as `score` chooses.",
    ),
    num_actors: int | None = typer.Option(
        None,
        "--num-actors",
        min=1,
        help="Model actors (default: one per GPU with cuda; with cpu, enough actors of up to "
        "4 CPUs to use half the cluster's CPUs).",
    ),
    actor_cpus: float | None = typer.Option(
        None,
        "--actor-cpus",
        min=0.01,
        help="CPUs each model actor reserves; it runs that many onnxruntime threads "
        "(default: 1 with cuda; with cpu, half the cluster's CPUs over the actors, at most 4, "
        "or all of them with --decode-cpus 0).",
    ),
    decode_cpus: float | None = typer.Option(
        None,
        "--decode-cpus",
        min=0.0,
        help="CPUs each decoding task reserves (default 1; 0: decoding shares the cores with "
        "the model actors, at most one task per CPU, as on a 1-CPU cluster).",
    ),
    shard_rows: int | None = typer.Option(
        None,
        "--shard-rows",
        min=1,
        help="Write a shard every N rows (default: from the number of inputs, about 32 "
        "shards per run, 8 to 1024 rows each).",
    ),
    flush_seconds: float = typer.Option(
        10.0,
        "--flush-seconds",
        min=0.1,
        help="Also write a shard when its oldest row has waited this long, so a killed run "
        "keeps its work.",
    ),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="GIFs per model call."),
    resume: bool = typer.Option(
        True,
        "--resume/--no-resume",
        help="Skip inputs this model already scored in --out (default); --no-resume empties it.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
) -> None:
    """Score GIFs on a Ray cluster with Ray Data (needs `pip install 'gifsent[ray]'`)."""
    from gifsent_infer.distributed import FORMATS, ClusterError, RayRunError, score_with_ray
    from gifsent_infer.inputs import NoInputsError
    from gifsent_infer.session import DEVICES, DeviceError, ModelError

    if fmt not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if device not in DEVICES:
        raise _fail(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    try:
        from gifsent_infer.session import read_document, resolve_model

        _print_provenance(read_document(resolve_model(model)), quiet)
    except ModelError as e:
        raise _fail(str(e)) from None
    try:
        s = score_with_ray(
            inputs,
            model,
            out,
            address=address,
            num_actors=num_actors,
            actor_cpus=actor_cpus,
            decode_cpus=decode_cpus,
            batch_size=batch_size,
            device=device,
            backend=backend,
            resume=resume,
            format=fmt,
            shard_rows=shard_rows,
            flush_seconds=flush_seconds,
            connect_timeout=connect_timeout,
            auth_token_file=auth_token_file,
            progress_bars=not quiet and err.is_terminal,
        )
    except ImportError as e:  # Ray (or onnxruntime) missing: the message is the install hint
        raise _fail(str(e)) from None
    except (NoInputsError, ModelError, DeviceError, ClusterError, ValueError) as e:
        raise _fail(str(e)) from None
    except RayRunError as e:  # a failure mid-run: what was written stays, a rerun resumes
        raise _fail(str(e), 1) from None
    if not quiet:
        colour = "red" if s.failed else "green"
        resumed = f", {s.skipped} already scored" if s.skipped else ""
        rate = (s.scored + s.failed) / s.seconds if s.seconds > 0 else 0.0
        err.print(
            f"[{colour}]scored {s.scored}, failed {s.failed}{resumed}[/] in {s.seconds:.1f} s "
            f"({rate:.1f} GIFs/s) on {s.num_actors} {s.device} actor(s) -> "
            f"{escape(str(s.out_dir))} ({len(s.shards)} new shard(s), {escape(s.manifest.name)})"
        )
    raise typer.Exit(1 if s.failed else 0)


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="gifsent-infer")
