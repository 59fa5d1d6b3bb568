"""`gifsent-infer serve`: the scoring service over HTTP (gifsent_infer.serve), on uvicorn or
as a Ray Serve deployment (--ray)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer
from rich.markup import escape

from gifsent_infer.cli.app import app
from gifsent_infer.cli.common import err, exit_code_of, fail, print_provenance, short
from gifsent_infer.cli.scoreflags import check_engine_choices, flag, options_from

# SIGTERM (a service manager) and SIGINT (Ctrl-C) stop a --ray deployment the same way:
# Ray Serve and the Ray instance shut down, the command exits 0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_SERVE_EXTRA = "the service needs the serve extra: pip install 'gifsent[cpu,serve]'"

# ScoreOptions fields the service does not offer as flags, and why (the options test reads
# this: every other field is a flag with the field's default).
NOT_SERVED = {
    "embeddings": "a folder of vectors is a batch output, not an HTTP response",
    "timeline": "the service's rows do not carry the timeline yet: score with the CLI",
    "segments": "goes with the timeline",
}


def _read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise fail(f"--auth-token-file {path}: {e.strerror or e}") from None
    if not token:
        raise fail(f"--auth-token-file {path} is empty")
    return token


@app.command("serve")
def serve(
    model: Path | None = flag("model", "-m"),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind (loopback unless you say otherwise)."
    ),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="TCP port."),
    device: str = flag("device", "-d"),
    backend: str = flag("backend"),
    precision: str = flag("precision"),
    threads: int | None = flag("threads", min=1),
    workers: int | None = flag("workers", min=0),
    memory_budget: str = flag("memory_budget"),
    max_bytes: int = flag(
        "max_bytes",
        min=1,
        help="Largest request body, input or download in bytes (413 past it, checked while "
        "the body streams).",
    ),
    timeout: float = flag("timeout", min=0.1),
    allow_private_urls: bool = flag("allow_private_urls"),
    top: int = flag("top", "-k", min=0, max=17, help="Default `top` of each row (query: top)."),
    percentiles: bool = flag("percentiles"),
    clip: bool = flag("clip"),
    intervals: float | None = flag("intervals", min=0.0, max=1.0),
    batch_size: int = flag(
        "batch_size",
        "--max-batch",
        "-b",
        min=1,
        help="Most GIFs per model call, across concurrent requests.",
    ),
    batch_wait_ms: float = typer.Option(
        5.0,
        "--batch-wait-ms",
        min=0,
        help="Longest a decoded GIF waits for others being decoded (a lone request never waits).",
    ),
    max_queue: int = typer.Option(
        64,
        "--max-queue",
        min=1,
        help="Inputs in flight at once; past it requests get 503 + Retry-After.",
    ),
    request_timeout: float = typer.Option(
        60.0, "--request-timeout", min=0.1, help="Seconds a request may take (504 past it)."
    ),
    drain_timeout: float = typer.Option(
        30.0,
        "--drain-timeout",
        min=0,
        help="On SIGTERM: seconds to finish requests in flight before exiting (0).",
    ),
    auth_token_file: Path | None = typer.Option(
        None,
        "--auth-token-file",
        help="File holding a bearer token that every request but health probes must send.",
    ),
    cors_origin: list[str] = typer.Option(
        [],
        "--cors-origin",
        help="Allow browser calls from this origin (repeatable; off by default).",
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
    ray: bool = typer.Option(
        False, "--ray", help="Run as a Ray Serve deployment (needs the ray extra)."
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster with --ray (default: $RAY_ADDRESS or a new one)."
    ),
    replicas: int = typer.Option(1, "--replicas", min=1, help="Ray Serve replicas with --ray."),
    connect_timeout: float = typer.Option(
        30.0,
        "--connect-timeout",
        min=0.1,
        help="With --ray --address: seconds to reach and join the cluster (exit 2 past it).",
    ),
) -> None:
    """Serve scoring over HTTP: POST /v1/score, KServe v2, /metrics, OpenAPI at /docs.

    Binds 127.0.0.1:8000 by default. Requests are batched across clients; a full queue
    answers 503, a slow request 504. SIGTERM drains and exits 0.
    """
    given = dict(locals())
    from gifsent_infer.reading.budget import return_freed_memory

    options, settings = _options(given)
    return_freed_memory()  # RSS follows the decode budget, not the number of threads
    if ray:
        _serve_on_ray(options, settings, address, replicas, host, port, connect_timeout)
        return
    _serve_local(options, settings, host, port, log_level)


def _options(a: dict):
    """ScoreOptions and ServeOptions from the command's arguments (usage errors: exit 2)."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        from gifsent_infer.serve.settings import ServeOptions
    except ImportError:
        raise fail(_SERVE_EXTRA) from None
    from gifsent_infer.options import OptionsError

    options = options_from(a)
    check_engine_choices(options)
    try:
        settings = ServeOptions(
            batch_wait_ms=a["batch_wait_ms"],
            max_queue=a["max_queue"],
            request_timeout=a["request_timeout"],
            drain_timeout=a["drain_timeout"],
            auth_token=_read_token(a["auth_token_file"]),
            cors_origins=tuple(a["cors_origin"]),
        )
    except OptionsError as e:
        raise fail(str(e)) from None
    return options, settings


