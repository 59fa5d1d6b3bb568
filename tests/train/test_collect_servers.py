"""Several `gifsent-train collect` servers on one PostgreSQL: each pair chooser follows the
other servers' votes (late commits included, each vote once), a voter whose requests alternate
between servers never sees a pair twice, and the cap, CSRF and the token hold whichever server
answers. A second server on one SQLite file is refused."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from fastapi.testclient import TestClient

from gifsent_train.collect.app import VOTER_COOKIE, Collector, CollectSettings, create_app
from gifsent_train.collect.cli import index_images
from gifsent_train.collect.pairs import PairChooser
from gifsent_train.collect.storage import Store, StoreError
from gifsent_train.collect.sync import VoteFeed
from tests.train.collect_support import (  # noqa: F401 (db_target: a fixture)
    Server,
    Voter,
    db_target,
    free_port,
    make_gifs,
    postgres_url,
)
from tests.train.test_collect_app import _cli, _form


def _rows(store: Store) -> list[tuple[int, str]]:
    return [(r.id, r.choice) for r in store.votes()]


def test_feed_takes_each_vote_once_and_claims(db_target):  # noqa: F811
    store = Store.open(db_target)
    feed = VoteFeed(store)
    seen: list[int] = []
    a = store.show("v1", "amusement", "a", "b")
    status, mine = store.answer(a, "v1", "left")
    assert status == "recorded" and feed.claim(mine)  # this server applies its own vote
    b = Store.open(db_target)  # "another server"
    other = b.answer(b.show("v2", "amusement", "a", "b"), "v2", "right")[1]
    assert feed.poll(lambda r: seen.append(r.id)) == 1 and seen == [other]  # not mine again
    assert not feed.claim(other)  # a poll already applied it
    assert feed.poll(lambda r: seen.append(r.id)) == 0 and feed.mine == set()
    assert feed.state()["last_vote_id"] == other
    store.close()
    b.close()


def test_feed_catches_a_late_commit():
    """Ids are handed out at insert, commits land in any order: id k+1 visible before k."""
    import psycopg

    url = postgres_url()
    store = Store.open(url)
    feed = VoteFeed(store)
    first, second = store.show("v1", "fear", "a", "b"), store.show("v1", "fear", "a", "c")
    slow = psycopg.connect(url)  # a transaction left open: its vote id is taken, not visible
    slow.execute(
        "INSERT INTO votes (shown_id, voter, emotion, left_id, right_id, choice, created_at) "
        "SELECT id, voter, emotion, left_id, right_id, 'left', %s FROM shown WHERE id = %s",
        (time.time(), first),
    )
    late = slow.execute("SELECT MAX(id) FROM votes").fetchone()[0]
    _, early = store.answer(second, "v1", "right")
    assert early == late + 1
    seen: list[int] = []
    assert feed.poll(lambda r: seen.append(r.id)) == 1 and seen == [early]
    assert set(feed.gaps) == {late}
    slow.commit()
    slow.close()
    assert feed.poll(lambda r: seen.append(r.id)) == 1 and seen == [early, late]
    assert feed.gaps == {}
    # a gap that never fills (a duplicate answer took an id) is dropped after the grace time
    assert store.answer(second, "v1", "left") == ("duplicate", None)
    _, after = store.answer(store.show("v1", "fear", "b", "c"), "v1", "left")
    feed.grace_s = 0.0
    assert feed.poll(lambda r: seen.append(r.id)) == 1 and seen[-1] == after
    time.sleep(0.01)
    feed.poll(lambda r: seen.append(r.id))
    assert feed.gaps == {} and len(seen) == 3
    store.close()


def _server(url, gifs, **settings):
    store = Store.open(url)
    emotions = ("amusement",)
    chooser = PairChooser(list(gifs), emotions, seed=len(settings))
    settings = CollectSettings(gifs=gifs, emotions=emotions, sync_s=0, **settings)
    collector = Collector(store, chooser, settings, VoteFeed(store))
    collector.load_votes()
    return collector, TestClient(create_app(collector))


def test_two_servers_share_voters_cap_and_posterior(tmp_path):
    url = postgres_url()
    gifs = index_images(make_gifs(tmp_path / "gifs", 6))
    a, client_a = _server(url, gifs, max_votes_per_voter=5, token="t0k")
    b, client_b = _server(url, gifs, max_votes_per_voter=5, token="t0k")
    assert a.secret == b.secret  # one secret in the database: cookies and CSRF from either
    first = client_a.get("/?token=t0k")
    for name in (VOTER_COOKIE, "gifsent_token"):
        client_b.cookies.set(name, client_a.cookies[name])
    page_b = client_b.get("/")
    assert page_b.status_code == 200 and VOTER_COOKIE not in page_b.cookies  # a known voter
    pairs, forms = set(), [_form(first.text)]
    clients = (client_a, client_b)
    for k in range(5):  # page from one server, answer to the other
        html = clients[k % 2].get("/").text
        pairs.add(frozenset(re.findall(r"src='/gif/([^']+)'", html)))
        vote = {**_form(html), "choice": "left"}
        assert (
            clients[(k + 1) % 2].post("/vote", data=vote, follow_redirects=False).status_code == 303
        )
    assert len(pairs) == 5  # 15 pairs shown at most once each, whichever server chose them
    # the cap counts the votes taken by both servers
    assert "Thank you!" in client_a.get("/").text and "Thank you!" in client_b.get("/").text
    late = {**forms[0], "choice": "right"}  # a page shown before the cap
    assert client_b.post("/vote", data=late, follow_redirects=False).status_code == 403
    assert a.store.voter_votes(a.voter_of(client_a.cookies[VOTER_COOKIE])) == 5
    # each chooser took its own votes at once and takes the other's at the next poll, once
    own = {c: c.chooser.states["amusement"].answered for c in (a, b)}
    assert sorted(own.values()) == [2, 3]
    assert a.sync_once() + b.sync_once() == 5 and a.sync_once() + b.sync_once() == 0
    for c in (a, b):
        progress = c.progress()
        assert progress["votes"] == 5 and progress["emotions"][0]["in_posterior"] == 5
        assert progress["sync"]["last_vote_id"] == max(r[0] for r in _rows(c.store))
    assert "include the other servers' votes" in client_a.get("/progress").text
    sa, sb = a.chooser.states["amusement"], b.chooser.states["amusement"]
    assert sorted(zip(sa.winners, sa.losers, strict=True)) == sorted(
        zip(sb.winners, sb.losers, strict=True)
    )
    # without the token, neither server answers
    assert TestClient(client_b.app).get("/").status_code == 401


def test_the_cap_holds_for_two_servers_at_once():
    """Two answers of one voter at the cap, on two servers at once: the second waits for the
    first's transaction (a per-voter lock) and then counts it."""
    import psycopg

    url = postgres_url()
    store = Store.open(url)
    one, two = store.show("v", "joy", "a", "b"), store.show("v", "joy", "a", "c")
    other = psycopg.connect(url)  # "server one", in the middle of its vote transaction
    other.execute("SELECT pg_advisory_xact_lock(23, hashtext(%s))", ("v",))
    other.execute(
        "INSERT INTO votes (shown_id, voter, emotion, left_id, right_id, choice, created_at) "
        "SELECT id, voter, emotion, left_id, right_id, 'left', 0 FROM shown WHERE id = %s",
        (one,),
    )
    result: list[str] = []
    second = threading.Thread(
        target=lambda: result.append(store.record_vote(two, "v", "left", cap=1))
    )
    second.start()
    second.join(0.5)
    assert second.is_alive()  # waits for the first answer's transaction
    other.commit()
    other.close()
    second.join(30)
    assert result == ["capped"] and store.voter_votes("v") == 1
    store.close()


