"""Where a request's time goes in `gifsent-infer serve`: the real server process, driven by
this script's load generator with one-GIF requests at concurrency 1 and 16.

    .venv/bin/python benchmarks/profile_serve.py                  # bench_infer's tiny CNN
    .venv/bin/python benchmarks/profile_serve.py --model ~/.gifsent/models/gifsent-rnn.onnx

Prints the ASGI app's own CPU per /v1/score request, measured in process with the scoring
stubbed (gate, query, body, rows and JSON, metrics: stable under load), then, per
concurrency, the server's CPU milliseconds per request by thread (event loop:
HTTP, routing, rows and JSON, metrics, hand-offs; decode threads; model thread; the
engine's own threads), medians of --repeat runs: CPU per request moves far less under
background load than wall time does. With py-spy (a profiling tool, not a gifsent
dependency: `pip install py-spy` into the venv, or --py-spy PATH) also the share of each
Python thread's samples by area: model, decode, metrics, rows (row code and JSON), gifsent
serve (the app, state and batcher), framework (FastAPI, Starlette), http (uvicorn,
httptools), asyncio (the loop itself and thread hand-offs), other.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_infer import build_model, make_gifs  # noqa: E402
from bench_serve import free_port, load, one_gif, start_server  # noqa: E402
from machine import cpu_line  # noqa: E402

# (area, substrings of a frame "function (file:line)"), first match from the leaf up wins
AREAS = [
    ("model", ("onnxruntime", "openvino", "run_batch", "session.py")),
    ("decode", ("gifio", "reading/", "PIL", "av/", "prepare")),
    ("metrics", ("prometheus_client",)),
    ("rows", ("json", "rows.py", "outputs.py", "readable.py", "render")),
    ("gifsent serve", ("gifsent_infer/serve/",)),
    ("framework", ("fastapi", "starlette", "pydantic", "multipart", "anyio")),
    ("http", ("uvicorn", "httptools", "h11", "asyncio/selector_events", "asyncio/streams")),
    ("asyncio", ("asyncio", "uvloop", "concurrent/futures", "threading.py", "queue.py")),
]


# leaf frames where a thread sits in C: uvloop's loop (polling, socket I/O, or idle: py-spy
# cannot tell without pausing the process) and a pool thread waiting for work
WAITING = ("Runner.run (asyncio/runners.py", "_worker (concurrent/futures/thread.py")


def area_of(stack: list[str]) -> str:
    if stack and any(w in stack[-1] for w in WAITING):
        return "in C: I/O or waiting"
    for frame in reversed(stack):  # leaf last in py-spy's raw format
        for name, keys in AREAS:
            if any(k in frame for k in keys):
                return name
    return "other"


def shares(raw: Path) -> dict[str, collections.Counter]:
    """Samples by thread ("MainThread" is the event loop) and area."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")  # frames[0]: 'thread (0x7f..): "Name"' with --threads
        thread = frames[0].split(":", 1)[-1].strip().strip('"') if frames else "?"
        counts[group(thread)][area_of(frames[1:])] += int(n)
    return counts


async def drive(port: int, gifs: list[bytes], clients: int, count: int) -> int:
    p = await load(port, one_gif(gifs), clients, count, 600)
    return p.count(lambda s: s == 200)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of `pid`, by thread id."""
    out, tick = {}, os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_names(pid: int, spy: str | None) -> dict[int, str]:
    """Python thread names by thread id (py-spy dump); the rest are the engine's own threads."""
    names = {pid: "MainThread"}
    if spy:
        dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True)
        for line in dump.stdout.splitlines():  # Thread 1234 (idle): "gifsent-serve-model_0"
            parts = line.split('"')
            if line.startswith("Thread ") and len(parts) > 1 and line.split()[1].isdigit():
                names.setdefault(int(line.split()[1]), parts[1])
    return names


def group(name: str) -> str:
    if name == "MainThread":
        return "event loop"
    if name.startswith("gifsent-serve-decode"):
        return "decode threads"
    if name.startswith("gifsent-serve-model"):
        return "model thread"
    return name


def measure(port, pid, gifs, clients, count, names) -> tuple[float, dict[str, float]]:
    """One run of `count` requests: (requests/s, CPU ms per request by thread group)."""
    before, t0 = thread_cpu(pid), time.perf_counter()
    ok = asyncio.run(drive(port, gifs, clients, count))
    wall, after = time.perf_counter() - t0, thread_cpu(pid)
    per: dict[str, float] = collections.defaultdict(float)
    for tid, cpu in after.items():
        per[group(names.get(tid, "engine threads"))] += (cpu - before.get(tid, 0.0)) * 1000
    return ok / wall, {k: v / max(ok, 1) for k, v in per.items()}


