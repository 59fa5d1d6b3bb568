"""The service's own settings: what a scoring option is not (queue, batching wait, timeouts,
auth, CORS). Scoring options (model, backend, limits, top, and batch_size: the most GIFs
per model call across requests) stay in gifsent_infer.options.ScoreOptions;
`create_app(options, settings)` takes both."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gifsent_infer.options import OptionsError

__all__ = ["ServeOptions"]


@dataclass(frozen=True)
class ServeOptions:
    # How long the first decoded input of a batch waits for the others being decoded. Only
    # inputs already admitted and decoding are waited for: a lone request never waits.
    batch_wait_ms: float = 5.0
    # Inputs admitted at once (decoding, waiting or in the model); past it new requests get
    # 503 + Retry-After, so excess load becomes fast refusals instead of latency and memory.
    max_queue: int = 64
    # Seconds a request may take from admission to its answer (504 past it).
    request_timeout: float = 60.0
    # Seconds SIGTERM waits for requests in flight before the process exits (0).
    drain_timeout: float = 30.0
    # The bearer token every request but the health probes must carry; None: no auth.
    auth_token: str | None = field(default=None, repr=False)
    # Origins allowed by CORS; empty (the default): no CORS headers at all.
    cors_origins: tuple[str, ...] = ()
    # Seconds a refused (503) client is told to wait.
    retry_after: int = 1

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise OptionsError(what)

        need(self.batch_wait_ms >= 0, "--batch-wait-ms must be 0 or more")
        need(self.max_queue >= 1, "--max-queue must be at least 1")
        need(self.request_timeout > 0, "--request-timeout must be more than 0 seconds")
        need(self.drain_timeout >= 0, "--drain-timeout must be 0 or more seconds")
        need(self.auth_token is None or len(self.auth_token) >= 1, "the auth token is empty")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))

    def replace(self, **changes: Any) -> ServeOptions:
        return dataclasses.replace(self, **changes)

    def public(self) -> dict[str, Any]:
        """The settings for /v1/info: the token's presence, never the token."""
        d = dataclasses.asdict(self)
        d["auth_token"] = self.auth_token is not None
        d["cors_origins"] = list(self.cors_origins)
        return d
