"""Ray Data on a local Ray instance (2 CPUs): scoring into a Delta table gives the local CLI's rows exactly once (killed workers, resume, a killed driver); features fill the local cache."""

from __future__ import annotations

from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("pyarrow")

from infer_support import build_model, gif_bytes, write_bad_inputs_folder, write_gifs  # noqa: E402
from ray_support import assert_exactly_once, assert_same_rows, local_rows  # noqa: E402

from gifsent_infer.scaleout import ray_cluster  # noqa: E402
from gifsent_infer.scaleout.distributed import read_scores, score_with_ray  # noqa: E402

pytest.importorskip("deltalake")

# small commits and batches, so that a dozen inputs spread over several tasks and commits
SMALL = {"read_batch": 3, "batch_size": 2, "shard_rows": 4}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",  # never a cluster someone else started on this machine
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 << 20,
        configure_logging=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    model = build_model(root / "m.onnx")
    gifs = write_bad_inputs_folder(root / "gifs", 8)
    return model, gifs


def history(out: Path) -> list[str]:
    from deltalake import DeltaTable

    return [h["operation"] for h in reversed(DeltaTable(str(out)).history())]


def test_matches_local_cli_row_for_row_for_every_reader(setup, tmp_path):
    model, gifs = setup
    want = local_rows(model, gifs, tmp_path / "local.jsonl")
    assert len(want) == 12

    summary = score_with_ray([gifs], model, tmp_path / "out", **SMALL)
    assert (summary.scored, summary.failed, summary.skipped) == (9, 3, 0)
    rows = read_scores(tmp_path / "out")
    assert_same_rows(rows, want)
    bad = {Path(r["path"]).name: r["error"] for r in rows if r["status"] == "error"}
    assert set(bad) == {"truncated.gif", "zero.gif", "text.gif"}
    assert "empty file" in bad["zero.gif"] and "not a GIF" in bad["text.gif"]
    # one commit per 4 rows (appends: the table had none of them), then a compaction
    assert summary.commits == 3
    assert history(tmp_path / "out") == ["CREATE TABLE", *["WRITE"] * 3, "OPTIMIZE"]
    assert_exactly_once(tmp_path / "out", want, ("deltalake", "duckdb", "polars", "pandas"))


def test_killed_workers_lose_and_duplicate_nothing(setup, tmp_path, monkeypatch):
    model, gifs = setup
    want = local_rows(model, gifs, tmp_path / "local.csv")
    marker = tmp_path / "actor.died"
    # the model actor dies on its first batch: Ray restarts it and retries the batch (no
    # warm-up: the driver would score the first inputs, maybe all twelve, itself)
    monkeypatch.setenv(ray_cluster.WORKER_FAULT_ENV, str(marker))
    summary = score_with_ray([gifs], model, tmp_path / "out", warm_up=False, **SMALL)
    assert marker.exists()
    assert summary.scored + summary.failed == 12
    assert_exactly_once(tmp_path / "out", want, ("deltalake",))


@pytest.mark.parametrize("warm_up", [True, False])
def test_the_drivers_warm_up_and_the_cluster_score_each_input_once(
    setup, tmp_path, monkeypatch, warm_up
):
    """With the warm-up the driver scores the first inputs itself (its phase log says so)
    until the actors' first block; without it, only the actors score. Either way: the local
    CLI's rows, each input once, whatever the split."""
    from gifsent_infer.scaleout.phases import PHASES_ENV, read_phases

    model, gifs = setup
    want = local_rows(model, gifs, tmp_path / "local.jsonl")
    log = tmp_path / "phases.jsonl"
    monkeypatch.setenv(PHASES_ENV, str(log))
    one = {**SMALL, "read_batch": 1}  # twelve chunks, so that the two can share them
    s = score_with_ray([gifs], model, tmp_path / "out", warm_up=warm_up, **one)
    assert (s.scored, s.failed, s.skipped) == (9, 3, 0)
    assert_same_rows(read_scores(tmp_path / "out"), want)
    assert_exactly_once(tmp_path / "out", want, ("deltalake",))
    phases = {(r["role"], r["phase"]) for r in read_phases(log)}
    assert (("driver", "warmup_first_rows") in phases) == warm_up
    assert ("driver", "first_commit") in phases


