"""`gifsent_train.collect.storage`: one schema on SQLite and a real PostgreSQL, migrations,
the no-repeat rule in the database, and idempotent votes."""

from __future__ import annotations

import sqlite3

import pytest

from gifsent_train.collect.storage import SCHEMA_VERSION, Store, StoreError, is_database, pair_key
from tests.train.collect_support import db_target  # noqa: F401 (fixture)


def test_schema_and_migrations(db_target):  # noqa: F811
    store = Store.open(db_target)
    assert store.version() == SCHEMA_VERSION
    assert store.migrate() == 0  # a second run changes nothing
    assert len(store.get_meta("secret") or "") == 64
    secret = store.get_meta("secret")
    store.close()
    again = Store.open(db_target)  # reopening keeps the secret (CSRF tokens survive restarts)
    assert again.get_meta("secret") == secret
    again.close()


def test_show_vote_and_no_repeat(db_target):  # noqa: F811
    store = Store.open(db_target)
    a = store.show("v1", "amusement", "x", "y")
    assert a is not None
    assert store.show("v1", "anger", "y", "x") is None  # same two GIFs, either side, any emotion
    b = store.show("v2", "amusement", "x", "y")  # another voter may see it
    assert b is not None and b != a
    assert store.seen_pairs("v1") == {pair_key("x", "y")}

    assert store.record_vote(a, "v1", "left") == "recorded"
    assert store.record_vote(a, "v1", "right") == "duplicate"  # a retried POST counts once
    assert store.record_vote(b, "v1", "left") == "unknown"  # v2's pair, not v1's
    assert store.record_vote(999, "v1", "left") == "unknown"
    with pytest.raises(ValueError):
        store.record_vote(b, "v2", "maybe")
    before = store.fingerprint()
    assert store.record_vote(b, "v2", "neither") == "recorded"
    assert store.fingerprint() != before

    rows = list(store.votes())
    assert [(r.emotion, r.left, r.right, r.choice, r.voter) for r in rows] == [
        ("amusement", "x", "y", "left", "v1"),
        ("amusement", "x", "y", "neither", "v2"),
    ]
    assert [r.id for r in store.votes(after_id=rows[0].id)] == [rows[1].id]
    assert store.counts() == {"amusement": {"left": 1, "neither": 1}}
    assert store.voter_votes("v1") == 1 and store.voter_votes("v3") == 0
    store.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "v.sqlite"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'future', 0)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer gifsent"):
        Store.open(path)


def test_not_a_database_and_unmigrated(tmp_path):
    text = tmp_path / "votes.csv"
    text.write_text("metric,left,right,choice\n")
    assert not is_database(text)
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store.open(text)
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("CREATE TABLE t (x)")
    assert is_database(empty)
    with pytest.raises(StoreError, match="schema version 0"):
        Store.open(empty, migrate=False)


def test_sqlite_is_wal_and_synchronous_full(tmp_path):
    store = Store.open(tmp_path / "v.sqlite")
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
