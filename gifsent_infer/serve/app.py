"""`create_app(options, settings)`: the scoring service as an ASGI app (FastAPI).

    from gifsent_infer.options import ScoreOptions
    from gifsent_infer.serve.app import create_app
    app = create_app(ScoreOptions(model="gifsent-rnn.onnx"))   # uvicorn, or mount it

Endpoints: POST /v1/score (one raw body, multipart files, or JSON {"urls": [...]}; query
top/percentiles/clip/intervals) answers the rows of `gifsent-infer -f json`, made by the same
row code (the gate hands it straight to its handler: the hot path skips FastAPI's router); GET /v1/info, /healthz, /readyz, /metrics; the KServe v2 protocol (kserve.py); OpenAPI
at /docs. Every error is one line of JSON, {"error": ..., "kind": ...}, with a clear status:
400 bad request, 401 no/wrong token, 413 body too large (checked while it streams), 415
content type, 422 unreadable media (kind: the reader's error class), 431 headers over
16 KiB, 503 + Retry-After when the queue is full, 504 past the request timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from gifsent_infer.contract import ContractError
from gifsent_infer.options import ScoreOptions
from gifsent_infer.reading.inputs import InputItem, is_url
from gifsent_infer.running.extras import RowExtras
from gifsent_infer.running.readable import (
    Readable,
    ReadableError,
    demo_warning,
    provenance_line,
    scale_note,
)
from gifsent_infer.running.rows import COLUMNS
from gifsent_infer.running.scorer import Scorer, ScoreResult, Source
from gifsent_infer.serve.batcher import Batcher
from gifsent_infer.serve.kserve import add_kserve_routes
from gifsent_infer.serve.metrics import CONTENT_TYPE_LATEST, Metrics
from gifsent_infer.serve.settings import ServeOptions
from gifsent_infer.serve.state import ApiError, ServiceState, read_body
from gifsent_infer.version import __version__
from gifsent_infer.writing.outputs import json_row

__all__ = ["MEDIA_TYPES", "ServeOptions", "create_app"]

log = logging.getLogger("gifsent.serve")

# Raw bodies the readers take (gifsent_infer.reading.media sniffs the bytes, so the type only
# has to be plausible); a request without a Content-Type is sniffed the same way.
MEDIA_TYPES = frozenset(
    {
        "image/gif",
        "image/webp",
        "image/png",
        "image/apng",
        "video/mp4",
        "video/quicktime",
        "video/webm",
        "video/x-matroska",
        "application/octet-stream",
    }
)
JSON_BODY_LIMIT = 1 << 20  # {"urls": [...]}: a megabyte of URLs is plenty
MAX_HEADER_BYTES = 16 * 1024  # all request headers together (431 past it)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _replay(request: Request, body: bytes) -> Request:
    """A Request whose body is `body` (already read under the limit) for the form parser."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


async def _multipart_sources(request: Request, body: bytes, max_files: int) -> list[Source]:
    try:
        form = await _replay(request, body).form(max_files=max_files, max_fields=max_files)
    except (StarletteHTTPException, ValueError) as e:
        detail = getattr(e, "detail", None) or str(e)
        raise ApiError(400, f"bad multipart body: {detail}", "BadRequest") from None
    sources: list[Source] = []
    for i, (_, value) in enumerate(form.multi_items()):
        if isinstance(value, UploadFile):
            name = value.filename or f"<file {i}>"
            sources.append(InputItem(name, data=await value.read()))
    await form.close()
    if not sources:
        raise ApiError(400, "the multipart body holds no files", "BadRequest")
    return sources


def _url_sources(body: bytes, max_urls: int) -> list[Source]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"invalid JSON: {e}", "BadRequest") from None
    urls = doc.get("urls") if isinstance(doc, dict) else None
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise ApiError(400, 'JSON body must be {"urls": ["https://...", ...]}', "BadRequest")
    if len(urls) > max_urls:
        raise ApiError(413, f"{len(urls)} URLs; at most {max_urls} a request", "TooLarge")
    bad = next((u for u in urls if not is_url(u)), None)
    if bad is not None:  # never a local path: the service reads only what it is sent
        raise ApiError(400, f"not an http(s) URL: {bad[:200]!r}", "BadRequest")
    return [InputItem(u, url=u) for u in urls]


