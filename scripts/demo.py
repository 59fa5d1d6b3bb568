"""The main job end to end on procedural demo data: data -> train -> export -> infer -> report.

Run by `make demo` with GIFSENT_HOME pointing at the demo folder. Each stage is the real
command a user would type (run as a subprocess), so the demo exercises exactly what the
README documents. Stages whose outputs exist are skipped by the commands themselves,
so an interrupted demo resumes. Wall time per stage goes to $GIFSENT_HOME/demo-timings.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from gifsent_infer import paths
from gifsent_infer.files import read_json, write_json
from gifsent_train.run import latest_run

BIN = Path(sys.executable).parent


def run(stage: str, argv: list[str], timings: dict, *, stdin: str | None = None) -> None:
    print(f"\n=== {stage}: {' '.join(argv)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run([str(BIN / argv[0]), *argv[1:]], input=stdin, text=True)
    timings[stage] = round(time.perf_counter() - start, 1)
    # gifsent-infer exits 1 when some inputs failed; the demo's GIFs must all score.
    if proc.returncode != 0:
        sys.exit(f"demo: stage '{stage}' failed with exit code {proc.returncode}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-gifs", type=int, default=600, help="demo GIFs (test split = 10%%)")
    parser.add_argument("--preset", default="demo", help="gifsent-train preset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    home = paths.home()
    data = paths.data_dir() / "demo"
    scores_csv = home / "scores.csv"
    report_html = home / "report.html"
    timings: dict[str, float] = {}
    total = time.perf_counter()

    if not (data / "demo.json").is_file():
        run(
            "demo data",
            [
                "gifsent-train",
                "demo-data",
                str(data),
                "--n-gifs",
                str(args.n_gifs),
                "--seed",
                str(args.seed),
            ],
            timings,
        )
    run(
        "train",
        ["gifsent-train", "--preset", args.preset, "--data", str(data), "--seed", str(args.seed)],
        timings,
    )
    run_layout = latest_run()
    if run_layout is None:
        sys.exit("demo: gifsent-train finished but recorded no run in runs/LATEST")
    # Ship the head that won on dev (the run's checkpoints/best.pt), whichever it is.
    best_head = read_json(run_layout.metrics)["best_head"]
    model_path = paths.default_model_path(best_head)
    run("export", ["gifsent-export", "--model", "best", "--run", str(run_layout.root)], timings)

    test_gifs = [str(data / "gifs" / f"{gif_id}.gif") for gif_id in run_layout.split_ids("test")]
    run(
        "infer",
        ["gifsent-infer", "-", "--out", str(scores_csv), "--model", str(model_path), "--quiet"],
        timings,
        stdin="\n".join(test_gifs) + "\n",
    )
    # The picture report of those scores (it carries the demo model's warning at the top).
    run("report", ["gifsent-infer", "report", str(scores_csv), "--out", str(report_html)], timings)
    timings["total"] = round(time.perf_counter() - total, 1)

    record = {
        "timings_s": timings,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "n_gifs": args.n_gifs,
        "preset": args.preset,
        "run": str(run_layout.root),
        "shipped_head": best_head,
    }
    write_json(home / "demo-timings.json", record, sort_keys=False)

    print((run_layout.report / "table1.md").read_text(encoding="utf-8"))
    print(f"run folder : {run_layout.root}")
    print(f"report     : {run_layout.report}")
    print(f"model      : {model_path}  (best head on dev: {best_head})")
    if model_path.parent == Path.cwd() / paths.DEMO_HOME_NAME / "models":
        print("             `gifsent-infer ./gifs --out scores.csv` run here finds it by default")
    print(f"scores     : {scores_csv}  ({len(test_gifs)} test GIFs)")
    print("seconds    : " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    print(f"html report: {report_html}  (open it in a browser)")


if __name__ == "__main__":
    main()
