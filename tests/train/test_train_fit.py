"""Fitting and randomized search: learning, early stopping, determinism, trial records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gifsent_train.fit import FitConfig, fit_head, predict, train_model
from gifsent_train.search import SearchSpace, SplitData, run_search, sample_trial


def _data(n=96, s=3, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, s, d)).astype(np.float32)
    w = rng.normal(size=(d, 17)).astype(np.float32) * 0.1
    y = (x.max(axis=1) @ w + 0.5).astype(np.float32)
    return x, y


def _split():
    x, y = _data(128)
    return SplitData(
        x={"train": x[:96], "dev": x[96:112], "test": x[112:]},
        y={"train": y[:96], "dev": y[96:112], "test": y[112:]},
    )


@pytest.mark.parametrize("head", ["maxpool", "rnn"])
def test_fit_learns_and_is_deterministic(head):
    x, y = _data()
    cfg = FitConfig(lr=3e-3, batch_size=16, max_epochs=8, patience=20, seed=3, threads=1)
    m1, r1 = fit_head(head, None, x[:80], y[:80], x[80:], y[80:], cfg)
    _m2, r2 = fit_head(head, None, x[:80], y[:80], x[80:], y[80:], cfg)
    assert r1.curves == r2.curves
    for k, v in r1.state_dict.items():
        assert torch.equal(v, r2.state_dict[k])
    assert r1.curves["train"][-1] < r1.curves["train"][0]
    assert r1.best_dev_loss == min(r1.curves["dev"])
    # the returned model holds the best-dev state
    p = predict(m1, x[80:])
    assert np.mean((p - y[80:]) ** 2) == pytest.approx(r1.best_dev_loss, rel=1e-4)
    # another seed gives another run
    _, r3 = fit_head(
        head, None, x[:80], y[:80], x[80:], y[80:], FitConfig(**{**cfg.to_dict(), "seed": 4})
    )
    assert r3.curves != r1.curves


def test_early_stopping_stops_and_keeps_the_best_epoch():
    x, y = _data()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(x.shape[1] * x.shape[2], 17))
    # a huge learning rate makes dev loss go up after the first epochs
    res = train_model(
        model,
        x[:80],
        y[:80],
        x[80:],
        y[80:],
        FitConfig(lr=0.5, max_epochs=50, patience=3, threads=1),
    )
    assert res.stopped_early and res.epochs_run < 50
    assert res.epochs_run - 1 - res.best_epoch == 3


def test_sample_trial_ranges_and_reproducibility():
    sp = SearchSpace()
    for head in ("maxpool", "rnn"):
        seen = [sample_trial(head, k, seed=5) for k in range(200)]
        assert seen[:10] == [sample_trial(head, k, seed=5) for k in range(10)]
        layers = [c["num_layers"] for c, _ in seen]
        lo, hi = sp.maxpool_layers if head == "maxpool" else sp.rnn_layers
        assert min(layers) == lo and max(layers) == hi
        assert all(32 <= c["hidden"] <= 512 for c, _ in seen)
        assert all(0 <= c["dropout"] <= 0.5 for c, _ in seen)
        assert all(1e-4 <= f["lr"] <= 3e-3 for _, f in seen)
        assert all(1e-6 <= f["weight_decay"] <= 1e-2 for _, f in seen)
        assert {f["batch_size"] for _, f in seen} == {16, 32, 64, 128}
    assert sample_trial("rnn", 1, seed=5) != sample_trial("rnn", 1, seed=6)


def test_search_is_reproducible_and_records_every_trial(tmp_path):
    data = _split()
    base = FitConfig(max_epochs=4, patience=3, threads=1)
    a = run_search("rnn", data, trials=3, seed=1, fit_defaults=base, trials_dir=tmp_path / "a")
    b = run_search("rnn", data, trials=3, seed=1, fit_defaults=base, trials_dir=tmp_path / "b")
    files = sorted(p.name for p in (tmp_path / "a").glob("*.json"))
    assert files == ["rnn-0.json", "rnn-1.json", "rnn-2.json"]
    assert (tmp_path / "a" / "rnn-best.pt").is_file()  # the best head so far, for resuming
    for name in files:
        ta = json.loads((tmp_path / "a" / name).read_text())
        tb = json.loads((tmp_path / "b" / name).read_text())
        ta.pop("seconds"), tb.pop("seconds")
        assert ta == tb
        assert set(ta) >= {"head_config", "fit", "curves", "metrics"}
        assert set(ta["metrics"]) == {"train", "dev"}
    # trial 0 is the study's best LSTM
    assert a.trials[0].head_config == {
        "num_layers": 2,
        "hidden": 64,
        "dropout": 0.1705,
        "timeline": "mil",
    }
    devs = [t.metrics["dev"]["rmse"] for t in a.trials]
    assert a.best == int(np.argmin(devs)) == b.best


def test_interrupted_search_resumes_after_its_last_finished_trial(tmp_path):
    data = _split()
    base = FitConfig(max_epochs=4, patience=3, threads=1)
    full = run_search(
        "maxpool", data, trials=5, seed=2, fit_defaults=base, trials_dir=tmp_path / "f"
    )

    class Interrupt(Exception):
        pass

    def stop_after_two(trial, is_best):
        if trial.index == 1:
            raise Interrupt  # as if the process died after trial 1's record was written

    with pytest.raises(Interrupt):
        run_search(
            "maxpool", data, trials=5, seed=2, fit_defaults=base, trials_dir=tmp_path / "r",
            on_trial=stop_after_two,
        )  # fmt: skip
    ran = []
    res = run_search(
        "maxpool", data, trials=5, seed=2, fit_defaults=base, trials_dir=tmp_path / "r",
        on_trial=lambda t, b: ran.append(t.index),
    )  # fmt: skip
    assert ran == [2, 3, 4]  # only the rest ran
    assert res.best == full.best
    assert [t.metrics for t in res.trials] == [t.metrics for t in full.trials]
    np.testing.assert_array_equal(
        predict(res.model, data.x["test"]), predict(full.model, data.x["test"])
    )
    # the best head of a finished search comes back from <head>-best.pt, nothing refitted
    ran.clear()
    again = run_search(
        "maxpool", data, trials=5, seed=2, fit_defaults=base, trials_dir=tmp_path / "r",
        on_trial=lambda t, b: ran.append(t.index),
    )  # fmt: skip
    assert ran == [] and again.best == full.best
    np.testing.assert_array_equal(
        predict(again.model, data.x["test"]), predict(full.model, data.x["test"])
    )
    # without it the best trial is refitted, with the same result (seeded)
    (tmp_path / "r" / "maxpool-best.pt").unlink()
    refit = run_search(
        "maxpool", data, trials=5, seed=2, fit_defaults=base, trials_dir=tmp_path / "r"
    )
    np.testing.assert_array_equal(
        predict(refit.model, data.x["test"]), predict(full.model, data.x["test"])
    )
    # another signature (other data or settings) runs every trial again
    ran.clear()
    run_search(
        "maxpool", data, trials=2, seed=2, fit_defaults=base, trials_dir=tmp_path / "r",
        on_trial=lambda t, b: ran.append(t.index), signature="other",
    )  # fmt: skip
    assert ran == [0, 1]


def test_weighted_loss_follows_the_weights():
    # Two groups with contradicting targets for the same inputs: the fit lands near the
    # targets of the group with the larger weight.
    rng = np.random.default_rng(0)
    x = np.repeat(rng.normal(size=(1, 2, 4)).astype(np.float32), 64, axis=0)
    y = np.zeros((64, 17), np.float32)
    y[32:] = 1.0
    w = np.ones((64, 17), np.float32)
    w[32:] = 9.0  # group two counts 9x: the weighted mean target is 0.9
    cfg = FitConfig(lr=1e-2, batch_size=64, max_epochs=300, patience=300, seed=0, threads=1)
    m, _ = fit_head("maxpool", None, x, y, x[:4], np.full((4, 17), 0.9, np.float32), cfg, w_train=w)
    assert np.abs(predict(m, x[:1]) - 0.9).max() < 0.02
    m, _ = fit_head("maxpool", None, x, y, x[:4], np.full((4, 17), 0.5, np.float32), cfg)
    assert np.abs(predict(m, x[:1]) - 0.5).max() < 0.02
    with pytest.raises(ValueError, match="w_train"):
        fit_head("maxpool", None, x, y, x, y, cfg, w_train=-w)


def test_a_search_reuses_old_shared_trials_only_for_the_shared_timeline(tmp_path):
    """Trials recorded before MaxPool's `timeline` field (no such key) were shared-timeline
    heads: a shared search reuses them, the default (mil) search fits them again."""
    data = _split()
    base = FitConfig(max_epochs=3, patience=3, threads=1)
    d = tmp_path / "t"
    shared = {"timeline": "shared"}
    run_search("maxpool", data, trials=2, seed=1, fit_defaults=base, trials_dir=d,
               head_fixed=shared)  # fmt: skip
    for p in d.glob("maxpool-*.json"):  # as an older gifsent wrote them
        doc = json.loads(p.read_text())
        assert doc["head_config"].pop("timeline") == "shared"
        p.write_text(json.dumps(doc))
    ran = []
    again = run_search("maxpool", data, trials=2, seed=1, fit_defaults=base, trials_dir=d,
                       head_fixed=shared, on_trial=lambda t, b: ran.append(t.index))  # fmt: skip
    assert ran == [] and again.model.readout is None
    assert all(t.head_config["timeline"] == "shared" for t in again.trials)
    mil = run_search("maxpool", data, trials=2, seed=1, fit_defaults=base, trials_dir=d,
                     on_trial=lambda t, b: ran.append(t.index))  # fmt: skip
    assert ran == [0, 1] and mil.model.readout is not None
    # the scores are the same models either way (the readout shares nothing with them)
    np.testing.assert_array_equal(
        predict(mil.model, data.x["test"]), predict(again.model, data.x["test"])
    )
