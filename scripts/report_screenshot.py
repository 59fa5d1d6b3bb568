"""Regenerate docs/report-real-gifs.png: score a GIF folder, write its HTML report, screenshot it in headless Chromium.

    make demo                                                  # the demo model, in demo-home/
    GIFSENT_HOME=demo-home .venv/bin/python scripts/report_screenshot.py ../shared/gifs/real

The picture in the README came from exactly this (the demo model is trained on procedural
demo data, so its scores on real GIFs mean nothing; the report says so in its banner).
`scripts/demo.py --preset tiny` makes a demo-data model in about 3 minutes instead. The PNG
is quantised to 128 colours to stay small.

docs/report-timeline.png (timeline strips and interval whiskers, README "When in the GIF")::

    gifsent-train demo-data /tmp/demo --n-gifs 200
    gifsent-train --preset tiny --data /tmp/demo --run-name s8 --segments 8 --seeds 3
    gifsent-export --run $GIFSENT_HOME/runs/s8 --model rnn --ensemble --out /tmp/s8-rnn.onnx
    .venv/bin/python scripts/report_screenshot.py /tmp/demo/gifs --model /tmp/s8-rnn.onnx \
        --score-args="--timeline --intervals 0.9" --top-n 5 --only-galleries \
        --out docs/report-timeline.png --size 900,700
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))
from tests.browser import FLAGS  # noqa: E402  (the browser tests' flags: one list)

# let lazy images load before the picture is taken; no scrollbar in it
SHOT_FLAGS = [*FLAGS, "--hide-scrollbars", "--virtual-time-budget=4000"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="GIFs to score, e.g. ../shared/gifs/real")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "report-real-gifs.png")
    ap.add_argument("--size", default="1100,1000", help="browser window, W,H")
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--model", help="the model to score with (default: the default model)")
    ap.add_argument("--score-args", default="", help="more `gifsent-infer score` options")
    ap.add_argument("--top-n", default="8", help="GIFs per gallery")
    ap.add_argument(
        "--only-galleries", action="store_true", help="start the picture at the galleries"
    )
    args = ap.parse_args(argv)

    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="gifsent-shot-") as tmp:
        tmp = Path(tmp)
        scores, report = tmp / "real.csv", tmp / "report" / "report.html"
        cli = str(BIN / "gifsent-infer")
        model = ["--model", args.model] if args.model else []
        subprocess.run(
            [
                cli,
                str(args.folder),
                "-o",
                str(scores),
                "--percentiles",
                *model,
                *args.score_args.split(),
            ],
            check=True,
        )
        title = f"gifsent report: {args.folder} (demo model)"
        subprocess.run(
            [
                cli,
                "report",
                str(scores),
                "-o",
                str(report),
                "--title",
                title,
                "-n",
                args.top_n,
                *model,
            ],
            check=True,
        )
        if args.only_galleries:  # hide what comes before the galleries (a copy; same report)
            html = report.read_text(encoding="utf-8")
            css = "<style>header,#model{display:none}</style></head>"
            report.write_text(html.replace("</head>", css, 1), encoding="utf-8")
        png = tmp / "shot.png"
        with tempfile.TemporaryDirectory(prefix="gifsent-chromium-") as profile:
            subprocess.run(
                [
                    args.chromium,
                    *SHOT_FLAGS,
                    f"--user-data-dir={profile}",
                    f"--window-size={args.size}",
                    f"--screenshot={png}",
                    report.resolve().as_uri(),
                ],
                check=True,
                capture_output=True,
            )
        img = Image.open(png).convert("RGB")
        small = img.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        small.save(args.out, optimize=True)
    print(f"{args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
