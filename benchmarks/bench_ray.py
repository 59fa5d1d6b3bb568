"""Ray scoring into a Delta Lake table against the old shard folder and the local CLI on
the same GIFs (fixed cost per run and cost per GIF), and what a killed driver keeps.

    .venv/bin/python benchmarks/bench_ray.py             # both parts, defaults (~10 min, 2 cores)
    .venv/bin/python benchmarks/bench_ray.py --quick     # a smoke run (~2 min)
    .venv/bin/python benchmarks/bench_ray.py --part overhead --small 40 --large 200
    .venv/bin/python benchmarks/bench_ray.py --part resume --counts 238,1000

Overhead: each path scores --small and then --large GIFs into a fresh output (no resume),
with the same model and batch size, in its own process (one warm-up, then --repeat rounds
over both sizes; medians): the local CLI; `score_with_ray` into a Delta table (this tree);
and `score_with_ray` into the old shard folder (the tree at --old-rev, extracted with `git
archive`). A straight line through the two timings splits each path into a fixed cost and
a cost per GIF. On a 2-core machine this measures overhead, not scaling.

Resume: a one-node cluster (ray.cluster_utils, --num-cpus CPUs) stays up; every run is a
separate `gifsent-infer ray --address` driver. For each of --counts: a full run (its wall
time T sets the kill point), --kills drivers SIGKILLed at --kill-at * T (start-up included;
a single kill lands on one run's luck) and one hard-exiting after receiving --kill-at of the
rows, each followed by a rerun; the table
is read with deltalake after each (one row per input is checked). For the last full run and
each killed driver it prints the driver's phases (GIFSENT_RAY_PHASES, see
gifsent_infer/scaleout/phases.py) as seconds from its process start, so that a reader sees
where the start-up goes and how far the run was when it was killed.

    .venv/bin/python benchmarks/bench_ray.py --part resume   # killed drivers only (~4 min quiet)
    .venv/bin/python benchmarks/bench_ray.py --part resume --driver-args=--no-warm-up
                                          # the same without the driver's warm-up

Every part prints the load average before and after it. Model and GIFs are bench_infer.py's.
"""

from __future__ import annotations

import argparse
import json
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

REPO = Path(__file__).resolve().parents[1]
OLD_REV = "1c03ae2"  # the last commit with the shard folder (before the Delta table)


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
    """score_with_ray of whichever gifsent_infer this process imports (the table, or the
    old tree's shard folder)."""
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
    return time.perf_counter() - t


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"


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


PHASES = (  # the driver's start-up in order (phases.py), then the workers' first steps
    "run_start",
    "ray_imported",
    "model_read",
    "inputs_listed",
    "ray_joined",
    "plan_ready",
    "actors_asked",
    "ray_data_imported",
    "table_ready",
    "resume_scanned",
    "pipeline_started",
    "warmup_ready",
    "warmup_first_rows",
    "actor_start",
    "model_loaded",
    "decode_start",
    "decode_first_done",
    "first_scored",
    "first_rows",
    "first_commit",
    "fault_exit",
    "rows_done",
    "run_done",
)
SHORT = {  # as printed
    "run_start": "cli",  # the CLI imported, score_with_ray entered
    "ray_imported": "ray",  # `import ray` (Ray's core)
    "model_read": "model",
    "inputs_listed": "inputs",
    "ray_joined": "joined",  # ray.init returned
    "plan_ready": "plan",  # the cluster's resources read, actors planned
    "actors_asked": "actors",  # the model actors asked for (their processes start)
    "ray_data_imported": "raydata",  # (before the own actors: Ray Data imported)
    "table_ready": "table",  # opened (or created) and scanned for resume, on a thread
    "resume_scanned": "antijoin",
    "pipeline_started": "pipeline",  # the first decoding tasks submitted
    "warmup_ready": "wready",  # the driver's own model session ready (the warm-up)
    "warmup_first_rows": "wrows1",  # the driver's warm-up scored its first inputs
    "actor_start": "actor",  # the model actor's constructor runs (its process is up)
    "model_loaded": "loaded",
    "decode_start": "dec0",  # the first decoding task runs
    "decode_first_done": "dec1",
    "first_scored": "scored1",  # the actor's first batch scored
    "first_rows": "rows1",  # the driver received the first block
    "first_commit": "commit1",
    "fault_exit": "exit",  # the hard exit of GIFSENT_RAY_FAULT
    "rows_done": "rowsN",
    "run_done": "end",
}


