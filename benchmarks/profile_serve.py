"""Where a request's time goes in `gifsent-infer serve`: the real server process, sampled by
py-spy (all threads) while this script's load generator sends one-GIF requests at a given
concurrency; prints CPU seconds per request (the server's user+system time over the run,
which background load barely moves) and the share of the server's samples by area.

    .venv/bin/python benchmarks/profile_serve.py                  # concurrency 1 and 16
    .venv/bin/python benchmarks/profile_serve.py --model ~/.gifsent/models/gifsent-rnn.onnx

py-spy is a profiling tool, not a dependency of gifsent: `pip install py-spy` into the venv
to get the time shares (without it only CPU per request is printed). Areas, from the
innermost gifsent/library frame of each sample: model (onnxruntime/OpenVINO run), decode
(reading and decoding media), http (uvicorn, httptools/h11, asyncio transport), framework
(FastAPI/Starlette routing, pydantic), rows (score rows and JSON), metrics
(prometheus_client), loop (asyncio's own scheduling and thread hand-offs), other.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_infer import build_model, make_gifs  # noqa: E402
from bench_serve import cpu_seconds, free_port, load, one_gif, start_server  # noqa: E402
from machine import cpu_line  # noqa: E402

# (area, substrings of a frame "function (file:line)"), first match from the leaf up wins
AREAS = [
    ("model", ("onnxruntime", "openvino", "run_batch", "session.py")),
    ("decode", ("gifio", "reading/", "PIL", "av/", "prepare")),
    ("metrics", ("prometheus_client",)),
    ("rows", ("json", "rows.py", "outputs.py", "readable.py", "render")),
    ("framework", ("fastapi", "starlette", "pydantic", "multipart", "anyio")),
    ("http", ("uvicorn", "httptools", "h11", "asyncio/selector_events", "asyncio/streams")),
    ("loop", ("asyncio", "uvloop", "concurrent/futures", "threading.py", "queue.py")),
]


def area_of(stack: list[str]) -> str:
    for frame in reversed(stack):  # leaf last in py-spy's raw format
        for name, keys in AREAS:
            if any(k in frame for k in keys):
                return name
    return "other"


def shares(raw: Path) -> tuple[collections.Counter, int]:
    counts: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        counts[area_of(stack.split(";"))] += int(n)
        total += int(n)
    return counts, total


async def drive(port: int, gifs: list[bytes], clients: int, count: int) -> int:
    p = await load(port, one_gif(gifs), clients, count, 600)
    return p.count(lambda s: s == 200)


def profile_level(port, pid, gifs, clients, count, out: Path, spy: str | None) -> None:
    asyncio.run(drive(port, gifs, clients, min(count, 100)))  # warm-up
    rec = None
    if spy:
        raw = out / f"c{clients}.txt"
        cmd = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
        rec = subprocess.Popen(
            [*cmd, "--nonblocking", "-o", str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    ok = asyncio.run(drive(port, gifs, clients, count))
    cpu, wall = cpu_seconds(pid) - c0, time.perf_counter() - t0
    print(
        f"\nconcurrency {clients}: {ok} x 200 in {wall:.1f} s ({ok / wall:.0f} req/s); "
        f"server CPU {cpu / max(ok, 1) * 1000:.2f} ms per request "
        f"[load {os.getloadavg()[0]:.2f}]"
    )
    if rec is None:
        return
    rec.send_signal(2)  # SIGINT: py-spy writes what it sampled
    rec.wait(60)
    if not raw.exists():
        print(f"  py-spy wrote nothing: {rec.stderr.read().decode()[-300:]}")
        return
    counts, total = shares(raw)
    line = ", ".join(f"{k} {v / total:.0%}" for k, v in counts.most_common())
    print(f"  server samples by area ({total}): {line}; raw stacks: {raw}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="a .onnx model (default: bench_infer's CNN)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--count", type=int, default=1500, help="requests per level")
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
    port = free_port()
    proc = start_server(model, port, tmp / "server.log", (args.backend, args.precision))
    try:
        for clients in args.clients:
            profile_level(port, proc.pid, gifs, clients, args.count, out, spy)
    finally:
        proc.terminate()
        proc.wait(60)


if __name__ == "__main__":
    main()
