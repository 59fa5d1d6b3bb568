"""GIFGIF fetch against a local HTTP server: resume after drops, integrity, manifest, hostile tars."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from gifsent_train.fetch import (
    IMAGES_FILE,
    VOTES_FILE,
    FetchError,
    download,
    fetch_gifgif,
    load_manifest,
    safe_extract,
)


class _Server:
    """Serves `files` on 127.0.0.1; Range support; can drop a file's first responses early."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drops: dict[str, list[int]] = {}  # name -> byte offsets at which to cut, in turn
        self.ranges = True
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and server.ranges:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                cuts = server.drops.get(name)
                if cuts:
                    body = body[: max(0, cuts.pop(0) - start)]
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True  # the client sees fewer bytes than promised
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/lum-public/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with _Server() as s:
        yield s


def _votes_gz(rows: int = 20000) -> bytes:
    rng = np.random.default_rng(0)
    lines = ["metric,left,right,choice"] + [
        f"happiness,{rng.integers(1e12):013d},{rng.integers(1e12):013d},left" for _ in range(rows)
    ]
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


def _tar(members: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """members: (name, data or None, type); type tarfile.REGTYPE/SYMTYPE/LNKTYPE/DIRTYPE/CHRTYPE."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                    info.linkname = data.decode()
                tar.addfile(info)
    return buf.getvalue()


def _gif_tar() -> bytes:
    rng = np.random.default_rng(1)
    members = [("gifgif-images", None, tarfile.DIRTYPE)]
    for i in range(12):
        members.append(
            (f"gifgif-images/id{i:010d}.gif", b"GIF89a" + rng.bytes(40_000), tarfile.REGTYPE)
        )
    return _tar(members)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetch_resumes_after_dropped_connections_and_records_manifest(server, tmp_path):
    votes, images = _votes_gz(), _gif_tar()
    assert len(votes) > 150_000 and len(images) > 400_000
    server.files = {VOTES_FILE: votes, IMAGES_FILE: images}
    server.drops = {VOTES_FILE: [100_000], IMAGES_FILE: [150_000, 300_000]}
    seen = []
    result = fetch_gifgif(tmp_path, server.url, retry_wait=0, progress=lambda *a: seen.append(a))
    assert result.votes.read_bytes() == votes
    assert result.images_tar.read_bytes() == images
    assert sorted(result.downloaded) == sorted([VOTES_FILE, IMAGES_FILE])
    # resumed, not restarted: the retries asked for the bytes after the cut
    assert (VOTES_FILE, "bytes=100000-") in server.requests
    assert (IMAGES_FILE, "bytes=150000-") in server.requests
    assert (IMAGES_FILE, "bytes=300000-") in server.requests
    assert not list(tmp_path.glob("*.part"))
    manifest = load_manifest(result.manifest)
    assert manifest["files"][VOTES_FILE]["sha256"] == _sha(votes)
    assert manifest["files"][IMAGES_FILE]["sha256"] == _sha(images)
    assert manifest["files"][IMAGES_FILE]["size"] == len(images)
    assert manifest["extracted"][IMAGES_FILE]["members"] == 13
    gifs = sorted(result.images_dir.rglob("*.gif"))
    assert len(gifs) == 12 and gifs[0].read_bytes().startswith(b"GIF89a")
    # progress reports bytes against the server's total
    assert (f"download {VOTES_FILE}", len(votes), len(votes)) in seen
    assert any(label.startswith("extract") for label, _, _ in seen)

    # a second run downloads nothing and re-checks the files against the manifest
    n_requests = len(server.requests)
    again = fetch_gifgif(tmp_path, server.url, retry_wait=0)
    assert len(server.requests) == n_requests
    assert sorted(again.reused) == sorted([VOTES_FILE, IMAGES_FILE])
    assert again.images_dir == result.images_dir

    # a file that changed on disk (same size) no longer matches the manifest
    blob = bytearray(votes)
    blob[-20] ^= 0xFF
    result.votes.write_bytes(bytes(blob))
    with pytest.raises(FetchError, match="SHA-256"):
        fetch_gifgif(tmp_path, server.url, retry_wait=0)


def test_manifest_catches_a_changed_server_file(server, tmp_path):
    server.files = {VOTES_FILE: _votes_gz(500)}
    fetch_gifgif(tmp_path, server.url, images=False, retry_wait=0)
    (tmp_path / VOTES_FILE).unlink()
    server.files[VOTES_FILE] = _votes_gz(501)  # the "same" file, different content
    with pytest.raises(FetchError, match="differs"):
        fetch_gifgif(tmp_path, server.url, images=False, retry_wait=0)


def test_resume_of_a_part_left_by_an_earlier_run(server, tmp_path):
    data = _votes_gz(5000)
    server.files = {VOTES_FILE: data}
    (tmp_path / (VOTES_FILE + ".part")).write_bytes(data[:12345])
    download(server.url + VOTES_FILE, tmp_path / VOTES_FILE, retry_wait=0)
    assert server.requests == [(VOTES_FILE, "bytes=12345-")]
    assert (tmp_path / VOTES_FILE).read_bytes() == data
    # a complete .part (server answers 416) is accepted as is
    (tmp_path / (VOTES_FILE + ".part")).write_bytes(data)
    download(server.url + VOTES_FILE, tmp_path / "again.gz", retry_wait=0)
    (tmp_path / "again.gz.part").write_bytes(data)
    download(server.url + VOTES_FILE, tmp_path / "again.gz", retry_wait=0)
    assert (tmp_path / "again.gz").read_bytes() == data


def test_server_without_range_support_restarts(server, tmp_path):
    data = _votes_gz(5000)
    server.files = {VOTES_FILE: data}
    server.ranges = False
    server.drops = {VOTES_FILE: [10_000]}
    n = download(server.url + VOTES_FILE, tmp_path / VOTES_FILE, retry_wait=0)
    assert n == len(data) and (tmp_path / VOTES_FILE).read_bytes() == data


def test_gives_up_after_retries_and_keeps_the_part(server, tmp_path):
    data = _votes_gz(5000)
    server.files = {VOTES_FILE: data}
    server.drops = {VOTES_FILE: [1000, 2000, 3000]}
    with pytest.raises(FetchError, match="run again to resume"):
        download(server.url + VOTES_FILE, tmp_path / VOTES_FILE, retries=2, retry_wait=0)
    assert (tmp_path / (VOTES_FILE + ".part")).stat().st_size == 3000
    download(server.url + VOTES_FILE, tmp_path / VOTES_FILE, retry_wait=0)
    assert (tmp_path / VOTES_FILE).read_bytes() == data
    with pytest.raises(FetchError, match="404"):
        download(server.url + "nope.tar", tmp_path / "nope.tar", retry_wait=0)


def test_truncated_gzip_is_detected(server, tmp_path):
    data = _votes_gz(5000)
    server.files = {
        VOTES_FILE: data[: len(data) - 100]
    }  # the server's length agrees: only gzip can tell
    with pytest.raises(FetchError, match="failed verification"):
        fetch_gifgif(tmp_path, server.url, images=False, retry_wait=0)
    assert not (tmp_path / VOTES_FILE).exists()
    assert (tmp_path / (VOTES_FILE + ".corrupt")).exists()
    assert VOTES_FILE not in load_manifest(tmp_path / "manifest.json")["files"]


def test_truncated_tar_is_detected(server, tmp_path):
    images = _gif_tar()
    server.files = {VOTES_FILE: _votes_gz(100), IMAGES_FILE: images[: len(images) // 2]}
    with pytest.raises(FetchError, match="failed verification"):
        fetch_gifgif(tmp_path, server.url, retry_wait=0)
    assert not (tmp_path / "gifs").exists()


HOSTILE = {
    "parent": ("../escape.gif", b"GIF89a", tarfile.REGTYPE),
    "nested-parent": ("gifs/../../escape.gif", b"GIF89a", tarfile.REGTYPE),
    "absolute": ("/tmp/gifsent-escape.gif", b"GIF89a", tarfile.REGTYPE),
    "symlink": ("gifs/link.gif", b"/etc/passwd", tarfile.SYMTYPE),
    "hardlink": ("gifs/hard.gif", b"gifs/a.gif", tarfile.LNKTYPE),
    "device": ("gifs/dev", None, tarfile.CHRTYPE),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_tar_member_is_refused(server, tmp_path, kind):
    tar = _tar([("gifs/a.gif", b"GIF89a", tarfile.REGTYPE), HOSTILE[kind]])
    server.files = {VOTES_FILE: _votes_gz(100), IMAGES_FILE: tar}
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match="unsafe"):
        fetch_gifgif(dest, server.url, retry_wait=0)
    assert not (dest / "gifs").exists()
    assert not (tmp_path / "escape.gif").exists()
    assert not Path("/tmp/gifsent-escape.gif").exists()

    # safe_extract refuses it on its own too, before writing anything
    local = tmp_path / "hostile.tar"
    local.write_bytes(tar)
    with pytest.raises(FetchError, match="unsafe"):
        safe_extract(local, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
