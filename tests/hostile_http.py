"""A hostile HTTP server on 127.0.0.1 for tests and benchmarks/bench_fuzz.py.

Raw sockets, so it can misbehave below HTTP: drip the status line, stall, never end a body,
lie about lengths, loop redirects, send a gzip bomb or a non-HTTP banner. Paths:

    /ok.gif            200, the GIF given
    /stall             reads the request, then sends nothing
    /drip-headers      status line and headers at one byte per `drip_s`
    /drip-body         good headers (Content-Length 1 MiB), then one byte per `drip_s`
    /endless           200 without a length, an endless fast body
    /big               Content-Length 1 GiB (and some bytes)
    /loop              302 to itself
    /chain/N           302 to /chain/N-1; /chain/0 redirects to /ok.gif
    /redirect?to=URL   302 to URL
    /gzip-bomb         Content-Encoding: gzip, 10 MiB of zeros squeezed to ~10 KiB
    /banner            an SSH-style banner with a secret, then close (not HTTP)
    /garbage-status    "HTTP/1.1 abc secret-reason" status line
    /html              200 text/html
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import socketserver
import threading
import time
import urllib.parse

SECRET = b"secret-banner-7f3a"


class _Handler(socketserver.BaseRequestHandler):
    server: HostileServer

    def handle(self) -> None:
        sock = self.request
        sock.settimeout(30)
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in data and len(data) < 65536:
                got = sock.recv(4096)
                if not got:
                    return
                data += got
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        target = parts[1] if len(parts) > 1 else "/"
        with contextlib.suppress(OSError):
            self._serve(sock, target)

    def _send(self, sock, status: str, headers: dict, body: bytes = b"") -> None:
        head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)

    def _serve(self, sock, target: str) -> None:
        srv = self.server
        url = urllib.parse.urlsplit(target)
        path = url.path
        if path == "/ok.gif":
            self._send(
                sock,
                "200 OK",
                {"Content-Length": len(srv.gif), "Content-Type": "image/gif"},
                srv.gif,
            )
        elif path == "/stall":
            srv.stop.wait(60)
        elif path == "/drip-headers":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\n" + b"X-Pad: " + b"a" * 10000
            for i in range(len(head)):
                if srv.stop.is_set():
                    return
                sock.sendall(head[i : i + 1])
                time.sleep(srv.drip_s)
        elif path == "/drip-body":
            self._send(sock, "200 OK", {"Content-Length": 1 << 20})
            for _ in range(1 << 20):
                if srv.stop.is_set():
                    return
                sock.sendall(b"G")
                time.sleep(srv.drip_s)
        elif path == "/endless":
            self._send(sock, "200 OK", {"Content-Type": "image/gif"}, b"GIF89a")
            block = b"\0" * 65536
            while not srv.stop.is_set():
                sock.sendall(block)
        elif path == "/big":
            self._send(sock, "200 OK", {"Content-Length": (1 << 30) + 7}, b"GIF89a")
        elif path == "/loop":
            self._send(sock, "302 Found", {"Location": "/loop", "Content-Length": 0})
        elif path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[1])
            to = "/ok.gif" if n <= 0 else f"/chain/{n - 1}"
            self._send(sock, "302 Found", {"Location": to, "Content-Length": 0})
        elif path == "/redirect":
            to = urllib.parse.parse_qs(url.query)["to"][0]
            self._send(sock, "302 Found", {"Location": to, "Content-Length": 0})
        elif path == "/gzip-bomb":
            body = gzip.compress(b"\0" * (10 << 20), compresslevel=9)
            self._send(
                sock,
                "200 OK",
                {
                    "Content-Encoding": "gzip",
                    "Content-Length": len(body),
                    "Content-Type": "image/gif",
                },
                body,
            )
        elif path == "/banner":
            sock.sendall(b"SSH-2.0-OpenSSH_9.6 " + SECRET + b"\r\n")
        elif path == "/garbage-status":
            sock.sendall(b"HTTP/1.1 abc " + SECRET + b"\r\n\r\n")
        elif path == "/html":
            body = b"<!DOCTYPE html><title>" + SECRET + b"</title>"
            self._send(
                sock, "200 OK", {"Content-Length": len(body), "Content-Type": "text/html"}, body
            )
        else:
            self._send(sock, "404 " + SECRET.decode(), {"Content-Length": 0})


class HostileServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, gif: bytes, drip_s: float = 0.2) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.gif = gif
        self.drip_s = drip_s
        self.stop = threading.Event()
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
