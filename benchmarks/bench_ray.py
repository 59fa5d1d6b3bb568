"""Ray Data scoring against the local CLI on the same GIFs: fixed cost and per-GIF overhead;
and what a killed driver keeps (--resume).

    .venv/bin/python benchmarks/bench_ray.py                      # 40 and 200 generated GIFs
    .venv/bin/python benchmarks/bench_ray.py --small 50 --large 400 --num-cpus 2
    .venv/bin/python benchmarks/bench_ray.py --resume --gifs ../shared/gifs/real --count 238

Both paths score --small and then --large GIFs into a fresh output (no resume), with the
same model and batch size; a straight line through the two timings splits each path into
a fixed cost (start-up: for Ray, building the dataset and starting the actor pool, which
every run pays) and a cost per GIF. `ray.init` of a local instance is timed on its own.
On a 2-core machine this measures Ray's overhead, not its scaling: decoding tasks, the
model actor and the driver share the same two cores.

Model and GIFs are bench_infer.py's (a small CNN on 16 frames of 112x112; 160x120 GIFs of
12 frames), so the numbers compare with that benchmark's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_line

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_infer import build_model, make_gifs


def widen(model: Path, out: Path, c1: int, c2: int) -> Path:
    """bench_infer's model with c1/c2 conv channels instead of 16/32: the same graph made
    heavier (about 0.9 * c1 * c2 / 512 GFLOP per GIF more), to stand in for a real encoder."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(model))
    rng = np.random.default_rng(1)
    new = {
        "w1": (rng.normal(size=(c1, 3, 3, 3)) * 0.3).astype(np.float32),
        "w2": (rng.normal(size=(c2, c1, 3, 3)) * (1 / c1) ** 0.5).astype(np.float32),
        "w3": (rng.normal(size=(c2, 17)) * 0.2).astype(np.float32),
    }
    for init in m.graph.initializer:
        if init.name in new:
            init.CopyFrom(numpy_helper.from_array(new[init.name], init.name))
        elif init.name == "seq_shape":
            shape = numpy_helper.to_array(init).copy()
            shape[2] = c2
            init.CopyFrom(numpy_helper.from_array(shape, init.name))
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    return out


def time_local(model: Path, gifs: Path, out: Path, batch_size: int) -> float:
    from gifsent_infer.cli import main

    args = [str(gifs), "--out", str(out), "--model", str(model), "--device", "cpu"]
    t = time.perf_counter()
    try:
        main([*args, "--batch-size", str(batch_size), "--quiet"])
    except SystemExit as e:
        assert e.code == 0, e.code
    return time.perf_counter() - t


def time_ray(model: Path, gifs: Path, out: Path, batch_size: int, args) -> float:
    from gifsent_infer.scaleout.distributed import score_with_ray

    t = time.perf_counter()
    s = score_with_ray(
        [gifs],
        model,
        out,
        resume=False,
        batch_size=batch_size,
        num_actors=args.num_actors,
        actor_cpus=args.actor_cpus,
        decode_cpus=args.decode_cpus,
    )
    assert s.failed == 0 and s.scored == s.inputs
    time_ray.layout = (  # type: ignore[attr-defined]
        f"{s.num_actors} actor(s) x {s.actor_cpus:g} CPU ({s.threads} onnxruntime threads), "
        f"decoding tasks reserve {s.decode_cpus:g} CPU"
    )
    return time.perf_counter() - t


def fit(n1: int, t1: float, n2: int, t2: float) -> tuple[float, float]:
    """(fixed seconds, seconds per GIF) of the line through (n1, t1) and (n2, t2)."""
    per = (t2 - t1) / (n2 - n1)
    return t1 - per * n1, per


def _driver(gifs: Path, model: Path, out: Path, address: str, extra: list[str]) -> list[str]:
    """`gifsent-infer ray` as a separate driver process (so that it can be SIGKILLed)."""
    return [
        sys.executable,
        "-c",
        "from gifsent_infer.cli import main; main()",
        "ray",
        str(gifs),
        "--out",
        str(out),
        "--model",
        str(model),
        "--address",
        address,
        "--quiet",
        *extra,
    ]