async def request_sources(request: Request, state: ServiceState) -> list[Source]:
    """The inputs of a /v1/score request, by content type (415 for anything else)."""
    media = _media_type(request)
    limit, timeout = state.options.max_bytes, state.settings.request_timeout
    if media == "multipart/form-data":
        body = await read_body(request, limit, timeout)
        return await _multipart_sources(request, body, state.settings.max_queue)
    if media == "application/json":
        body = await read_body(request, min(limit, JSON_BODY_LIMIT), timeout)
        return _url_sources(body, state.settings.max_queue)
    if media and media not in MEDIA_TYPES:
        raise ApiError(
            415,
            f"content type {media!r} not accepted: send the file itself (image/gif, "
            "video/mp4, application/octet-stream...), multipart/form-data files, or "
            'application/json {"urls": [...]}',
            "UnsupportedMediaType",
        )
    body = await read_body(request, limit, timeout)
    if not body:
        raise ApiError(400, "empty body: send a GIF (or another supported file)", "BadRequest")
    return [InputItem(request.headers.get("x-filename") or "<body>", data=body)]


def _row(result: ScoreResult, row_extras: RowExtras | None) -> dict[str, Any]:
    row = result.to_row()
    if row_extras is not None:  # the request's own interval coverage, from the same outputs
        duration = result.info.duration_s if result.info is not None else None
        row.update(row_extras.values(result.scores, result.extras, duration))
    return row


def rows_response(
    results: list[ScoreResult],
    readable: Readable,
    extra_columns: tuple[str, ...] = (),
    row_extras: RowExtras | None = None,
) -> JSONResponse:
    """The rows `gifsent-infer -f json` writes (`extra_columns`: the scorer's row extras,
    e.g. --intervals' _lo/_hi; `row_extras`: a request's other coverage); 422 when no
    input could be read."""
    columns = (*readable.columns(COLUMNS), *extra_columns)
    rows = [json_row(readable.decorate(_row(r, row_extras)), columns) for r in results]
    if all(not r.ok for r in results):
        first = results[0]
        raise ApiError(422, first.error, first.error_kind or "InputError", rows=rows)
    return JSONResponse(rows)


