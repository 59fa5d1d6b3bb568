"""Scoring service benchmark: `gifsent-infer serve` in its own process against offline
scoring, with a bounded async load generator of our own (raw HTTP/1.1 over asyncio,
loopback only, every phase fixed in request count AND time).

    .venv/bin/python benchmarks/bench_serve.py            # the full run (several minutes)
    .venv/bin/python benchmarks/bench_serve.py --quick    # a smoke run (about a minute)
    .venv/bin/python benchmarks/bench_serve.py --model demo-home/models/gifsent-rnn.onnx
        # the same ratios on a real encoder (a few minutes; memory and fuzz skipped)

Prints, all in one run on the same model (bench_infer's small CNN, 16 frames of 112 px, or
--model) and the same engine for offline and served scoring (--backend onnxruntime
--precision fp32 by default, pinned on both sides; `auto auto` lets each side choose and
the script checks that both chose the same):
  throughput   Scorer.score_many GIFs/s in this process (server idle) against one-GIF
               requests at 16 concurrent clients, rounds interleaved: medians and the share
  latency      requests/s, p50 and p99 at 1, 4, 16 and 64 clients (503s counted: the queue,
               --max-queue 32 here, must turn excess load into refusals)
  direct       concurrency-1 requests against direct Scorer.score calls, interleaved: median
               wall time, and CPU time per call (server process vs this one), which load
               on a shared machine barely moves
  memory       RSS of the server over N mixed requests after warm-up (small and large GIFs,
               5% malformed, 2% over --max-bytes, 1% slow clients): growth, and a plot
  fuzz         truncated multipart, oversized headers, slow-drip body, invalid JSON, empty
               body and random bodies: statuses, 5xx, hangs past the timeouts, crashes
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_infer import build_model, make_gifs  # noqa: E402
from machine import cpu_line  # noqa: E402

MAX_QUEUE = 32
MAX_BYTES = 2 << 20
REQUEST_TIMEOUT = 10.0
HANG_SLACK = 10.0  # a request unanswered REQUEST_TIMEOUT + this after sending counts as a hang


# --- the load generator ---------------------------------------------------------------------


@dataclass
class Result:
    status: int  # -1: connection dropped by the server; 0: no answer in time (a hang)
    seconds: float


@dataclass
class Phase:
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, pred) -> int:
        return sum(1 for r in self.results if pred(r.status))

    def pct(self, q: float, ok_only: bool = True) -> float:
        xs = sorted(r.seconds for r in self.results if r.status == 200 or not ok_only)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def http_bytes(method: str, path: str, body: bytes, ctype: str, extra: str = "") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + body


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep the connection) of one response; its body is read and dropped."""
    line = await reader.readline()
    if not line:
        raise ConnectionError("closed")
    status = int(line.split()[1])
    length, keep = 0, True
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        if k.lower() == "content-length":
            length = int(v)
        elif k.lower() == "connection" and v.strip().lower() == "close":
            keep = False
    await reader.readexactly(length)
    return status, keep


