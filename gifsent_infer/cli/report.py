"""`gifsent-infer report`: a self-contained HTML report of a scores file or Ray folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from gifsent_infer.cli.app import app
from gifsent_infer.cli.common import err, fail, run_progress


@app.command()
def report(
    scores: str = typer.Argument(
        ...,
        help="A scores file written by `gifsent-infer` (CSV, JSONL, JSON or Parquet), or the "
        "Delta table `gifsent-infer ray` writes (a folder or an s3://... URI).",
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
    from gifsent_infer.views.report import ReportError, write_report

    progress = run_progress(
        "auto", quiet=not embed, label="thumbnails"
    )  # thumbnails are the slow part
    started = False

    def on_thumb(done: int, total: int) -> None:
        nonlocal started
        if not started:
            progress.start(total)
            started = True
        progress.advance(True)

    try:
        s = write_report(
            scores,
            out,
            model=model,
            top_n=top_n,
            page_size=page_size,
            embed=embed,
            title=title,
            on_thumb=on_thumb,
        )
    except ReportError as e:
        raise fail(str(e)) from None
    finally:
        if started:
            progress.stop()
    for note in s.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    embedded = f", {s.embedded} thumbnails embedded" if embed else ""
    err.print(
        f"report of {s.rows} rows ({s.ok} scored, {s.errors} errors{embedded}), "
        f"{s.bytes / 1e6:.1f} MB"
    )
    typer.echo(str(s.out))