def test_token_auto_is_shared_through_postgres():
    url = postgres_url()
    one, two = Store.open(url), Store.open(url)
    made = one.shared_setting("access_token", lambda: "first")
    assert made == "first" and two.shared_setting("access_token", lambda: "second") == "first"
    one.close()
    two.close()


def test_a_second_server_on_one_sqlite_file_is_refused(tmp_path):
    db = tmp_path / "votes.sqlite"
    first = Store.open(db)
    first.hold_server_lock()
    second = Store.open(db)
    with pytest.raises(StoreError, match=r"one server.*PostgreSQL"):
        second.hold_server_lock()
    first.close()  # released with the store (and by the kernel when a server dies)
    second.hold_server_lock()
    second.close()


def _progress(base: str) -> dict:
    with urllib.request.urlopen(base + "/progress.json", timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_two_real_servers_alternating_voters(tmp_path):
    """Two `collect` processes on one PostgreSQL, three voters whose every request goes to the
    other server (a round-robin proxy): no voter sees a pair twice, every acknowledged vote is
    in the database once, and each server's posterior takes in all votes via the feed."""
    import psycopg

    url = postgres_url()
    gifs = make_gifs(tmp_path / "gifs", 7)  # 21 pairs for one emotion
    args = ("--emotions", "anger", "--sync", "0.2", "--rate", "100000")
    with Server(gifs, url, *args) as one, Server(gifs, url, *args) as two:
        bases = (one.url, two.url)
        results: list[tuple[list, list]] = []
        errors: list[BaseException] = []

        def run(k: int) -> None:
            try:
                voter, pairs, acked = Voter(bases[k % 2]), [], []
                for n in range(12):
                    voter.base = bases[(k + n) % 2]
                    html = voter.opener.open(voter.base + "/", timeout=30).read().decode()
                    if "All done" in html:
                        break
                    pairs.append(frozenset(re.findall(r"src='/gif/([^']+)'", html)))
                    form = _form(html)
                    voter.base = bases[(k + n + 1) % 2]
                    choice = ("left", "right", "neither")[n % 3]
                    assert voter.answer(int(form["shown"]), form["csrf"], choice) == 303
                    acked.append((int(form["shown"]), choice))
                results.append((pairs, acked))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT shown_id, choice FROM votes").fetchall()
        acked = [a for _, ack in results for a in ack]
        for pairs, _ in results:
            assert len(pairs) == len(set(pairs)) == 12  # no pair twice for any voter
        assert sorted(stored) == sorted(acked)  # each acknowledged vote in the database, once
        deadline = time.monotonic() + 60  # the feed polls every 0.2 s
        while True:
            took = [_progress(b)["emotions"][0]["in_posterior"] for b in bases]
            if took == [len(acked)] * 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert took == [len(acked)] * 2  # all votes, each once, on both servers
        covered = [_progress(b)["emotions"][0]["covered"] for b in bases]
        assert covered[0] == covered[1] > 0


def test_cli_refuses_a_second_server_on_one_sqlite_file_and_a_bad_sync(tmp_path):
    gifs = make_gifs(tmp_path / "gifs", 4)
    db = str(tmp_path / "votes.sqlite")
    res = _cli("collect", "--gifs", gifs, "--db", db, "--sync", "-1")
    assert res[0] == 2 and "--sync" in res[1]
    with Server(gifs, db):
        code = "from gifsent_train.cli import main; main()"
        cmd = [sys.executable, "-c", code, "collect", "--gifs", str(gifs), "--db", db]
        second = subprocess.run(
            [*cmd, "--port", str(free_port())], capture_output=True, text=True, timeout=120
        )
        out = " ".join((second.stdout + second.stderr).split())
        assert second.returncode == 2 and "serves one server" in out and "PostgreSQL" in out
