"""`gifsent-export` command line (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from gifsent_infer import __version__

app = typer.Typer(help="gifsent-export: not built yet.", add_completion=False, no_args_is_help=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gifsent-export {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    typer.echo("gifsent-export: not built yet", err=True)
    raise typer.Exit(2)


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="gifsent-export")
