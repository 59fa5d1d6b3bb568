"""`gifsent-train collect` (the voting server) and `gifsent-train collect export` (votes CSV)."""

from __future__ import annotations

import csv
import gzip
import io
import os
import secrets
from pathlib import Path

import numpy as np
import typer

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.errors import GifsentError
from gifsent_infer.files import atomic_open

app = typer.Typer(
    help="Collect pairwise votes on your own GIFs: a GIFGIF-style voting page (and export).",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DEFAULT_DB = "votes.sqlite"
GIF_SUFFIXES = (".gif", ".webp", ".png")  # what an <img> shows


class CollectError(GifsentError, ValueError):
    """A collect setting that cannot work (no GIFs, no token beyond loopback, ...)."""

    exit_code = 2


def _console():
    from rich.console import Console

    return Console(stderr=True)


def index_images(folder: Path) -> dict[str, Path]:
    """id (file stem) -> file for every GIF (or WebP/PNG) under ``folder``; a stem seen twice
    keeps the path that sorts first."""
    if not folder.is_dir():
        raise CollectError(f"--gifs {folder}: not a folder of GIFs")
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in GIF_SUFFIXES and path.is_file() and "/" not in path.stem:
            found.setdefault(path.stem, path)
    if len(found) < 2:
        raise CollectError(f"--gifs {folder}: {len(found)} GIF(s) found, need at least 2")
    return found


def parse_emotions(text: str | None) -> tuple[str, ...]:
    if not text:
        return tuple(EMOTIONS)
    wanted = [e.strip().lower() for e in text.split(",") if e.strip()]
    unknown = [e for e in wanted if e not in EMOTIONS]
    if unknown:
        raise CollectError(
            f"--emotions: unknown {', '.join(unknown)}; choose from {', '.join(EMOTIONS)}"
        )
    return tuple(dict.fromkeys(wanted))


def prior_strengths(model: Path, gifs: dict[str, Path], emotions) -> dict[str, np.ndarray]:
    """Each GIF's strength per emotion from a gifsent model (centred per emotion); GIFs the
    model cannot read get the mean (0)."""
    from gifsent_infer.options import ScoreOptions
    from gifsent_infer.running.scorer import Scorer

    scorer = Scorer.from_options(ScoreOptions(model=str(model)))
    target = scorer.document.target
    ids = list(gifs)
    table = np.full((len(ids), len(EMOTIONS)), np.nan)
    for k, res in enumerate(scorer.score_many([str(gifs[g]) for g in ids])):
        if res.ok and res.scores:
            table[k] = [res.scores[e] for e in EMOTIONS]
    strength = np.asarray(target.to_strength(table), dtype=np.float64)
    strength -= np.nanmean(strength, axis=0, keepdims=True)
    strength = np.nan_to_num(strength, nan=0.0)
    return {e: strength[:, EMOTIONS.index(e)] for e in emotions}


def _serve(opts: dict) -> None:
    try:
        import uvicorn
    except ImportError:
        raise CollectError(
            "the voting page needs FastAPI and uvicorn: pip install 'gifsent[collect]'"
        ) from None

    from gifsent_train.collect.app import Collector, CollectSettings, create_app, is_loopback
    from gifsent_train.collect.pairs import PairChooser
    from gifsent_train.collect.storage import Store
    from gifsent_train.collect.sync import VoteFeed

    console = _console()
    if opts["gifs"] is None:
        raise CollectError("--gifs DIR is required: the folder of GIFs to vote on")
    gifs = index_images(opts["gifs"])
    emotions = parse_emotions(opts["emotions"])
    token = opts["token"] or os.environ.get("GIFSENT_COLLECT_TOKEN") or None
    if opts["sync"] < 0:
        raise CollectError(f"--sync must be >= 0 seconds, got {opts['sync']}")
    if not is_loopback(opts["host"]) and not token:
        raise CollectError(
            f"--host {opts['host']} exposes the page beyond this machine: give --token SECRET "
            "(or --token auto) so only people with the link can vote"
        )
    prior = None
    if opts["prior_model"] is not None:
        console.print(f"scoring {len(gifs)} GIFs with {opts['prior_model']} for the prior")
        prior = prior_strengths(opts["prior_model"], gifs, emotions)
    store = Store.open(opts["db"])
    store.hold_server_lock()  # SQLite: one server per file
    shared = store.dialect == "postgresql"  # several servers may share it
    if token == "auto":  # on PostgreSQL made once and kept, so every server takes one link
        make = lambda: secrets.token_urlsafe(16)  # noqa: E731
        token = store.shared_setting("access_token", make) if shared else make()
    store.set_meta("gifs_dir", str(opts["gifs"].resolve()))
    store.set_meta("emotions", ",".join(emotions))
    chooser = PairChooser(list(gifs), emotions, mode=opts["pairs"], prior=prior, seed=opts["seed"])
    settings = CollectSettings(
        gifs=gifs,
        emotions=emotions,
        token=token,
        rate_per_minute=opts["rate"],
        max_votes_per_voter=opts["max_votes"],
        secure_cookies=opts["secure_cookies"],
        sync_s=opts["sync"],
    )
    feed = VoteFeed(store) if shared and opts["sync"] > 0 else None  # --sync 0: read at start
    collector = Collector(store, chooser, settings, feed)
    loaded = collector.load_votes()
    url = f"http://{opts['host']}:{opts['port']}/" + (f"?token={token}" if token else "")
    console.print(
        f"{len(gifs)} GIFs, {len(emotions)} emotion(s), {loaded} votes so far in {store.where}; "
        f"pairs: {opts['pairs']}"
        + (f"; other servers' votes read every {opts['sync']:g} s" if feed else "")
    )
    typer.echo(f"voting page: {url}", err=False)
    typer.echo(f"progress:    http://{opts['host']}:{opts['port']}/progress")
    uvicorn.run(
        create_app(collector),
        host=opts["host"],
        port=opts["port"],
        log_level="warning",
        access_log=False,
    )


@app.callback(invoke_without_command=True)
def collect(
    ctx: typer.Context,
    gifs: Path = typer.Option(None, "--gifs", help="Folder of GIFs to vote on (ids: file stems)."),
    db: str = typer.Option(
        DEFAULT_DB, "--db", help="SQLite file, or postgresql://user@host/dbname."
    ),
    emotions: str = typer.Option(
        None, "--emotions", help="Comma list of emotions to ask about (default: all 17)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8100, "--port", help="Port to listen on."),
    pairs: str = typer.Option(
        "active", "--pairs", help="active (information gain + spanning trees) or random."
    ),
    prior_model: Path = typer.Option(
        None, "--prior-model", help="A gifsent .onnx model whose scores seed the prior."
    ),
    token: str = typer.Option(
        None,
        "--token",
        help="Access token every voter's link carries (auto: make one; on PostgreSQL made once "
        "and kept in the database, so every server shares it); needed beyond loopback. "
        "Also $GIFSENT_COLLECT_TOKEN.",
    ),
    rate: float = typer.Option(
        240.0,
        "--rate",
        help="Requests per minute per voter, counted per server process (a vote is two: page and "
        "answer).",
    ),
    max_votes: int = typer.Option(0, "--max-votes", help="Votes per voter at most (0: no cap)."),
    secure_cookies: bool = typer.Option(
        False, "--secure-cookies", help="Mark cookies Secure (when served behind HTTPS)."
    ),
    seed: int = typer.Option(None, "--seed", help="Seed of the pair choice's random parts."),
    sync: float = typer.Option(
        1.0,
        "--sync",
        help="PostgreSQL: read the votes other servers on the database took every SECONDS "
        "into this server's pair choice (0: only at start).",
        metavar="SECONDS",
    ),
) -> None:
    """Serve the voting page: two GIFs, one question, keyboard shortcuts; votes go to --db."""
    if ctx.invoked_subcommand is not None:
        return
    opts = dict(locals())
    opts.pop("ctx")
    try:
        if pairs not in ("active", "random"):
            raise CollectError(f"--pairs must be active or random, got {pairs!r}")
        _serve(opts)
    except GifsentError as e:
        _console().print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(e.exit_code) from None


def export_votes(db: str, out: Path) -> int:
    """Write GIFGIF's votes CSV (metric,left,right,choice; gzip if out ends in .gz); rows."""
    from gifsent_train.collect.storage import Store

    store = Store.open(db, migrate=False)
    n = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as raw:
        stream = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if out.suffix == ".gz" else raw
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(["metric", "left", "right", "choice"])
        for row in store.votes():
            writer.writerow([row.emotion, row.left, row.right, row.choice])
            n += 1
        text.flush()
        text.detach()
        if stream is not raw:
            stream.close()
    store.close()
    return n


@app.command("export")
def export_command(
    db: str = typer.Option(DEFAULT_DB, "--db", help="SQLite file or postgresql:// URL."),
    out: Path = typer.Option(..., "--out", help="votes.csv (or .csv.gz) to write."),
) -> None:
    """Write the votes in GIFGIF's format (metric,left,right,choice) for `gifsent-train scores`."""
    from gifsent_train.collect.storage import is_database

    try:
        if not db.startswith(("postgresql://", "postgres://")) and not is_database(db):
            raise CollectError(f"--db {db}: no votes database there")
        n = export_votes(db, out)
    except GifsentError as e:
        _console().print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(e.exit_code) from None
    typer.echo(f"{n} votes -> {out}")
