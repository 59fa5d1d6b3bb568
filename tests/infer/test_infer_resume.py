"""A run killed with SIGKILL, then rerun with --resume, gives every input once with the same scores."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from infer_support import build_model, write_gifs

from gifsent_infer.writing.outputs import partial_path, read_rows

N_GIFS = 250


def script() -> str:
    found = shutil.which("gifsent-infer", path=str(Path(sys.executable).parent))
    assert found
    return found


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    model = build_model(root / "m.onnx")
    gifs = root / "gifs"
    write_gifs(gifs, N_GIFS, frames=6, size=(48, 40))
    (gifs / "broken.gif").write_text("not a gif")  # an error row, retried on resume
    return model, gifs


def _args(model: Path, gifs: Path, out: Path, *extra: str) -> list[str]:
    # batch size 1 and one thread each: slow enough to kill mid-way, and deterministic
    return [
        script(),
        str(gifs),
        "--out",
        str(out),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--batch-size",
        "1",
        "--workers",
        "1",
        "--threads",
        "1",
        *extra,
    ]


def _data_lines(path: Path) -> int:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    lines = text.splitlines()
    return sum(1 for line in lines if not line.startswith("path,"))  # all but the CSV header


@pytest.mark.parametrize("ext", ["csv", "json"])
def test_sigkill_then_resume_scores_every_input_once_with_the_same_scores(setup, tmp_path, ext):
    model, gifs = setup
    reference = tmp_path / f"reference.{ext}"
    done = subprocess.run(
        _args(model, gifs, reference), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 1, done.stderr  # broken.gif fails
    expected = {r["path"]: r for r in read_rows(reference).rows}
    assert len(expected) == N_GIFS + 1

    out = tmp_path / f"killed.{ext}"
    partial = partial_path(out)
    proc = subprocess.Popen(
        _args(model, gifs, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while _data_lines(partial) < 25 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists()
    before = read_rows(partial).rows
    assert 25 <= len(before) < N_GIFS + 1
    with open(partial, "a") as f:  # as if killed in the middle of writing a line
        f.write('{"path": "torn' if ext == "json" else f"{gifs}/torn.gif,abc")

    resumed = subprocess.run(
        _args(model, gifs, out, "--resume"), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 1, resumed.stderr
    assert "torn line(s) dropped" in resumed.stderr
    skipped = sum(1 for r in before if r["status"] == "ok")
    assert f"{skipped} already scored" in resumed.stderr
    assert not partial.exists()

    rows = read_rows(out).rows
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) == N_GIFS + 1  # every input exactly once
    got = {r["path"]: r for r in rows}
    assert got == expected  # same hashes, same model id, same scores, same errors

    # resuming a finished run rescores nothing but the failed input
    again = subprocess.run(
        _args(model, gifs, out, "--resume"), capture_output=True, text=True, timeout=600
    )
    assert f"{N_GIFS} already scored" in again.stderr and "scored 0, failed 1" in again.stderr
    assert {r["path"]: r for r in read_rows(out).rows} == expected
