"""`gifsent-train`: votes -> Bradley-Terry scores -> features -> best MaxPool and LSTM heads -> report.

With no subcommand it runs every stage on the configured data (default
$GIFSENT_HOME/data/gifgif). Results (Table 1, where files are) go to stdout; progress,
logs and errors to stderr.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import typer

from gifsent_infer.cli.common import SuggestingGroup, progress_bar, version_option

app = typer.Typer(
    help="Train gifsent's heads: Bradley-Terry scores, encoder features, randomized search, report.",
    add_completion=False,
    no_args_is_help=False,
    cls=SuggestingGroup,  # unknown commands: "Did you mean ...?"
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _console():
    from rich.console import Console

    return Console(stderr=True)


class RichReporter:
    """Pipeline reporter drawing one rich progress bar per task on stderr."""

    def __init__(self, quiet: bool = False):
        self.console = _console()
        self.quiet = quiet
        self.progress_bar = progress_bar(
            quiet, console=self.console, transient=False, terminal_only=False
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress_bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress_bar.__exit__(*exc)

    def stage(self, name: str, skipped: bool = False) -> None:
        if not self.quiet:
            msg = "current, skipped" if skipped else "running"
            self.console.print(f"[bold]stage {name}[/bold]: {msg}")

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"  {message}", markup=False, highlight=False)

    def progress(self, task: str, done: int, total: int) -> None:
        if task not in self.tasks:
            self.tasks[task] = self.progress_bar.add_task(task, total=total)
        self.progress_bar.update(self.tasks[task], completed=done, total=total)

    def done(self, task: str) -> None:
        if task in self.tasks:
            t = self.tasks[task]
            total = self.progress_bar.tasks[t].total
            self.progress_bar.update(t, completed=total)


# One set of options shared by the run and the stage commands. Unset (None) options leave
# the preset / config file value (or TrainConfig's default) alone.
_OPTIONS = {
    "config": (
        Path | None,
        typer.Option(None, "--config", "-c", help="TOML or JSON file of TrainConfig fields."),
    ),
    "preset": (
        str | None,
        typer.Option(None, "--preset", help="Named settings: demo, study, tiny."),
    ),
    "data_dir": (
        str | None,  # a folder, a .sqlite file, or a postgresql:// URL (a Path would mangle it)
        typer.Option(
            None,
            "--data",
            help="Data folder (votes CSV + GIFs), or a `collect` votes database: a .sqlite file or a postgresql://USER@HOST:PORT/DB URL (password in PGPASSWORD or ~/.pgpass). Default: $GIFSENT_HOME/data/gifgif.",
        ),
    ),
    "votes": (
        Path | None,
        typer.Option(None, "--votes", help="Votes CSV(.gz); default: the one in --data."),
    ),
    "gifs": (
        Path | None,
        typer.Option(None, "--gifs", help="Folder of <id>.gif; default: --data/gifs."),
    ),
    "truth": (Path | None, typer.Option(None, "--truth", help="True strengths CSV (demo data).")),
    "encoder": (str | None, typer.Option(None, "--encoder", help="Registry encoder name.")),
    "encoder_weights": (
        Path | None,
        typer.Option(None, "--encoder-weights", help="Local encoder weights file."),
    ),
    "random_init": (
        bool | None,
        typer.Option(
            None, "--random-init/--no-random-init", help="Allow random encoder weights (tests)."
        ),
    ),
    "sampling": (str | None, typer.Option(None, "--sampling", help="sparse | dense | augmented.")),
    "segments": (
        int | None,
        typer.Option(None, "--segments", help="Sparse segments S (0: encoder default)."),
    ),
    "views": (int | None, typer.Option(None, "--views", help="Augmented views per training GIF.")),
    "dense_segments": (int | None, typer.Option(None, "--dense-segments", help="S in dense mode.")),
    "trials": (int | None, typer.Option(None, "--trials", help="Search trials per head.")),
    "max_epochs": (
        int | None,
        typer.Option(
            None, "--max-epochs", help="Epoch ceiling per fit (patience normally stops first)."
        ),
    ),
    "patience": (
        int | None,
        typer.Option(None, "--patience", help="Stop a fit after N epochs without dev gain."),
    ),
    "seeds": (
        int | None,
        typer.Option(
            None,
            "--seeds",
            help="Retrain each head's best config with N seeds (same splits): mean ± std, paired tests.",
        ),
    ),
    "loss_weights": (
        str | None,
        typer.Option(
            None,
            "--loss-weights",
            help="none | inverse-variance: weight the MSE by 1/se² of each Bradley-Terry score.",
        ),
    ),
    "weight_cap": (
        float | None,
        typer.Option(
            None, "--weight-cap", help="Cap of inverse-variance weights, times the median."
        ),
    ),
    "maxpool_timeline": (
        str | None,
        typer.Option(
            None,
            "--maxpool-timeline",
            help="MaxPool's timeline: mil (default: its own per-segment readout, trained so its max explains each GIF's label; scores unchanged) or shared (the score MLP on each segment; the default with --segment-weight).",
        ),
    ),
    "segment_weight": (
        float | None,
        typer.Option(
            None,
            "--segment-weight",
            help="Shared MaxPool timeline only: weight of the term making the score MLP's per-segment outputs' max explain each GIF's label (sharper timeline, worse scores; 0: off). The default mil readout needs none.",
        ),
    ),
    "seed": (int | None, typer.Option(None, "--seed", help="Seed of splits, search and fits.")),
    "run_dir": (Path | None, typer.Option(None, "--run-dir", help="Parent folder of runs.")),
    "run_name": (str | None, typer.Option(None, "--run-name", help="Run folder name.")),
    "ray_address": (
        str | None,
        typer.Option(
            None,
            "--ray",
            help="Run the feature stage on Ray: local, auto, HOST:6379 or ray://HOST:10001 (needs gifsent[ray]).",
        ),
    ),
    "threads": (
        int | None,
        typer.Option(None, "--threads", help="CPU threads for the encoder and training."),
    ),
    "use_onnxruntime": (
        str | None,
        typer.Option(
            None, "--onnxruntime", help="auto | true | false: run the encoder in onnxruntime."
        ),
    ),
    "limit_gifs": (
        int | None,
        typer.Option(None, "--limit-gifs", help="Use only the first N GIFs."),
    ),
    "force": (bool, typer.Option(False, "--force", help="Re-run stages even when current.")),
    "quiet": (bool, typer.Option(False, "--quiet", "-q", help="No progress output.")),
}


def _show_defaults() -> None:
    """Append TrainConfig's defaults to the options' help (the options themselves default to
    None so that presets and config files can fill them in)."""
    from gifsent_train.config import TrainConfig

    defaults = TrainConfig()
    for name, (_ann, option) in _OPTIONS.items():
        value = getattr(defaults, name, None)
        if value in (None, "") or not option.help or "default" in option.help.lower():
            continue
        option.help += f" (default: {value} unless --preset or --config sets it)"


_show_defaults()


def _execute(stages: tuple[str, ...], opts: dict) -> None:
    from gifsent_train.pipeline import NoDataError, resolve_config, run_all

    console = _console()
    force = opts.pop("force", False)
    quiet = opts.pop("quiet", False)
    preset = opts.pop("preset", None)
    config_file = opts.pop("config", None)
    overrides = {k: (str(v) if isinstance(v, Path) else v) for k, v in opts.items()}
    try:
        cfg = resolve_config(preset, config_file, **overrides)
    except (ValueError, OSError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    try:
        with RichReporter(quiet=quiet) as rep:
            result = run_all(cfg, rep, stages=stages, force=force)
    except NoDataError as e:
        console.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    except Exception as e:  # a library raises; the CLI prints and exits
        console.print(f"[red]error:[/red] {type(e).__name__}: {e}", highlight=False)
        raise typer.Exit(1) from None
    lay = result.layout
    if result.table1:
        typer.echo(result.table1)
    typer.echo(f"run:         {lay.root}")
    if (lay.report / "report.md").is_file():
        typer.echo(f"report:      {lay.report / 'report.md'}")
        typer.echo(f"figures:     {lay.report / 'figure1.png'}, {lay.report / 'figure3.png'}")
    for h in cfg.heads:
        if lay.checkpoint(h).is_file():
            typer.echo(f"checkpoint:  {lay.checkpoint(h)}")
    best = lay.checkpoints / "best.pt"
    if best.exists():
        typer.echo(f"best on dev: {best} -> {best.resolve().name}")
    if result.timings:
        console.print(
            "timings (wall, cpu): "
            + ", ".join(
                f"{k} {v:.1f} s / {result.cpu_timings.get(k, 0.0):.1f} s"
                for k, v in result.timings.items()
            ),
            highlight=False,
        )


def _make_command(stages: tuple[str, ...], doc: str):
    def command(ctx: typer.Context, **kwargs) -> None:
        # options given before the subcommand (`gifsent-train --preset demo run`) count too;
        # the subcommand's own options win
        merged = dict(ctx.obj or {})
        merged.update({k: v for k, v in kwargs.items() if v is not None and v is not False})
        for k, v in kwargs.items():
            merged.setdefault(k, v)
        _execute(stages, merged)

    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    ] + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
        for name, (ann, default) in _OPTIONS.items()
    ]
    command.__signature__ = inspect.Signature(params)
    command.__doc__ = doc
    return command


_STAGE_DOCS = {
    "run": (("scores", "features", "search", "report"), "Run every stage (the default command)."),
    "scores": (("scores",), "Fit Bradley-Terry scores per emotion and make the 80/10/10 splits."),
    "features": (("features",), "Encode the GIFs into the shared feature cache."),
    "search": (
        ("search",),
        "Randomized search per head, seed repeats; save the best checkpoints and best.pt.",
    ),
    "report": (("report",), "Write Table 1, the per-emotion table and the figures."),
}
for _name, (_stages, _doc) in _STAGE_DOCS.items():
    app.command(_name, help=_doc)(_make_command(_stages, _doc))


def _callback(ctx: typer.Context, version: bool = False, **kwargs) -> None:
    if ctx.invoked_subcommand is None:
        _execute(("scores", "features", "search", "report"), dict(kwargs))
    else:
        ctx.obj = {k: v for k, v in kwargs.items() if v is not None and v is not False}


_cb_params = [
    inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
    inspect.Parameter(
        "version",
        inspect.Parameter.KEYWORD_ONLY,
        default=version_option("gifsent-train"),
        annotation=bool,
    ),
] + [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
    for name, (ann, default) in _OPTIONS.items()
]
_callback.__signature__ = inspect.Signature(_cb_params)
app.callback(invoke_without_command=True)(_callback)


@app.command("fetch")
def fetch_command(
    dest: Path = typer.Option(
        None, "--dest", help="Target folder; default $GIFSENT_HOME/data/gifgif."
    ),
    base_url: str = typer.Option(None, "--base-url", help="Where the two files are served."),
    images: bool = typer.Option(
        True, "--images/--no-images", help="Also fetch the 5.3 GiB GIF tar."
    ),
    extract: bool = typer.Option(
        True, "--extract/--no-extract", help="Extract the tar into DEST/gifs."
    ),
) -> None:
    """Download GIFGIF's votes and GIFs (resumable, verified, safely extracted)."""
    from gifsent_infer.paths import gifgif_dir
    from gifsent_train.fetch import DEFAULT_BASE_URL, fetch_gifgif

    console = _console()
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    tasks: dict[str, int] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    ) as bar:

        def progress(label: str, done: int, total: int | None) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        try:
            res = fetch_gifgif(
                dest or gifgif_dir(),
                base_url or DEFAULT_BASE_URL,
                images=images,
                extract=extract,
                progress=progress,
            )
        except Exception as e:
            console.print(f"[red]error:[/red] {type(e).__name__}: {e}", highlight=False)
            raise typer.Exit(1) from None
    typer.echo(f"votes:  {res.votes}")
    if res.images_dir:
        typer.echo(f"gifs:   {res.images_dir}")
    typer.echo(f"next:   gifsent-train --data {res.dest}")


