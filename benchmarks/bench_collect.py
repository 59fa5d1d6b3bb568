"""`gifsent-train collect`: how many votes active pair choice saves, how fast it chooses, and
what the server does under 50 concurrent voters.

1. Simulation: simulated voters on the demo data's ground truth (latent emotions ->
   standardised true strengths, `gifsent_train.demo_data.true_strengths`), 300 GIFs; each
   voter answers by Bradley-Terry noise (the left GIF wins with probability
   sigmoid(s_left - s_right)) and clicks at random 5% of the time. For one emotion and for
   all 17 (picked by the app's own balancing), votes until the Spearman correlation of the
   Bradley-Terry fit with the truth first reaches 0.8 and 0.9, active vs random, median over
   seeds. The fit evaluated is the project's own (`fit_bradley_terry`), as training would
   run it on the exported votes.
2. Selection time: p50/p99 of one `PairChooser.choose` at 6,000 GIFs (GIFGIF's size) with
   30,000 votes in the posterior; then the same, interleaved in blocks, alone and while a
   `VoteFeed` (several servers on one database) takes in another server's votes
   (`--feed-rate`, 100/s by default, written by a second process).
3. Server: N concurrent simulated voters against `gifsent-train collect` on loopback for a
   bounded time (real HTTP, real SQLite with synchronous=FULL); errors, acknowledged votes vs
   rows in the database (lost votes), pairs shown twice to one voter, p50/p99 vote latency
   (POST to acknowledgement). With `--pg postgresql://user@host:port`: `--servers` (2)
   servers on a new database there, every request of a voter to the next server (page and
   answer on different servers), and the votes each server's posterior took in.

    python benchmarks/bench_collect.py            # defaults: 5 seeds, 60 s server run
    python benchmarks/bench_collect.py --quick    # 2 seeds, 1 emotion only, 15 s server
    python benchmarks/bench_collect.py --skip selection,server --jobs 2   # seeds in 2 processes
    python benchmarks/bench_collect.py --quick --skip selection,server --lapse 0 --spread 2
    python benchmarks/bench_collect.py --quick --skip simulation,selection --pg auto  # 2 servers
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from http.cookiejar import CookieJar
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_line

from gifsent_infer.contract import EMOTIONS
from gifsent_train.bradley_terry import fit_bradley_terry
from gifsent_train.collect.pairs import PairChooser
from gifsent_train.demo_data import true_strengths

THRESHOLDS = (0.8, 0.9)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    ra -= ra.mean()
    rb -= rb.mean()
    return float(ra @ rb / np.sqrt((ra @ ra) * (rb @ rb)))


def simulate(
    mode: str,
    emotions: list[str],
    n_gifs: int,
    seed: int,
    max_votes: int,
    lapse: float = 0.05,
    spread: float = 1.0,
) -> dict[float, int | None]:
    """Votes (all emotions together) until the mean Spearman over `emotions` reaches each
    threshold; None if it never did within max_votes. `spread` multiplies the true strengths
    (2 = voters twice as consistent: the Bradley-Terry noise halved)."""
    rng = np.random.default_rng(seed)
    _, truth = true_strengths(n_gifs, rng)
    truth = truth * spread
    col = {e: EMOTIONS.index(e) for e in emotions}
    ids = [f"g{i:05d}" for i in range(n_gifs)]
    chooser = PairChooser(ids, emotions, mode=mode, seed=seed + 1000)
    seen: set[tuple[str, str]] = set()  # one voter per pair is enough for the question here
    need: dict[float, int | None] = dict.fromkeys(THRESHOLDS)
    check = max(20, n_gifs // 10 * len(emotions))
    votes = 0
    while votes < max_votes and need[THRESHOLDS[-1]] is None:
        e = chooser.next_emotion()
        pair = chooser.choose(e)
        if pair is None:
            break
        a, b = chooser.index[pair[0]], chooser.index[pair[1]]
        s = truth[:, col[e]]
        if rng.random() < lapse:
            left_wins = rng.random() < 0.5
        else:
            left_wins = rng.random() < 1.0 / (1.0 + np.exp(-(s[a] - s[b])))
        chooser.add_vote(e, pair[0], pair[1], "left" if left_wins else "right")
        votes += 1
        if mode == "active" and chooser.refit_due(e):
            chooser.refit(e)
        if votes % check == 0:
            rho = np.mean([_fit_rho(chooser, e2, truth[:, col[e2]]) for e2 in emotions])
            for t in THRESHOLDS:
                if need[t] is None and rho >= t:
                    need[t] = votes
    del seen
    return need


def _fit_rho(chooser: PairChooser, emotion: str, truth: np.ndarray) -> float:
    st = chooser.states[emotion]
    fit = fit_bradley_terry(np.array(st.winners), np.array(st.losers), st.n, tol=1e-4)
    return spearman(fit.strength, truth)


def bench_simulation(
    seeds: int,
    all_emotions: bool,
    n_gifs: int,
    jobs: int = 1,
    lapse: float = 0.05,
    spread: float = 1.0,
    only_all: bool = False,
) -> None:
    sets = [] if only_all else [("one emotion (amusement)", ["amusement"])]
    if all_emotions:
        sets.append(("all 17 emotions", list(EMOTIONS)))
    pool = ProcessPoolExecutor(jobs) if jobs > 1 else None
    for label, emotions in sets:
        max_votes = 60 * n_gifs * len(emotions)
        print(
            f"\n## simulation: {n_gifs} GIFs, {label}, median of {seeds} seeds, "
            f"{lapse:.0%} random clicks, strength spread x{spread:g}"
        )
        results = {}
        jobs_of = {}
        if pool is not None:  # every seed of both modes at once; the counts do not change
            for mode in ("active", "random"):
                for seed in range(seeds):
                    args = (mode, emotions, n_gifs, seed, max_votes, lapse, spread)
                    jobs_of[mode, seed] = pool.submit(_simulate_star, args)
        for mode in ("active", "random"):
            t0 = time.perf_counter()
            runs = []
            for seed in range(seeds):
                if pool is None:
                    runs.append(simulate(mode, emotions, n_gifs, seed, max_votes, lapse, spread))
                else:
                    runs.append(jobs_of[mode, seed].result())
                got = ", ".join(f"rho {t}: {runs[-1][t]}" for t in THRESHOLDS)
                print(
                    f"    {mode} seed {seed}: {got}  ({time.perf_counter() - t0:.0f} s)", flush=True
                )
            results[mode] = runs
            line = ", ".join(f"rho {t}: {_median([r[t] for r in runs])}" for t in THRESHOLDS)
            print(f"{mode:7s} votes until {line}  ({time.perf_counter() - t0:.0f} s)")
            for t in THRESHOLDS:
                print(f"    {mode} per seed at {t}: {[r[t] for r in runs]}")
        for t in THRESHOLDS:
            a = _median([r[t] for r in results["active"]])
            r = _median([r[t] for r in results["random"]])
            if a and r:
                print(f"active/random at Spearman {t}: {a / r:.2f}x")
    if pool is not None:
        pool.shutdown()


def _simulate_star(args):
    return simulate(*args)


def _median(values):
    vals = [v for v in values if v is not None]
    if len(vals) < len(values):
        return None
    return int(statistics.median(vals))


def bench_selection(
    n_gifs: int, n_votes: int, calls: int, feed_rate: float = 100.0, sync_s: float = 0.2
) -> None:
    rng = np.random.default_rng(0)
    _, truth = true_strengths(n_gifs, rng)
    s = truth[:, 0]
    ids = [f"g{i:05d}" for i in range(n_gifs)]
    chooser = PairChooser(ids, ["amusement"], seed=1)
    a = rng.integers(0, n_gifs, n_votes)
    b = (a + rng.integers(1, n_gifs, n_votes)) % n_gifs
    wins = rng.random(n_votes) < 1.0 / (1.0 + np.exp(-(s[a] - s[b])))
    for i, j, w in zip(a, b, wins, strict=True):
        chooser.add_vote("amusement", ids[i], ids[j], "left" if w else "right")
    t = time.perf_counter()
    chooser.refit("amusement")
    refit = time.perf_counter() - t
    times = []
    seen: set[str] = set()
    for _ in range(calls):
        t = time.perf_counter()
        pair = chooser.choose("amusement", lambda x, y: (min(x, y), max(x, y)) in seen)
        times.append(time.perf_counter() - t)
        seen.add((min(pair), max(pair)))
    tree = times
    print(f"\n## selection: {n_gifs} GIFs, {n_votes} votes in the posterior, {calls} calls")
    print(
        f"choose: p50 {np.percentile(tree, 50) * 1e3:.2f} ms, p99 {np.percentile(tree, 99) * 1e3:.2f} ms, "
        f"max {max(tree) * 1e3:.1f} ms (spanning tree rebuilds included); full refit {refit * 1e3:.0f} ms"
    )
    if feed_rate > 0:
        _selection_with_feed(chooser, ids, seen, calls, feed_rate, sync_s)


def _other_server(db: str, n_gifs: int, rate: float, busy, stop) -> None:
    """Another server's voters: one vote every 1/rate s into the shared database while busy."""
    from gifsent_train.collect.storage import Store

    store = Store.open(db)
    rng = np.random.default_rng(7)
    k = 0
    while not stop.is_set():
        if not busy.wait(0.1):
            continue
        i, j = rng.choice(n_gifs, size=2, replace=False)
        shown = store.show(f"o{k}", "amusement", f"g{i:05d}", f"g{j:05d}")
        store.answer(shown, f"o{k}", ("left", "right")[k % 2])
        k += 1
        time.sleep(1.0 / rate)
    store.close()


