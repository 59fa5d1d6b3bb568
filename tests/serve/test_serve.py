"""The scoring service end to end: the real `gifsent-infer serve` in a subprocess on 127.0.0.1,
called over HTTP. Each endpoint, each status, batching across requests (model calls counted),
bit-identity with the CLI, auth, CORS, SSRF, and SIGTERM draining."""

from __future__ import annotations

import base64
import json
import signal
import socket
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from infer_support import build_model
from serve_support import Origin, cli_rows, multipart, start_server, without_path
from support import gif_bytes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from gifsent_infer.contract import EMOTIONS

MAX_BYTES = 200_000


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_model(tmp_path_factory.mktemp("serve-model") / "tiny.onnx")


@pytest.fixture(scope="module")
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    """Batching server: URLs to 127.0.0.1 allowed (the origin), a long batch wait."""
    s = start_server(
        model,
        tmp_path_factory.mktemp("serve-a"),
        "--allow-private-urls",
        "--batch-wait-ms",
        "2000",
        "--max-batch",
        "8",
        "--max-bytes",
        str(MAX_BYTES),
        "--workers",
        "8",
    )
    yield s
    assert s.stop() == 0


def test_raw_body_multipart_and_bit_identity_with_the_cli(server, model, tmp_path):
    files = []
    for i in range(5):
        p = tmp_path / f"g{i}.gif"
        p.write_bytes(gif_bytes(i, frames=3 + i))
        files.append(p)
    want = cli_rows(model, files, tmp_path)

    raw = server.post("/v1/score", files[0].read_bytes(), "image/gif")
    assert raw.status == 200, raw.body
    [row] = raw.json()
    assert row["path"] == "<body>" and row["status"] == "ok"
    assert without_path(row) == without_path(want[0])  # same columns, same float bits
    assert list(row) == list(want[0])  # top before the scores, as -f json writes it

    body, ctype = multipart([(p.name, p.read_bytes()) for p in files])
    multi = server.post("/v1/score", body, ctype)
    assert multi.status == 200
    got = multi.json()
    assert [r["path"] for r in got] == [p.name for p in files]
    assert [without_path(r) for r in got] == [without_path(r) for r in want]

    # concurrent one-GIF requests, batched with each other: still the CLI's scores
    with ThreadPoolExecutor(5) as pool:
        replies = list(
            pool.map(lambda p: server.post("/v1/score", p.read_bytes(), "image/gif"), files)
        )
    assert [without_path(r.json()[0]) for r in replies] == [without_path(r) for r in want]


def test_query_options_top_clip_percentiles(server):
    r = server.post("/v1/score?top=5&clip=true", gif_bytes(3), "application/octet-stream")
    assert r.status == 200
    row = r.json()[0]
    assert len(row["top"]) == 5 and all(0.0 <= row[e] <= 1.0 for e in EMOTIONS)
    r = server.post("/v1/score?top=0", gif_bytes(3), "image/gif")
    assert "top" not in r.json()[0]
    r = server.post("/v1/score?top=99", gif_bytes(3), "image/gif")
    assert r.status == 422 and r.json()["kind"] == "ValidationError"


def test_concurrent_requests_share_model_calls(server, origin):
    """Eight one-URL requests whose downloads finish together: their GIFs are decoded
    concurrently, so the batcher runs them in fewer model calls than requests."""
    calls_before = server.metric("gifsent_model_calls_total")
    origin.released.clear()
    origin.waiting = 0
    n = 8
    bodies = [json.dumps({"urls": [f"{origin.base}/held/{i}"]}).encode() for i in range(n)]
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(server.post, "/v1/score", b, "application/json") for b in bodies]
        deadline = time.monotonic() + 60
        while origin.waiting < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert origin.waiting == n, "the server did not fetch the URLs concurrently"
        origin.released.set()
        replies = [f.result() for f in futures]
    assert all(r.status == 200 for r in replies), [r.body for r in replies]
    assert all(r.json()[0]["status"] == "ok" for r in replies)
    calls = server.metric("gifsent_model_calls_total") - calls_before
    assert 1 <= calls < n, f"{n} concurrent requests took {calls} model calls"