def _committed_rows(out: Path) -> int:
    """Rows a plain reader sees (pyarrow's dataset discovery, as pandas.read_parquet)."""
    import pyarrow.parquet as pq

    if not out.is_dir() or not any(p.suffix == ".parquet" for p in out.iterdir()):
        return 0
    paths = pq.read_table(str(out), columns=["path"]).column("path").to_pylist()
    assert len(paths) == len(set(paths)), "a path appears twice"
    return len(paths)


def bench_resume(args) -> None:
    """Kill a driver at --kill-at of a full run's wall time, count what it left, rerun.

    A cluster (ray.cluster_utils, one node of --num-cpus CPUs, in a private temp folder)
    stays up for the whole benchmark; each run is a separate driver process joining it
    with --address, as on a real cluster. Run 1 is complete (its time T sets the kill
    point); run 2, into a fresh folder, is SIGKILLed at kill_at * T; run 3 resumes it.
    """
    import signal
    import subprocess

    from ray.cluster_utils import Cluster

    from gifsent_infer.scaleout.distributed import read_manifest

    root = Path(tempfile.mkdtemp(prefix="bray-", dir="/tmp"))
    os.environ["RAY_TMPDIR"] = str(root / "r")  # our own ray_current_cluster, sockets, logs
    cluster = None
    try:
        model = Path(args.model) if args.model else build_model(root / "m.onnx")
        gifs = root / "gifs"
        if args.gifs:  # copies of the given GIFs under distinct names, to --count files
            src = sorted(p for p in Path(args.gifs).iterdir() if p.suffix.lower() == ".gif")
            gifs.mkdir()
            for i in range(args.count):
                shutil.copyfile(src[i % len(src)], gifs / f"{i:05d}-{src[i % len(src)].name}")
        else:
            make_gifs(gifs, args.count)
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": args.num_cpus, "include_dashboard": False},
        )
        address = cluster.address
        extra = [x for x in (args.driver_args or "").split() if x]

        fulls = []  # the first run also warms the cluster's worker pool and the page cache
        for k in range(1 + args.repeat):
            out = root / f"full{k}"
            t = time.perf_counter()
            subprocess.run(_driver(gifs, model, out, address, extra), check=True)
            fulls.append(time.perf_counter() - t)
        full = statistics.median(fulls[1:])
        n = _committed_rows(out)

        print(f"machine: {os.cpu_count()} CPUs; one-node cluster with {args.num_cpus} CPUs")
        print(f"inputs: {n} GIFs ({'copies of ' + args.gifs if args.gifs else 'generated'})")
        print(
            f"full run: {full:.1f} s (median of {args.repeat} after a warm-up run of "
            f"{fulls[0]:.1f} s; driver start-up included)"
        )
        # two ways to kill the driver "at 60%": SIGKILL from outside at 60% of the full
        # run's wall time (start-up included, so fewer than 60% of the GIFs are scored by
        # then), and a hard exit once it has received 60% of the rows (GIFSENT_RAY_FAULT)
        received = max(1, round(args.kill_at * n))
        for how in ("time", "rows"):
            out = root / f"killed-{how}"
            env = dict(os.environ)
            if how == "rows":
                env["GIFSENT_RAY_FAULT"] = f"received:{received}"
            proc = subprocess.Popen(_driver(gifs, model, out, address, extra), env=env)
            if how == "time":
                time.sleep(args.kill_at * full)
                alive = proc.poll() is None
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            if how == "rows":
                alive = proc.returncode == 137  # os._exit(137) at the fault point
            kept = _committed_rows(out)

            t = time.perf_counter()
            subprocess.run(_driver(gifs, model, out, address, extra), check=True)
            rerun = time.perf_counter() - t
            last = (read_manifest(out) or {}).get("runs", [{}])[-1]
            assert _committed_rows(out) == n
            when = (
                f"at {args.kill_at:.0%} of the wall time ({args.kill_at * full:.1f} s)"
                if how == "time"
                else f"after receiving {received} rows ({args.kill_at:.0%})"
            )
            print(
                f"driver killed {when}{'' if alive else ' [it had already finished]'}: "
                f"{kept} rows on disk ({kept / n:.0%}); rerun {rerun:.1f} s scored "
                f"{last.get('scored', 0) + last.get('failed', 0)} "
                f"(missing: {n - kept}), skipped {last.get('skipped')}"
            )
    finally:
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=40)
    ap.add_argument("--large", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--num-actors", type=int, default=None)
    ap.add_argument("--actor-cpus", type=float, default=None)
    ap.add_argument("--decode-cpus", type=float, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="runs per point (median)")
    ap.add_argument("--resume", action="store_true", help="measure what a killed driver keeps")
    ap.add_argument("--count", type=int, default=238, help="--resume: GIFs")
    ap.add_argument("--gifs", default=None, help="--resume: copy GIFs from this folder")
    ap.add_argument("--model", default=None, help="--resume: an exported model (default: bench)")
    ap.add_argument("--kill-at", type=float, default=0.6, help="--resume: fraction of a run")
    ap.add_argument("--driver-args", default="", help="--resume: more `gifsent-infer ray` args")
    ap.add_argument(
        "--model-width",
        default=None,
        help="C1,C2: conv channels of a heavier model (e.g. 64,128: model-bound; default: "
        "bench_infer's 16,32, decode-bound)",
    )
    args = ap.parse_args(argv)
    print(f"CPU: {cpu_line()}")
    if args.resume:
        bench_resume(args)
        return

    import ray

    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        model = build_model(root / "m.onnx")
        if args.model_width:
            c1, c2 = (int(x) for x in args.model_width.split(","))
            model = widen(model, root / "wide.onnx", c1, c2)
        sets = {}
        for n in (args.small, args.large):
            sets[n] = root / f"gifs{n}"
            make_gifs(sets[n], n)

        t = time.perf_counter()
        ray.init(
            address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False
        )
        t_init = time.perf_counter() - t

        # one warm-up of each (worker processes, page cache), then interleaved runs; medians
        time_ray(model, sets[args.small], root / "warm", args.batch_size, args)
        time_local(model, sets[args.small], root / "warm.jsonl", args.batch_size)
        runs: dict[str, dict[int, list[float]]] = {"local": {}, "ray": {}}
        for _ in range(args.repeat):
            for n, folder in sets.items():
                runs["local"].setdefault(n, []).append(
                    time_local(model, folder, root / f"local{n}.jsonl", args.batch_size)
                )
                runs["ray"].setdefault(n, []).append(
                    time_ray(model, folder, root / f"ray{n}", args.batch_size, args)
                )
        ray.shutdown()
        res = {k: {n: statistics.median(v) for n, v in d.items()} for k, d in runs.items()}

        print(f"machine: {os.cpu_count()} CPUs; Ray local instance with num_cpus={args.num_cpus}")
        print(f"model: {args.model_width or '16,32'} conv channels; Ray layout: {time_ray.layout}")  # type: ignore[attr-defined]
        print(f"ray.init (local instance): {t_init:.2f} s, paid once per driver")
        print(f"{'path':6} {'GIFs':>5} {'seconds':>8} {'GIFs/s':>7}")
        for name, times in res.items():
            for n, secs in times.items():
                print(f"{name:6} {n:5d} {secs:8.2f} {n / secs:7.1f}")
        lines = {
            k: fit(args.small, v[args.small], args.large, v[args.large]) for k, v in res.items()
        }
        for name, (fixed, per) in lines.items():
            print(f"{name:6} fixed {fixed:6.2f} s   per GIF {per * 1000:7.2f} ms")
        extra = (lines["ray"][1] - lines["local"][1]) * 1000
        print(
            f"Ray overhead: {lines['ray'][0] - lines['local'][0]:.2f} s per run, "
            f"{extra:+.2f} ms per GIF ({lines['ray'][1] / lines['local'][1]:.2f}x the local cost per GIF)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
