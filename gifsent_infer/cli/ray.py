"""`gifsent-infer ray`: score on a Ray cluster into a Delta Lake table (gifsent_infer.scaleout.distributed)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.markup import escape

from gifsent_infer.cli.app import app
from gifsent_infer.cli.common import err, exit_code_of, fail, print_provenance
from gifsent_infer.cli.scoreflags import check_engine_choices, flag, options_from

# The command's options that need more than a line (the scoring flags come from cli/scoreflags.py).
_INPUTS = typer.Argument(
    None,
    metavar="[PATH|URI]...",
    help="GIF files, folders, glob patterns, http(s) URLs, or object-store objects and "
    "prefixes (s3://bucket/gifs/, gs://..., abfs://...), expanded as `score` does; local "
    "paths must be readable on every Ray node, objects are read by the workers.",
)
_OUT = typer.Option(
    ...,
    "--out",
    "-o",
    help="The Delta Lake table of scores: a local folder or an object-store URI "
    "(s3://bucket/scores); created when missing. Read it with DuckDB, Polars, pandas, "
    "Spark or `deltalake` (see the README).",
)
_MANIFEST = typer.Option(
    None,
    "--manifest",
    help="A Parquet, CSV or JSONL file (local or in a store) listing one input per row: "
    "a path, URL or store URI, for collections too large to list.",
)
_MANIFEST_COLUMN = typer.Option(
    None,
    "--manifest-column",
    help="The manifest's column of inputs (default: path, url or uri, else its only column).",
)
_MODEL = flag(
    "model",
    "-m",
    help="Exported .onnx model (default: $GIFSENT_MODEL, then gifsent-export's location); "
    "shipped to the workers through Ray's object store.",
)
_ADDRESS = typer.Option(
    None,
    "--address",
    help="Ray cluster to join: auto, HOST:6379 or ray://HOST:10001 "
    "(default: $RAY_ADDRESS, else a new local Ray instance on this machine).",
)
_CONNECT_TIMEOUT = typer.Option(
    30.0,
    "--connect-timeout",
    min=0.1,
    help="Seconds to reach and join the cluster before giving up (exit 2).",
)
_AUTH_TOKEN_FILE = typer.Option(
    None,
    "--auth-token-file",
    help="The cluster's token, for token authentication (sets RAY_AUTH_MODE=token and "
    "RAY_AUTH_TOKEN_PATH; or set those, or RAY_AUTH_TOKEN, yourself).",
)
_DEVICE = flag(
    "device",
    "-d",
    help="auto (cuda when the cluster has GPUs), cpu or cuda (one GPU per model actor).",
)
_BACKEND = flag(
    "backend",
    help="auto, onnxruntime or openvino, chosen in each model actor as `score` chooses.",
)
_THREADS = flag("threads", min=1, help="Intra-op threads per model actor (default: its CPUs).")
_NUM_ACTORS = typer.Option(
    None,
    "--num-actors",
    min=1,
    help="Model actors (default: one per GPU with cuda; with cpu, enough actors of up to "
    "4 CPUs to use half the cluster's CPUs).",
)
_ACTOR_CPUS = typer.Option(
    None,
    "--actor-cpus",
    min=0.01,
    help="CPUs each model actor reserves; it runs that many onnxruntime threads "
    "(default: 1 with cuda; with cpu, half the cluster's CPUs over the actors, at most 4, "
    "or all of them with --decode-cpus 0).",
)
_DECODE_CPUS = typer.Option(
    None,
    "--decode-cpus",
    min=0.0,
    help="CPUs each decoding task reserves (default 1; 0: decoding shares the cores with "
    "the model actors, at most one task per CPU, as on a 1-CPU cluster).",
)
_SHARD_ROWS = typer.Option(
    None,
    "--commit-rows",
    "--shard-rows",
    min=1,
    help="Commit to the table every N rows (default: from the number of inputs, about 32 "
    "commits per run, 8 to 1024 rows each).",
)
_FLUSH_SECONDS = typer.Option(
    10.0,
    "--commit-seconds",
    "--flush-seconds",
    min=0.1,
    help="Also commit when the oldest uncommitted row has waited this long, so a killed "
    "run keeps its work.",
)
_RETENTION_HOURS = typer.Option(
    168.0,
    "--retention-hours",
    min=0.0,
    help="How long files that a commit replaced stay for readers of older snapshots "
    "(Delta's default, 7 days); vacuum deletes only older ones. Below 168 it is your "
    "promise that no reader holds a snapshot that old.",
)
_VACUUM = typer.Option(
    True,
    "--vacuum/--no-vacuum",
    help="After the run, delete the files no snapshot within --retention-hours needs.",
)
_COMPACT = typer.Option(
    True,
    "--compact/--no-compact",
    help="After the run, rewrite the run's small files into larger ones (one commit that "
    "changes no row).",
)
_WORKERS = flag(
    "workers",
    min=0,
    help="Most decoding tasks at once (default: as the CPUs allow; 0: one).",
)
_MEMORY_BUDGET = flag(
    "memory_budget",
    help="Memory that decoding may use at once across the run (e.g. 512M, 2G): each "
    "decoding task reserves 256 MiB of it from Ray's scheduler.",
)
_WARM_UP = typer.Option(
    True,
    "--warm-up/--no-warm-up",
    help="From before joining until the cluster's workers deliver, score the first inputs on "
    "the driver (same model and code; each input is scored once), so the first rows are "
    "committed sooner. Only with a CPU model, without --workers, and not through ray://.",
)
_RESUME = typer.Option(
    True,
    "--resume/--no-resume",
    help="Skip inputs this model already scored in the table (default); --no-resume "
    "rescores every input, replacing its row (a MERGE), and then removes the rows of "
    "inputs this run did not name.",
)


@app.command("ray")
def ray_score(
    inputs: list[str] | None = _INPUTS,
    out: str = _OUT,
    manifest: str | None = _MANIFEST,
    manifest_column: str | None = _MANIFEST_COLUMN,
    model: Path | None = _MODEL,
    address: str | None = _ADDRESS,
    connect_timeout: float = _CONNECT_TIMEOUT,
    auth_token_file: Path | None = _AUTH_TOKEN_FILE,
    device: str = _DEVICE,
    allow_private_urls: bool = flag("allow_private_urls"),
    backend: str = _BACKEND,
    precision: str = flag("precision"),
    threads: int | None = _THREADS,
    num_actors: int | None = _NUM_ACTORS,
    actor_cpus: float | None = _ACTOR_CPUS,
    decode_cpus: float | None = _DECODE_CPUS,
    shard_rows: int | None = _SHARD_ROWS,
    flush_seconds: float = _FLUSH_SECONDS,
    retention_hours: float = _RETENTION_HOURS,
    vacuum: bool = _VACUUM,
    compact: bool = _COMPACT,
    batch_size: int = flag("batch_size", "-b", min=1),
    workers: int | None = _WORKERS,
    memory_budget: str = _MEMORY_BUDGET,
    max_bytes: int = flag("max_bytes", min=1),
    timeout: float = flag("timeout", min=0.1),
    top: int = flag("top", "-k", min=0, max=17),
    percentiles: bool = flag("percentiles"),
    clip: bool = flag("clip"),
    timeline: bool = flag("timeline"),
    segments: int | None = flag("segments", min=1),
    intervals: float | None = flag("intervals", min=0.0, max=1.0),
    embeddings: Path | None = flag("embeddings"),
    resume: bool = _RESUME,
    warm_up: bool = _WARM_UP,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
) -> None:
    """Score GIFs on a Ray cluster (decoding tasks, model actors) into a Delta Lake table (needs
    `pip install 'gifsent[ray]'`)."""
    from gifsent_infer.errors import GifsentError
    from gifsent_infer.running.session import read_document, resolve_model
    from gifsent_infer.scaleout.distributed import ClusterError, score_with_ray

    opts = options_from(locals())
    check_engine_choices(opts)
    if not inputs and manifest is None:
        raise fail("give the inputs to score (PATH or URI arguments, or --manifest FILE)")
    _refuse_local_only(opts)
    try:
        print_provenance(read_document(resolve_model(opts.model)), quiet)
        s = score_with_ray(
            inputs or [],
            None,
            out,
            options=opts,
            manifest=manifest,
            manifest_column=manifest_column,
            retention_hours=retention_hours,
            vacuum=vacuum,
            compact=compact,
            address=address,
            num_actors=num_actors,
            actor_cpus=actor_cpus,
            decode_cpus=decode_cpus,
            resume=resume,
            shard_rows=shard_rows,
            flush_seconds=flush_seconds,
            connect_timeout=connect_timeout,
            auth_token_file=auth_token_file,
            progress_bars=not quiet and err.is_terminal,
            warm_up=warm_up,
        )
    except ImportError as e:  # Ray (or onnxruntime) missing: the message is the install hint
        raise fail(str(e)) from None
    except ClusterError as e:
        if e.stuck:  # a thread is blocked inside Ray's native code: nothing else may run
            fail(str(e))
            sys.stderr.flush()
            os._exit(e.exit_code)
        raise fail(str(e)) from None
    except ValueError as e:  # a table or plan the run cannot use
        raise fail(str(e)) from None
    except GifsentError as e:  # model, device, cluster, readable extras; RayRunError exits 1
        raise fail(str(e), exit_code_of(e)) from None
    if not quiet:
        colour = "red" if s.failed else "green"
        resumed = f", {s.skipped} already scored" if s.skipped else ""
        rate = (s.scored + s.failed) / s.seconds if s.seconds > 0 else 0.0
        err.print(
            f"[{colour}]scored {s.scored}, failed {s.failed}{resumed}[/] in {s.seconds:.1f} s "
            f"({rate:.1f} GIFs/s) on {s.num_actors} {s.device} actor(s) -> "
            f"{escape(s.table)} (Delta table version {s.version}, {s.commits} commit(s))"
        )
    raise typer.Exit(1 if s.failed else 0)


def _refuse_local_only(opts) -> None:
    """Scoring options that Ray's table does not carry yet: a usage error, never ignored."""
    from gifsent_infer.options import ScoreOptions

    given = [
        ScoreOptions.flag(name)
        for name in ("timeline", "segments", "intervals", "embeddings")
        if getattr(opts, name) not in (None, False)
    ]
    if given:
        raise fail(
            f"{', '.join(given)}: not available with `gifsent-infer ray` yet; score locally "
            "(`gifsent-infer score`) for these"
        )
