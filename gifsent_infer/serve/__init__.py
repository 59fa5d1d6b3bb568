"""The scoring service: `create_app(ScoreOptions(...))` is an ASGI app (FastAPI) that scores
GIFs sent over HTTP, batching the inputs of concurrent requests into shared model calls
(app.py, batcher.py), with Prometheus metrics (metrics.py), the KServe v2 protocol
(kserve.py), a uvicorn runner that drains on SIGTERM (runner.py) and a Ray Serve deployment
(ray_app.py). Needs the `serve` extra: pip install 'gifsent[cpu,serve]'."""
