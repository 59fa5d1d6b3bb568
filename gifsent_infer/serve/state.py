"""What the service's endpoints share: ApiError (an answer other than 200, as one line of
JSON), ServiceState (scorer, batcher, metrics, settings; admission and timeouts) and
read_body (the body under a byte limit, checked while it streams)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from gifsent_infer.options import ScoreOptions
from gifsent_infer.running.scorer import Scorer, ScoreResult, Source
from gifsent_infer.serve.batcher import Batcher, QueueFull
from gifsent_infer.serve.metrics import Metrics
from gifsent_infer.serve.settings import ServeOptions

__all__ = ["ApiError", "ServiceState", "read_body", "within"]

if sys.version_info >= (3, 11):

    async def within(aw: Awaitable[Any], seconds: float) -> Any:
        """`await aw`, TimeoutError past `seconds`: a deadline on this task, where
        asyncio.wait_for would wrap `aw` in a task of its own (a request paid two)."""
        async with asyncio.timeout(seconds):
            return await aw

else:  # Python 3.10: no asyncio.timeout

    async def within(aw: Awaitable[Any], seconds: float) -> Any:
        return await asyncio.wait_for(aw, seconds)


class ApiError(Exception):
    """An answer other than 200: status, one-line message, kind, extra headers/fields."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, " ".join(message.split()), kind
        self.headers, self.extra = headers or {}, extra

    def response(self) -> JSONResponse:
        body = {"error": self.message, "kind": self.kind, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass
class ServiceState:
    """What the endpoints share: the scorer, its batcher, metrics and settings."""

    options: ScoreOptions
    settings: ServeOptions
    metrics: Metrics
    scorer: Scorer | None = None
    batcher: Batcher | None = None
    draining: bool = False
    # per-query objects (app.py): the Readable of each (top, percentiles, clip) asked for,
    # the RowExtras of each ("intervals", level); both bounded by what validation lets in
    readables: dict[tuple, Any] = field(default_factory=dict)

    def ready(self) -> tuple[bool, str]:
        if self.batcher is None:
            return False, "model not loaded"
        if self.draining:
            return False, "shutting down"
        if self.batcher.full:
            return False, "queue full"
        return True, "ready"

    def live_batcher(self) -> Batcher:
        if self.batcher is None:
            raise ApiError(503, "the model is not loaded yet", "NotReady", {"Retry-After": "1"})
        return self.batcher

    async def score(self, sources: Sequence[Source]) -> list[ScoreResult]:
        """Admit, score and release `sources`: QueueFull -> 503, past the timeout -> 504."""
        batcher = self.live_batcher()
        try:
            batcher.admit(len(sources))
        except QueueFull as e:
            retry = str(self.settings.retry_after)
            raise ApiError(
                503, f"busy: {e}; retry later", "QueueFull", {"Retry-After": retry}
            ) from None
        try:
            results = await within(batcher.score(sources), self.settings.request_timeout)
        except asyncio.TimeoutError:
            raise ApiError(
                504, f"not scored within {self.settings.request_timeout:g} s", "Timeout"
            ) from None
        finally:
            batcher.release(len(sources))
        self.metrics.inputs.inc(len(results))
        for r in results:
            if not r.ok:
                self.metrics.input_errors.labels(r.error_kind or "error").inc()
        return results


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (Content-Length
    is checked first, then every chunk as it arrives), 408 when it takes over `timeout`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body of {declared} bytes is over the {limit} byte limit", "TooLarge")

    async def collect() -> bytes:
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise ApiError(413, f"body is over the {limit} byte limit", "TooLarge")
        return bytes(buf)

    try:
        return await within(collect(), timeout)
    except asyncio.TimeoutError:
        raise ApiError(408, f"body not received within {timeout:g} s", "Timeout") from None
