"""`gifsent-infer models`: the models this machine knows, and the names `--model` takes."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from gifsent_infer.cli.app import app
from gifsent_infer.cli.common import err, short, stdout_console


@app.command()
def models(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per model, as a list."),
) -> None:
    """List the models in the models folder (and $GIFSENT_MODEL): id, encoder, head,
    precision checks and provenance (demo or real). `--model NAME` takes a name or id from here."""
    from gifsent_infer import paths
    from gifsent_infer.running.catalog import list_models

    entries = list_models()
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    if not entries:
        looked = ", ".join(str(d) for d in paths.model_dirs())
        err.print(
            f"no models found (looked in ${paths.MODEL_ENV} and {escape(looked)}); "
            "`gifsent-export` writes one there, `make demo` makes a demo one"
        )
        raise typer.Exit(0)
    table = Table(box=None, pad_edge=False, show_edge=False)
    for col in ("", "name", "id", "encoder", "head", "precision", "provenance", "path"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(
            "*" if e.default else "",
            escape(e.name),
            short(e.model_id),
            escape(e.encoder or "-"),
            escape(e.head or "-"),
            escape(e.checks or "-"),
            escape(e.error or e.provenance),
            escape(str(e.path)),
        )
    stdout_console().print(table)
    err.print("* the default model; `--model NAME` takes a name or an id prefix (6+ hex digits)")
