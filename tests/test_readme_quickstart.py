"""The README's quick start and `gifsent-infer` usage lines, run in order on a fresh tree.

A copy of the repository's tracked files (a fresh clone, without its history) runs
`make demo` (the tiny preset, so it takes seconds; the venv is this one), then the usage
lines of "Scoring GIFs", "A picture report" and "Search over scored GIFs" exactly as the
README writes them, from the repository folder, with no GIFSENT_HOME or GIFSENT_MODEL set:
the demo's model must be found where `make demo` put it. The user's own files the lines
name (./gifs, a.gif, clips/, m.onnx, scores.csv) are made first; the one line that reads
/data reads ./gifs instead, and the example.org URL cannot be reached offline, so that line
exits 1 with an error row for it (what it documents), every other line exits 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _block_after(readme: str, heading: str) -> list[str]:
    """The command lines of the first ```bash block after `heading` (comments dropped)."""
    at = readme.index(heading)
    block = readme[readme.index("```bash", at) :].split("```", 2)[1].removeprefix("bash")
    lines = []
    for line in block.strip().splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).rstrip()  # a trailing "  # comment"
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _fresh_tree(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / os.fsdecode(name)
        if src.is_file():
            (dest / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / os.fsdecode(name))
    return dest


def test_readme_quick_start_and_usage_lines_run_in_order(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quick = _block_after(readme, "## Quick start")
    assert quick[0].startswith("make demo") and quick[1].startswith("make test")
    tree = _fresh_tree(tmp_path / "gifsent")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIFSENT_")}
    env["HOME"] = str(tmp_path / "home")  # nothing in the real ~/.gifsent counts
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    venv = Path(sys.executable).parent.parent
    make = [
        "make",
        "-o",
        f"{venv}/.installed",  # this venv is installed already: no pip in a test
        f"VENV={venv}",
        f"PY={sys.executable}",
        "DEMO_ARGS=--preset tiny --n-gifs 60",
        "demo",
    ]
    proc = subprocess.run(make, cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    models = sorted((tree / "demo-home" / "models").glob("gifsent-*.onnx"))
    assert models, "make demo wrote no model under demo-home/models"

    # the user's files that the usage lines name
    demo_gifs = sorted((tree / "demo-home" / "data" / "demo" / "gifs").glob("*.gif"))[:6]
    (tree / "gifs").mkdir()
    for g in demo_gifs[:4]:
        shutil.copy(g, tree / "gifs" / g.name)
    shutil.copy(demo_gifs[4], tree / "a.gif")
    (tree / "clips" / "sub").mkdir(parents=True)
    shutil.copy(demo_gifs[5], tree / "clips" / "sub" / "c.gif")
    shutil.copy(models[0], tree / "m.onnx")

    usage = _block_after(readme, "## Scoring GIFs: `gifsent-infer`")
    usage += _block_after(readme, "### A picture report")
    usage += [
        ln for ln in _block_after(readme, "### Search over scored GIFs") if "--embeddings" not in ln
    ]
    assert usage[0] == "gifsent-infer ./gifs --out scores.csv"
    for line in usage:
        cmd = line.replace("find /data ", "find ./gifs ")
        proc = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {cmd}"],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        expected = 1 if "https://example.org" in line else 0
        assert proc.returncode == expected, f"{line}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, line
    assert "procedural demo data" in (tree / "report.html").read_text(encoding="utf-8")
