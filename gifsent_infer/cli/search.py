"""`gifsent-infer search`: rank a scores file's GIFs by an emotion or a profile."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from gifsent_infer.cli.app import app
from gifsent_infer.cli.common import err, fail, lossless_stdout, stdout_console
from gifsent_infer.contract import EMOTIONS


@app.command()
def search(
    scores: str | None = typer.Argument(
        None,
        help="A scores file written by `gifsent-infer` (CSV, JSONL, JSON or Parquet), or the "
        "Delta table `gifsent-infer ray` writes (a folder or an s3://... URI); not needed with "
        "--embeddings.",
    ),
    emotion: str | None = typer.Option(
        None, "--emotion", "-e", help="Rank by this emotion, highest first."
    ),
    like: str | None = typer.Option(
        None,
        "--like",
        help="Rank by closeness to a profile, e.g. happiness=0.9,surprise=0.6; with "
        "--embeddings, a GIF (path in the index, or a file with the same content).",
    ),
    top: int = typer.Option(20, "--top", "-n", min=1, help="How many GIFs to show."),
    by: str = typer.Option(
        "score",
        "--by",
        help="With --emotion: rank by the score, or by `lower`, the lower end of its "
        "calibrated interval (files scored with --intervals), so confident GIFs come first.",
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
    embeddings: Path | None = typer.Option(
        None,
        "--embeddings",
        help="An embeddings folder (`gifsent-infer ... --embeddings DIR`): --like GIF ranks "
        "its GIFs by cosine similarity of their encoder features.",
    ),
    method: str = typer.Option(
        "auto",
        "--method",
        help="With --embeddings: exact (numpy), ann (faiss HNSW, the `ann` extra) or auto "
        "(exact up to 100,000 GIFs).",
    ),
) -> None:
    """Rank the GIFs of a scores file by one emotion or by closeness to an emotion profile,
    or (--embeddings DIR --like GIF) by similarity of their encoder features."""
    from gifsent_infer.reading.inputs import display_name
    from gifsent_infer.views.search import SearchError, parse_profile
    from gifsent_infer.views.search import search as run_search
    from gifsent_infer.writing.outputs import ScoresFileError

    if fmt not in ("table", "csv", "json"):
        raise fail(f"--format must be table, csv or json, not {fmt!r}")
    if embeddings is not None:
        _similar(embeddings, like, top, fmt, method)
        return
    if scores is None:
        raise fail("give a scores file (or --embeddings DIR --like GIF)")
    _warn_if_demo(scores)
    try:
        profile = parse_profile(like) if like is not None else None
        hits = run_search(scores, emotion=emotion, like=profile, top=top, by=by)
    except (SearchError, ScoresFileError) as e:
        raise fail(str(e)) from None
    value_name = emotion.strip().lower() if emotion else "distance"
    ranked_name = value_name + "_lo" if emotion and by == "lower" else value_name
    lossless_stdout()  # paths that are not UTF-8 come out as their own bytes
    if fmt == "json":
        typer.echo(
            json.dumps(
                [
                    {
                        "rank": h.rank,
                        "path": h.path,
                        "sha256": h.sha256,
                        ranked_name: h.value,
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
        rest = [e for e in EMOTIONS if e != ranked_name]
        w.writerow(["rank", "path", "sha256", ranked_name, *rest])
        for h in hits:
            w.writerow(
                [h.rank, h.path, h.sha256, repr(h.value), *(repr(h.scores[e]) for e in rest)]
            )
    else:
        shown = [value_name] if emotion else list(profile or {})
        table = Table(title=f"{len(hits)} GIF(s) from {escape(str(scores))}")
        table.add_column("#", justify="right")
        table.add_column("path", overflow="fold")
        if not emotion or ranked_name != value_name:
            table.add_column(ranked_name, justify="right")
        for e in shown:
            table.add_column(e, justify="right")
        table.add_column("top emotions")
        for h in hits:
            top3 = ", ".join(e for e, _ in sorted(h.scores.items(), key=lambda kv: -kv[1])[:3])
            cells = [str(h.rank), escape(display_name(h.path))]
            if not emotion or ranked_name != value_name:
                cells.append(f"{h.value:.4f}")
            cells += [f"{h.scores[e]:.4f}" for e in shown]
            table.add_row(*cells, top3)
        stdout_console().print(table)
    if not hits:
        err.print("[yellow]no scored GIFs in this file[/]")


def _warn_if_demo(scores: Path) -> None:
    """The demo warning from the score file's own provenance (sidecar or Parquet metadata)."""
    from gifsent_infer.contract import DEMO_WARNING
    from gifsent_infer.writing.provenance import read_score_metadata

    meta = read_score_metadata(scores)
    if meta and meta.get("is_demo"):
        err.print(f"[bold yellow]WARNING: {escape(DEMO_WARNING)}[/] (per {escape(str(scores))})")


def _similar(folder: Path, like: str | None, top: int, fmt: str, method: str) -> None:
    from gifsent_infer.reading.inputs import display_name
    from gifsent_infer.views.similar import SimilarError, similar

    if not like:
        raise fail("--embeddings needs --like GIF: the GIF to find similar ones to")
    try:
        hits = similar(folder, like, top=top, method=method)
    except SimilarError as e:
        raise fail(str(e)) from None
    _warn_if_demo(folder / "meta.json")
    lossless_stdout()
    if fmt == "json":
        rows = [
            {"rank": h.rank, "path": h.path, "sha256": h.sha256, "similarity": h.similarity}
            for h in hits
        ]
        typer.echo(json.dumps(rows, indent=1))
    elif fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["rank", "path", "sha256", "similarity"])
        for h in hits:
            w.writerow([h.rank, h.path, h.sha256, repr(h.similarity)])
    else:
        table = Table(title=f"{len(hits)} GIF(s) like {escape(like)}")
        table.add_column("#", justify="right")
        table.add_column("path", overflow="fold")
        table.add_column("cosine", justify="right")
        for h in hits:
            table.add_row(str(h.rank), escape(display_name(h.path)), f"{h.similarity:.4f}")
        stdout_console().print(table)
