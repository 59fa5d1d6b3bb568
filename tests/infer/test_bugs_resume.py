"""Resume keeps a row only when the same model scored the same bytes: CLI, library and Ray paths.

Each test resumes (1) with a different model and (2) after a file's content changed, and
checks the rows against a fresh run of the new model / new content. They kill two plausible
bugs that the older resume tests let through: resume ignoring model_id (keeping rows another
model scored) and resume ignoring sha256 (keeping rows of files whose content changed).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
from infer_support import build_model, gif_bytes, write_gifs

from gifsent_infer.cli import main
from gifsent_infer.contract import EMOTIONS
from gifsent_infer.writing.outputs import read_rows


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    # same contract, different weights: every GIF gets different scores from the two
    return build_model(root / "a.onnx", seed=0), build_model(root / "b.onnx", seed=1)


def run_cli(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def cli_rows(gifs: Path, model: Path, out: Path, *extra: str) -> dict[str, dict]:
    code = run_cli(gifs, "--out", out, "--model", model, "--device", "cpu", "--quiet", *extra)
    assert code == 0
    rows = read_rows(out).rows
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows), "a path has two rows"
    return by_path


def assert_rows_equal(got: dict[str, dict], want: dict[str, dict]) -> None:
    assert set(got) == set(want)
    for path, row in got.items():
        ref = want[path]
        assert row["model_id"] == ref["model_id"], path
        assert row["sha256"] == ref["sha256"], path
        for e in EMOTIONS:
            assert math.isclose(float(row[e]), float(ref[e]), abs_tol=1e-6), (path, e)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_cli_resume_with_another_model_rescores_everything(models, tmp_path, fmt):
    model_a, model_b = models
    gifs = tmp_path / "gifs"
    write_gifs(gifs, 4)
    out = tmp_path / f"scores.{fmt}"
    first = cli_rows(gifs, model_a, out)
    resumed = cli_rows(gifs, model_b, out, "--resume")
    fresh = cli_rows(gifs, model_b, tmp_path / f"fresh.{fmt}")
    model_b_id = sha(model_b.read_bytes())
    assert {r["model_id"] for r in resumed.values()} == {model_b_id}
    assert_rows_equal(resumed, fresh)
    # the two models really disagree, so keeping model A's rows could not pass by chance
    some = next(iter(first))
    assert abs(float(first[some]["happiness"]) - float(fresh[some]["happiness"])) > 1e-3


def test_cli_resume_rescores_a_file_whose_content_changed(models, tmp_path):
    model_a, _ = models
    gifs = tmp_path / "gifs"
    paths = write_gifs(gifs, 4)
    out = tmp_path / "scores.csv"
    before = cli_rows(gifs, model_a, out)
    new = gif_bytes(77)
    paths[1].write_bytes(new)  # same name, other content
    resumed = cli_rows(gifs, model_a, out, "--resume")
    fresh = cli_rows(gifs, model_a, tmp_path / "fresh.csv")
    assert resumed[str(paths[1])]["sha256"] == sha(new)
    assert_rows_equal(resumed, fresh)
    assert before[str(paths[1])]["sha256"] != sha(new)
    changed = str(paths[1])
    assert abs(float(before[changed]["happiness"]) - float(fresh[changed]["happiness"])) > 1e-3


def test_library_skip_hook_sees_the_current_content_and_results_name_the_model(models, tmp_path):
    """The library's resume building block: skip(path, sha256) gets the sha256 of the bytes
    read now, and every result names the model that scored it."""
    from gifsent_infer import Scorer

    model_a, model_b = models
    paths = write_gifs(tmp_path / "gifs", 3)
    a, b = Scorer(model_a, device="cpu"), Scorer(model_b, device="cpu")
    assert a.model_id == sha(model_a.read_bytes()) and b.model_id == sha(model_b.read_bytes())
    assert a.model_id != b.model_id

    first = {r.path: r for r in a.score_many([str(p) for p in paths], workers=0)}
    assert all(r.ok and r.model_id == a.model_id for r in first.values())
    done = {p: (r.sha256, r.model_id) for p, r in first.items()}

    new = gif_bytes(55)
    paths[0].write_bytes(new)
    seen: dict[str, str] = {}

    def skip(path: str, digest: str) -> bool:  # what a caller's resume does
        seen[path] = digest
        return done.get(path) == (digest, b.model_id)

    again = {r.path: r for r in b.score_many([str(p) for p in paths], workers=0, skip=skip)}
    assert seen[str(paths[0])] == sha(new)
    assert seen[str(paths[1])] == sha(paths[1].read_bytes())
    assert all(r.status == "ok" and r.model_id == b.model_id for r in again.values())
    assert again[str(paths[0])].sha256 == sha(new)
    # the same model on unchanged content is skipped
    third = list(b.score_many([str(p) for p in paths], workers=0, skip=lambda p, d: True))
    assert [r.status for r in third] == ["skipped"] * 3


def test_ray_resume_with_another_model_and_changed_content(models, tmp_path):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    pytest.importorskip("pyarrow")
    from gifsent_infer.scaleout.distributed import read_scores, score_with_ray

    model_a, model_b = models
    gifs = tmp_path / "gifs"
    paths = write_gifs(gifs, 4)
    out = tmp_path / "out"
    small = {"read_batch": 2, "batch_size": 2, "shard_rows": 4}
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=100 << 20,
            configure_logging=False,
        )
    try:
        first = score_with_ray([gifs], model_a, out, **small)
        assert (first.scored, first.skipped) == (4, 0)
        # another model: nothing is skipped, every row is model B's
        second = score_with_ray([gifs], model_b, out, **small)
        assert (second.scored, second.skipped) == (4, 0)
        rows = read_scores(out)
        assert len(rows) == 4 and {r["model_id"] for r in rows} == {sha(model_b.read_bytes())}
        # changed content with the same model: only that file is rescored
        new = gif_bytes(66)
        paths[2].write_bytes(new)
        third = score_with_ray([gifs], model_b, out, **small)
        assert (third.scored, third.skipped) == (1, 3)
        rows = {r["path"]: r for r in read_scores(out)}
        assert len(rows) == 4 and rows[str(paths[2])]["sha256"] == sha(new)
    finally:
        if started:
            ray.shutdown()
    want = cli_rows(gifs, model_b, tmp_path / "local.csv")
    assert_rows_equal(rows, want)