def _selection_with_feed(chooser, ids, seen, calls, rate: float, sync_s: float) -> None:
    """The same `choose`, timed interleaved in blocks of 20 calls 10 ms apart: alone, and while a
    `VoteFeed` reads another server's votes (a second process writing `rate` votes/s into a
    SQLite file standing in for the shared database) into this chooser every `sync_s`."""
    import multiprocessing

    from gifsent_train.collect.storage import Store
    from gifsent_train.collect.sync import VoteFeed

    work = Path(tempfile.mkdtemp(prefix="bench-feed-"))
    ctx = multiprocessing.get_context("spawn")
    busy, stop = ctx.Event(), ctx.Event()
    store = Store.open(work / "shared.sqlite")
    feed = VoteFeed(store)
    writer = ctx.Process(
        target=_other_server, args=(str(work / "shared.sqlite"), len(ids), rate, busy, stop)
    )
    writer.start()

    def poll_loop() -> None:
        while not stop.is_set():
            if busy.is_set():
                feed.poll(lambda r: chooser.add_vote(r.emotion, r.left, r.right, r.choice))
            time.sleep(sync_s)

    poller = threading.Thread(target=poll_loop, daemon=True)
    poller.start()
    times: dict[str, list[float]] = {"alone": [], "feed": []}

    def block(key: str) -> None:
        for _ in range(20):
            t = time.perf_counter()
            pair = chooser.choose("amusement", lambda x, y: (min(x, y), max(x, y)) in seen)
            times[key].append(time.perf_counter() - t)
            seen.add((min(pair), max(pair)))
            time.sleep(0.01)  # requests come apart: a block spans about one poll

    try:
        for _ in range(max(1, calls // 20)):
            block("alone")
            busy.set()
            time.sleep(sync_s)  # the feed is running when the block starts
            block("feed")
            busy.clear()
    finally:
        stop.set()
        writer.join(timeout=30)
        store.close()
        shutil.rmtree(work, ignore_errors=True)
    applied = feed.applied
    print(
        f"interleaved, alone vs while a VoteFeed takes another server's {rate:g} votes/s every "
        f"{sync_s:g} s ({applied} votes applied during the run):"
    )
    for key, vals in times.items():
        print(
            f"  {key:5s}: p50 {np.percentile(vals, 50) * 1e3:.2f} ms, "
            f"p99 {np.percentile(vals, 99) * 1e3:.2f} ms, max {max(vals) * 1e3:.1f} ms "
            f"({len(vals)} calls)"
        )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _voter_loop(bases: list[str], deadline: float, out: dict, lock: threading.Lock, k: int) -> None:
    """One voter as fast as it can: page, then answer; with several servers every request
    goes to the next one (a round-robin proxy), so a page and its answer meet two servers."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(CookieJar()), _NoRedirect()
    )
    rng = np.random.default_rng(k)
    turn = k
    pairs: set[frozenset] = set()
    while time.monotonic() < deadline:
        try:
            t0 = time.perf_counter()
            html = opener.open(bases[turn % len(bases)] + "/", timeout=30).read().decode()
            t1 = time.perf_counter()
            shown = re.search(r"name='shown' value='(\d+)'", html)
            csrf = re.search(r"name='csrf' value='([0-9a-f]+)'", html)
            if not (shown and csrf):
                with lock:
                    out["errors"].append("no pair on the page")
                continue
            pair = frozenset(re.findall(r"src='/gif/([^']+)'", html))
            if pair in pairs:
                with lock:
                    out["repeats"] += 1
            pairs.add(pair)
            choice = ("left", "right", "neither")[int(rng.integers(0, 3))]
            body = urllib.parse.urlencode(
                {"shown": shown.group(1), "csrf": csrf.group(1), "choice": choice}
            ).encode()
            t2 = time.perf_counter()
            try:
                vote_url = bases[(turn + 1) % len(bases)] + "/vote"
                status = opener.open(vote_url, data=body, timeout=30).status
            except urllib.error.HTTPError as e:
                status = e.code
            t3 = time.perf_counter()
            turn += 1
        except OSError as e:
            with lock:
                out["errors"].append(repr(e))
            continue
        with lock:
            out["page"].append(t1 - t0)
            if status == 303:
                out["vote"].append(t3 - t2)
                out["acked"].append((int(shown.group(1)), choice))
            else:
                out["errors"].append(f"HTTP {status}")


def _start_server(gifs: Path, db: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = "from gifsent_train.cli import main; main()"
    cmd = [sys.executable, "-c", code, "collect", "--gifs", str(gifs), "--db", db]
    cmd += ["--port", str(port), "--rate", "1000000", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    return proc, base


def _pg_database(server_url: str) -> str:
    """A new database on the PostgreSQL server at ``server_url`` (postgresql://user@host:port)."""
    import psycopg

    name = f"bench_collect_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(server_url.rstrip("/") + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url.rstrip('/')}/{name}"


def _stored_votes(db: str) -> tuple[dict[int, str], int]:
    """shown id -> choice of every stored vote, and the row count."""
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as conn:
            rows = conn.execute("SELECT shown_id, choice FROM votes").fetchall()
    else:
        conn = sqlite3.connect(db)
        rows = conn.execute("SELECT shown_id, choice FROM votes").fetchall()
        conn.close()
    return dict(rows), len(rows)


def _in_posterior(bases: list[str]) -> list[int]:
    """Votes in each server's pair chooser (from /progress.json)."""
    import json

    out = []
    for base in bases:
        with urllib.request.urlopen(base + "/progress.json", timeout=60) as r:
            data = json.loads(r.read())
        out.append(sum(e["in_posterior"] for e in data["emotions"]))
    return out


def bench_server(
    voters: int, seconds: float, n_gifs: int, servers: int = 1, pg: str | None = None
) -> None:
    """`gifsent-train collect` in subprocesses on loopback (``servers`` of them on one
    PostgreSQL database when ``pg`` names a server, else one on SQLite); `voters` threads
    vote flat out."""
    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    procs: list[subprocess.Popen] = []
    try:
        gifs = work / "gifs"
        gifs.mkdir()
        for i in range(n_gifs):
            frames = [Image.new("P", (32, 24), color=(i * 7 + f) % 256) for f in range(2)]
            frames[0].save(gifs / f"g{i:04d}.gif", save_all=True, append_images=frames[1:])
        db = _pg_database(pg) if pg else str(work / "votes.sqlite")
        bases = []
        for _ in range(servers):
            proc, base = _start_server(gifs, db, ["--sync", "1"] if pg else [])
            procs.append(proc)
            bases.append(base)
        out: dict = {"page": [], "vote": [], "acked": [], "errors": [], "repeats": 0}
        lock = threading.Lock()
        deadline = time.monotonic() + seconds
        threads = [
            threading.Thread(target=_voter_loop, args=(bases, deadline, out, lock, k))
            for k in range(voters)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        synced = ""
        if servers > 1:
            time.sleep(2.5)  # two polls (--sync 1)
            synced = f", votes in each server's posterior {_in_posterior(bases)}"
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
        stored, rows = _stored_votes(db)
        lost = sum(1 for s, c in out["acked"] if stored.get(s) != c)
        vote, page = np.array(out["vote"]), np.array(out["page"])
        where = f"{servers} server(s) on PostgreSQL, round-robin" if pg else "SQLite"
        print(
            f"\n## server: {voters} concurrent voters, {seconds:.0f} s, {n_gifs} GIFs x 17 "
            f"emotions, {where}"
        )
        print(
            f"acknowledged votes {len(out['acked'])} ({len(out['acked']) / wall:.0f}/s), "
            f"rows in the database {rows}, lost {lost}, errors {len(out['errors'])}"
            + (f" (first: {out['errors'][0]})" if out["errors"] else "")
            + f", pairs shown twice to a voter {out['repeats']}{synced}"
        )
        if len(vote):
            print(
                f"vote POST -> acknowledgement: p50 {np.percentile(vote, 50) * 1e3:.1f} ms, "
                f"p99 {np.percentile(vote, 99) * 1e3:.1f} ms; page (pair choice included): "
                f"p50 {np.percentile(page, 50) * 1e3:.1f} ms, p99 {np.percentile(page, 99) * 1e3:.1f} ms"
            )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, one emotion, 15 s server run")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--gifs", type=int, default=300)
    ap.add_argument("--voters", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=None, help="server run length")
    ap.add_argument("--skip", default="", help="comma list of: simulation,selection,server")
    ap.add_argument("--jobs", type=int, default=1, help="simulate seeds in N processes")
    ap.add_argument("--lapse", type=float, default=0.05, help="share of random clicks")
    ap.add_argument(
        "--spread", type=float, default=1.0, help="true strengths x this (2: half the BT noise)"
    )
    ap.add_argument(
        "--only-all", action="store_true", help="simulate all 17 emotions only (not one)"
    )
    ap.add_argument(
        "--pg",
        default=None,
        metavar="URL",
        help="server: run on a new database of this PostgreSQL server (postgresql://user@host:port; "
        "auto: start a throwaway one from Debian's postgresql, as the tests do)",
    )
    ap.add_argument("--servers", type=int, default=2, help="with --pg: servers on the one database")
    ap.add_argument(
        "--feed-rate",
        type=float,
        default=100.0,
        help="selection: also time choose while another server's N votes/s arrive (0: skip)",
    )
    args = ap.parse_args(argv)
    seeds = args.seeds or (2 if args.quick else 5)
    seconds = args.seconds or (15.0 if args.quick else 60.0)
    skip = set(filter(None, args.skip.split(",")))
    print(f"# bench_collect  {cpu_line()}")
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if "simulation" not in skip:
        bench_simulation(
            seeds, not args.quick, args.gifs, args.jobs, args.lapse, args.spread, args.only_all
        )
    if "selection" not in skip:
        bench_selection(6000, 30000, 300 if args.quick else 2000, args.feed_rate)
    if "server" not in skip:
        if args.pg == "auto":  # a throwaway PostgreSQL, started the way the tests start one
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.train.collect_support import PostgresServer

            pg = PostgresServer()
            try:
                bench_server(args.voters, seconds, args.gifs, args.servers, pg.url)
            finally:
                pg.close()
        else:
            bench_server(args.voters, seconds, args.gifs, args.servers if args.pg else 1, args.pg)
    print(f"\nload average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
