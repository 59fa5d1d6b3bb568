"""The same service as a Ray Serve deployment, for more than one machine: Ray Serve routes
HTTP requests over `replicas` copies of `create_app`'s app (each with its own model, batcher
and queue limits) and restarts a replica whose process dies; requests in flight on it fail
with a 5xx, the others go on.

    from gifsent_infer.serve.ray_app import deploy
    handle_url = deploy(ScoreOptions(model="m.onnx"), ServeOptions(), replicas=2)

Needs the `ray` extra (ray[serve]). Ray is imported only here.
"""

from __future__ import annotations

import time
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
    """Start Ray Serve's HTTP proxy on host:port and run the deployment; returns its URL once
    the proxy routes to the app (or after ROUTE_DEADLINE_S). Ray must be initialised
    (ray.init) by the caller."""
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    url = f"http://{host}:{port}"
    app = build_deployment(options, settings, replicas=replicas, replica_cpus=replica_cpus)
    if blocking:
        serve.run(app, name=DEPLOYMENT, route_prefix="/", blocking=True)
        return url
    serve.run(app, name=DEPLOYMENT, route_prefix="/", blocking=False)
    _wait_until_routed(host, port, ROUTE_DEADLINE_S)
    return url


# serve.run returns once the replicas are up, but Ray Serve's HTTP proxy learns the new
# route a moment later (404 "Path not found" until then, seconds on a loaded machine)
ROUTE_DEADLINE_S = 120.0


def _wait_until_routed(host: str, port: int, deadline_s: float) -> bool:
    """Poll the proxy's /readyz until the app answers 200 (True) or the deadline passes."""
    import urllib.request

    near = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # a wildcard bind
    near = f"[{near}]" if ":" in near else near
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never $http_proxy
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with opener.open(f"http://{near}:{port}/readyz", timeout=5) as r:
                if r.status == 200:
                    return True
        except OSError:  # refused, 404 (HTTPError) until routed, 503 until ready
            pass
        time.sleep(0.2)
    return False
