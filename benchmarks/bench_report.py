"""Benchmark of the HTML report: write time, file size, and how fast headless Chromium opens it.

    .venv/bin/python benchmarks/bench_report.py [--rows 1000 10000 50000] [--repeats 3]

Rows are synthetic (random scores; paths cycle through ../shared/gifs/real so the images in
view really load, or generated GIFs when that folder is absent). For each size:
  write_s     gifsent_infer.views.report.render + writing the file (Python, one thread)
  size        the HTML file
  ready_ms    in the page: performance.now() when the first table page is on screen
              (HTML parsed, JSON parsed, rows filtered and sorted, 50 rows built)
  open_s      wall time of `chromium --dump-dom` on the report, minus the same on a blank
              page (browser start-up), medians of interleaved runs
Chromium runs with the flags of tests/browser.py.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import cpu_line  # noqa: E402

from gifsent_infer.contract import EMOTIONS  # noqa: E402
from gifsent_infer.views.report import render  # noqa: E402
from tests.browser import FLAGS, find_browser  # noqa: E402

REAL = REPO.parent / "shared" / "gifs" / "real"


def gif_paths(tmp: Path) -> list[str]:
    if REAL.is_dir():
        return sorted(str(p) for p in REAL.glob("*.gif"))
    from tests.infer_support import write_gifs

    return [str(p) for p in write_gifs(tmp / "gifs", 20)]


def rows_for(n: int, paths: list[str], seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    scores = rng.random((n, len(EMOTIONS))).round(6)
    rows = []
    for i in range(n):
        status = "error" if i % 97 == 5 else "ok"  # about 1% error rows
        row = {"path": paths[i % len(paths)]}  # real files, repeated: the images in view load
        row.update(status=status, error="cannot decode: synthetic" if status != "ok" else "")
        if status == "ok":
            row.update(zip(EMOTIONS, scores[i].tolist(), strict=True))
        rows.append(row)
    return rows


def dump_dom_seconds(browser: str, url: str) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            timeout=300,
            check=True,
        )
        return time.perf_counter() - t0, proc.stdout.decode("utf-8", "replace")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    browser = find_browser()
    print(f"CPU: {cpu_line()}")
    print(f"browser: {browser or 'none (open times skipped)'}")
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        tmp = Path(tmp)
        paths = gif_paths(tmp)
        blank = tmp / "blank.html"
        blank.write_text("<!DOCTYPE html><html><body>blank</body></html>")
        print("| rows | write_s | size MB | ready_ms (median) | open_s over blank (median) |")
        print("|---:|---:|---:|---:|---:|")
        for n in args.rows:
            rows = rows_for(n, paths)
            out = tmp / f"report-{n}.html"
            t0 = time.perf_counter()
            text, _ = render(rows, out_dir=tmp, source_name=f"synthetic-{n}.jsonl")
            out.write_text(text, encoding="utf-8")
            write_s = time.perf_counter() - t0
            size = out.stat().st_size / 1e6
            ready, extra = [], []
            if browser:
                for _ in range(args.repeats):  # interleaved: blank, report, blank, report...
                    b, _ = dump_dom_seconds(browser, blank.as_uri())
                    r, dom = dump_dom_seconds(browser, out.as_uri())
                    extra.append(r - b)
                    m = re.search(r'data-ready-ms="(\d+)"', dom)
                    ready.append(int(m.group(1)) if m else float("nan"))
            rdy = f"{statistics.median(ready):.0f}" if ready else "-"
            opn = f"{statistics.median(extra):.2f}" if extra else "-"
            print(f"| {n:,} | {write_s:.2f} | {size:.1f} | {rdy} | {opn} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
