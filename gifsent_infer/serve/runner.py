"""Run the service on uvicorn: SIGTERM (or Ctrl-C) stops accepting connections, lets the
requests in flight finish for up to the drain timeout, then the process exits 0.

uvicorn re-raises a captured SIGTERM after its shutdown (the process then dies of it, status
143); a service manager counts that as a failure, so the signal handling here only asks the
server to stop."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

__all__ = ["run_server"]

# uvicorn's own limits: h11 refuses headers still incomplete past 16 KiB (the app answers 431
# to complete ones over that), idle keep-alive connections close after 5 s.
MAX_HEADER_BYTES = 16 * 1024
KEEP_ALIVE_S = 5


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_stop = on_stop

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.stop_on_signal) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop_on_signal(self, sig: int, frame: Any) -> None:
        self.on_stop()
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting
        self.should_exit = True


def run_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    drain_timeout: float = 30.0,
    log_level: str = "info",
    on_stop: Callable[[], None] = lambda: None,
) -> bool:
    """Serve `app` until SIGTERM/SIGINT; True when it started and stopped cleanly."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=drain_timeout,
        timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        server_header=False,
        # no X-Forwarded-* rewriting: the app never reads the client address, and the
        # middleware is one more layer on every request
        proxy_headers=False,
    )
    server = _DrainingServer(config, on_stop)
    server.run()
    return server.started
