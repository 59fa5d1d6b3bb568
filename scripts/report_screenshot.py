"""Regenerate docs/report-real-gifs.png: score a GIF folder, write its HTML report, screenshot it in headless Chromium.

    make demo                                                  # the demo model, in demo-home/
    GIFSENT_HOME=demo-home .venv/bin/python scripts/report_screenshot.py ../shared/gifs/real

The picture in the README came from exactly this (the demo model is trained on procedural
demo data, so its scores on real GIFs mean nothing; the report says so in its banner).
`scripts/demo.py --preset tiny` makes a demo-data model in about 3 minutes instead. The PNG
is quantised to 128 colours to stay small.
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
    args = ap.parse_args(argv)

    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="gifsent-shot-") as tmp:
        tmp = Path(tmp)
        scores, report = tmp / "real.csv", tmp / "report" / "report.html"
        cli = str(BIN / "gifsent-infer")
        subprocess.run([cli, str(args.folder), "-o", str(scores), "--percentiles"], check=True)
        title = f"gifsent report: {args.folder} (demo model)"
        subprocess.run(
            [cli, "report", str(scores), "-o", str(report), "--title", title], check=True
        )
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
