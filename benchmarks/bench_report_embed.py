"""Benchmark of `report --embed`: time and size of a report whose thumbnails are embedded.

    .venv/bin/python benchmarks/bench_report_embed.py [--n 238] [--gifs DIR]

Two folders of --n GIFs (default 238, the size of the case in issue 26):
  real       the GIFs of ../shared/gifs/real ($GIFSENT_SHARED_GIFS/real), copied round-robin
             under distinct names until there are --n (each is its own thumbnail)
  synthetic  --n procedural GIFs (tests/support.write_gifs: 64 px, a few frames)
Rows are synthetic (random scores, status ok), so no model is needed: what is measured is
the report (thumbnails made once each, written once). Prints the write time, the size, the
thumbnails embedded and data: URIs in the page (equal: each shipped once), with the load
average, since this machine is shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from machine import cpu_line  # noqa: E402

from gifsent_infer.contract import EMOTIONS  # noqa: E402
from gifsent_infer.views.report import write_report  # noqa: E402
from gifsent_infer.writing.outputs import write_rows  # noqa: E402

SHARED = Path(os.environ.get("GIFSENT_SHARED_GIFS") or "/work/shared/gifs")


def _rows(paths: list[Path], seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "path": str(p),
            "sha256": "",
            "model_id": "bench",
            "status": "ok",
            "error": "",
            **{e: float(v) for e, v in zip(EMOTIONS, rng.random(17), strict=True)},
        }
        for p in paths
    ]


def _measure(name: str, folder: Path, work: Path) -> None:
    paths = sorted(folder.iterdir())
    scores = work / f"{name}.csv"
    with open(scores, "w", encoding="utf-8", newline="") as f:
        write_rows(f, _rows(paths), "csv")
    out = work / f"{name}.html"
    t = time.perf_counter()
    s = write_report(scores, out, embed=True)
    dt = time.perf_counter() - t
    text = out.read_text(encoding="utf-8")
    print(
        f"{name:9s} {len(paths)} GIFs ({sum(p.stat().st_size for p in paths) / 1e6:.1f} MB): "
        f"{dt:.1f} s, {s.bytes / 1e6:.2f} MB, {s.embedded} thumbnails, "
        f"{text.count('data:image/gif;base64,')} data: URIs; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=238)
    ap.add_argument("--gifs", type=Path, default=SHARED / "real")
    args = ap.parse_args()
    print(cpu_line())
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        work = Path(tmp)
        if args.gifs.is_dir():
            real = sorted(p for p in args.gifs.iterdir() if p.is_file())
            folder = work / "real"
            folder.mkdir()
            for i in range(args.n):
                src = real[i % len(real)]
                shutil.copyfile(src, folder / f"{i:04d}-{src.name}")
            _measure("real", folder, work)
        else:
            print(f"(no {args.gifs}: real GIFs skipped)")
        from support import write_gifs

        write_gifs(work / "synthetic", args.n)
        _measure("synthetic", work / "synthetic", work)


if __name__ == "__main__":
    main()
