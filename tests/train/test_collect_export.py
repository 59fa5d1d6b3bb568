"""Votes from the collect database into training: `collect export` writes GIFGIF's CSV that
`gifsent-train scores` reads, and `--data votes.sqlite` reads the database directly, to the
same scores."""

from __future__ import annotations

import csv

import numpy as np

from gifsent_train.bradley_terry import read_scores_csv
from gifsent_train.collect.pairs import PairChooser
from gifsent_train.collect.storage import Store
from gifsent_train.votes import read_votes
from tests.train.collect_support import db_target, make_gifs, postgres_url  # noqa: F401


def _collect(tmp_path, n=12, votes=400, db=None):
    """A votes database as the app fills it: pairs from the chooser, answers by BT noise."""
    gifs = make_gifs(tmp_path / "data" / "gifs", n)
    ids = sorted(p.stem for p in gifs.glob("*.gif"))
    rng = np.random.default_rng(0)
    truth = {"amusement": rng.standard_normal(n) * 1.5, "anger": rng.standard_normal(n) * 1.5}
    db = db or tmp_path / "votes.sqlite"
    store = Store.open(db)
    store.set_meta("gifs_dir", str(gifs))
    chooser = PairChooser(ids, list(truth), seed=1)
    for k in range(votes):
        voter = f"v{k // 10}"  # 10 votes each (6 GIFs make 15 pairs)
        seen = store.seen_pairs(voter)
        emotion = chooser.next_emotion()
        left, right = chooser.choose(emotion, lambda a, b, s=seen: f"{min(a, b)}/{max(a, b)}" in s)
        shown = store.show(voter, emotion, left, right)
        d = truth[emotion][ids.index(left)] - truth[emotion][ids.index(right)]
        u = rng.random()
        choice = (
            "neither" if u < 0.05 else ("left" if u < 0.05 + 0.95 / (1 + np.exp(-d)) else "right")
        )
        assert store.record_vote(shown, voter, choice) == "recorded"
        chooser.add_vote(emotion, left, right, choice)
    store.close()
    return db, gifs, ids, truth


def _train(*argv, code=0):
    from typer.testing import CliRunner

    from gifsent_train.cli import app

    res = CliRunner().invoke(app, [str(a) for a in argv])
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    return res.output


def test_export_round_trip_into_scores(tmp_path):
    db, _gifs, ids, truth = _collect(tmp_path)
    out = tmp_path / "data" / "votes.csv"
    assert "400 votes" in _train("collect", "export", "--db", db, "--out", out)
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["metric", "left", "right", "choice"] and len(rows) == 401
    assert {r[0] for r in rows[1:]} == {"amusement", "anger"}
    assert {r[3] for r in rows[1:]} <= {"left", "right", "neither"}

    from_csv, from_db = read_votes(out), read_votes(db)
    assert from_csv.stats.to_dict() == from_db.stats.to_dict()
    assert from_csv.ids == from_db.ids
    for e in ("amusement", "anger"):
        np.testing.assert_array_equal(from_csv.winners[e], from_db.winners[e])

    runs = tmp_path / "runs"
    _train("scores", "--data", tmp_path / "data", "--run-dir", runs, "--run-name", "csv")
    _train("scores", "--data", db, "--run-dir", runs, "--run-name", "db")  # the database itself
    a, b = read_scores_csv(runs / "csv" / "scores.csv"), read_scores_csv(runs / "db" / "scores.csv")
    assert a.ids == b.ids and sorted(a.ids) == ids
    np.testing.assert_allclose(a.strength, b.strength)
    for k, e in enumerate(("amusement", "anger")):
        got = a.strength[[a.ids.index(g) for g in ids], [0, 1][k]]
        assert np.corrcoef(got, truth[e])[0, 1] > 0.8

    gz = tmp_path / "votes.csv.gz"
    _train("collect", "export", "--db", db, "--out", gz)
    assert read_votes(gz).stats.to_dict() == from_csv.stats.to_dict()


def test_data_database_sees_new_votes(tmp_path):
    """The scores stage reruns when votes arrive (the database file alone may not change: WAL)."""
    db, _gifs, ids, _ = _collect(tmp_path, n=6, votes=30)
    runs = tmp_path / "runs"
    _train("scores", "--data", db, "--run-dir", runs, "--run-name", "r")
    assert "skipped" in _train("scores", "--data", db, "--run-dir", runs, "--run-name", "r")
    store = Store.open(db)
    shown = store.show("late", "amusement", ids[0], ids[1])
    store.record_vote(shown, "late", "left")
    store.close()
    assert "skipped" not in _train("scores", "--data", db, "--run-dir", runs, "--run-name", "r")


def test_export_from_either_backend(tmp_path, db_target):  # noqa: F811
    store = Store.open(db_target)
    for k, choice in enumerate(("left", "right", "neither")):
        shown = store.show("v", "surprise", f"a{k}", f"b{k}")
        store.record_vote(shown, "v", choice)
    store.close()
    out = tmp_path / "v.csv"
    assert "3 votes" in _train("collect", "export", "--db", db_target, "--out", out)
    assert out.read_text().splitlines() == [
        "metric,left,right,choice",
        "surprise,a0,b0,left",
        "surprise,a1,b1,right",
        "surprise,a2,b2,neither",
    ]


def test_data_postgresql_url(tmp_path):
    """`--data postgresql://...` reads a PostgreSQL votes database like a SQLite one: the same
    votes give the same scores, and new votes rerun the stage."""
    url = postgres_url()
    db, gifs, ids, _ = _collect(tmp_path, n=8, votes=120)
    _collect(tmp_path / "pg", n=8, votes=120, db=url)  # the same votes (same seeds)
    with Store.open(url, migrate=False) as store:
        store.set_meta("gifs_dir", str(gifs))
    runs = tmp_path / "runs"
    _train("scores", "--data", db, "--run-dir", runs, "--run-name", "lite")
    _train("scores", "--data", url, "--run-dir", runs, "--run-name", "pg")
    a, b = (
        read_scores_csv(runs / "lite" / "scores.csv"),
        read_scores_csv(runs / "pg" / "scores.csv"),
    )
    assert a.ids == b.ids and sorted(b.ids) == ids
    np.testing.assert_allclose(a.strength, b.strength)
    assert "skipped" in _train("scores", "--data", url, "--run-dir", runs, "--run-name", "pg")
    with Store.open(url, migrate=False) as store:
        store.record_vote(store.show("late", "amusement", ids[0], ids[1]), "late", "left")
    assert "skipped" not in _train("scores", "--data", url, "--run-dir", runs, "--run-name", "pg")

    secret = url.replace("gifsent@", "gifsent:hunter2@")
    refused = _train("scores", "--data", secret, "--run-dir", runs, code=2)
    assert "PGPASSWORD" in refused and "hunter2" not in refused
    bare = postgres_url()  # a database without the served folder recorded
    Store.open(bare).close()
    assert "give --gifs DIR" in _train("scores", "--data", bare, "--run-dir", runs, code=2)
