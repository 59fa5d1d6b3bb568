"""A real browser votes by keyboard: headless Chromium presses ←, → and ↓ twenty times on the
voting page, and the database holds those twenty votes with those choices."""

from __future__ import annotations

import sqlite3

from tests.cdp import Chromium
from tests.train.collect_support import Server, make_gifs

CHOICE_OF = {"ArrowLeft": "left", "ArrowRight": "right", "ArrowDown": "neither"}


def test_twenty_keyboard_votes(tmp_path):
    gifs = make_gifs(tmp_path / "gifs", 10)
    db = tmp_path / "votes.sqlite"
    pressed: dict[int, str] = {}
    with (
        Server(gifs, str(db), "--emotions", "amusement", "--rate", "100000") as server,
        Chromium() as chrome,
    ):
        chrome.navigate(server.url + "/")
        # the pair on screen, once the page's key handler is in place
        form = "document.getElementById('vote')"
        shown_js = f"{form} && {form}.dataset.keys === 'on' && {form}.dataset.shown"
        for k in range(20):
            shown = int(chrome.wait_for(shown_js))
            key = ("ArrowLeft", "ArrowRight", "ArrowDown")[k % 3]
            chrome.press(key)
            pressed[shown] = CHOICE_OF[key]
            chrome.wait_for(f"({shown_js}) && ({shown_js}) !== '{shown}'")
        assert "your votes: 20" in chrome.evaluate("document.body.innerText")
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT shown_id, choice FROM votes").fetchall()
    conn.close()
    assert len(rows) == 20
    assert dict(rows) == pressed
