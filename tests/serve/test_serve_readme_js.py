"""The README's JavaScript `fetch` example, run for real: the snippet is cut from README.md's
Serving section (so the README cannot drift from what is tested) and run by Node.js (18+:
global fetch, FormData, Blob) against the real `gifsent-infer serve` with a bearer token.
The browser bits the snippet leans on (an <input type=file> holding a GIF, `token`) are
given by a small harness; everything else is the README's text, unchanged.

Node.js is not part of gifsent's install (the Makefile installs none), so without `node` on
PATH (or $GIFSENT_NODE) the test skips, also under CI=true."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from infer_support import build_model
from serve_support import start_server
from support import gif_bytes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

README = Path(__file__).resolve().parents[2] / "README.md"
README_BASE = (
    "http://127.0.0.1:8000"  # the address the snippet calls; the test's server replaces it
)
TOKEN = "readme-js-token"
# Given to the snippet: the page's file input (holding a GIF) and the token it sends.
HARNESS = """\
import { readFileSync } from "node:fs";
const FileClass = globalThis.File ?? (await import("node:buffer")).File;
const gif = new FileClass([readFileSync(process.env.GIF_PATH)], "cat.gif", { type: "image/gif" });
globalThis.document = {
  querySelector: (sel) => (sel === "input[type=file]" ? { files: [gif] } : null),
};
const token = process.env.TOKEN;
const logged = [];
const console = { log: (...args) => logged.push(args) };
"""
REPORT = """
process.stdout.write(JSON.stringify({ status: res.status, rows, logged }));
"""


def node() -> str:
    found = os.environ.get("GIFSENT_NODE") or shutil.which("node")
    if not found:
        pytest.skip("Node.js not found (not part of gifsent's install; $GIFSENT_NODE names one)")
    out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30)
    major = int(re.match(r"v(\d+)", out.stdout.strip()).group(1)) if out.returncode == 0 else 0
    if major < 18:
        pytest.skip(f"Node.js {out.stdout.strip() or '?'} has no global fetch (18+ needed)")
    return found


def readme_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Serving: `gifsent-infer serve`") :]
    blocks = re.findall(r"```javascript\n(.*?)```", section, flags=re.S)
    assert blocks, "README's Serving section has no JavaScript example"
    return blocks[0]


def test_the_readme_fetch_example_scores_a_gif(tmp_path):
    exe = node()
    snippet = readme_snippet()
    assert README_BASE in snippet, "the example no longer calls the default address"
    model = build_model(tmp_path / "tiny.onnx")
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    server = start_server(model, tmp_path, "--auth-token-file", str(token_file))
    try:
        script = tmp_path / "readme-example.mjs"
        script.write_text(HARNESS + snippet.replace(README_BASE, server.base) + REPORT)
        gif = tmp_path / "cat.gif"
        gif.write_bytes(gif_bytes(4))
        env = {**os.environ, "GIF_PATH": str(gif), "TOKEN": TOKEN}
        run = subprocess.run(
            [exe, str(script)], capture_output=True, text=True, env=env, timeout=120
        )
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["status"] == 200, out
        [row] = out["rows"]
        assert row["path"] == "cat.gif" and row["status"] == "ok"
        assert len(row["top"]) == 3  # ?top=3, as the example asks
        assert out["logged"] == [[row["top"]]]  # what its console.log printed
    finally:
        assert server.stop() == 0