def test_resume_skips_scored_inputs_and_retries_errors(setup, tmp_path):
    model, _ = setup
    part = tmp_path / "gifs"
    write_gifs(part, 5)
    (part / "broken.gif").write_text("not a gif")
    out = tmp_path / "out"
    first = score_with_ray([part], model, out, **SMALL)
    assert (first.scored, first.failed) == (5, 1)

    write_gifs(part, 3, start=5)  # new inputs
    (part / "g00000.gif").write_bytes(gif_bytes(42))  # changed content: rescored
    (part / "broken.gif").write_bytes(gif_bytes(43))  # fixed: the error row is retried
    second = score_with_ray([part], model, out, **SMALL)
    assert (second.scored, second.failed, second.skipped) == (5, 0, 4)
    assert second.version > first.version

    want = local_rows(model, part, tmp_path / "local.jsonl")
    rows = read_scores(out)
    assert_same_rows(rows, want)
    assert all(r["status"] == "ok" for r in rows)
    # the old error row and the old content's row were replaced (MERGE), not added to
    assert "MERGE" in history(out)
    assert_exactly_once(out, want, ("deltalake",))

    again = score_with_ray([part], model, out, **SMALL)
    assert (again.scored, again.failed, again.skipped, again.commits) == (0, 0, 9, 0)

    # --no-resume: every row rescored and MERGEd; rows of inputs not named are removed
    fresh = score_with_ray([part / "g00001.gif", part / "g00002.gif"], model, out, resume=False)
    assert (fresh.scored, fresh.skipped, fresh.removed) == (2, 0, 7)
    assert [Path(r["path"]).name for r in read_scores(out)] == ["g00001.gif", "g00002.gif"]
    # time travel: the snapshot before the --no-resume run still has all nine
    assert len(read_scores(out, version=again.version)) == 9


def test_killed_driver_keeps_its_shards_and_the_rerun_scores_only_the_rest(
    setup, tmp_path, monkeypatch
):
    model, gifs = setup
    want = local_rows(model, gifs, tmp_path / "local.jsonl")
    out = tmp_path / "out"

    class Killed(BaseException):
        pass

    def kill(stage: str, n: int) -> None:
        if (stage, n) == ("committed", 2):
            raise Killed

    monkeypatch.setattr(ray_cluster, "fault_hook", kill)
    with pytest.raises(Killed):  # the driver dies right after its second commit
        score_with_ray([gifs], model, out, **SMALL)
    monkeypatch.setattr(ray_cluster, "fault_hook", None)
    kept = read_scores(out)
    assert len(kept) == 2 * SMALL["shard_rows"]  # both commits, 4 rows each
    ok = sum(r["status"] == "ok" for r in kept)
    again = score_with_ray([gifs], model, out, **SMALL)
    # only what is missing (and error rows, which are always retried) is scored again
    assert again.skipped == ok and again.scored + again.failed == 12 - ok
    assert_exactly_once(out, want, ("deltalake",))


def test_an_actor_holding_every_cpu_still_gets_its_inputs_decoded(setup, tmp_path):
    """--actor-cpus 2 --decode-cpus 0 on 2 CPUs: the model actor reserves both CPUs and runs
    two onnxruntime threads, decoding tasks reserve none (they share the cores)."""
    model, gifs = setup
    want = local_rows(model, gifs, tmp_path / "local.jsonl")
    s = score_with_ray([gifs], model, tmp_path / "out", actor_cpus=2, decode_cpus=0, **SMALL)
    assert (s.actor_cpus, s.threads, s.decode_cpus, s.decode_tasks) == (2.0, 2, 0.0, 2)
    assert_same_rows(read_scores(tmp_path / "out"), want)


