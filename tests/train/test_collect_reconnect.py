"""PostgreSQL restarts do not end the app: the store reconnects (the real server the tests
start is stopped and started again), the page answers 503 while the database stays away, and
no acknowledged vote is lost or stored twice."""

from __future__ import annotations

import pytest

from gifsent_train.collect.storage import Store, StoreError, StoreUnavailable
from tests.train.collect_support import PostgresServer, Server, Voter, make_gifs
from tests.train.test_collect_app import _app, _vote


@pytest.fixture(scope="module")
def pg():
    server = PostgresServer()  # its own server: restarting it leaves the shared one alone
    yield server
    server.close()


def test_store_reconnects_after_a_restart(pg):
    store = Store.open(pg.database("restart_store"))
    first = store.show("v1", "amusement", "a", "b")
    assert store.record_vote(first, "v1", "left") == "recorded"
    pg.stop()
    pg.start()
    second = store.show("v1", "amusement", "a", "c")  # the old connection is dead
    assert second is not None and store.reconnects == 1
    assert store.record_vote(second, "v1", "right") == "recorded"
    assert store.record_vote(first, "v1", "right") == "duplicate"
    assert [(r.left, r.right, r.choice) for r in store.votes()] == [
        ("a", "b", "left"),
        ("a", "c", "right"),
    ]
    store.close()


def test_store_gives_up_after_the_window_and_recovers(pg):
    store = Store.open(pg.database("restart_window"))
    store.reconnect_s = 1.0
    pg.stop()
    try:
        with pytest.raises(StoreUnavailable, match="did not answer for 1 s") as err:
            store.voter_votes("v1")
        assert isinstance(err.value, StoreError) and err.value.exit_code == 2
    finally:
        pg.start()
    assert store.voter_votes("v1") == 0  # the next operation reconnects
    store.close()


def test_page_answers_503_while_the_database_is_down(tmp_path, pg):
    collector, client = _app(tmp_path, pg.database("restart_app"))
    assert _vote(client).status_code == 303
    page = client.get("/")
    collector.store.reconnect_s = 0.5
    pg.stop()
    try:
        again = client.get("/")
        assert again.status_code == 503 and "try again" in again.text.lower()
        assert again.headers["retry-after"] == "5"
    finally:
        pg.start()
    collector.store.reconnect_s = 15.0
    form = dict(
        shown=page.text.split("name='shown' value='")[1].split("'")[0],
        csrf=page.text.split("name='csrf' value='")[1].split("'")[0],
        choice="right",
    )
    assert client.post("/vote", data=form, follow_redirects=False).status_code == 303
    assert len(list(collector.store.votes())) == 2


@pytest.mark.slow  # a server start-up (~10 s on 2 busy cores)
def test_server_keeps_voting_through_a_postgres_restart(tmp_path, pg):
    url = pg.database("restart_server")
    gifs = make_gifs(tmp_path / "gifs", 8)
    acked = []
    with Server(gifs, url, "--emotions", "amusement") as server:
        voter = Voter(server.url)
        for k in range(6):
            if k == 3:
                pg.stop()
                pg.start()
            shown, csrf = voter.page()
            assert voter.answer(shown, csrf, "left") == 303
            acked.append(shown)
        assert server.proc.poll() is None
    store = Store.open(url, migrate=False)
    assert sorted(r[0] for r in store.conn.execute("SELECT shown_id FROM votes")) == sorted(acked)
    store.close()