def phase_line(path: Path, killed_at: float | None = None) -> str:
    """The driver's phases as seconds from its process start (GIFSENT_RAY_PHASES log)."""
    from gifsent_infer.scaleout.phases import read_phases, timeline

    if not path.exists():
        return "(no phase log)"
    rows = read_phases(path)
    first: dict[str, float] = {}
    for sec, _, phase in timeline(rows):
        first.setdefault(phase, sec)
    parts = [f"{SHORT.get(p, p)} {first[p]:.2f}" for p in PHASES if p in first]
    if killed_at is not None:
        origin = min((r["t"] for r in rows if r["phase"] == "process_start"), default=None)
        if origin is not None:
            parts.append(f"KILL {killed_at - origin:.2f}")
    return ", ".join(parts)


def kept_by(path: Path, fraction: float, wall: float) -> int | None:
    """Rows a run had committed at `fraction` of its wall time (`wall` s from the driver's
    process start), from its phase log's commit lines: what a SIGKILL then would have
    left, read off the same run (no second run at another moment of a loaded machine)."""
    from gifsent_infer.scaleout.phases import read_phases

    if not path.exists():
        return None
    rows = read_phases(path)
    starts = [r["t"] for r in rows if r["phase"] == "process_start"]
    if not starts:
        return None
    at = min(starts) + fraction * wall
    kept = [r.get("rows", 0) for r in rows if r["phase"] == "commit" and r["t"] <= at]
    return max(kept, default=0)


def _committed_rows(out: Path) -> tuple[int, int]:
    """(rows, ok rows) of the table's latest snapshot (deltalake), checked one per input."""
    from deltalake import DeltaTable

    if not (out / "_delta_log").is_dir():
        return 0, 0
    t = DeltaTable(str(out)).to_pyarrow_table(columns=["path", "status"])
    paths = t.column("path").to_pylist()
    assert len(paths) == len(set(paths)), "a path appears twice"
    return len(paths), t.column("status").to_pylist().count("ok")


def _gifs(root: Path, args, count: int) -> Path:
    gifs = root / f"gifs{count}"
    if args.gifs:  # copies of the given GIFs under distinct names, to `count` files
        src = sorted(p for p in Path(args.gifs).iterdir() if p.suffix.lower() == ".gif")
        gifs.mkdir()
        for i in range(count):
            shutil.copyfile(src[i % len(src)], gifs / f"{i:05d}-{src[i % len(src)].name}")
    else:
        make_gifs(gifs, count)
    return gifs