def profile_level(port, pid, gifs, clients, args, out: Path, spy: str | None) -> None:
    asyncio.run(drive(port, gifs, clients, 100))  # warm-up
    names = thread_names(pid, spy)
    runs = [measure(port, pid, gifs, clients, args.count, names) for _ in range(args.repeat)]
    med = {k: statistics.median(r[1].get(k, 0.0) for r in runs) for k in runs[0][1]}
    total = statistics.median(sum(r[1].values()) for r in runs)
    print(
        f"\nconcurrency {clients}: {args.repeat} x {args.count} requests, "
        f"{statistics.median(r[0] for r in runs):.0f} req/s; server CPU per request "
        f"(medians) {total:.2f} ms: "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(med.items(), key=lambda kv: -kv[1]))
        + f" [load {os.getloadavg()[0]:.2f}]"
    )
    if not spy:
        return
    raw = out / f"c{clients}.txt"
    cmd = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--threads"]
    rec = subprocess.Popen(
        [*cmd, "--nonblocking", "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    time.sleep(1.0)
    asyncio.run(drive(port, gifs, clients, args.count))
    rec.send_signal(signal.SIGINT)  # py-spy writes what it sampled
    rec.wait(60)
    if not raw.exists():
        print(f"  py-spy wrote nothing: {rec.stderr.read().decode()[-300:]}")
        return
    for thread, counts in sorted(shares(raw).items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(counts.values())
        line = ", ".join(f"{k} {v / n:.0%}" for k, v in counts.most_common())
        print(f"  py-spy, {thread} ({n} samples): {line}")
    print(f"  raw stacks: {raw}")


def app_cpu_per_request(model: Path, gif: bytes, runs: int = 7, n: int = 1000) -> list[float]:
    """CPU ms of the ASGI app's own work per POST /v1/score (gate, query, body, rows, JSON,
    metrics), in this process with the batcher's scoring replaced by a precomputed result:
    no threads, no sockets, so the figure barely moves under background load."""
    from gifsent_infer.options import ScoreOptions
    from gifsent_infer.running.scorer import Scorer
    from gifsent_infer.serve.app import create_app

    opts = ScoreOptions(model=str(model), backend="onnxruntime", precision="fp32")
    scorer = Scorer.from_options(opts)
    app = create_app(opts, scorer=scorer)
    result = scorer.score(gif)
    headers = [(b"content-type", b"image/gif"), (b"content-length", str(len(gif)).encode())]
    scope = {"type": "http", "method": "POST", "path": "/v1/score", "root_path": "",
             "query_string": b"", "headers": headers, "http_version": "1.1",
             "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 1)}  # fmt: skip

    async def one() -> None:
        messages = [{"type": "http.request", "body": gif, "more_body": False}]
        out: list[dict] = []

        async def receive() -> dict:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            out.append(message)

        await app(dict(scope), receive, send)
        assert out[0]["status"] == 200, out

    async def run() -> list[float]:
        started: asyncio.Queue = asyncio.Queue()
        await started.put({"type": "lifespan.startup"})
        life: list[dict] = []

        async def lsend(message: dict) -> None:
            life.append(message)

        asyncio.get_running_loop().create_task(app({"type": "lifespan"}, started.get, lsend))
        while not life:
            await asyncio.sleep(0.01)

        async def scored(sources):  # the batcher's answer, without the model
            return [result for _ in sources]

        app.state.gifsent.batcher.score = scored
        for _ in range(200):
            await one()
        times = []
        for _ in range(runs):
            c = time.thread_time()
            for _ in range(n):
                await one()
            times.append((time.thread_time() - c) / n * 1000)
        return times

    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="a .onnx model (default: bench_infer's CNN)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--count", type=int, default=600, help="requests per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per level (medians)")
    ap.add_argument("--gifs", type=int, default=32)
    ap.add_argument("--out", type=Path, default=None, help="folder for the raw stacks")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--py-spy", help="the py-spy executable (default: py-spy on PATH)")
    args = ap.parse_args()
    print(cpu_line())
    tmp = Path(tempfile.mkdtemp(prefix="profile-serve-"))
    out = args.out or tmp
    out.mkdir(parents=True, exist_ok=True)
    model = args.model or build_model(tmp / "bench.onnx")
    gifs = [p.read_bytes() for p in make_gifs(tmp / "gifs", args.gifs)]
    spy = args.py_spy or shutil.which("py-spy")
    if not spy:
        print("py-spy not found: CPU per request only (pip install py-spy for time shares)")
    app_ms = app_cpu_per_request(model, gifs[0])
    print(
        f"\nthe app's own CPU per /v1/score request (in process, scoring stubbed, median of "
        f"{len(app_ms)} x 1000): {statistics.median(app_ms):.3f} ms [load {os.getloadavg()[0]:.2f}]"
    )
    port = free_port()
    proc = start_server(model, port, tmp / "server.log", (args.backend, args.precision))
    try:
        for clients in args.clients:
            profile_level(port, proc.pid, gifs, clients, args, out, spy)
    finally:
        proc.terminate()
        proc.wait(60)


if __name__ == "__main__":
    main()
