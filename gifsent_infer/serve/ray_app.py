"""The same service as a Ray Serve deployment, for more than one machine: Ray Serve routes
HTTP requests over `replicas` copies of `create_app`'s app (each with its own model, batcher
and queue limits) and restarts a replica whose process dies; requests in flight on it fail
with a 5xx, the others go on.

    from gifsent_infer.serve.ray_app import deploy
    handle_url = deploy(ScoreOptions(model="m.onnx"), ServeOptions(), replicas=2)

Needs the `ray` extra (ray[serve]). Ray is imported only here.
"""

from __future__ import annotations

from typing import Any

from gifsent_infer.options import ScoreOptions
from gifsent_infer.serve.app import create_app
from gifsent_infer.serve.settings import ServeOptions

__all__ = ["DEPLOYMENT", "build_deployment", "deploy"]

DEPLOYMENT = "gifsent"


def build_deployment(
    options: ScoreOptions,
    settings: ServeOptions,
    *,
    replicas: int = 1,
    replica_cpus: float = 1.0,
) -> Any:
    """The bound Ray Serve application: `replicas` copies of the FastAPI app."""
    from ray import serve

    def build_app() -> Any:  # run on each replica: its own scorer, batcher and metrics
        return create_app(options, settings)

    replica = serve.deployment(
        name=DEPLOYMENT,
        num_replicas=replicas,
        ray_actor_options={"num_cpus": replica_cpus},
        # Ray Serve's own queue per replica; ours (settings.max_queue) answers 503 first
        max_ongoing_requests=max(settings.max_queue, 1),
        health_check_period_s=2,
        health_check_timeout_s=30,
    )(serve.ingress(build_app)())
    return replica.bind()


def deploy(
    options: ScoreOptions,
    settings: ServeOptions,
    *,
    replicas: int = 1,
    replica_cpus: float = 1.0,
    host: str = "127.0.0.1",
    port: int = 8000,
    blocking: bool = False,
) -> str:
    """Start Ray Serve's HTTP proxy on host:port and run the deployment; returns its URL.
    Ray must be initialised (ray.init) by the caller."""
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    serve.run(
        build_deployment(options, settings, replicas=replicas, replica_cpus=replica_cpus),
        name=DEPLOYMENT,
        route_prefix="/",
        blocking=blocking,
    )
    return f"http://{host}:{port}"