class Client:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, raw: bytes, drip_s: float = 0.0) -> Result:
        t = time.perf_counter()
        try:
            return await asyncio.wait_for(self._send(raw, drip_s, t), REQUEST_TIMEOUT + HANG_SLACK)
        except asyncio.TimeoutError:
            await self.close()
            return Result(0, time.perf_counter() - t)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            await self.close()
            return Result(-1, time.perf_counter() - t)

    async def _send(self, raw: bytes, drip_s: float, t: float) -> Result:
        if self.conn is None:
            self.conn = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.conn
        if drip_s:  # a slow client: the body a few bytes at a time
            step = max(1, len(raw) // 20)
            for i in range(0, len(raw), step):
                writer.write(raw[i : i + step])
                await writer.drain()
                await asyncio.sleep(drip_s / 20)
        else:
            writer.write(raw)
            await writer.drain()
        status, keep = await read_reply(reader)
        if not keep:
            await self.close()
        return Result(status, time.perf_counter() - t)

    async def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            self.conn = None


async def load(port: int, make, clients: int, count: int, seconds: float) -> Phase:
    """`clients` concurrent clients send make(i) -> (raw, drip_s) until `count` requests
    are answered or `seconds` pass, whichever first."""
    phase, issued = Phase(), 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal issued
        c = Client(port)
        while issued < count and time.perf_counter() < stop_at:
            i = issued
            issued += 1
            raw, drip = make(i)
            phase.results.append(await c.send(raw, drip))
        await c.close()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    phase.seconds = time.perf_counter() - t
    return phase


# --- the server -----------------------------------------------------------------------------


def start_server(
    model: Path, port: int, log: Path, engine: tuple[str, str] = ("onnxruntime", "fp32")
) -> subprocess.Popen:
    """The real server in its own process, with `engine` = (backend, precision) pinned."""
    backend, precision = engine
    cmd = [sys.executable, "-m", "gifsent_infer.cli", "serve", "--model", str(model)]
    cmd += ["--port", str(port), "--device", "cpu"]
    cmd += ["--backend", backend, "--precision", precision]
    cmd += ["--max-queue", str(MAX_QUEUE), "--max-bytes", str(MAX_BYTES)]
    cmd += ["--request-timeout", str(REQUEST_TIMEOUT), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}: {log.read_text()}")
        try:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server not ready in 180 s")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the phases ------------------------------------------------------------------------------


def make_scorer(model: Path, gifs: list[bytes], engine: tuple[str, str] = ("onnxruntime", "fp32")):
    from gifsent_infer.running.scorer import Scorer

    backend, precision = engine
    scorer = Scorer(model, device="cpu", backend=backend, precision=precision)
    list(scorer.score_many(gifs[:8]))  # warm-up
    return scorer


async def throughput(port: int, scorer, gifs: list[bytes], rounds: int) -> tuple[list, list]:
    """GIFs/s of offline Scorer.score_many and of the server at 16 one-GIF clients, the same
    GIFs, rounds interleaved (offline, server, offline, ...) so load hits both alike."""
    offline, served = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        n = sum(1 for _ in scorer.score_many(gifs))
        offline.append(n / (time.perf_counter() - t))
        p = await load(port, one_gif(gifs), 16, len(gifs), 600)
        served.append(p.count(lambda s: s == 200) / p.seconds)
    return offline, served


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def direct_vs_server(port: int, pid: int, scorer, gifs: list[bytes], n: int) -> dict:
    """A direct Scorer.score call and a concurrency-1 request, interleaved (one of each in
    turn, never overlapping) so that background load hits both alike: median wall seconds of
    each, and CPU seconds per call (this process's for direct calls, the server's for
    requests), which load barely moves."""
    client, direct, served, direct_cpu, served_cpu = Client(port), [], [], 0.0, 0.0
    for i in range(n):
        g = gifs[i % len(gifs)]
        c, t = time.process_time(), time.perf_counter()
        scorer.score(g)
        direct.append(time.perf_counter() - t)
        direct_cpu += time.process_time() - c
        c = cpu_seconds(pid)
        r = await client.send(http_bytes("POST", "/v1/score", g, "image/gif"))
        served_cpu += cpu_seconds(pid) - c
        if r.status == 200:
            served.append(r.seconds)
    await client.close()
    return {
        "direct": statistics.median(direct),
        "served": statistics.median(served),
        "direct_cpu": direct_cpu / n,
        "served_cpu": served_cpu / n,
    }


def one_gif(gifs: list[bytes]):
    return lambda i: (http_bytes("POST", "/v1/score", gifs[i % len(gifs)], "image/gif"), 0.0)


def noise_gif(seed: int, size=(256, 192), frames: int = 16) -> bytes:
    """A GIF of random pixels: barely compressible, so large (~0.7 MiB)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [
        Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8), "L").convert("P")
        for _ in range(frames)
    ]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=80)
    return buf.getvalue()


def mixed(gifs: list[bytes], big: list[bytes], rng: random.Random):
    """Mixed traffic: 5% malformed, 2% over --max-bytes, 1% slow clients, 10% large GIFs."""
    over = b"GIF89a" + bytes(MAX_BYTES + 1000)

    def make(i: int) -> tuple[bytes, float]:
        x = rng.random()
        if x < 0.05:
            g = gifs[i % len(gifs)]
            bad = g[: rng.randrange(1, len(g))] if rng.random() < 0.5 else rng.randbytes(500)
            return http_bytes("POST", "/v1/score", bad, "image/gif"), 0.0
        if x < 0.07:
            return http_bytes("POST", "/v1/score", over, "image/gif"), 0.0
        if x < 0.08:
            return http_bytes("POST", "/v1/score", gifs[i % len(gifs)], "image/gif"), 1.0
        pool = big if x < 0.18 else gifs
        return http_bytes("POST", "/v1/score", pool[i % len(pool)], "image/gif"), 0.0

    return make


async def rss_sampler(pid: int, samples: list[tuple[float, float]], stop: asyncio.Event) -> None:
    t0 = time.perf_counter()
    while not stop.is_set():
        samples.append((time.perf_counter() - t0, rss_mib(pid)))
        await asyncio.sleep(0.5)


def named_fuzz(gifs: list[bytes]) -> dict[str, tuple[bytes, float]]:
    boundary = "b0undary"
    part = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.gif"\r\n'
            "Content-Type: image/gif\r\n\r\n"
        ).encode()
        + gifs[0]
        + f"\r\n--{boundary}--\r\n".encode()
    )
    mp = f"multipart/form-data; boundary={boundary}"
    big_header = "X-Big: " + "a" * 70000 + "\r\n"
    return {
        "truncated multipart (half)": (
            http_bytes("POST", "/v1/score", part[: len(part) // 2], mp),
            0,
        ),
        "truncated multipart (no end)": (http_bytes("POST", "/v1/score", part[:-10], mp), 0),
        "70 KB header": (http_bytes("POST", "/v1/score", gifs[0], "image/gif", big_header), 0),
        "invalid JSON": (http_bytes("POST", "/v1/score", b'{"urls": [', "application/json"), 0),
        "empty body": (http_bytes("POST", "/v1/score", b"", "image/gif"), 0),
        "empty JSON body": (http_bytes("POST", "/v1/score", b"", "application/json"), 0),
        "slow drip (3 s)": (http_bytes("POST", "/v1/score", gifs[1], "image/gif"), 3.0),
        "KServe without inputs": (
            http_bytes("POST", "/v2/models/gifsent/infer", b"{}", "application/json"),
            0,
        ),
    }


def random_requests(n: int, rng: random.Random) -> list[tuple[bytes, float]]:
    mp = "multipart/form-data; boundary=b0undary"
    ctypes = ["image/gif", "application/json", mp, "application/octet-stream", "text/plain", ""]
    paths = ["/v1/score", "/v2/models/gifsent/infer", "/v1/score?top=3"]
    reqs = []
    for _ in range(n):
        body = rng.randbytes(rng.choice([0, 1, 10, 100, 1000, 20000]))
        if rng.random() < 0.3:
            body = b"GIF89a" + body
        reqs.append((http_bytes("POST", rng.choice(paths), body, rng.choice(ctypes)), 0.0))
    return reqs


async def fuzz(port: int, gifs: list[bytes], n_random: int, rng: random.Random) -> dict:
    named = {}
    for name, (raw, drip) in named_fuzz(gifs).items():
        c = Client(port)
        named[name] = await c.send(raw, drip)
        await c.close()
    queue = random_requests(n_random, rng)
    rand = await load(port, lambda i: queue.pop(), 8, len(queue), 3600)
    return {"named": named, "random": rand}


# --- reporting --------------------------------------------------------------------------------


def plot_rss(samples: list[tuple[float, float]], warm_at: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([t for t, _ in samples], [m for _, m in samples], lw=1)
    ax.axvline(warm_at, color="gray", ls="--", lw=0.8, label="end of warm-up")
    ax.set_xlabel("seconds")
    ax.set_ylabel("server RSS (MiB)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def latency_row(clients: int, p: Phase) -> str:
    ok, busy = p.count(lambda s: s == 200), p.count(lambda s: s == 503)
    return (
        f"| {clients} | {len(p.results)} | {len(p.results) / p.seconds:.1f} | {ok} | {busy} | "
        f"{p.pct(0.5) * 1000:.0f} | {p.pct(0.99) * 1000:.0f} |"
    )


async def run_phases(args, port, pid, scorer, gifs: list[bytes], big: list[bytes]) -> dict:
    out: dict = {"latency": {}}
    await load(port, one_gif(gifs), 4, 40, 60)  # warm-up
    out["c1"] = await direct_vs_server(port, pid, scorer, gifs, args.direct)
    out["offline"], out["served16"] = await throughput(port, scorer, gifs * 4, args.rounds)
    for clients in (1, 4, 16, 64):
        p = await load(port, one_gif(gifs), clients, args.count, args.seconds)
        out["latency"][clients] = p
    rng = random.Random(0)
    if "memory" not in args.skip:
        out["memory"] = await memory_phase(args, port, pid, gifs, big, rng)
    if "fuzz" not in args.skip:
        out["fuzz"] = await fuzz(port, gifs, args.random_bodies, rng)
    return out


async def memory_phase(args, port, pid, gifs: list[bytes], big: list[bytes], rng) -> dict:
    """Mixed traffic after a warm-up, RSS sampled every 0.5 s."""
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(rss_sampler(pid, samples, stop))
    warm_n = max(200, args.memory_requests // 10)
    await load(port, mixed(gifs, big, rng), 16, warm_n, 3600)
    warm_at, warm_rss = samples[-1][0] if samples else 0.0, rss_mib(pid)
    mem = await load(port, mixed(gifs, big, rng), 16, args.memory_requests, 3600)
    stop.set()
    await sampler
    after = [m for t, m in samples if t >= warm_at]
    return {
        "phase": mem,
        "samples": samples,
        "warm_at": warm_at,
        "warm_rss": warm_rss,
        "final_rss": rss_mib(pid),
        "peak_rss": max(after) if after else float("nan"),
    }


def report(args, out: dict, alive: bool, restarts: int) -> None:
    lat = out["latency"]
    off, gps = statistics.median(out["offline"]), statistics.median(out["served16"])
    rounds = ", ".join(
        f"{a:.1f}/{b:.1f}" for a, b in zip(out["offline"], out["served16"], strict=True)
    )
    print(
        f"\noffline Scorer.score_many {off:.1f} GIFs/s, server at 16 clients {gps:.1f} GIFs/s "
        f"(medians; rounds offline/server: {rounds}) = {gps / off:.0%} of offline"
    )
    print("\n| clients | requests | req/s | 200 | 503 | p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for clients, p in lat.items():
        print(latency_row(clients, p))
    c1 = out["c1"]
    print(
        f"\nconcurrency 1, interleaved with direct calls: request p50 {c1['served'] * 1000:.1f} ms"
        f" vs direct Scorer.score {c1['direct'] * 1000:.1f} ms = {c1['served'] / c1['direct']:.2f}x;"
        f" CPU per call: server {c1['served_cpu'] * 1000:.1f} ms vs direct "
        f"{c1['direct_cpu'] * 1000:.1f} ms = {c1['served_cpu'] / c1['direct_cpu']:.2f}x"
    )
    if "memory" in out:
        report_memory(args, out)
    if "fuzz" in out:
        report_fuzz(out, alive, restarts)
    else:
        print(f"server alive at the end: {alive}; crashed workers: {restarts}")


def report_memory(args, out: dict) -> None:
    m = out["memory"]
    ph = m["phase"]
    codes = {c: ph.count(lambda s, c=c: s == c) for c in sorted({r.status for r in ph.results})}
    growth = (m["final_rss"] - m["warm_rss"]) / m["warm_rss"]
    peak = (m["peak_rss"] - m["warm_rss"]) / m["warm_rss"]
    print(f"\nmemory: {len(ph.results)} mixed requests in {ph.seconds:.0f} s, statuses {codes}")
    print(
        f"RSS after warm-up {m['warm_rss']:.0f} MiB, at the end {m['final_rss']:.0f} MiB "
        f"({growth:+.1%}), peak {m['peak_rss']:.0f} MiB ({peak:+.1%}); plot: {args.plot}"
    )


def report_fuzz(out: dict, alive: bool, restarts: int) -> None:
    ph = out["memory"]["phase"] if "memory" in out else Phase()
    named, f = out["fuzz"]["named"], out["fuzz"]["random"]
    print("\nmalformed HTTP (status; -1: the server closed the connection):")
    for name, r in named.items():
        print(f"  {name}: {r.status} in {r.seconds:.2f} s")
    fcodes = {c: f.count(lambda s, c=c: s == c) for c in sorted({r.status for r in f.results})}
    print(f"random bodies: {len(f.results)} requests, statuses {fcodes}")
    everything = [*named.values(), *f.results, *ph.results]
    hangs = sum(1 for r in everything if r.status == 0)
    five = sum(1 for r in everything if r.status >= 500 and r.status not in (503, 504))
    print(
        f"hangs past {REQUEST_TIMEOUT + HANG_SLACK:.0f} s: {hangs}; 5xx other than 503/504: "
        f"{five}; server alive at the end: {alive}; crashed workers: {restarts}"
    )


# defaults: the tiny model (full / --quick) and a real model (--model: a real encoder scores
# ~10 GIFs/s on 2 cores, so fewer requests; memory and fuzz test the HTTP layer, not the
# model, and are skipped unless --skip says otherwise)
MODES = {
    "full": dict(count=1500, seconds=40, memory_requests=20_000, random_bodies=10_000,
                 direct=200, rounds=5, gifs=64, skip=""),
    "quick": dict(count=150, seconds=15, memory_requests=1500, random_bodies=1000,
                  direct=60, rounds=3, gifs=32, skip=""),
    "model": dict(count=200, seconds=20, memory_requests=2000, random_bodies=1000,
                  direct=30, rounds=3, gifs=16, skip="memory,fuzz"),
}  # fmt: skip


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run with small counts")
    ap.add_argument(
        "--model", type=Path, help="a .onnx model to serve (default: bench_infer's tiny CNN)"
    )
    ap.add_argument("--backend", default="onnxruntime", help="both sides (default onnxruntime)")
    ap.add_argument("--precision", default="fp32", help="both sides (default fp32)")
    ap.add_argument("--count", type=int, help="requests per latency level (1500)")
    ap.add_argument("--seconds", type=float, help="longest a latency level runs (40)")
    ap.add_argument("--memory-requests", type=int, help="mixed requests after warm-up (20000)")
    ap.add_argument("--random-bodies", type=int, help="random request bodies (10000)")
    ap.add_argument("--direct", type=int, help="direct/served pairs at concurrency 1 (200)")
    ap.add_argument("--rounds", type=int, help="offline/server throughput rounds (5)")
    ap.add_argument("--gifs", type=int, help="distinct small GIFs (64)")
    ap.add_argument(
        "--skip", help="phases to leave out, comma-separated: memory, fuzz (--model: both)"
    )
    ap.add_argument("--plot", type=Path, default=HERE.parent / "docs" / "serve-rss.png")
    args = ap.parse_args()
    mode = "model" if args.model else "quick" if args.quick else "full"
    for key, value in MODES[mode].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.skip = {p.strip() for p in args.skip.split(",") if p.strip()}
    return args


def check_engines(port: int, scorer) -> None:
    """Offline and served scoring must run the same backend and precision: print both, stop
    when they differ (possible with auto, which each side resolves itself)."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/info", timeout=30) as r:
        info = json.load(r)
    served = (info["backend"], info["provider"])
    offline = (scorer.backend, scorer.provider)
    print(f"engine: offline {offline[0]} ({offline[1]}), served {served[0]} ({served[1]})")
    if served != offline:
        raise SystemExit("offline and served scoring chose different engines: pin --backend")


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    print(cpu_line())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model = args.model or build_model(tmp / "bench.onnx")
    engine = (args.backend, args.precision)
    print(f"model: {model}; --backend {args.backend} --precision {args.precision} on both sides")
    gifs = [p.read_bytes() for p in make_gifs(tmp / "gifs", args.gifs)]
    big = [p.read_bytes() for p in make_gifs(tmp / "big", 2, size=(480, 360), frames=24)]
    big += [noise_gif(i) for i in range(2)]
    print(
        f"{len(gifs)} GIFs of ~{np.mean([len(g) for g in gifs]) / 1024:.0f} KiB; large: "
        + ", ".join(f"{len(g) / 1024:.0f} KiB" for g in big)
    )
    scorer = make_scorer(model, gifs, engine)
    port = free_port()
    proc = start_server(model, port, tmp / "server.log", engine)
    try:
        check_engines(port, scorer)
        out = asyncio.run(run_phases(args, port, proc.pid, scorer, gifs, big))
        alive = proc.poll() is None
    finally:
        proc.terminate()
        code = proc.wait(60)
    report(args, out, alive, 0 if code == 0 else 1)
    print(f"server exit status after SIGTERM: {code}")
    if "memory" in out:
        m = out["memory"]
        plot_rss(
            m["samples"],
            m["warm_at"],
            args.plot,
            f"gifsent serve RSS, {len(m['phase'].results)} mixed requests after warm-up "
            f"(load avg {os.getloadavg()[0]:.1f})",
        )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
