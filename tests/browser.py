"""Headless Chromium for tests: load a page, dump its DOM after scripts ran, take a screenshot.

`make test` installs Debian's `chromium` when it is missing and we are root. Tests that need
a browser call `require_browser()`: it skips with the reason when none can be found, and
fails instead under CI=true, where the browser tests must run. $GIFSENT_CHROMIUM names
another binary. Parsing uses the standard library only (html.parser).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",  # root in containers: the sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
)


def find_browser() -> str | None:
    explicit = os.environ.get("GIFSENT_CHROMIUM")
    if explicit:
        return explicit if shutil.which(explicit) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> str:
    browser = find_browser()
    if browser is None:
        reason = (
            "no Chromium found (looked for /usr/bin/chromium, chromium, chromium-browser, "
            "google-chrome-stable; $GIFSENT_CHROMIUM names another): `make test` as root "
            "installs Debian's chromium"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " — CI=true: the browser tests must run")
        pytest.skip(reason)
    return browser


def _run(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="gifsent-chromium-") as profile:
        cmd = [require_browser(), *FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)


def dump_dom(url: str, *, budget_ms: int = 3000) -> str:
    """The DOM after the page's scripts ran (serialised by Chromium)."""
    proc = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", url])
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0 or "<html" not in out:
        raise AssertionError(
            f"chromium --dump-dom failed ({proc.returncode}): "
            + proc.stderr.decode("utf-8", "replace")[-2000:]
        )
    return out


def screenshot(url: str, png: Path, *, size: tuple[int, int] = (1280, 1600)) -> Path:
    proc = _run(
        [
            f"--window-size={size[0]},{size[1]}",
            "--hide-scrollbars",
            "--virtual-time-budget=3000",  # let lazy images load before the picture is taken
            f"--screenshot={png}",
            url,
        ]
    )
    if proc.returncode != 0 or not png.is_file():
        raise AssertionError(
            f"chromium --screenshot failed ({proc.returncode}): "
            + proc.stderr.decode("utf-8", "replace")[-2000:]
        )
    return png


# --- a small DOM for assertions ------------------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
_VOID |= {"track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None
    texts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """All text inside, as the browser would show it (entities decoded)."""
        return "".join(self.texts) + "".join(c.text for c in self.children)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self):
        yield self
        for c in self.children:
            yield from c.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and (cls is None or cls in n.classes())
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def by_id(self, id_: str) -> Node:
        found = [n for n in self.iter() if n.attrs.get("id") == id_]
        assert len(found) == 1, f"{len(found)} elements with id {id_!r}"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, parent=self.cur)
        self.cur.children.append(node)
        if tag not in _VOID:
            self.cur = node

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.texts.append(data)


def parse(html_text: str) -> Node:
    b = _Builder()
    b.feed(html_text)
    b.close()
    return b.root