def bench_resume(args) -> None:
    """Kill a driver at --kill-at of a full run's wall time (and after --kill-at of the rows),
    count what the table kept, rerun; for each of --counts."""
    import signal
    import subprocess

    from ray.cluster_utils import Cluster

    # (here, not at the top: the overhead part runs this script in the old tree, which has
    # no phase log)
    from gifsent_infer.scaleout.phases import PHASES_ENV

    root = Path(tempfile.mkdtemp(prefix="bray-", dir="/tmp"))
    os.environ["RAY_TMPDIR"] = str(root / "r")  # our own ray_current_cluster, sockets, logs
    cluster = None
    print(f"resume: {load()}")
    try:
        model = Path(args.model) if args.model else build_model(root / "m.onnx")
        cluster = Cluster(  # registering waits below, with a deadline that holds under load
            initialize_head=True,
            head_node_args={"num_cpus": args.num_cpus, "include_dashboard": False, "wait": False},
        )
        cluster.wait_for_nodes(timeout=180)
        address = cluster.address
        extra = [x for x in (args.driver_args or "").split() if x]
        print(f"machine: {os.cpu_count()} CPUs; one-node cluster with {args.num_cpus} CPUs")
        print(
            "phases: seconds from the driver's process start (GIFSENT_RAY_PHASES); cli = CLI "
            "imported, ray = `import ray`, joined = ray.init returned, actors = model actors "
            "asked for, table = table ready (scanned while joining), pipeline = first "
            "decoding tasks submitted, wready/wrows1 = the driver's warm-up session ready / "
            "first rows, actor/loaded = the model actor's process up / model loaded, dec0 = "
            "first decoding task, scored1 = the actor's first batch scored, rows1 = first "
            "rows at the driver (warm-up's or cluster's), commit1 = first commit, KILL = the "
            "SIGKILL, exit = the hard exit"
        )
        for count in (int(c) for c in args.counts.split(",")):
            gifs = _gifs(root, args, count)
            fulls = []  # the first run also warms the cluster's worker pool and the page cache
            for k in range(1 + args.repeat):
                out = root / f"full{count}-{k}"
                log = root / f"phases-full{count}-{k}.jsonl"
                env = {**os.environ, PHASES_ENV: str(log)}
                t = time.perf_counter()
                subprocess.run(_driver(gifs, model, out, address, extra), check=True, env=env)
                fulls.append(time.perf_counter() - t)
            full = statistics.median(fulls[1:])
            n, _ = _committed_rows(out)
            # each full run read as if SIGKILLed at --kill-at of its own wall time
            virtual = [
                kept_by(root / f"phases-full{count}-{k}.jsonl", args.kill_at, fulls[k])
                for k in range(1, 1 + args.repeat)
            ]
            print(
                f"inputs: {n} GIFs ({'copies of ' + args.gifs if args.gifs else 'generated'}); "
                f"full run: {full:.1f} s (median of {args.repeat} after a warm-up run of "
                f"{fulls[0]:.1f} s; driver start-up included); {load()}"
            )
            print(f"  phases of the last full run (s from process start): {phase_line(log)}")
            if all(v is not None for v in virtual):
                print(
                    f"  committed by {args.kill_at:.0%} of each full run's own wall time: "
                    + ", ".join(f"{v} rows ({v / n:.0%})" for v in virtual)
                    + f"; median {statistics.median(virtual) / n:.0%}"
                )
            # two ways to kill the driver "at 60%": SIGKILL from outside at 60% of the full
            # run's wall time (start-up included, so fewer than 60% of the GIFs are scored by
            # then), and a hard exit once it has received 60% of the rows (GIFSENT_RAY_FAULT)
            received = max(1, round(args.kill_at * n))
            sigkills = []  # rows kept by each SIGKILL at --kill-at of the wall time
            for k, how in enumerate(["time"] * args.kills + ["rows"]):
                out = root / f"killed-{how}-{count}-{k}"
                log = root / f"phases-{how}-{count}-{k}.jsonl"
                env = {**os.environ, PHASES_ENV: str(log)}
                killed_at = None
                if how == "rows":
                    env["GIFSENT_RAY_FAULT"] = f"received:{received}"
                proc = subprocess.Popen(_driver(gifs, model, out, address, extra), env=env)
                if how == "time":
                    time.sleep(args.kill_at * full)
                    alive = proc.poll() is None
                    killed_at = time.time()
                    proc.send_signal(signal.SIGKILL)
                proc.wait()
                if how == "rows":
                    alive = proc.returncode == 137  # os._exit(137) at the fault point
                kept, kept_ok = _committed_rows(out)
                if how == "time":
                    sigkills.append(kept)

                t = time.perf_counter()
                subprocess.run(_driver(gifs, model, out, address, extra), check=True)
                rerun = time.perf_counter() - t
                assert _committed_rows(out)[0] == n
                when = (
                    f"SIGKILL at {args.kill_at:.0%} of the wall time ({args.kill_at * full:.1f} s)"
                    if how == "time"
                    else f"hard exit after receiving {received} rows ({args.kill_at:.0%})"
                )
                print(
                    f"  {when}{'' if alive else ' [it had already finished]'}: {kept} rows "
                    f"in the table ({kept / n:.0%}), each once; rerun {rerun:.1f} s scored "
                    f"the {n - kept_ok} missing, skipped {kept_ok}"
                )
                print(f"    phases (s from process start): {phase_line(log, killed_at)}")
            if len(sigkills) > 1:
                print(
                    f"  SIGKILLs at {args.kill_at:.0%} of the wall time: kept "
                    + ", ".join(f"{v / n:.0%}" for v in sigkills)
                    + f"; median {statistics.median(sigkills) / n:.0%}"
                )
    finally:
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    print(f"resume done: {load()}")


def _worker(args) -> None:
    """One path's timings (run in its own process): --worker local|ray, printed as JSON."""
    root = Path(args.root)
    model, sets = Path(args.model), {n: root / f"gifs{n}" for n in (args.small, args.large)}
    if args.worker == "local":
        run = lambda n, out: time_local(model, sets[n], out.with_suffix(".jsonl"), args.batch_size)  # noqa: E731
    else:
        import ray

        ray.init(
            address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False
        )
        run = lambda n, out: time_ray(model, sets[n], out, args.batch_size, args)  # noqa: E731
    tag = f"{args.worker}-{os.getpid()}"
    run(args.small, root / f"{tag}-warm")
    times: dict[int, list[float]] = {args.small: [], args.large: []}
    for r in range(args.repeat):
        for n in times:
            times[n].append(run(n, root / f"{tag}-{n}-{r}"))
    print("RESULT " + json.dumps({n: statistics.median(v) for n, v in times.items()}))