def _endpoint(path: str) -> str:
    """A bounded label for metrics: the route, never a client's arbitrary path."""
    if path.startswith("/v2/models/"):
        rest = path[len("/v2/models/") :].split("/", 1)
        return "/v2/models/{name}" + (f"/{rest[1]}" if len(rest) > 1 else "")
    known = {"/v1/score", "/v1/info", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"}
    return path if path in known or path.startswith("/v2/health") or path == "/v2" else "other"


class _Gate:
    """ASGI middleware: header size limit, bearer-token check (constant time) and request
    metrics."""

    def __init__(self, app: Any, state: ServiceState) -> None:
        self.app, self.state = app, state
        token = state.settings.auth_token
        self.expected = f"Bearer {token}".encode() if token is not None else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def send_tracked(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            size = sum(len(k) + len(v) for k, v in scope.get("headers") or ())
            if size > MAX_HEADER_BYTES:
                await ApiError(
                    431, f"request headers over {MAX_HEADER_BYTES} bytes", "HeadersTooLarge"
                ).response()(scope, receive, send_tracked)
                return
            if self.expected is not None and scope["path"] not in OPEN_PATHS:
                headers = dict(scope.get("headers") or ())
                given = headers.get(b"authorization", b"")
                if not hmac.compare_digest(given, self.expected):
                    await ApiError(
                        401,
                        "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                        "Unauthorized",
                        {"WWW-Authenticate": "Bearer"},
                    ).response()(scope, receive, send_tracked)
                    return
            if scope["method"] == "POST" and _route_path(scope) == SCORE_PATH:
                await self._score(scope, receive, send_tracked)
            else:
                await self.app(scope, receive, send_tracked)
        finally:
            self.state.metrics.observe_request(
                _endpoint(scope["path"]), status[0], time.perf_counter() - start
            )

    async def _score(self, scope: dict, receive: Any, send: Any) -> None:
        """POST /v1/score straight to its handler: the hot path skips FastAPI's router,
        middleware and dependency solving (a quarter of the event loop's time per request,
        profiled); the FastAPI route stays for the OpenAPI document, and errors are answered
        by the same error_response as the app's handlers."""
        try:
            response = await score_request(Request(scope, receive), self.state)
        except Exception as exc:
            response = error_response(exc, scope["path"])
        await response(scope, receive, send)


def _route_path(scope: dict) -> str:
    """The path the app's routes see: without the root path of a mount or a proxy prefix."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def error_response(exc: Exception, path: str) -> JSONResponse:
    """The one-line JSON answer for an exception out of a handler (500 for a bug)."""
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, StarletteHTTPException):
        return ApiError(exc.status_code, str(exc.detail), "HTTPError", exc.headers).response()
    log.error("internal error on %s: %r", path, exc, exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}", "InternalError").response()


def _info(state: ServiceState) -> dict[str, Any]:
    scorer = state.scorer
    assert scorer is not None
    doc = scorer.document
    return {
        "service": "gifsent",
        "version": __version__,
        "model": os.path.basename(str(scorer.model_path)),
        "model_id": scorer.model_id,
        "backend": scorer.backend,
        "provider": scorer.provider,
        "demo": doc.is_demo,
        "warning": demo_warning(doc),
        "trained_on": provenance_line(doc),
        "provenance": doc.provenance.to_dict() if doc.provenance else None,
        "scale": scale_note(doc),
        "contract": doc.to_dict(),
        "options": state.options.as_dict(),
        "serve": state.settings.public(),
        "pid": os.getpid(),
    }


# /v1/score's query options, parsed by hand: FastAPI's per-request dependency solving for
# three Query parameters cost more CPU than the rest of the route (profiled with
# benchmarks/profile_serve.py). The OpenAPI document still lists them (_SCORE_QUERY_DOC).
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
_SCORE_QUERY_DOC = [
    {
        "name": "top",
        "in": "query",
        "required": False,
        "description": "The K highest emotions.",
        "schema": {"type": "integer", "minimum": 0, "maximum": 17},
    },
    {
        "name": "percentiles",
        "in": "query",
        "required": False,
        "description": "Add <emotion>_pct columns.",
        "schema": {"type": "boolean"},
    },
    {
        "name": "clip",
        "in": "query",
        "required": False,
        "description": "Clip scores to [0, 1].",
        "schema": {"type": "boolean"},
    },
    {
        "name": "intervals",
        "in": "query",
        "required": False,
        "description": "Another calibrated coverage for the _lo/_hi columns (a service "
        "started with --intervals).",
        "schema": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    },
]


def _query_bool(value: str | None, name: str, errors: list[str]) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v in _TRUE or v in _FALSE:
        return v in _TRUE
    errors.append(f"query.{name}: Input should be a valid boolean, unable to interpret input")
    return None


def _query_top(value: str | None, errors: list[str]) -> int | None:
    if value is None:
        return None
    try:
        top = int(value.strip())
    except ValueError:
        errors.append("query.top: Input should be a valid integer, unable to parse string")
        return None
    if not 0 <= top <= 17:
        bound = "greater than or equal to 0" if top < 0 else "less than or equal to 17"
        errors.append(f"query.top: Input should be {bound}")
        return None
    return top


def _query_level(value: str | None, errors: list[str]) -> float | None:
    if value is None:
        return None
    try:
        level = float(value.strip())
    except ValueError:
        level = float("nan")
    if not 0 < level < 1:  # nan too
        errors.append("query.intervals: Input should be a number between 0 and 1 (exclusive)")
        return None
    return level


_NO_QUERY = (None, None, None, None)


def score_query(request: Request) -> tuple[Any, ...]:
    """(top, percentiles, clip, intervals) from /v1/score's query (None: not given); 422 when
    a value is invalid."""
    q = request.query_params
    if not q:
        return _NO_QUERY
    errors: list[str] = []
    top = _query_top(q.get("top"), errors)
    percentiles = _query_bool(q.get("percentiles"), "percentiles", errors)
    clip = _query_bool(q.get("clip"), "clip", errors)
    level = _query_level(q.get("intervals"), errors)
    if errors:
        raise ApiError(422, "; ".join(errors), "ValidationError")
    return top, percentiles, clip, level


def _row_extras_for(state: ServiceState, level: float | None) -> RowExtras | None:
    """The row extras of a request asking for another interval coverage (None: the
    service's own). The same RowExtras.values as `gifsent-infer --intervals LEVEL`."""
    if level is None:
        return None
    own = state.live_batcher().scorer.row_extras
    if own.level is None or own.document is None or own.document.intervals is None:
        raise ApiError(
            400,
            "query intervals: this service scores without intervals; start it with "
            "--intervals LEVEL (a model calibrated on its dev split)",
            "ExtrasError",
        )
    extras = state.readables.get(("intervals", level))
    if extras is None:
        try:
            own.document.intervals.level_index(level)
        except ContractError as e:
            raise ApiError(400, f"query intervals {level:g}: {e}", "ExtrasError") from None
        extras = dataclasses.replace(own, level=level)
        state.readables[("intervals", level)] = extras  # only calibrated levels get here
    return extras


def _readable_for(state: ServiceState, query: tuple[Any, ...]) -> Readable:
    """The Readable of a request's options: one per distinct (top, percentiles, clip)."""
    readable = state.readables.get(query)
    if readable is None:
        o, (top, percentiles, clip) = state.options, query
        try:
            readable = Readable.for_model(
                state.live_batcher().scorer.document,
                top=o.top if top is None else top,
                percentiles=o.percentiles if percentiles is None else percentiles,
                clip=o.clip if clip is None else clip,
            )
        except ReadableError as e:
            raise ApiError(400, str(e), "ReadableError") from None
        state.readables[query] = readable  # at most 18 x 3 x 3 keys
    return readable


SCORE_PATH = "/v1/score"


async def score_request(request: Request, state: ServiceState) -> Response:
    """POST /v1/score: the rows of the request's inputs (ApiError for any other answer)."""
    batcher = state.live_batcher()
    query = score_query(request)
    readable = _readable_for(state, query[:3])
    row_extras = _row_extras_for(state, query[3])
    sources = await request_sources(request, state)
    results = await state.score(sources)
    return rows_response(results, readable, batcher.scorer.row_extras.columns(), row_extras)


def _add_routes(app: FastAPI, state: ServiceState) -> None:
    @app.post(
        SCORE_PATH,
        summary="Score GIFs: raw body, multipart files or JSON URLs",
        openapi_extra={"parameters": _SCORE_QUERY_DOC},
    )
    async def score(request: Request) -> Response:  # served by _Gate._score behind the gate
        return await score_request(request, state)

    @app.get("/v1/info", summary="The model's contract and provenance")
    async def info() -> dict[str, Any]:
        state.live_batcher()
        return _info(state)

    @app.get("/healthz", summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="Model loaded and queue not full")
    async def readyz() -> JSONResponse:
        ok, why = state.ready()
        return JSONResponse({"ready": ok, "status": why}, status_code=200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    @app.exception_handler(StarletteHTTPException)
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        what = "; ".join(
            f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors()
        )
        return ApiError(422, what or "invalid request", "ValidationError").response()

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, request.url.path)


def create_app(
    options: ScoreOptions,
    settings: ServeOptions | None = None,
    *,
    scorer: Scorer | None = None,
) -> FastAPI:
    """The scoring service for `options` (the one ScoreOptions the CLI and Ray take) and the
    service `settings`. `scorer`: one already built from `options` (the CLI builds it first,
    so model errors end the command cleanly); otherwise it is built at startup."""
    settings = settings or ServeOptions()
    state = ServiceState(options, settings, Metrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = scorer or await asyncio.to_thread(Scorer.from_options, options)
        state.scorer = built
        state.metrics.track_decode_memory(lambda: built.budget.used)
        batcher = Batcher(
            built,
            state.metrics,
            max_batch=options.batch_size,
            wait_s=settings.batch_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            workers=options.workers,
        )
        batcher.start()
        state.batcher = batcher
        try:
            yield
        finally:
            state.draining = True
            await batcher.close()

    app = FastAPI(
        title="gifsent",
        version=__version__,
        description="Scores the 17 GIFGIF emotions of animated GIFs (and WebP, APNG, MP4...).",
        lifespan=lifespan,
    )
    app.state.gifsent = state
    _add_error_handlers(app)
    _add_routes(app, state)
    add_kserve_routes(app, state)
    app.add_middleware(_Gate, state=state)
    if settings.cors_origins:  # outermost: a preflight needs no token
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app
