"""Exactly once for plain readers at every instant: a rerun that replaces error rows, killed at
each stage boundary (a deterministic fault hook) and once with a real SIGKILL, never shows
pyarrow two rows for one input, and the next run ends with the local CLI's rows."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("pyarrow")

from infer_support import build_model, gif_bytes, write_gifs  # noqa: E402
from ray_support import (  # noqa: E402
    assert_at_most_once,
    assert_same_row,
    assert_same_rows,
    init_local_ray,
    local_rows,
    pyarrow_rows,
)

from gifsent_infer.scaleout import distributed, ray_cluster  # noqa: E402
from gifsent_infer.scaleout.distributed import read_scores, score_with_ray  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# two rows per shard: the error rows of the first run land in several shards
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


def pyarrow_file(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=["path"]).to_pylist()
    except FileNotFoundError:  # replaced or removed in the meantime
        return []


class Killed(BaseException):
    """The driver 'dies' here: nothing after this point of score_with_ray runs."""


def assert_old_or_new(out: Path, old: dict, want: dict) -> None:
    """At most one row per input, and each row is the first run's or the final one."""
    for r in assert_at_most_once(out):
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
    s = score_with_ray([gifs], model, out, **SMALL)
    assert (s.scored, s.failed, s.skipped) == (5, 0, 5)
    stages = {st for st, _ in seen}
    assert {"recovered", "shard", "scored", "trimmed", "published", "committed"} <= stages
    assert_same_rows(pyarrow_rows(out), want)
    assert_same_rows(read_scores(out), want)
    assert not distributed.list_staged(out)

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
            score_with_ray([gifs], model, out, **SMALL)
        assert_old_or_new(out, old, want)
        monkeypatch.setattr(ray_cluster, "fault_hook", None)
        again = score_with_ray([gifs], model, out, **SMALL)
        assert again.scored + again.skipped == 10 and again.failed == 0, (stage, n)
        assert_same_rows(pyarrow_rows(out), want)
        assert_same_rows(read_scores(out), want)


def test_commit_is_idempotent_and_readers_ignore_staged_files(first_run, tmp_path):
    """Staged shards are invisible to pyarrow and pandas; committing twice changes nothing."""
    model, gifs, base, _old, want = first_run
    out = tmp_path / "out"
    shutil.copytree(base, out)
    with pytest.MonkeyPatch.context() as mp:

        def stop(stage: str, n: int) -> None:
            if stage == "scored":
                raise Killed

        mp.setattr(ray_cluster, "fault_hook", stop)
        with pytest.raises(Killed):
            score_with_ray([gifs], model, out, **SMALL)
    staged = distributed.list_staged(out)
    assert staged and all(p.name.startswith("_") and p.suffix == ".staged" for p in staged)
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_parquet(out)
    # the first run's 8 rows plus the 2 new inputs (committed directly); the replacements
    # of the 3 error rows are staged, so the error rows are still what readers see
    assert len(frame) == 10 and frame["path"].is_unique
    errors = frame[frame["status"] == "error"]
    assert sorted(Path(p).name for p in errors["path"]) == list(BROKEN)
    assert len(distributed.commit_staged(out)) == len(staged)
    names = sorted(p.name for p in distributed.list_shards(out))
    assert (
        distributed.commit_staged(out) == []
        and sorted(p.name for p in distributed.list_shards(out)) == names
    )
    assert_same_rows(read_scores(out), want)


def test_sigkilled_rerun_leaves_no_duplicates(first_run, tmp_path):
    """The issue's repro with a real SIGKILL: kill the rerun's driver as soon as one of its
    `part-g0002-*` shards appears; pyarrow must still see one row per input."""
    model, gifs, base, old, want = first_run
    out = tmp_path / "out"
    shutil.copytree(base, out)
    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", "from gifsent_infer.cli import main; main()"]
    args += ["ray", str(gifs), "--out", str(out)]
    args += ["--model", str(model), "--quiet"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    broken = {str(gifs / name) for name in BROKEN}
    deadline, checked = time.monotonic() + 240, set()
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            new = [p for p in out.glob("part-g0002-*.parquet") if p not in checked]
            # the first visible shard of the rerun that holds a replacement of an error row
            if any(broken & {r["path"] for r in pyarrow_file(p)} for p in new):
                os.kill(proc.pid, signal.SIGKILL)
                break
            checked.update(new)
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode in (-signal.SIGKILL, 0), err.decode()[-2000:]
    assert_old_or_new(out, old, want)
    again = score_with_ray([gifs], model, out, **SMALL)
    assert again.failed == 0
    assert_same_rows(pyarrow_rows(out), want)