def _run_worker(kind: str, args, root: Path, model: Path, pythonpath: Path) -> dict[int, float]:
    import subprocess

    cmd = [sys.executable, __file__, "--worker", "local" if kind == "local" else "ray"]
    cmd += ["--root", str(root), "--model", str(model), "--small", str(args.small)]
    cmd += ["--large", str(args.large), "--repeat", str(args.repeat)]
    cmd += ["--batch-size", str(args.batch_size), "--num-cpus", str(args.num_cpus)]
    for flag in ("num_actors", "actor_cpus", "decode_cpus"):
        if getattr(args, flag) is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"the {kind} worker failed:\n{proc.stderr[-3000:]}")
    return {int(k): v for k, v in json.loads(line[7:]).items()}


def bench_overhead(args) -> None:
    """The local CLI, Ray into a Delta table, Ray into the old shard folder: same GIFs."""
    import subprocess

    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    print(f"overhead: {load()}")
    try:
        model = build_model(root / "m.onnx")
        if args.model_width:
            c1, c2 = (int(x) for x in args.model_width.split(","))
            model = widen(model, root / "wide.onnx", c1, c2)
        for n in (args.small, args.large):
            make_gifs(root / f"gifs{n}", n)
        old = root / "old-tree"  # the shard-folder gifsent_infer, importable on its own
        old.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.old_rev, "gifsent_infer"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        paths = {"local CLI": REPO, "Ray -> Delta table": REPO, "Ray -> old folder": old}
        res = {}
        for name, tree in paths.items():
            kind = "local" if name == "local CLI" else "ray"
            try:
                res[name] = _run_worker(kind, args, root, model, tree)
            except SystemExit as e:
                if tree is not old:
                    raise
                # the old tree reads model documents up to schema 2 (current exports write 3)
                why = str(e).strip().splitlines()[-1][-160:]
                print(f"  {name}: skipped, the old tree could not run this model: {why}")
                continue
            print(f"  {name}: done ({load()})")
        print(f"machine: {os.cpu_count()} CPUs; Ray local instance with num_cpus={args.num_cpus}")
        print(f"model: {args.model_width or '16,32'} conv channels; old folder: {args.old_rev}")
        print(f"{'path':20} {args.small:>6} GIFs {args.large:>6} GIFs {'fixed':>8} {'per GIF':>9}")
        lines = {}
        for name, t in res.items():
            fixed, per = lines[name] = fit(args.small, t[args.small], args.large, t[args.large])
            print(
                f"{name:20} {t[args.small]:9.2f} s {t[args.large]:9.2f} s {fixed:7.2f} s "
                f"{per * 1000:7.2f} ms"
            )
        base = lines["local CLI"]
        for name in [n for n in ("Ray -> Delta table", "Ray -> old folder") if n in lines]:
            fixed, per = lines[name]
            print(
                f"{name} over the local CLI: {fixed - base[0]:+.2f} s per run, "
                f"{(per - base[1]) * 1000:+.2f} ms per GIF"
            )
        d, o = lines["Ray -> Delta table"], lines.get("Ray -> old folder")
        if o is not None:
            print(
                f"Delta table over the old folder: {d[0] - o[0]:+.2f} s per run, "
                f"{(d[1] - o[1]) * 1000:+.2f} ms per GIF"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"overhead done: {load()}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "overhead", "resume"), default="all")
    ap.add_argument("--quick", action="store_true", help="small settings: a smoke run")
    ap.add_argument("--small", type=int, default=40)
    ap.add_argument("--large", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--num-actors", type=int, default=None)
    ap.add_argument("--actor-cpus", type=float, default=None)
    ap.add_argument("--decode-cpus", type=float, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="runs per point (median)")
    ap.add_argument("--old-rev", default=OLD_REV, help="the tree with the shard folder")
    ap.add_argument("--counts", default="238,1000", help="resume: GIFs per case")
    ap.add_argument("--gifs", default=None, help="resume: copy GIFs from this folder")
    ap.add_argument("--model", default=None, help="resume: an exported model (default: bench)")
    ap.add_argument("--kill-at", type=float, default=0.6, help="resume: fraction of a run")
    ap.add_argument(
        "--kills", type=int, default=3, help="resume: SIGKILLed drivers per case (median)"
    )
    ap.add_argument("--driver-args", default="", help="resume: more `gifsent-infer ray` args")
    ap.add_argument(
        "--model-width",
        default=None,
        help="C1,C2: conv channels of a heavier model (e.g. 64,128: model-bound; default: "
        "bench_infer's 16,32, decode-bound)",
    )
    ap.add_argument("--worker", choices=("local", "ray"), help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args)
        return
    if args.quick:
        args.small, args.large, args.repeat, args.counts = 10, 40, 1, "60"
    print(f"CPU: {cpu_line()}")
    if args.part in ("all", "overhead"):
        bench_overhead(args)
    if args.part in ("all", "resume"):
        bench_resume(args)


if __name__ == "__main__":
    main()
