"""gifsent_train.run: the run folder's layout, LATEST and the typed readers export relies on."""

from __future__ import annotations

from gifsent_infer import paths
from gifsent_infer.files import write_json
from gifsent_train.run import RunLayout, latest_run, mark_latest, run_for_checkpoint
from gifsent_train.splits import save_splits


def _gif(folder, name):
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(b"GIF89a")  # the readers only list files; nothing decodes them here
    return p


def test_latest_follows_mark_latest(gifsent_home):
    assert latest_run() is None
    run = RunLayout(paths.runs_dir() / "r1").ensure()
    mark_latest(run)
    assert latest_run() == run
    assert (paths.runs_dir() / "LATEST").read_text() == "r1\n"
    second = RunLayout(paths.runs_dir() / "r2").ensure()
    mark_latest(second)
    assert latest_run() == second
    (paths.runs_dir() / "LATEST").write_text("gone\n")  # a run deleted by hand
    assert latest_run() is None


def test_readers_on_a_run_as_training_writes_it(tmp_path):
    run = RunLayout(tmp_path / "runs" / "a").ensure()
    gifs = tmp_path / "data" / "gifs"
    a = _gif(gifs / "x", "aa.gif")  # at any depth
    b = _gif(gifs, "bb.gif")
    _gif(gifs, "cc.gif")
    write_json(run.data, {"votes": str(tmp_path / "v.csv"), "gifs": str(gifs)})
    save_splits(run.splits, {"train": ["cc"], "dev": [], "test": ["bb", "missing", "aa"]})
    test = {"rmse": 0.07, "ev": 0.4}
    write_json(run.metrics, {"models": {"rnn": {"dev": {"rmse": 0.1}, "test": test, "trial": 3}}})

    assert run.gif_folder() == gifs
    assert run.split_ids("test") == ["bb", "missing", "aa"]
    assert run.split_files("test") == [b, a]  # splits.json's order; no file, no entry
    assert run.split_files("dev") == []
    assert run.test_metrics("rnn") == test
    assert run.test_metrics("maxpool") is None


def test_readers_say_unknown_instead_of_guessing(tmp_path):
    run = RunLayout(tmp_path / "empty").ensure()
    assert run.gif_folder() is None and run.split_ids("test") is None
    assert run.split_files("train") == [] and run.test_metrics("rnn") is None

    write_json(run.data, {"gifs": str(tmp_path / "moved-away")})
    run.splits.write_text('{"train": ["a"]}')  # not a gifsent-splits document
    run.metrics.write_text("{truncated")
    assert run.gif_folder() is None and run.split_ids("train") is None
    assert run.test_metrics("rnn") is None


def test_run_for_checkpoint(tmp_path):
    run = RunLayout(tmp_path / "r").ensure()
    ckpt = run.checkpoint("rnn")
    ckpt.write_bytes(b"x")
    assert run_for_checkpoint(ckpt) is None  # no config.json or splits.json: not a run
    write_json(run.config, {})
    assert run_for_checkpoint(ckpt) == RunLayout(run.root.resolve())
    loose = tmp_path / "best-rnn.pt"
    loose.write_bytes(b"x")
    assert run_for_checkpoint(loose) is None
