"""The service's Prometheus metrics, in a registry of its own per app (two apps in one
process, as in the tests, never collide): requests by endpoint and status, input errors by
kind, latency and batch-size histograms, model calls, queue depth, decode memory in use and
the process's RSS (prometheus_client's process collector)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, cpu, open fds
        self.requests = Counter(
            "gifsent_requests",
            "HTTP requests by endpoint and status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.input_errors = Counter(
            "gifsent_input_errors", "Inputs that got an error row, by kind.", ["kind"], registry=r
        )
        self.inputs = Counter("gifsent_inputs", "Inputs scored (ok or error).", registry=r)
        self.latency = Histogram(
            "gifsent_request_seconds",
            "Request latency by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "gifsent_batch_size", "GIFs per model call.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.model_calls = Counter("gifsent_model_calls", "Model calls.", registry=r)
        self.queue_depth = Gauge(
            "gifsent_queue_depth", "Inputs admitted and not yet answered.", registry=r
        )
        self.decode_memory = Gauge(
            "gifsent_decode_memory_bytes", "Bytes reserved by decoding now.", registry=r
        )

        # the labelled children of requests/latency, looked up once (labels() takes a lock
        # and builds a key each call); endpoints and statuses are bounded sets
        self._request_children: dict[tuple[str, int], tuple] = {}

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        children = self._request_children.get((endpoint, status))
        if children is None:
            children = (
                self.requests.labels(endpoint, str(status)),
                self.latency.labels(endpoint),
            )
            self._request_children[(endpoint, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def track_decode_memory(self, used: Callable[[], float]) -> None:
        self.decode_memory.set_function(used)

    def render(self) -> bytes:
        return generate_latest(self.registry)
