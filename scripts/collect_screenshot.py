"""Regenerate docs/collect-page.png: the voting page of `gifsent-train collect` on demo GIFs.

    .venv/bin/python scripts/collect_screenshot.py

Makes 12 procedural demo GIFs, starts `gifsent-train collect` on a free loopback port with a
throw-away database, and screenshots the page in headless Chromium (the browser tests'
flags). The PNG is quantised to 128 colours to stay small.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.browser import FLAGS  # noqa: E402  (the browser tests' flags: one list)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "collect-page.png")
    ap.add_argument("--size", default="1100,640", help="browser window, W,H")
    ap.add_argument("--chromium", default="chromium")
    args = ap.parse_args(argv)

    from PIL import Image

    from gifsent_train.demo_data import make_demo_data

    with tempfile.TemporaryDirectory(prefix="gifsent-shot-") as tmp:
        tmp = Path(tmp)
        make_demo_data(tmp / "demo", n_gifs=12, comparisons_per_gif=2, size_range=(160, 160))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        code = "from gifsent_train.cli import main; main()"
        cmd = [sys.executable, "-c", code, "collect", "--gifs", str(tmp / "demo" / "gifs")]
        cmd += ["--db", str(tmp / "votes.sqlite"), "--port", str(port), "--seed", "3"]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/"
            for _ in range(600):
                try:
                    urllib.request.urlopen(url + "healthz", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            png = tmp / "shot.png"
            with tempfile.TemporaryDirectory(prefix="gifsent-chromium-") as profile:
                shot = [args.chromium, *FLAGS, "--hide-scrollbars", "--virtual-time-budget=3000"]
                shot += [f"--user-data-dir={profile}", f"--window-size={args.size}"]
                subprocess.run(
                    [*shot, f"--screenshot={png}", url],
                    check=True,
                    capture_output=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=30)
        img = Image.open(png).convert("RGB")
        small = img.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        small.save(args.out, optimize=True)
    print(f"{args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
