"""Test support for the scoring service: the real `gifsent-infer serve` in a subprocess on
127.0.0.1 (a free port), plain http.client requests, multipart bodies, and a small origin
server for URL inputs (immediate, delayed, or released all at once by a barrier)."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import gif_bytes

READY_DEADLINE_S = 120.0  # the machine is shared and loaded: importing onnxruntime can be slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def post(self, path: str, body: bytes, content_type: str, **kw: Any) -> Reply:
        headers = {"Content-Type": content_type, **kw.pop("headers", {})}
        return self.request("POST", path, body, headers, **kw)

    def metric(self, name: str, headers: dict[str, str] | None = None) -> float:
        """The sum of a metric's samples whose name is exactly `name` (any labels)."""
        text = self.request("GET", "/metrics", headers=headers).body.decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def cli_rows(model: Path, files: list[Path], tmp: Path, *args: str) -> list[dict[str, Any]]:
    """The rows `gifsent-infer score ... -o cli.json` writes for `files` (onnxruntime)."""
    out = tmp / "cli.json"
    cmd = [sys.executable, "-m", "gifsent_infer.cli", "score", *map(str, files)]
    cmd += ["--model", str(model), "--backend", "onnxruntime", "-o", str(out), "-q", *args]
    subprocess.run(cmd, check=True, timeout=300)
    return json.loads(out.read_text())


def without_path(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "path"}


def start_server(model: Path, tmp: Path, *args: str) -> Server:
    port = free_port()
    log = tmp / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "gifsent_infer.cli", "serve", "--model", str(model)]
    cmd += ["--port", str(port), "--backend", "onnxruntime", "--log-level", "warning", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(proc, port, log)
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            if server.request("GET", "/readyz", timeout=5).status == 200:
                return server
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server not ready in {READY_DEADLINE_S} s:\n{log.read_text()}")


def multipart(
    files: list[tuple[str, bytes]], boundary: str = "gifsentTestBoundary"
) -> tuple[bytes, str]:
    parts = []
    for name, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/gif\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Origin:
    """An HTTP server on 127.0.0.1 serving gif_bytes(seed): /gif/SEED, /slow/SEED?s=DELAY, and
    /held/SEED (waits until release() or 30 s)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.waiting = 0
        lock = threading.Lock()
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                kind, _, seed = url.path.strip("/").partition("/")
                if kind == "slow":
                    time.sleep(float(urllib.parse.parse_qs(url.query).get("s", ["1"])[0]))
                elif kind == "held":
                    with lock:
                        origin.waiting += 1
                    origin.released.wait(30)
                body = gif_bytes(int(seed or 0))
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
