"""Exactly once for readers at every instant: a rerun that replaces error rows (MERGE) and adds
rows (append), killed at each stage boundary (a deterministic fault hook) and once with a real
SIGKILL inside a commit, never shows a reader two rows for one input or a row of neither run,
and the next run ends with the local CLI's rows."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("pyarrow")

from infer_support import build_model, gif_bytes, write_gifs  # noqa: E402
from ray_support import (  # noqa: E402
    assert_exactly_once,
    assert_same_row,
    init_local_ray,
    local_rows,
    reader_rows,
)

from gifsent_infer.scaleout import ray_cluster  # noqa: E402
from gifsent_infer.scaleout.distributed import read_scores, score_with_ray  # noqa: E402

pytest.importorskip("deltalake")

REPO = Path(__file__).resolve().parents[2]
# two rows per commit: the error rows of the first run land in several commits
SMALL = {"read_batch": 2, "batch_size": 2, "shard_rows": 2}
BROKEN = ("b1.gif", "b2.gif", "b3.gif")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    init_local_ray(ray)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A finished first run over 5 good and 3 broken GIFs (error rows), then the broken
    files fixed and 2 new GIFs added: the rerun replaces 3 committed rows and adds 2."""
    root = tmp_path_factory.mktemp("once")
    model = build_model(root / "m.onnx")
    gifs = root / "gifs"
    write_gifs(gifs, 5)
    for i, name in enumerate(BROKEN):
        (gifs / name).write_bytes(gif_bytes(50 + i)[:30])  # truncated
    base = root / "base"
    first = score_with_ray([gifs], model, base, **SMALL)
    assert (first.scored, first.failed) == (5, 3)
    old = {r["path"]: r for r in read_scores(base)}
    for i, name in enumerate(BROKEN):
        (gifs / name).write_bytes(gif_bytes(50 + i))
    write_gifs(gifs, 2, start=5)
    want = local_rows(model, gifs, root / "local.jsonl")
    assert len(want) == 10 and all(r["status"] == "ok" for r in want.values())
    return model, gifs, base, old, want


class Killed(BaseException):
    """The driver 'dies' here: nothing after this point of score_with_ray runs."""


def assert_old_or_new(out: Path, old: dict, want: dict) -> None:
    """Every input of the first run has one row, each the first run's or the final one
    (new inputs: none yet, or the final one)."""
    rows = reader_rows(out, "deltalake")
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "a reader sees two rows for one input"
    assert set(old) <= set(paths), "an input of the first run lost its row"
    for r in rows:
        ref = want[r["path"]] if r["status"] == "ok" else old[r["path"]]
        assert_same_row(r, ref)


@pytest.mark.slow  # about a dozen killed reruns and their completions
def test_every_stage_boundary_of_a_rerun_keeps_readers_exactly_once(
    first_run, tmp_path, monkeypatch
):
    model, gifs, base, old, want = first_run
    seen: list[tuple[str, int]] = []

    def observe(stage: str, n: int) -> None:
        if stage == "received":  # a row reached the driver: nothing on disk changes
            return
        seen.append((stage, n))
        assert_old_or_new(out, old, want)

    out = tmp_path / "observed"
    shutil.copytree(base, out)
    monkeypatch.setattr(ray_cluster, "fault_hook", observe)
    # no warm-up in the observed and the killed runs: the boundaries must repeat from run to
    # run, and how the driver and the cluster share the inputs changes how rows group into
    # commits (test_sigkilled_around_a_commit_leaves_no_duplicates kills a run with it)
    s = score_with_ray([gifs], model, out, warm_up=False, **SMALL)
    assert (s.scored, s.failed, s.skipped) == (5, 0, 5)
    stages = {st for st, _ in seen}
    assert {"recovered", "commit", "committed", "scored"} <= stages
    assert_exactly_once(out, want, ("deltalake",))

    # now kill the driver at each of those boundaries in turn; then a plain rerun finishes
    for stage, n in seen:
        out = tmp_path / f"kill-{stage}-{n}"
        shutil.copytree(base, out)

        def kill(st: str, k: int, stage=stage, n=n, out=out) -> None:
            if st == "received":
                return
            assert_old_or_new(out, old, want)
            if (st, k) == (stage, n):
                raise Killed

        monkeypatch.setattr(ray_cluster, "fault_hook", kill)
        with pytest.raises(Killed):
            score_with_ray([gifs], model, out, warm_up=False, **SMALL)
        assert_old_or_new(out, old, want)
        monkeypatch.setattr(ray_cluster, "fault_hook", None)
        again = score_with_ray([gifs], model, out, **SMALL)
        assert again.scored + again.skipped == 10 and again.failed == 0, (stage, n)
        assert_exactly_once(out, want, ("deltalake",))


def test_sigkilled_around_a_commit_leaves_no_duplicates(first_run, tmp_path):
    """A real SIGKILL 10 ms after the rerun's second commit starts (around its commits of
    new and replaced rows): readers see old or new rows only, and the next run ends with
    the local CLI's rows (test_ray_optional checks what a kill inside a commit leaves)."""
    model, gifs, base, old, want = first_run
    out = tmp_path / "out"
    shutil.copytree(base, out)
    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHONPATH": str(REPO)}
    # the rerun's rows: 2 new inputs (appended) and 3 replacements (merged); commits of
    # two rows: the replacements' first MERGE is the third commit at the latest
    env[ray_cluster.FAULT_ENV] = "commit:2@0.01"
    args = [sys.executable, "-c", "from gifsent_infer.cli import main; main()"]
    args += ["ray", str(gifs), "--out", str(out), "--model", str(model), "--quiet"]
    args += ["--commit-rows", "2"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert_old_or_new(out, old, want)
    again = score_with_ray([gifs], model, out, **SMALL)
    assert again.failed == 0
    assert_exactly_once(out, want)