@app.command("demo-data")
def demo_data_command(
    out: Path = typer.Argument(..., help="Folder to write the demo dataset into."),
    n_gifs: int = typer.Option(600, "--n-gifs", help="Number of procedural GIFs."),
    comparisons: int = typer.Option(100, "--comparisons", help="Comparisons per GIF per emotion."),
    seed: int = typer.Option(0, "--seed"),
    temporal_share: float = typer.Option(
        0.5,
        "--temporal-share",
        min=0.0,
        max=1.0,
        help="Share of each emotion's visible signal that only motion/timing shows (0: none).",
    ),
    moment_share: float = typer.Option(
        0.3,
        "--moment-share",
        min=0.0,
        max=1.0,
        help="Share of GIFs whose facial expression shows only in a short part of the timeline.",
    ),
) -> None:
    """Write a procedural dataset in GIFGIF's format (votes CSV.gz, GIFs, true strengths)."""
    from gifsent_train.demo_data import make_demo_data

    try:
        res = make_demo_data(
            out,
            n_gifs=n_gifs,
            comparisons_per_gif=comparisons,
            seed=seed,
            temporal_share=temporal_share,
            moment_share=moment_share,
        )
    except Exception as e:
        _console().print(f"[red]error:[/red] {type(e).__name__}: {e}", highlight=False)
        raise typer.Exit(1) from None
    typer.echo(f"demo data: {out}" + (f" ({res})" if isinstance(res, (str, Path)) else ""))
    typer.echo(f"next:      gifsent-train --preset demo --data {out}")


def _add_collect() -> None:
    from gifsent_train.collect.cli import app as collect_app

    app.add_typer(collect_app, name="collect")


_add_collect()


def main(argv: list[str] | None = None) -> None:
    app(args=argv if argv is not None else sys.argv[1:], prog_name="gifsent-train")
