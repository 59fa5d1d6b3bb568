"""A whole small training run through the CLI: tiny encoder, a few dozen demo GIFs, two trials per head."""

from __future__ import annotations

import csv
import json
import math

import pytest

from gifsent_infer import paths
from gifsent_train.cli import main
from gifsent_train.pipeline import TrainConfig, resolve_config
from gifsent_train.run import RunLayout, latest_run


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from gifsent_train.demo_data import make_demo_data

    out = tmp_path_factory.mktemp("demo")
    make_demo_data(out, n_gifs=36, comparisons_per_gif=40, seed=1)
    # one GIF that cannot be decoded: recorded and skipped, never fatal
    victim = sorted((out / "gifs").glob("*.gif"))[0]
    victim.write_bytes(victim.read_bytes()[:30])
    return out


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_whole_small_run(demo_dir, tmp_path, capsys):
    argv = [
        "--preset",
        "tiny",
        "--data",
        str(demo_dir),
        "--run-name",
        "ci",
        "--threads",
        "1",
        "--max-epochs",
        "6",
        "--quiet",
    ]
    code, out, err = _run(argv, capsys)
    assert code in (0, None), err
    run = RunLayout(paths.runs_dir() / "ci")
    assert "| Best LSTM |" in out and "| Best MaxPool |" in out and "Training mean" in out
    for head in ("maxpool", "rnn"):
        assert run.checkpoint(head).is_file()
        assert len(list(run.trials.glob(f"{head}-[0-9]*.json"))) == 2
    # the linear head (ridge) is a checkpoint like the others, and best.pt points at the
    # head with the lowest dev RMSE
    metrics = json.loads(run.metrics.read_text())
    dev = {h: metrics["models"][h]["dev"]["rmse"] for h in ("maxpool", "rnn", "linear")}
    assert metrics["best_head"] == min(dev, key=dev.get)
    best = run.checkpoints / "best.pt"
    assert best.resolve() == run.checkpoint(metrics["best_head"]).resolve()
    assert dev["linear"] == pytest.approx(metrics["models"]["ridge"]["dev"]["rmse"], rel=1e-4)
    # tiny preset: 2 seeds -> mean ± std in Table 1, a paired test per head and baseline
    assert "± " in out and "2 seeds" in out
    report = (run.report / "report.md").read_text()
    for part in (
        "## Shipped model",
        "## Paired comparison",
        "## Training length",
        "## Where the signal lives",
    ):
        assert part in report, part
    pairs = {(p["model"], p["baseline"]) for p in metrics["paired"]}
    assert pairs == {
        ("maxpool", "mean"),
        ("maxpool", "ridge"),
        ("rnn", "mean"),
        ("rnn", "ridge"),
        ("linear", "mean"),
    }
    assert metrics["models"]["rnn"]["seeds"]["test"]["rmse"]["std"] > 0
    # issue 22: the seed refits are kept for --ensemble, with their conformal calibration
    assert [p.name for p in run.seed_checkpoints("rnn")] == ["best-rnn.pt", "seed1-rnn.pt"]
    assert set(metrics["intervals"]["rnn"]) == {"k1", "k2"}
    assert run.intervals("rnn", 2)["heads"] == 2 and "## How sure" in report
    # --max-epochs 6 with patience 4: a trial still improving at epoch 6 is flagged
    for t in (json.loads(p.read_text()) for p in run.trials.glob("*-[0-9]*.json")):
        hit = not t["stopped_early"] and t["epochs_run"] == 6
        assert hit == any(
            h["head"] == t["head"] and h["trial"] == t["index"] for h in metrics["ceiling_hits"]
        )
    for name in (
        "table1.md",
        "table1.csv",
        "per_emotion.csv",
        "per_emotion.md",
        "figure1.png",
        "figure3.png",
    ):
        assert (run.report / name).is_file(), name
    with open(run.report / "table1.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    for r in rows:
        for k in ("train_rmse", "dev_rmse", "test_rmse", "test_ev"):
            assert math.isfinite(float(r[k])), (r, k)
    assert "bt_ceiling" in metrics["models"]  # demo truth was found and used
    failures = json.loads((run.root / "feature_failures.json").read_text())
    assert len(failures) == 1
    config = json.loads(run.config.read_text())
    assert config["encoder"] == "resnext3d-tiny" and config["trials"] == 2
    assert latest_run() == run
    # export reads the run through these readers: they must see what the pipeline wrote
    assert run.gif_folder() == demo_dir / "gifs"
    assert run.test_metrics("rnn") == metrics["models"]["rnn"]["test"]
    test_ids = json.loads(run.splits.read_text())["test"]
    assert [p.stem for p in run.split_files("test")] == test_ids and test_ids

    # the checkpoint carries the contract and loads back into a scorer
    from gifsent_models.checkpoint import load_checkpoint

    ck = load_checkpoint(run.checkpoint("rnn"))
    assert ck.document.head.name == "rnn"
    assert "test" in ck.document.metrics and ck.document.target.kind == "minmax"

    # a second call finds every stage current and skips it
    before = run.checkpoint("rnn").stat().st_mtime_ns
    # (options before the subcommand count, as with `gifsent-train --preset tiny run`)
    code, _out2, err2 = _run([*argv[:4], "run", *argv[4:-1]], capsys)
    assert code in (0, None), err2
    assert err2.count("current, skipped") == 4
    assert run.checkpoint("rnn").stat().st_mtime_ns == before

    # MaxPool's multiple-instance term (issue 22): a new run name, MaxPool fit with it, recorded
    argv_mil = [*argv[:5], "ci-mil", *argv[6:], "--segment-weight", "2", "--seeds", "1"]
    code, _out3, err3 = _run(argv_mil, capsys)
    assert code in (0, None), err3
    mil = RunLayout(paths.runs_dir() / "ci-mil")
    doc = json.loads(mil.metrics.read_text())
    assert doc["training"]["segment_weight"] == 2.0
    assert "multiple-instance term (weight 2)" in (mil.report / "report.md").read_text()


def test_no_data_says_how_to_get_some(capsys):
    code, _, err = _run(["--quiet"], capsys)
    assert code == 2
    assert "gifsent-train fetch" in err and "demo-data" in err


def test_config_file_and_presets(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nencoder = "efficientnet-lite0"\ntrials = 3\nsampling = "augmented"\n')
    cfg = resolve_config("tiny", toml, trials=5, seed=None)
    assert cfg.encoder == "efficientnet-lite0" and cfg.trials == 5 and cfg.random_init is True
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"views": 3}))
    assert resolve_config(None, js).views == 3
    with pytest.raises(ValueError, match="unknown config key"):
        TrainConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError):
        TrainConfig(sampling="sideways")
    assert resolve_config("demo").encoder == "efficientnet-lite0"