def test_statuses_413_415_422_400(server):
    big = server.post("/v1/score", b"GIF89a" + b"\0" * (MAX_BYTES + 10), "image/gif")
    assert big.status == 413 and big.json()["kind"] == "TooLarge"

    # no Content-Length (chunked): refused while streaming, before the whole body is sent
    def chunks():
        yield b"GIF89a"
        for _ in range(100):
            yield b"\0" * 10_000

    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request(
        "POST",
        "/v1/score",
        body=chunks(),
        headers={"Content-Type": "image/gif"},
        encode_chunked=True,
    )
    r = conn.getresponse()
    assert r.status == 413
    conn.close()

    huge = server.post("/v1/score", gif_bytes(1), "image/gif", headers={"X-Big": "a" * 40_000})
    assert huge.status == 431 and huge.json()["kind"] == "HeadersTooLarge"

    wrong = server.post("/v1/score", b"hello", "text/plain")
    assert wrong.status == 415 and wrong.json()["kind"] == "UnsupportedMediaType"

    bad = server.post("/v1/score", b"GIF89a not really", "image/gif")
    assert bad.status == 422
    err = bad.json()
    assert err["kind"] == "GifError" and err["error"] and err["rows"][0]["status"] == "error"
    assert b"\n" not in bad.body.strip()  # one line, never a traceback

    assert server.post("/v1/score", b"", "image/gif").status == 400
    assert server.post("/v1/score", b"{nope", "application/json").status == 400
    local = server.post("/v1/score", b'{"urls": ["/etc/passwd"]}', "application/json")
    assert local.status == 400 and "not an http(s) URL" in local.json()["error"]
    body, ctype = multipart([("a.gif", gif_bytes(1))])
    assert server.post("/v1/score", body[: len(body) // 2], ctype).status in (400, 422)

    # one good, one bad input: 200 with an error row, as the CLI writes it
    body, ctype = multipart([("good.gif", gif_bytes(1)), ("bad.gif", b"GIF89a?")])
    mixed = server.post("/v1/score", body, ctype)
    assert mixed.status == 200
    assert [r["status"] for r in mixed.json()] == ["ok", "error"]


def test_info_health_metrics_docs(server, model):
    info = server.request("GET", "/v1/info").json()
    assert info["model"] == model.name and len(info["model_id"]) == 64
    assert isinstance(info["demo"], bool) and info["trained_on"].startswith("trained on")
    assert info["contract"]["emotions"] == list(EMOTIONS)
    assert info["serve"]["auth_token"] is False
    assert f"serving on http://127.0.0.1:{server.port}" in server.log.read_text()
    assert server.request("GET", "/healthz").json() == {"status": "alive"}
    assert server.request("GET", "/readyz").status == 200
    text = server.request("GET", "/metrics").body.decode()
    for name in (
        "gifsent_requests_total",
        "gifsent_request_seconds_bucket",
        "gifsent_batch_size_bucket",
        "gifsent_queue_depth",
        "gifsent_decode_memory_bytes",
        "process_resident_memory_bytes",
        "gifsent_input_errors_total",
    ):
        assert name in text, name
    assert server.request("GET", "/docs").status == 200
    assert "/v1/score" in server.request("GET", "/openapi.json").json()["paths"]
    assert 'gifsent_input_errors_total{kind="GifError"}' in text  # from the 422 test
    nf = server.request("GET", "/nope")
    assert nf.status == 404 and nf.json()["kind"] == "HTTPError"


def test_kserve_v2(server, model, tmp_path):
    assert server.request("GET", "/v2/health/ready").json() == {"ready": True}
    assert server.request("GET", "/v2/health/live").json() == {"live": True}
    assert server.request("GET", "/v2").json()["name"] == "gifsent"
    assert server.request("GET", "/v2/models/gifsent/ready").json()["ready"] is True
    assert server.request("GET", f"/v2/models/{model.stem}").status == 200
    meta = server.request("GET", "/v2/models/gifsent").json()
    assert meta["inputs"][0]["datatype"] == "BYTES"
    assert meta["outputs"][0]["shape"] == [-1, 17]
    gifs = [gif_bytes(10), gif_bytes(11)]
    req = {
        "id": "x1",
        "inputs": [
            {
                "name": "media",
                "shape": [2],
                "datatype": "BYTES",
                "data": [base64.b64encode(g).decode() for g in gifs],
            }
        ],
    }
    r = server.post("/v2/models/gifsent/infer", json.dumps(req).encode(), "application/json")
    assert r.status == 200, r.body
    out = r.json()["outputs"][0]
    assert out["datatype"] == "FP32" and out["shape"] == [2, 17] and r.json()["id"] == "x1"
    files = []
    for i, g in enumerate(gifs):
        (tmp_path / f"k{i}.gif").write_bytes(g)
        files.append(tmp_path / f"k{i}.gif")
    want = [[row[e] for e in EMOTIONS] for row in cli_rows(model, files, tmp_path)]
    got = [out["data"][i * 17 : (i + 1) * 17] for i in range(2)]
    import numpy as np

    assert np.array_equal(np.float32(got), np.float32(want))

    # the binary tensor extension
    raw = b"".join(struct.pack("<I", len(g)) + g for g in gifs)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "media",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    r2 = server.post(
        "/v2/models/gifsent/infer",
        head + raw,
        "application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert r2.status == 200 and r2.json()["outputs"][0]["data"] == out["data"]

    bad = dict(
        req, inputs=[dict(req["inputs"][0], shape=[1], data=[base64.b64encode(b"GIF89a").decode()])]
    )
    r3 = server.post("/v2/models/gifsent/infer", json.dumps(bad).encode(), "application/json")
    assert r3.status == 422 and r3.json()["kind"] == "GifError"
    assert server.request("GET", "/v2/models/other").status == 404


@pytest.fixture(scope="module")
def guarded(model, tmp_path_factory, origin):
    """Auth, CORS, a queue of one and a 2 s request timeout."""
    tmp = tmp_path_factory.mktemp("serve-b")
    (tmp / "token").write_text("s3cret-token\n")
    s = start_server(
        model,
        tmp,
        "--auth-token-file",
        str(tmp / "token"),
        "--cors-origin",
        "https://app.example",
        "--max-queue",
        "1",
        "--request-timeout",
        "2",
        "--allow-private-urls",
    )
    yield s
    assert s.stop() == 0


AUTH = {"Authorization": "Bearer s3cret-token"}


def test_auth_and_cors(guarded):
    assert guarded.request("GET", "/v1/info").status == 401
    wrong = guarded.request("GET", "/v1/info", headers={"Authorization": "Bearer s3cret-tokeN"})
    assert wrong.status == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert guarded.post("/v1/score", gif_bytes(1), "image/gif").status == 401
    assert guarded.request("GET", "/metrics").status == 401
    assert guarded.request("GET", "/healthz").status == 200  # probes stay open
    ok = guarded.post("/v1/score", gif_bytes(1), "image/gif", headers=AUTH)
    assert ok.status == 200
    pre = guarded.request(
        "OPTIONS",
        "/v1/score",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert pre.status == 200
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    other = guarded.request("GET", "/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_queue_full_503_and_timeout_504(guarded, origin):
    slow = json.dumps({"urls": [f"{origin.base}/slow/1?s=6"]}).encode()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(guarded.post, "/v1/score", slow, "application/json", headers=AUTH)
        deadline = time.monotonic() + 30
        while guarded.metric("gifsent_queue_depth", AUTH) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        busy = guarded.post("/v1/score", gif_bytes(2), "image/gif", headers=AUTH)
        assert busy.status == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["kind"] == "QueueFull"
        assert guarded.request("GET", "/readyz").status == 503
        late = first.result()
    assert late.status == 504 and late.json()["kind"] == "Timeout"
    again = guarded.post("/v1/score", gif_bytes(2), "image/gif", headers=AUTH)
    assert again.status == 200


def test_ssrf_private_urls_refused_by_default(model, tmp_path, origin):
    s = start_server(model, tmp_path)
    try:
        r = s.post(
            "/v1/score", json.dumps({"urls": [f"{origin.base}/gif/1"]}).encode(), "application/json"
        )
        assert r.status == 422 and r.json()["kind"] == "InputError"
        assert "loopback" in r.json()["error"]
        meta = json.dumps({"urls": ["http://169.254.169.254/latest/meta-data"]}).encode()
        r = s.post("/v1/score", meta, "application/json")
        assert r.status == 422 and "link-local" in r.json()["error"]

        # SIGTERM while a body is still arriving: the request finishes, the process exits 0
        gif = gif_bytes(5)
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        head = (
            f"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: image/gif\r\n"
            f"Content-Length: {len(gif)}\r\n\r\n"
        ).encode()
        sock.sendall(head + gif[:10])
        time.sleep(0.5)
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(gif[10:])
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"]"):
            got = sock.recv(65536)
            if not got:
                break
            reply += got
        sock.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert s.proc.wait(60) == 0
        # and it no longer accepts connections
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", s.port), timeout=5).close()
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def test_serve_refuses_a_missing_model_cleanly(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "gifsent_infer.cli", "serve", "--model", str(tmp_path / "no.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_serve_help_names_the_service_flags():
    from typer.testing import CliRunner

    from gifsent_infer.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200).output
    for flag in (
        "--host",
        "--max-batch",
        "--batch-wait-ms",
        "--max-queue",
        "--request-timeout",
        "--max-bytes",
        "--allow-private-urls",
        "--auth-token-file",
        "--cors-origin",
        "--drain-timeout",
        "--ray",
        "--replicas",
    ):
        assert flag in out, flag
    assert "127.0.0.1" in out  # loopback unless --host says otherwise


def _calibrated_model(path):
    """A three-head graph (scores_std) whose document carries split-conformal intervals."""
    import dataclasses

    from infer_support import make_document

    from gifsent_infer.contract import Intervals, output_meanings

    q = {e: (0.1 + 0.01 * k, 0.2 + 0.01 * k) for k, e in enumerate(EMOTIONS)}
    norm = {e: k % 2 == 0 for k, e in enumerate(EMOTIONS)}
    doc = dataclasses.replace(
        make_document(),
        schema_version=3,
        outputs=output_meanings("rnn", 3),
        intervals=Intervals(levels=(0.8, 0.9), q=q, normalized=norm, heads=3, gifs=50),
    )
    return build_model(path, std=True, metadata=doc.to_json())


def test_intervals_are_the_clis_lo_hi_columns(model, tmp_path):
    calibrated = _calibrated_model(tmp_path / "calibrated.onnx")
    gif = tmp_path / "g.gif"
    gif.write_bytes(gif_bytes(8))
    want = cli_rows(calibrated, [gif], tmp_path, "--intervals", "0.9", "--clip")
    s = start_server(calibrated, tmp_path, "--intervals", "0.9")
    try:
        r = s.post("/v1/score?clip=1", gif.read_bytes(), "image/gif")
        assert r.status == 200, r.body
        [row] = r.json()
        assert f"{EMOTIONS[0]}_lo" in row and f"{EMOTIONS[0]}_std" in row
        assert list(row) == list(want[0])  # the CLI's columns, in its order
        assert without_path(row) == without_path(want[0])  # and its values, clipped alike
        assert s.request("GET", "/v1/info").json()["options"]["intervals"] == 0.9

        # another calibrated coverage per request: the CLI's rows at that level
        want8 = cli_rows(calibrated, [gif], tmp_path, "--intervals", "0.8")
        r = s.post("/v1/score?intervals=0.8", gif.read_bytes(), "image/gif")
        assert r.status == 200, r.body
        assert without_path(r.json()[0]) == without_path(want8[0])
        r = s.post("/v1/score?intervals=0.85", gif.read_bytes(), "image/gif")
        assert r.status == 400 and r.json()["kind"] == "ExtrasError"
        assert "0.8, 0.9" in r.json()["error"]  # says which levels the model has
        r = s.post("/v1/score?intervals=2", gif.read_bytes(), "image/gif")
        assert r.status == 422 and r.json()["kind"] == "ValidationError"
    finally:
        assert s.stop() == 0

    # a model without calibration: a usage error before serving, not a traceback
    cmd = [sys.executable, "-m", "gifsent_infer.cli", "serve", "--model", str(model)]
    cmd += ["--intervals", "0.9", "--port", "0"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "--intervals" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_intervals_per_request_need_a_service_started_with_them(server):
    r = server.post("/v1/score?intervals=0.9", gif_bytes(1), "image/gif")
    assert r.status == 400 and r.json()["kind"] == "ExtrasError"
    assert "--intervals" in r.json()["error"]
