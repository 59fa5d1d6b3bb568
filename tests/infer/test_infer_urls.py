"""URL inputs against a hostile server on 127.0.0.1: one deadline, redirect cap, no echoes,
and the SSRF policy (issue 12, D5). Only 127.0.0.0/8 and link-local literals are used; the
link-local ones are refused before any connection is attempted."""

from __future__ import annotations

import socket
import time

import pytest
from hostile_http import SECRET, HostileServer, free_port
from infer_support import build_model, gif_bytes

from gifsent_infer.reading import inputs
from gifsent_infer.reading.inputs import MAX_REDIRECTS, InputError, fetch_url
from gifsent_infer.reading.netpolicy import address_refusal
from gifsent_infer.running.scorer import Scorer

GIF = gif_bytes(5)


@pytest.fixture(scope="module")
def server():
    with HostileServer(GIF, drip_s=0.2) as srv:
        yield srv


def fetch(url: str, **kw) -> bytes:
    kw.setdefault("allow_private", True)
    return fetch_url(url, **kw)


@pytest.mark.parametrize("path", ["/drip-headers", "/stall", "/drip-body"])
def test_one_deadline_covers_headers_and_body(server, path):
    t = time.monotonic()
    with pytest.raises(InputError, match=r"timed out after 1 s"):
        fetch(server.base + path, timeout=1.0)
    assert time.monotonic() - t < 2.5  # headers dripping at 1 byte / 0.2 s used to run on


def test_limits_redirects_and_no_echo_of_server_bytes(server):
    assert fetch(server.base + "/ok.gif") == GIF
    assert fetch(server.base + f"/chain/{MAX_REDIRECTS - 1}") == GIF  # MAX_REDIRECTS hops
    with pytest.raises(InputError, match="too many redirects"):
        fetch(server.base + f"/chain/{MAX_REDIRECTS}")
    with pytest.raises(InputError, match="too many redirects"):
        fetch(server.base + "/loop")
    with pytest.raises(InputError, match=r"over the 1\.0 MiB limit"):
        fetch(server.base + "/endless", max_bytes=1 << 20, timeout=10)
    with pytest.raises(InputError, match=r"1\.0 GiB .*over the"):
        fetch(server.base + "/big")
    with pytest.raises(InputError, match="compressed content"):
        fetch(server.base + "/gzip-bomb")
    for path in ("/banner", "/garbage-status", "/nothing-here"):
        with pytest.raises(InputError) as e:
            fetch(server.base + path, timeout=5)
        assert SECRET.decode() not in str(e.value), str(e.value)
    with pytest.raises(InputError, match="HTTP 404 Not Found"):
        fetch(server.base + "/nothing-here")
    with pytest.raises(InputError, match="non-HTTP"):
        fetch(server.base + "/redirect?to=file:///etc/passwd")
    with pytest.raises(InputError, match="cannot download"):
        fetch(f"http://127.0.0.1:{free_port()}/x.gif", timeout=2)


def test_address_policy():
    for refused, kind in [
        ("127.0.0.1", "loopback"),
        ("127.5.6.7", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.5.4", "private"),
        ("100.64.0.1", "not a public"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
    ]:
        why = address_refusal(refused)
        assert why is not None and kind in why, (refused, why)
    assert address_refusal("93.184.216.34") is None
    assert address_refusal("2606:4700::1111") is None


@pytest.fixture
def connections(monkeypatch) -> list:
    """Every address fetch_url connects to (still connecting for real)."""
    seen: list = []
    real = socket.create_connection

    def record(address, *a, **kw):
        seen.append(address[0])
        return real(address, *a, **kw)

    monkeypatch.setattr(socket, "create_connection", record)
    return seen


def test_private_and_link_local_urls_are_refused_by_default(server, connections):
    port = server.server_address[1]
    for url in [
        server.base + "/ok.gif",
        f"http://127.9.9.9:{port}/ok.gif",
        f"http://localhost:{port}/ok.gif",  # checked after DNS resolution
        f"http://[::1]:{port}/ok.gif",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/x.gif",
    ]:
        with pytest.raises(InputError, match=r"refused to fetch .*allow-private-urls"):
            fetch_url(url, timeout=2)
    assert connections == []  # refused before connecting
    with pytest.raises(InputError, match="only http"):
        fetch_url("ftp://127.0.0.1/x.gif", allow_private=True)


def test_every_redirect_hop_is_checked(server, connections, monkeypatch):
    # Treat 127.0.0.1 as public for this test, so a redirect from it to a forbidden address
    # shows the per-hop check (the real policy would refuse the first hop already).
    monkeypatch.setattr(
        inputs, "address_refusal", lambda a: None if a == "127.0.0.1" else address_refusal(a)
    )
    assert fetch_url(server.base + "/ok.gif") == GIF
    for to in ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:9/x.gif"]:
        with pytest.raises(InputError, match="refused to fetch"):
            fetch_url(f"{server.base}/redirect?to={to}", timeout=5)
    assert set(connections) == {"127.0.0.1"}


def test_scorer_and_cli_apply_the_policy(server, tmp_path, capsys):
    from gifsent_infer.cli import main
    from gifsent_infer.writing.outputs import read_rows

    model = build_model(tmp_path / "m.onnx")
    url = server.base + "/ok.gif"
    assert "refused" in Scorer(model, device="cpu").score(url).error
    assert Scorer(model, device="cpu", allow_private_urls=True).score(url).ok
    slow = Scorer(model, device="cpu", timeout=1, allow_private_urls=True)
    t = time.monotonic()
    assert "timed out" in slow.score(server.base + "/drip-headers").error
    assert time.monotonic() - t < 2.5
    out = tmp_path / "u.csv"
    for extra, status in (([], "error"), (["--allow-private-urls"], "ok")):
        with pytest.raises(SystemExit):
            main([url, "-o", str(out), "-m", str(model), "-q", *extra])
        assert read_rows(out).rows[0]["status"] == status
    capsys.readouterr()