def _serve_local(options, settings, host: str, port: int, log_level: str) -> None:
    from gifsent_infer.running.extras import ExtrasError
    from gifsent_infer.running.readable import Readable, ReadableError
    from gifsent_infer.running.scorer import DeviceError, ModelError, Scorer
    from gifsent_infer.serve.app import create_app
    from gifsent_infer.serve.runner import run_server

    try:
        scorer = Scorer.from_options(options)
        Readable.for_model(scorer.document, percentiles=options.percentiles)
    except ImportError as e:
        raise fail(str(e)) from None
    except (ModelError, DeviceError, ReadableError, ExtrasError) as e:
        raise fail(str(e), exit_code_of(e)) from None
    print_provenance(scorer.document, False)
    err.print(
        f"model {escape(str(scorer.model_path))} [dim](id {short(scorer.model_id)})[/], "
        f"backend {scorer.backend}, provider {escape(scorer.provider)}"
    )
    err.print(f"serving on http://{host}:{port} (API docs at /docs); SIGTERM drains and exits")
    app_ = create_app(options, settings, scorer=scorer)
    state = app_.state.gifsent

    def on_stop() -> None:
        state.draining = True

    if not run_server(
        app_,
        host=host,
        port=port,
        drain_timeout=settings.drain_timeout,
        log_level=log_level,
        on_stop=on_stop,
    ):
        raise fail(f"could not serve on {host}:{port} (see the message above)")


def _serve_on_ray(
    options, settings, address, replicas: int, host: str, port: int, connect_timeout: float
) -> None:
    try:
        import ray
        from ray import serve as ray_serve

        from gifsent_infer.scaleout.ray_cluster import ClusterError, connect_ray
        from gifsent_infer.serve.ray_app import deploy
    except ImportError:
        raise fail("--ray needs the ray extra: pip install 'gifsent[cpu,serve,ray]'") from None
    try:  # --address, else $RAY_ADDRESS, else a new local instance (never a stray cluster)
        connect_ray(ray, address, timeout=connect_timeout)
    except ClusterError as e:
        raise fail(str(e), exit_code_of(e)) from None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    try:
        url = deploy(options, settings, replicas=replicas, host=host, port=port)
        err.print(f"Ray Serve: {replicas} replica(s) of gifsent on {url}; Ctrl-C stops them")
        while not stop.wait(1.0):
            pass
        err.print("stopping: Ray Serve and the replicas shut down")
    finally:
        ray_serve.shutdown()
        ray.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
