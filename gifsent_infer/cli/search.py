"""`gifsent-infer search`: rank a scores file's GIFs by an emotion or a profile."""

from __future__ import annotations

import csv
import json
import sys

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gifsent_infer.cli.app import app
from gifsent_infer.cli.common import err, fail, lossless_stdout
from gifsent_infer.contract import EMOTIONS


@app.command()
def search(
    scores: str = typer.Argument(
        ...,
        help="A scores file written by `gifsent-infer` (CSV, JSONL or JSON), or the Delta "
        "table `gifsent-infer ray` writes (a folder or an s3://... URI).",
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
    from gifsent_infer.reading.inputs import display_name
    from gifsent_infer.views.search import SearchError, parse_profile
    from gifsent_infer.views.search import search as run_search
    from gifsent_infer.writing.outputs import ScoresFileError

    if fmt not in ("table", "csv", "json"):
        raise fail(f"--format must be table, csv or json, not {fmt!r}")
    try:
        profile = parse_profile(like) if like is not None else None
        hits = run_search(scores, emotion=emotion, like=profile, top=top)
    except (SearchError, ScoresFileError) as e:
        raise fail(str(e)) from None
    value_name = emotion.strip().lower() if emotion else "distance"
    lossless_stdout()  # paths that are not UTF-8 come out as their own bytes
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
