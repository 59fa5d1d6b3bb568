"""A vote acknowledged to the browser is never lost: SIGKILL the server mid-stream, restart it,
and every acknowledged vote is in the database (SQLite with synchronous=FULL, and PostgreSQL)."""

from __future__ import annotations

import threading
import time

import pytest

from gifsent_train.collect.storage import Store
from tests.train.collect_support import Server, Voter, db_target, make_gifs  # noqa: F401


@pytest.mark.slow  # two server start-ups (~10 s each on 2 busy cores)
def test_kill_and_restart_keeps_every_acknowledged_vote(tmp_path, db_target):  # noqa: F811
    gifs = make_gifs(tmp_path / "gifs", 30)
    acked: list[tuple[int, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def vote_loop(base: str, k: int) -> None:
        voter = Voter(base)
        while not stop.is_set():
            try:
                got = voter.page()
                if got is None:
                    return
                status = voter.answer(got[0], got[1], ("left", "right", "neither")[k % 3])
            except OSError:
                return  # the server died under us: whatever was not acknowledged may be lost
            if status == 303:
                with lock:
                    acked.append((got[0], ("left", "right", "neither")[k % 3]))

    server = Server(gifs, db_target, "--emotions", "amusement,anger", "--rate", "100000")
    threads = [threading.Thread(target=vote_loop, args=(server.url, k)) for k in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # SIGKILL, votes in flight
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= 40, f"only {len(acked)} votes acknowledged in 30 s"

    store = Store.open(db_target)
    stored = {r.id: r for r in store.votes()}
    by_shown = {}
    for row in store.conn.execute("SELECT shown_id, choice FROM votes").fetchall():
        by_shown[int(row[0])] = row[1]
    store.close()
    missing = [(s, c) for s, c in acked if by_shown.get(s) != c]
    assert not missing, f"{len(missing)} acknowledged votes lost: {missing[:5]}"
    assert len(stored) >= len(acked)

    with Server(gifs, db_target, "--emotions", "amusement,anger") as again:  # restart
        voter = Voter(again.url)
        shown, csrf = voter.page()
        assert voter.answer(shown, csrf, "left") == 303
        progress = voter.opener.open(again.url + "/progress.json").read()
    assert f'"votes":{len(stored) + 1}'.encode() in progress