def test_features_fill_the_same_cache_as_the_local_stage(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import numpy as np
    import torch

    from gifsent_models.registry import create_encoder
    from gifsent_train.features import FeatureItem, FeatureOptions, extract_features
    from gifsent_train.ray_features import extract_features_with_ray

    torch.manual_seed(0)
    encoder = create_encoder("resnext3d-tiny", random_init=True)
    gifs = write_gifs(tmp_path / "gifs", 4, frames=5, size=(40, 36))
    bad = tmp_path / "gifs" / "bad.gif"
    bad.write_bytes(b"GIF89a\x10\x00\x10\x00\x00\x00\x00!garbage")
    items = [FeatureItem(p.stem, p, 2 if i % 2 else 1) for i, p in enumerate(gifs)]
    items.append(FeatureItem("bad", bad, 1))
    opts = FeatureOptions(mode="augmented", views=2, batch_size=2, backend="torch")

    local = extract_features(encoder, items, opts, cache_root=tmp_path / "local")
    marker = tmp_path / "encoder.died"
    monkeypatch.setenv(ray_cluster.WORKER_FAULT_ENV, str(marker))
    got = extract_features_with_ray(encoder, items, opts, cache_root=tmp_path / "ray", read_batch=2)
    assert marker.exists()  # an encoder actor died on its first batch
    assert got.encoded == local.encoded == 6 and got.cached == 0
    assert set(got.failures) == set(local.failures) == {"bad"}
    assert got.sha256 == local.sha256
    assert got.cache_dir.relative_to(tmp_path / "ray") == local.cache_dir.relative_to(
        tmp_path / "local"
    )
    for gid, views in local.entries.items():
        assert set(got.entries[gid]) == set(views)
        for v, p in views.items():
            np.testing.assert_allclose(
                np.load(got.entries[gid][v]), np.load(p), rtol=1e-5, atol=1e-6
            )
    # the local stage finds everything the Ray path wrote: one cache, two ways to fill it
    again = extract_features(encoder, items, opts, cache_root=tmp_path / "ray")
    assert (again.encoded, again.cached) == (0, 6)


def test_cli_ray_command(setup, tmp_path, capsys):
    from gifsent_infer import cli

    if "ray" not in {c.name for c in cli.app.registered_commands}:
        pytest.skip("`gifsent-infer ray` is not wired into gifsent_infer/cli.py yet")
    model, gifs = setup
    out = tmp_path / "out"
    args = ["ray", str(gifs), "--out", str(out), "--model", str(model)]
    with pytest.raises(SystemExit) as e:
        cli.main([*args, "--commit-rows", "5", "--commit-seconds", "30", "--no-compact"])
    assert e.value.code == 1  # three bad inputs
    assert "scored 9, failed 3" in capsys.readouterr().err
    assert history(out) == ["CREATE TABLE", "WRITE", "WRITE", "WRITE"]  # 5 + 5 + 2 rows
    with pytest.raises(SystemExit) as e:
        cli.main([*args, "--device", "cuda", "--no-resume"])
    assert e.value.code == 2 and "no GPUs" in capsys.readouterr().err
    assert len(read_scores(out)) == 12  # a usage error empties nothing, even with --no-resume


def test_private_urls_are_refused_unless_allowed(setup, tmp_path):
    """The SSRF policy of the local CLI holds on Ray too: a URL on 127.0.0.1 is an error row by
    default and is fetched with allow_private_urls=True (the policy is checked in the
    decoding tasks, where the download happens)."""
    from hostile_http import HostileServer

    model, _ = setup
    with HostileServer(gif_bytes(7)) as server:
        url = f"{server.base}/ok.gif"
        refused = score_with_ray([url], model, tmp_path / "refused", **SMALL)
        (row,) = read_scores(tmp_path / "refused")
        assert (refused.scored, refused.failed) == (0, 1)
        assert row["status"] == "error" and "--allow-private-urls" in row["error"]
        allowed = score_with_ray(
            [url], model, tmp_path / "allowed", allow_private_urls=True, **SMALL
        )
        (row,) = read_scores(tmp_path / "allowed")
        assert (allowed.scored, allowed.failed) == (1, 0) and row["status"] == "ok"


def test_a_model_actor_that_cannot_start_is_named_in_one_line(setup, tmp_path):
    """Options the model's engine refuses fail the run with the engine's own words (the
    driver's warm-up session fails the same way and hands every input to the actors)."""
    from gifsent_infer.scaleout.distributed import RayRunError

    model, gifs = setup
    with pytest.raises(RayRunError, match=r"model actor could not start: .*bf16") as e:
        score_with_ray([gifs], model, tmp_path / "out", backend="onnxruntime", precision="bf16")
    assert "\n" not in str(e.value)
    assert read_scores(tmp_path / "out") == []  # the table was made; nothing was committed
