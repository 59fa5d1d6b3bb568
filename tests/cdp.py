"""Drive headless Chromium through the DevTools protocol over a pipe (no websocket library).

`--remote-debugging-pipe` makes Chromium read commands on fd 3 and write replies and events
on fd 4, each a JSON message ended by a NUL byte. Real key presses go through
``Input.dispatchKeyEvent`` (trusted events, as a person's keyboard makes them).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import subprocess
import tempfile
import threading
import time

from tests.browser import FLAGS, require_browser

KEYS = {"ArrowLeft": 37, "ArrowRight": 39, "ArrowDown": 40, " ": 32}


class Chromium:
    """One headless Chromium with one page; ``call(method, **params)`` on that page."""

    def __init__(self) -> None:
        browser = require_browser()
        self.profile = tempfile.TemporaryDirectory(prefix="gifsent-cdp-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # move Chromium's ends above fd 10 so that placing them on 3 and 4 cannot clobber them
        high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)

        def place() -> None:
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        cmd = [browser, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self.profile.name}"]
        self.proc = subprocess.Popen(
            [*cmd, "--window-size=1200,900", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=place,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in (to_chrome_r, from_chrome_w, high_r, high_w):
            os.close(fd)
        self.next_id = 0
        self.replies: dict[int, queue.Queue] = {}
        self.events: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        targets = self._send("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self._send("Target.attachToTarget", targetId=page["targetId"], flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self.from_chrome, 65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg and msg["id"] in self.replies:
                    self.replies[msg["id"]].put(msg)
                else:
                    self.events.put(msg)

    def _send(self, method: str, session: str | None = None, timeout: float = 30, **params):
        with self.lock:
            self.next_id += 1
            mid = self.next_id
            self.replies[mid] = queue.Queue()
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        reply = self.replies[mid].get(timeout=timeout)
        del self.replies[mid]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def call(self, method: str, **params):
        return self._send(method, self.session, **params)

    def navigate(self, url: str, timeout: float = 30) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout)

    def evaluate(self, expression: str):
        """The expression's value, or None while the page is between documents."""
        try:
            res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        except (RuntimeError, queue.Empty):
            return None
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expression}")

    def press(self, key: str) -> None:
        code = KEYS[key]
        name = "Space" if key == " " else key
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key=key,
                code=name,
                windowsVirtualKeyCode=code,
                nativeVirtualKeyCode=code,
            )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.to_chrome, self.from_chrome):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
