"""The voting app (FastAPI on uvicorn): pages, voters, CSRF, the access token and rate limits.

Routes: ``GET /`` the next pair (or a thank-you page at the per-voter cap), ``POST /vote``
an answer (303 back to ``/`` once the vote is committed: the redirect is the
acknowledgement), ``GET /gif/{id}``, ``GET /vote.js``, ``GET /progress`` (and
``/progress.json``), ``GET /healthz``.

Voters are anonymous: the first page sets the cookie ``gifsent_voter`` (a random id signed
with the database's secret, so ids cannot be made up; new ids per client address are rate
limited). The vote form carries a CSRF token (an HMAC of the voter id; the cookie is
SameSite=Strict too, and a cross-site Origin is refused). With a token configured every
request needs it: ``?token=...`` once (it becomes a cookie), the cookie, or
``Authorization: Bearer ...``; the server refuses to listen beyond loopback without one.

Several servers on one PostgreSQL (behind a proxy, a voter's requests may alternate between
them): the cookie and CSRF signatures use the secret stored in the database, the no-repeat
rule and the per-voter cap are enforced by the database, and a :class:`~.sync.VoteFeed`
brings the other servers' votes into this server's posterior every ``sync_s`` seconds. Rate
limits are kept per server (in memory).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from gifsent_train.collect import pages
from gifsent_train.collect.pairs import PairChooser
from gifsent_train.collect.storage import CHOICES, Store, StoreError, StoreUnavailable
from gifsent_train.collect.sync import VoteFeed

VOTER_COOKIE = "gifsent_voter"
TOKEN_COOKIE = "gifsent_token"
MEDIA_TYPES = {".gif": "image/gif", ".webp": "image/webp", ".png": "image/png"}
CSP = (
    "default-src 'none'; img-src 'self'; script-src 'self'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class CollectSettings:
    gifs: Mapping[str, Path]  # id -> file
    emotions: tuple[str, ...]
    token: str | None = None  # required on every request when set
    rate_per_minute: float = 240.0  # requests per voter (a vote is two: the page and the answer)
    burst: int = 60
    new_voters_per_minute: float = 30.0  # new voter ids per client address
    new_voter_burst: int = 60
    max_votes_per_voter: int = 0  # 0: no cap
    secure_cookies: bool = False  # set behind HTTPS
    sync_s: float = 1.0  # with a VoteFeed: how often other servers' votes are read


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RateLimiter:
    """Token buckets by key: ``rate`` per minute, up to ``burst`` at once."""

    def __init__(self, rate_per_minute: float, burst: int, max_keys: int = 100_000):
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self.lock:
            level, then = self.buckets.get(key, (self.burst, now))
            level = min(self.burst, level + (now - then) * self.rate)
            ok = level >= 1.0
            self.buckets[key] = (level - 1.0 if ok else level, now)
            if len(self.buckets) > self.max_keys:  # forget the fullest (idle) buckets
                idle = [k for k, (lv, t) in self.buckets.items() if now - t > 600]
                for k in idle[: len(idle) // 2 + 1]:
                    del self.buckets[k]
            return ok


class Collector:
    """The state behind the routes: storage, pair chooser, secrets and limits."""

    def __init__(
        self,
        store: Store,
        chooser: PairChooser,
        settings: CollectSettings,
        feed: VoteFeed | None = None,  # several servers on one database: follow the others
    ):
        self.store = store
        self.chooser = chooser
        self.settings = settings
        self.feed = feed
        self.secret = (store.get_meta("secret") or "").encode()
        self.voter_limit = RateLimiter(settings.rate_per_minute, settings.burst)
        self.new_voter_limit = RateLimiter(settings.new_voters_per_minute, settings.new_voter_burst)
        self.refit_wanted = threading.Event()
        self.stopping = threading.Event()
        self.refitter: threading.Thread | None = None
        self.syncer: threading.Thread | None = None
        self.sync_errors = 0  # polls that failed (the next one catches up)
        self.sync_failure: str | None = None  # the last unexpected one

    # -- voters and CSRF ----------------------------------------------------------------------
    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def new_voter_cookie(self) -> str:
        voter = secrets.token_urlsafe(12)
        return f"{voter}.{self._mac('voter', voter)}"

    def voter_of(self, cookie: str | None) -> str | None:
        if not cookie or "." not in cookie:
            return None
        voter, mac = cookie.rsplit(".", 1)
        return voter if hmac.compare_digest(mac, self._mac("voter", voter)) else None

    def csrf_for(self, voter: str) -> str:
        return self._mac("csrf", voter)

    def token_ok(self, supplied: str | None) -> bool:
        want = self.settings.token
        return want is None or (supplied is not None and hmac.compare_digest(supplied, want))

    # -- posterior ------------------------------------------------------------------------------
    def _apply(self, row) -> None:
        self.chooser.add_vote(row.emotion, row.left, row.right, row.choice)

    def load_votes(self) -> int:
        n = 0
        if self.feed is not None:
            n = self.feed.poll(self._apply)
        else:
            for row in self.store.votes():
                self._apply(row)
                n += 1
        for e in self.chooser.emotions:
            if self.chooser.states[e].decisive:
                self.chooser.refit(e)
        return n

    def start_refitter(self) -> None:
        def loop() -> None:
            while not self.stopping.is_set():
                self.refit_wanted.wait(1.0)
                self.refit_wanted.clear()
                for e in self.chooser.emotions:
                    if self.chooser.refit_due(e):
                        self.chooser.refit(e)

        self.refitter = threading.Thread(target=loop, name="gifsent-refit", daemon=True)
        self.refitter.start()
        if self.feed is not None and self.settings.sync_s > 0:
            self.syncer = threading.Thread(target=self._sync_loop, name="gifsent-sync", daemon=True)
            self.syncer.start()

    def sync_once(self) -> int:
        """Read the votes other servers took since the last poll into the posterior."""
        if self.feed is None:
            return 0
        n = self.feed.poll(self._apply)
        if n:
            self.refit_wanted.set()
        return n

    def _sync_loop(self) -> None:
        while not self.stopping.wait(self.settings.sync_s):
            try:
                self.sync_once()
            except StoreError:  # the database is away: the next poll catches up
                self.sync_errors += 1
            except Exception as e:  # keep following; progress.json shows it
                self.sync_errors += 1
                self.sync_failure = f"{type(e).__name__}: {e}"

    # -- the two actions ---------------------------------------------------------------------
    def next_pair(self, voter: str) -> tuple[int, str, str, str] | None:
        """(shown id, emotion, left, right), recorded as shown; None if nothing is left."""
        seen = self.store.seen_pairs(voter)
        for _ in range(4):  # another tab of this voter may take the same pair meanwhile
            emotion = self.chooser.next_emotion()
            pair = self.chooser.choose(emotion, lambda a, b: _key(a, b) in seen)
            if pair is None:
                continue
            shown = self.store.show(voter, emotion, pair[0], pair[1])
            if shown is not None:
                return shown, emotion, pair[0], pair[1]
            seen.add(_key(*pair))
        return None

    def vote(self, voter: str, shown_id: int, choice: str) -> str:
        """Record an answer ("recorded", "duplicate", "unknown" or "capped": the per-voter cap
        is checked in the vote's transaction) and take it into the posterior at once."""
        cap = self.settings.max_votes_per_voter
        status, vote_id = self.store.answer(shown_id, voter, choice, cap=cap)
        if status == "recorded" and (self.feed is None or self.feed.claim(vote_id)):
            row = self.store.shown_pair(shown_id)
            if row is not None:
                self.chooser.add_vote(row[1], row[2], row[3], choice)
                self.refit_wanted.set()
        return status

    def progress(self) -> dict:
        counts = self.store.counts()
        rows = []
        for e in self.chooser.emotions:
            st = self.chooser.states[e]
            c = counts.get(e, {})
            with self.chooser.lock:
                covered = len(set(st.winners) | set(st.losers))
            rows.append(
                {
                    "emotion": e,
                    "decisive": c.get("left", 0) + c.get("right", 0),
                    "neither": c.get("neither", 0),
                    "in_posterior": st.answered,  # votes this server's chooser has taken in
                    "covered": covered,
                    "gifs": st.n,
                    "settled": round(self.chooser.settled(e), 4),
                    "top": self.chooser.top(e, 5),
                }
            )
        total = sum(sum(c.values()) for c in counts.values())
        sync = None
        if self.feed is not None:
            sync = {"every_s": self.settings.sync_s, **self.feed.state()}
            sync.update(failed_polls=self.sync_errors, last_failure=self.sync_failure)
        return {"votes": total, "emotions": rows, "sync": sync}


def _key(a: str, b: str) -> str:
    return f"{a}/{b}" if a <= b else f"{b}/{a}"


router = APIRouter()


def create_app(collector: Collector) -> FastAPI:
    """The FastAPI app around a :class:`Collector`."""

    @asynccontextmanager
    async def lifespan(_app):
        collector.start_refitter()
        yield
        collector.stopping.set()

    app = FastAPI(title="gifsent votes", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.collector = collector
    app.middleware("http")(_guard)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.include_router(router)
    return app


async def _store_unavailable(request: Request, exc: Exception) -> HTMLResponse:
    """The database stayed unreachable through the store's reconnect window: 503, this request
    not acknowledged (a vote is acknowledged only after its commit), try again."""
    text = (
        "The votes database is not answering right now, so this was not saved. "
        "Try again in a moment."
    )
    response = _message("Please try again", text, 503)
    response.headers["Retry-After"] = "5"
    return response


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers={"Cache-Control": "no-store"})


def _message(title: str, text: str, status: int, votes: int | None = None) -> HTMLResponse:
    return _html(pages.message_page(title, text, votes), status)


def _collector(request: Request) -> Collector:
    return request.app.state.collector


async def _guard(request: Request, call_next):
    """The access token (when set) on every request but /healthz; security headers."""
    collector = _collector(request)
    token = collector.settings.token
    supplied = (
        request.query_params.get("token")
        or request.cookies.get(TOKEN_COOKIE)
        or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        or None
    )
    if request.url.path != "/healthz" and not collector.token_ok(supplied):
        text = "This voting page is private: open the link with ?token=... you were given."
        return _message("Access link needed", text, 401)
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if token and request.query_params.get("token"):
        _set_cookie(response, TOKEN_COOKIE, token, collector.settings)
    return response


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


@router.get("/", response_class=HTMLResponse)
async def vote_form(request: Request):
    collector = _collector(request)
    settings = collector.settings
    voter = collector.voter_of(request.cookies.get(VOTER_COOKIE))
    cookie = None
    if voter is None:
        if not collector.new_voter_limit.allow(_client(request)):
            return _message("Slow down", "Too many new visitors.", 429)
        cookie = collector.new_voter_cookie()
        voter = collector.voter_of(cookie)
    elif not collector.voter_limit.allow(voter):
        return _message("Slow down", "Too many requests; wait a bit.", 429)
    mine = await run_in_threadpool(collector.store.voter_votes, voter)
    cap = settings.max_votes_per_voter
    picked = None
    if not cap or mine < cap:
        picked = await run_in_threadpool(collector.next_pair, voter)
    if cap and mine >= cap:
        response = _message("Thank you!", f"You gave {mine} votes.", 200, mine)
    elif picked is None:
        response = _message("All done", "You have seen every pair we can show.", 200, mine)
    else:
        shown, emotion, left, right = picked
        page = pages.vote_page(
            shown_id=shown,
            emotion=emotion,
            left=left,
            right=right,
            csrf=collector.csrf_for(voter),
            votes=mine,
        )
        response = _html(page)
    if cookie:
        _set_cookie(response, VOTER_COOKIE, cookie, settings)
    return response


@router.post("/vote")
async def vote(request: Request):
    collector = _collector(request)
    voter = collector.voter_of(request.cookies.get(VOTER_COOKIE))
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        return _message("Refused", "Cross-site form post.", 403)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    csrf = form.get("csrf", [""])[0]
    if voter is None or not hmac.compare_digest(csrf, collector.csrf_for(voter)):
        text = "This form expired or came from elsewhere; reload the page and vote again."
        return _message("Refused", text, 403)
    if not collector.voter_limit.allow(voter):
        return _message("Slow down", "Too many votes; wait a bit.", 429)
    choice = form.get("choice", [""])[0]
    shown = form.get("shown", [""])[0]
    if choice not in CHOICES or not shown.isdigit():
        return _message("Bad vote", "No such choice.", 400)
    status = await run_in_threadpool(collector.vote, voter, int(shown), choice)
    if status == "capped":
        return _message("Thank you!", "You reached the vote limit.", 403)
    if status == "unknown":
        return _message("Bad vote", "That pair was not shown to you.", 400)
    return Response(status_code=303, headers={"Location": "/", "Cache-Control": "no-store"})


@router.get("/gif/{gif_id}")
async def gif(request: Request, gif_id: str):
    path = _collector(request).settings.gifs.get(gif_id)
    if path is None:
        return Response("no such GIF", status_code=404, media_type="text/plain")
    media = MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=86400"})


@router.get("/vote.js")
async def vote_js():
    return Response(pages.VOTE_JS, media_type="text/javascript")


@router.get("/progress", response_class=HTMLResponse)
async def progress_html(request: Request):
    data = await run_in_threadpool(_collector(request).progress)
    return _html(pages.progress_page(data["emotions"], data["votes"], data["sync"]))


@router.get("/progress.json")
async def progress_json(request: Request):
    data = await run_in_threadpool(_collector(request).progress)
    return JSONResponse(data)


@router.get("/healthz")
async def healthz():
    return {"ok": True}


def _set_cookie(response, name: str, value: str, settings: CollectSettings) -> None:
    response.set_cookie(
        name,
        value,
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
    )
