"""The voting app through FastAPI's TestClient: the vote flow, CSRF, the token, rate limits,
the per-voter cap, no repeated pair, the progress page, and the CLI's refusals."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from gifsent_train.collect.app import Collector, CollectSettings, create_app
from gifsent_train.collect.cli import index_images
from gifsent_train.collect.pairs import PairChooser
from gifsent_train.collect.storage import Store
from tests.train.collect_support import db_target, make_gifs  # noqa: F401 (fixture)


def _app(tmp_path, db=None, n=6, emotions=("amusement",), **settings):
    gifs = index_images(make_gifs(tmp_path / "gifs", n))
    store = Store.open(db or str(tmp_path / "votes.sqlite"))
    chooser = PairChooser(list(gifs), emotions, seed=0)
    collector = Collector(store, chooser, CollectSettings(gifs=gifs, emotions=emotions, **settings))
    collector.load_votes()
    return collector, TestClient(create_app(collector))


def _form(html: str) -> dict:
    shown = re.search(r"name='shown' value='(\d+)'", html)
    csrf = re.search(r"name='csrf' value='([0-9a-f]+)'", html)
    assert shown and csrf, html[-500:]
    return {"shown": shown.group(1), "csrf": csrf.group(1)}


def _vote(client, choice="left", **override):
    page = client.get("/")
    assert page.status_code == 200
    data = {**_form(page.text), "choice": choice, **override}
    return client.post("/vote", data=data, follow_redirects=False)


def test_vote_flow_and_progress(tmp_path, db_target):  # noqa: F811
    collector, client = _app(tmp_path, db_target)
    page = client.get("/")
    assert "Which expresses more <em>amusement</em>?" in page.text
    assert "gifsent_voter" in page.cookies
    assert "script-src 'self'" in page.headers["content-security-policy"]
    lefts = re.findall(r"src='/gif/([^']+)'", page.text)
    assert len(lefts) == 2 and lefts[0] != lefts[1]
    r = client.post("/vote", data={**_form(page.text), "choice": "right"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert _vote(client, "neither").status_code == 303
    rows = list(collector.store.votes())
    assert [r.choice for r in rows] == ["right", "neither"]
    assert rows[0].right == lefts[1] and rows[0].left == lefts[0]
    data = client.get("/progress.json").json()
    assert data["votes"] == 2
    (amusement,) = data["emotions"]
    assert amusement["decisive"] == 1 and amusement["neither"] == 1
    assert amusement["covered"] == 2 and len(amusement["top"]) == 5
    assert "Progress: 2 votes" in client.get("/progress").text
    gif = client.get(f"/gif/{lefts[0]}")
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    assert gif.content.startswith(b"GIF8")
    assert client.get("/gif/..%2Fvotes.sqlite").status_code == 404
    assert "keydown" in client.get("/vote.js").text


def test_csrf_is_required(tmp_path):
    collector, client = _app(tmp_path)
    assert _vote(client, csrf="0" * 32).status_code == 403
    assert _vote(client, csrf="").status_code == 403
    page = client.get("/")
    data = {**_form(page.text), "choice": "left"}
    cross = client.post(
        "/vote", data=data, headers={"Origin": "http://evil.example"}, follow_redirects=False
    )
    assert cross.status_code == 403
    # a voter cookie the server did not sign (or none at all) is refused too
    stranger = TestClient(client.app)
    stranger.cookies.set("gifsent_voter", "madeup.0123456789abcdef0123456789abcdef")
    assert stranger.post("/vote", data=data, follow_redirects=False).status_code == 403
    assert list(collector.store.votes()) == []
    assert client.post("/vote", data=data, follow_redirects=False).status_code == 303


def test_bad_and_repeated_votes(tmp_path):
    collector, client = _app(tmp_path)
    page = client.get("/")
    form = _form(page.text)
    assert client.post("/vote", data={**form, "choice": "both"}).status_code == 400
    assert client.post("/vote", data={**form, "shown": "x", "choice": "left"}).status_code == 400
    bad = client.post("/vote", data={**form, "shown": "9999", "choice": "left"})
    assert bad.status_code == 400
    ok = {**form, "choice": "left"}
    assert client.post("/vote", data=ok, follow_redirects=False).status_code == 303
    assert client.post("/vote", data=ok, follow_redirects=False).status_code == 303  # a retry
    assert len(list(collector.store.votes())) == 1


def test_token_refusal(tmp_path):
    _, client = _app(tmp_path, token="s3cret")
    refused = client.get("/")
    assert refused.status_code == 401 and "Access link needed" in refused.text
    assert client.get("/gif/g00").status_code == 401
    assert client.get("/progress.json").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    assert client.get("/healthz").status_code == 200
    ok = client.get("/?token=s3cret")
    assert ok.status_code == 200 and client.cookies.get("gifsent_token") == "s3cret"
    assert client.get("/").status_code == 200  # the cookie carries it from now on
    assert _vote(client).status_code == 303
    bearer = TestClient(client.app, headers={"Authorization": "Bearer s3cret"})
    assert bearer.get("/progress.json").status_code == 200


def test_rate_limits(tmp_path):
    _, client = _app(tmp_path, n=10, rate_per_minute=1, burst=3, new_voter_burst=2)
    codes = [client.get("/").status_code for _ in range(5)]
    assert codes[:4] == [200, 200, 200, 200] and codes[4] == 429  # 1 to mint + a burst of 3
    assert TestClient(client.app).get("/").status_code == 200  # a second new voter
    assert TestClient(client.app).get("/").status_code == 429  # a third from one address


def test_per_voter_cap(tmp_path):
    collector, client = _app(tmp_path, max_votes_per_voter=2)
    assert _vote(client).status_code == 303
    page = client.get("/")
    form = _form(page.text)
    assert (
        client.post("/vote", data={**form, "choice": "left"}, follow_redirects=False).status_code
        == 303
    )
    assert "Thank you!" in client.get("/").text
    # a pair shown before the cap is still refused
    assert collector.store.voter_votes(collector.voter_of(client.cookies["gifsent_voter"])) == 2


def test_no_pair_twice_for_one_voter(tmp_path):
    collector, client = _app(tmp_path, n=6, emotions=("anger", "fear"))
    pairs = set()
    for _ in range(15):  # 6 GIFs: 15 pairs, whatever the emotion
        assert _vote(client).status_code == 303
    for row in collector.store.votes():
        pairs.add(frozenset((row.left, row.right)))
    assert len(pairs) == 15
    assert "All done" in client.get("/").text
    other = TestClient(client.app)  # another voter still gets pairs
    assert "Which expresses more" in other.get("/").text


def test_ids_are_escaped(tmp_path):
    folder = make_gifs(tmp_path / "gifs", 1)
    (folder / "<b>x'.gif").write_bytes((folder / "g00.gif").read_bytes())
    gifs = index_images(folder)
    store = Store.open(tmp_path / "v.sqlite")
    collector = Collector(
        store, PairChooser(list(gifs), ["pride"]), CollectSettings(gifs, ("pride",))
    )
    html = TestClient(create_app(collector)).get("/").text
    assert "<b>x" not in html and "%3Cb%3Ex%27" in html


def _cli(*argv):
    from typer.testing import CliRunner

    from gifsent_train.cli import app

    res = CliRunner().invoke(app, [str(a) for a in argv])
    return res.exit_code, " ".join(res.output.split())  # rich wraps long lines


def test_cli_refusals(tmp_path):
    gifs = make_gifs(tmp_path / "gifs", 3)
    res = _cli("collect", "--gifs", gifs, "--db", tmp_path / "v.sqlite", "--host", "0.0.0.0")
    assert res[0] == 2 and "--token" in res[1]
    res = _cli("collect", "--gifs", tmp_path / "nowhere", "--db", tmp_path / "v.sqlite")
    assert res[0] == 2 and "not a folder" in res[1]
    res = _cli("collect", "--gifs", gifs, "--emotions", "joy")
    assert res[0] == 2 and "unknown joy" in res[1]
    res = _cli("collect", "--gifs", gifs, "--pairs", "best")
    assert res[0] == 2 and "--pairs" in res[1]
    res = _cli("collect", "export", "--db", tmp_path / "none.sqlite", "--out", tmp_path / "o.csv")
    assert res[0] == 2 and "no votes database" in res[1]
