"""`make demo` from a fresh clone, install included: the wall time a new user waits.

    .venv/bin/python benchmarks/bench_fresh_demo.py            # clone HEAD, run make demo, time it
    .venv/bin/python benchmarks/bench_fresh_demo.py --keep     # keep the clone afterwards

Clones the committed HEAD of this checkout (uncommitted changes are not included) into a
temporary folder, runs `make demo` there (which creates .venv, pip-installs
gifsent[cpu,train,dev,ray,openvino] and runs the demo), and prints the total wall time, the demo's own
per-stage times (demo-home/demo-timings.json) and the remainder (venv + pip install + make).
pip uses this user's download cache, so a machine that has installed the packages before
installs faster than a first-ever install; the script prints the cache's size so the result
says which case it measured. Needs network access to PyPI (or a warm cache).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pip_cache_size() -> str:
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    path = Path(out) if out else None
    if not path or not path.is_dir():
        return "empty (no cache directory)"
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{total / 2**30:.2f} GiB at {path}"


def load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 1)[0]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default="python3", help="interpreter make uses to create .venv")
    ap.add_argument("--keep", action="store_true", help="keep the clone (and its demo-home)")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args(argv)

    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix="gifsent-fresh-"))
    clone = root / "gifsent"
    print(f"commit {head}; {os.cpu_count()} CPUs; pip cache {pip_cache_size()}")
    print(f"load average at start {load()}")
    try:
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "GIFSENT_HOME")}
        log = root / "make-demo.log"
        t0 = time.perf_counter()
        with open(log, "w") as f:
            proc = subprocess.run(
                ["make", "demo", f"PYTHON={args.python}"],
                cwd=clone,
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=args.timeout,
            )
        total = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"make demo failed (exit {proc.returncode}); last lines of {log}:")
            print("\n".join(log.read_text().splitlines()[-20:]))
            args.keep = True
            return 1
        record = json.loads((clone / "demo-home" / "demo-timings.json").read_text())
        stages = {k: float(v) for k, v in record["timings_s"].items()}
        staged = stages.get("total", sum(stages.values()))  # the demo script's own wall time
        print(f"load average at end {load()}")
        print(
            f"make demo from a fresh clone: {total:.0f} s ({total // 60:.0f} min {total % 60:.0f} s)"
        )
        for k, v in stages.items():
            print(f"  {k:<24}{v:8.1f} s")
        print(f"  {'venv + pip + make':<24}{total - staged:8.1f} s (make's wall minus the demo's)")
        return 0
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
