"""Ray Data scoring against the local CLI on the same GIFs: fixed cost and per-GIF overhead.

    .venv/bin/python benchmarks/bench_ray.py                      # 40 and 200 generated GIFs
    .venv/bin/python benchmarks/bench_ray.py --small 50 --large 400 --num-cpus 2

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
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_infer import build_model, make_gifs


def time_local(model: Path, gifs: Path, out: Path, batch_size: int) -> float:
    from gifsent_infer.cli import main

    args = [str(gifs), "--out", str(out), "--model", str(model), "--device", "cpu"]
    t = time.perf_counter()
    try:
        main([*args, "--batch-size", str(batch_size), "--quiet"])
    except SystemExit as e:
        assert e.code == 0, e.code
    return time.perf_counter() - t


def time_ray(model: Path, gifs: Path, out: Path, batch_size: int, num_actors: int | None) -> float:
    from gifsent_infer.distributed import score_with_ray

    t = time.perf_counter()
    s = score_with_ray(
        [gifs], model, out, resume=False, batch_size=batch_size, num_actors=num_actors
    )
    assert s.failed == 0 and s.scored == s.inputs
    return time.perf_counter() - t


def fit(n1: int, t1: float, n2: int, t2: float) -> tuple[float, float]:
    """(fixed seconds, seconds per GIF) of the line through (n1, t1) and (n2, t2)."""
    per = (t2 - t1) / (n2 - n1)
    return t1 - per * n1, per


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=40)
    ap.add_argument("--large", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--num-actors", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=2, help="runs per point; the best is kept")
    args = ap.parse_args(argv)

    import ray

    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        model = build_model(root / "m.onnx")
        sets = {}
        for n in (args.small, args.large):
            sets[n] = root / f"gifs{n}"
            make_gifs(sets[n], n)

        t = time.perf_counter()
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
        t_init = time.perf_counter() - t

        res: dict[str, dict[int, float]] = {"local": {}, "ray": {}}
        for n, folder in sets.items():
            res["local"][n] = min(
                time_local(model, folder, root / f"local{n}.jsonl", args.batch_size)
                for _ in range(args.repeat)
            )
            res["ray"][n] = min(
                time_ray(model, folder, root / f"ray{n}", args.batch_size, args.num_actors)
                for _ in range(args.repeat)
            )
        ray.shutdown()

        print(f"machine: {os.cpu_count()} CPUs; Ray local instance with num_cpus={args.num_cpus}")
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
