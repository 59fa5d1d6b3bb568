"""Input expansion (files, folders, globs, stdin) and downloads against a local HTTP server."""

from __future__ import annotations

import contextlib
import http.server
import io
import threading
import time
from pathlib import Path

import pytest
from infer_support import gif_bytes

from gifsent_infer.reading.inputs import (
    InputError,
    NoInputsError,
    expand_inputs,
    fetch_url,
    read_file,
)


@pytest.fixture
def tree(tmp_path) -> Path:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "a" / "one.gif").write_bytes(gif_bytes(1))
    (tmp_path / "a" / "b" / "two.GIF").write_bytes(gif_bytes(2))
    (tmp_path / "a" / "b" / "noext").write_bytes(gif_bytes(3))  # a GIF by content
    (tmp_path / "a" / "fake.gif").write_text("not a gif")  # .gif by name: kept, errors later
    (tmp_path / "a" / "notes.txt").write_text("hello")  # skipped
    (tmp_path / "a" / "pic.jpg").write_bytes(b"\xff\xd8\xff\xe0")  # JPEG: skipped
    (tmp_path / ".hidden" / "h.gif").write_bytes(gif_bytes(4))  # hidden folder: skipped
    return tmp_path


def names(expansion) -> list[str]:
    return [Path(i.name).name for i in expansion.items]


def test_folders_are_walked_recursively_and_gifs_found_by_content(tree):
    e = expand_inputs([str(tree)])
    assert sorted(names(e)) == ["fake.gif", "noext", "one.gif", "two.GIF"]
    assert any("skipped 2 file(s)" in n for n in e.notes)
    flat = expand_inputs([str(tree / "a")], recursive=False)
    assert sorted(names(flat)) == ["fake.gif", "one.gif"]


def test_explicit_files_always_get_a_row_and_duplicates_collapse(tree):
    txt = tree / "a" / "notes.txt"
    e = expand_inputs([str(txt), str(tree / "a" / "one.gif"), str(tree / "a"), str(txt)])
    assert names(e).count("notes.txt") == 1 and names(e).count("one.gif") == 1
    assert names(e)[:2] == ["notes.txt", "one.gif"]


def test_globs_and_stdin(tree):
    e = expand_inputs([str(tree / "a" / "**" / "*.gif")])
    assert sorted(names(e)) == ["fake.gif", "one.gif"]
    stdin = io.StringIO(f"# a comment\n\n{tree / 'a' / 'b'}\nhttps://example.com/x.gif\n")
    e = expand_inputs(["-"], stdin=stdin)
    assert sorted(names(e)) == ["noext", "two.GIF", "x.gif"]
    assert e.items[-1].url == "https://example.com/x.gif"


def test_missing_paths_are_rows_when_something_else_exists(tree):
    e = expand_inputs([str(tree / "a" / "one.gif"), str(tree / "typo.gif")])
    assert [i.error for i in e.items] == [None, "no such file or folder"]


def test_nothing_to_score_is_a_clear_error(tree, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoInputsError, match="typo: no such file"):
        expand_inputs([str(tree / "typo")])
    with pytest.raises(NoInputsError, match="no GIFs in this folder"):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(NoInputsError, match="matched no GIFs"):
        expand_inputs([str(tree / "*.webp")])


def test_read_file_limits(tmp_path):
    p = tmp_path / "x.gif"
    p.write_bytes(b"GIF89a" + b"\0" * 100)
    assert len(read_file(p)) == 106
    with pytest.raises(InputError, match="over the 100 bytes limit"):
        read_file(p, max_bytes=100)
    with pytest.raises(InputError, match="no such file"):
        read_file(tmp_path / "nope")


# --- downloads -----------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}  # noqa: RUF012 - set by the fixture

    def do_GET(self):
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._get()  # the client may give up (size limit, timeout): expected

    def _get(self):
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        kind, body = route
        if kind == "redirect":
            self.send_response(302)
            self.send_header("Location", body)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        if kind != "chunked-lie":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "slow":
            for i in range(0, len(body), 10):
                self.wfile.write(body[i : i + 10])
                self.wfile.flush()
                time.sleep(0.2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    gif = gif_bytes(7)
    _Handler.routes = {
        "/ok.gif": ("plain", gif),
        "/big.gif": ("plain", b"GIF89a" + b"\0" * 5000),
        "/big-no-length.gif": ("chunked-lie", b"GIF89a" + b"\0" * 5000),
        "/slow.gif": ("slow", gif),
        "/moved": ("redirect", "/ok.gif"),
        "/to-file": ("redirect", "file:///etc/passwd"),
    }
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield base, gif
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_url_ok_redirect_and_errors(server):
    base, gif = server
    assert fetch_url(f"{base}/ok.gif", allow_private=True) == gif
    assert fetch_url(f"{base}/moved", allow_private=True) == gif
    with pytest.raises(InputError, match="HTTP 404"):
        fetch_url(f"{base}/missing.gif", allow_private=True)
    with pytest.raises(InputError, match=r"not allowed|non-HTTP"):
        fetch_url(f"{base}/to-file", allow_private=True)
    with pytest.raises(InputError, match="only http"):
        fetch_url("ftp://127.0.0.1/x.gif")


def test_oversize_downloads_are_refused(server):
    base, _ = server
    with pytest.raises(InputError, match=r"over the 1\.0 KiB limit"):
        # by Content-Length, before reading
        fetch_url(f"{base}/big.gif", max_bytes=1024, allow_private=True)
    with pytest.raises(InputError, match=r"over the 1\.0 KiB limit"):
        # by counting
        fetch_url(f"{base}/big-no-length.gif", max_bytes=1024, allow_private=True)


def test_slow_downloads_time_out(server):
    base, _ = server
    t = time.monotonic()
    with pytest.raises(InputError, match="timed out"):
        fetch_url(f"{base}/slow.gif", timeout=0.5, allow_private=True)
    assert time.monotonic() - t < 5


def test_unreachable_host_is_an_input_error():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(InputError, match="cannot download"):
        fetch_url(f"http://127.0.0.1:{port}/x.gif", timeout=2, allow_private=True)
