"""Helpers of the `gifsent-train collect` tests: a GIF folder, a real PostgreSQL, a running server.

PostgreSQL: Debian's server binaries (`make postgres` installs them when missing and we are
root). `postgres_url()` starts one server per test session in a temporary data directory on
a free loopback port, as the `postgres` user when we are root (PostgreSQL refuses to run as
root); it skips when no server is installed, and fails instead under CI=true.
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from tests.support import gif_bytes


def make_gifs(folder: Path, n: int, prefix: str = "g") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{prefix}{i:02d}.gif").write_bytes(gif_bytes(i, frames=2, size=(16, 12)))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- PostgreSQL ------------------------------------------------------------------------------

_PG: dict[str, str] = {}


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " — CI=true: the PostgreSQL tests must run")
    pytest.skip(reason)


def postgres_url() -> str:
    """A fresh database on the session's PostgreSQL server (one database per call)."""
    if "url" not in _PG:
        _PG.update(_start_postgres())
    import psycopg

    name = f"t{len(_PG)}_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    with psycopg.connect(_PG["url"] + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _PG[name] = name
    return f"{_PG['url']}/{name}"


def _start_postgres() -> dict[str, str]:
    server = PostgresServer()
    atexit.register(server.close)
    return {"url": server.url}


class PostgresServer:
    """A PostgreSQL server of its own in a temporary folder on a free loopback port (as the
    postgres user when we are root); `stop()` and `start()` restart it on the same port and
    data, as an operator's restart would; `close()` removes it."""

    def __init__(self) -> None:
        bindir = _pg_bin()
        if bindir is None:
            _missing("no PostgreSQL server (/usr/lib/postgresql/*/bin): `make postgres` as root")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            _missing("psycopg is not installed: pip install 'gifsent[collect]'")
        self.bindir = bindir
        root = os.geteuid() == 0
        self.as_pg: list[str] = ["runuser", "-u", "postgres", "--"] if root else []
        self.base = Path(tempfile.mkdtemp(prefix="gifsent-pg-"))
        self.data = self.base / "data"
        if root:
            shutil.chown(self.base, "postgres")
        self.port = free_port()
        initdb = [str(bindir / "initdb"), "-D", str(self.data), "-U", "gifsent", "--auth=trust"]
        subprocess.run([*self.as_pg, *initdb, "-E", "UTF8"], check=True, capture_output=True)
        self.start()
        self.url = f"postgresql://gifsent@127.0.0.1:{self.port}"

    def _ctl(self, *args: str, check: bool = True) -> None:
        ctl = [*self.as_pg, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        subprocess.run(ctl, check=check, capture_output=True)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._ctl("-o", opts, "-l", str(self.base / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop", check=False)

    def database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url + "/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, tmp_path) -> str:
    """Each storage backend in turn: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "votes.sqlite")
    return postgres_url()


# --- a real server in a subprocess -------------------------------------------------------------


class Server:
    """`gifsent-train collect` in a subprocess on a free port."""

    def __init__(self, gifs: Path, db: str, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = "from gifsent_train.cli import main; main()"
        cmd = [sys.executable, "-c", code, "collect", "--gifs", str(gifs)]
        cmd += ["--db", db, "--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.stdout.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.kill()
        raise AssertionError("server did not start within 60 s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Voter:
    """One simulated browser: a cookie jar; `page()` gets a pair, `answer()` posts a vote."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(CookieJar()), _NoRedirect()
        )

    def page(self) -> tuple[int, str] | None:
        """(shown id, csrf) of the next pair; None if the page has no pair."""
        html = self.opener.open(self.base + "/", timeout=30).read().decode()
        shown = re.search(r"name='shown' value='(\d+)'", html)
        csrf = re.search(r"name='csrf' value='([0-9a-f]+)'", html)
        return (int(shown.group(1)), csrf.group(1)) if shown and csrf else None

    def answer(self, shown: int, csrf: str, choice: str) -> int:
        """The HTTP status of the vote's POST (303 = acknowledged)."""
        body = urllib.parse.urlencode({"shown": shown, "csrf": csrf, "choice": choice}).encode()
        try:
            with self.opener.open(self.base + "/vote", data=body, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
