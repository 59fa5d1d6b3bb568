"""What to score: expand command-line inputs (files, folders, globs, URLs, `-`) and read their bytes.

Expansion decides *which* inputs there are; reading happens later, in the worker pool, so a
slow disk or server never holds up the model. Every input the user named explicitly gets a
row even when it is not a GIF; files met while walking a folder or a glob are taken when
their content is a GIF (or their name ends in .gif, so that a broken .gif gets an error row
instead of vanishing).
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from gifsent_infer import __version__
from gifsent_infer.gifio import DEFAULT_LIMITS
from gifsent_infer.media import MEDIA_SUFFIXES, SNIFF_BYTES, sniff_format

DEFAULT_MAX_BYTES = DEFAULT_LIMITS.max_file_bytes  # per input, files and downloads alike
DEFAULT_TIMEOUT_S = 30.0  # whole download, not per socket read
_CHUNK = 1 << 16


class InputError(ValueError):
    """One input cannot be read or is not a GIF; the message is the row's `error`."""


class NoInputsError(ValueError):
    """Nothing to score at all; the message says what was looked at."""


@dataclass(frozen=True)
class InputItem:
    """One thing to score. `name` is what the output's `path` column shows."""

    name: str
    path: Path | None = None
    url: str | None = None
    error: str | None = None  # known bad before reading (e.g. no such file)


@dataclass
class Expansion:
    items: list[InputItem]
    notes: list[str] = field(default_factory=list)  # warnings for the user (stderr)


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _looks_like_gif(path: Path) -> bool:
    """A GIF or other supported media (gifsent_infer.media) by content, or by a media name."""
    if path.suffix.lower() in MEDIA_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return sniff_format(f.read(SNIFF_BYTES)) is not None
    except OSError:
        return False


def _walk(folder: Path, recursive: bool) -> Iterable[Path]:
    if not recursive:
        yield from sorted(p for p in folder.iterdir() if p.is_file())
        return
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # skip .git, .cache, ...
        for name in sorted(files):
            yield Path(root) / name


def expand_inputs(
    args: Iterable[str], *, stdin: TextIO | None = None, recursive: bool = True
) -> Expansion:
    """Turn command-line inputs into InputItems, in order, without duplicates.

    `-` reads one input per line from `stdin` (blank lines and # comments skipped).
    Raises NoInputsError when nothing at all is found to score.
    """
    items: list[InputItem] = []
    notes: list[str] = []
    seen: set[str] = set()
    skipped = 0
    missing: list[str] = []

    def add(item: InputItem, key: str) -> None:
        if key not in seen:
            seen.add(key)
            items.append(item)

    def add_file(path: Path) -> None:
        add(InputItem(name=str(path), path=path), os.path.realpath(path))

    def add_folder(folder: Path) -> int:
        nonlocal skipped
        n = 0
        for p in _walk(folder, recursive):
            if _looks_like_gif(p):
                add_file(p)
                n += 1
            else:
                skipped += 1
        return n

    def one(arg: str) -> None:
        nonlocal skipped
        if is_url(arg):
            add(InputItem(name=arg, url=arg), arg)
            return
        path = Path(arg).expanduser()
        if path.is_dir():
            if add_folder(path) == 0:
                notes.append(f"{arg}: no GIFs in this folder")
            return
        if path.is_file():
            add_file(path)  # named explicitly: always a row, GIF or not
            return
        if _has_glob(arg):
            matches = sorted(glob.glob(os.path.expanduser(arg), recursive=True))
            found = 0
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    found += add_folder(mp)
                elif mp.is_file() and _looks_like_gif(mp):
                    add_file(mp)
                    found += 1
                elif mp.is_file():
                    skipped += 1
            if not found:
                notes.append(f"{arg}: the pattern matched no GIFs")
            return
        missing.append(arg)
        add(InputItem(name=arg, error="no such file or folder"), "missing:" + arg)

    for arg in args:
        if arg == "-":
            if stdin is None:
                raise NoInputsError("'-' given but there is no standard input to read")
            for line in stdin:
                line = line.strip()
                if line and not line.startswith("#") and line != "-":
                    one(line)
        else:
            one(arg)

    if skipped:
        notes.append(f"skipped {skipped} file(s) that are not GIFs")
    if all(i.error for i in items):  # nothing real: a typo or an empty folder is a usage error
        what = "; ".join(notes + [f"{m}: no such file or folder" for m in missing])
        raise NoInputsError(f"nothing to score ({what or 'no inputs given'})")
    return Expansion(items=items, notes=notes)


# --- reading -----------------------------------------------------------------------------------


def _size_text(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def describe_non_gif(head: bytes) -> str:
    """A row's reason for content that is not a GIF, naming what it looks like."""
    if not head:
        return "empty file (0 bytes)"
    kinds = [
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"RIFF", "a RIFF file (WebP?)"),
        (b"\x1aE\xdf\xa3", "a WebM/Matroska video"),
        (b"<", "HTML/XML text"),
        (b"{", "JSON text"),
    ]
    if head[4:8] == b"ftyp":
        what = "an MP4/MOV video"
    else:
        what = next((k for magic, k in kinds if head.startswith(magic)), "")
    if not what:
        try:
            head.decode("utf-8")
            what = "text"
        except UnicodeDecodeError:
            what = "unknown binary data"
    return f"not a GIF or other supported image/video (content looks like {what}, starts with {head[:8]!r})"


def read_file(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a file, refusing files over `max_bytes`; raises InputError."""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise InputError(
                f"file is {_size_text(size)}, over the {_size_text(max_bytes)} limit (--max-bytes)"
            )
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputError("no such file") from None
    except IsADirectoryError:
        raise InputError("is a folder") from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise InputError(f"file grew over the {_size_text(max_bytes)} limit while being read")
    return data


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib would also follow ftp)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not is_url(newurl):
            raise urllib.error.HTTPError(
                newurl, code, f"redirect to non-HTTP URL {newurl}", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SafeRedirects)


def fetch_url(
    url: str, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = DEFAULT_TIMEOUT_S
) -> bytes:
    """Download `url` (http/https) whole, within `max_bytes` and `timeout` seconds; raises InputError."""
    if not is_url(url):
        raise InputError("only http:// and https:// URLs can be fetched")
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": f"gifsent/{__version__}"})
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise InputError(
                    f"download is {_size_text(int(length))}, over the "
                    f"{_size_text(max_bytes)} limit (--max-bytes)"
                )
            chunks: list[bytes] = []
            got = 0
            while True:
                if time.monotonic() > deadline:
                    raise InputError(f"download timed out after {timeout:g} s (--timeout)")
                # read1: whatever has arrived (read() would block for a whole chunk, so a
                # server dripping bytes could outlast the deadline)
                chunk = resp.read1(_CHUNK) if hasattr(resp, "read1") else resp.read(_CHUNK)
                if not chunk:
                    break
                got += len(chunk)
                if got > max_bytes:
                    raise InputError(
                        f"download is over the {_size_text(max_bytes)} limit (--max-bytes)"
                    )
                chunks.append(chunk)
            return b"".join(chunks)
    except InputError:
        raise
    except urllib.error.HTTPError as e:
        raise InputError(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise InputError(f"download timed out after {timeout:g} s (--timeout)") from None
        raise InputError(f"cannot download: {reason}") from None
    except TimeoutError:
        raise InputError(f"download timed out after {timeout:g} s (--timeout)") from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # reset, bad URL, short body
        raise InputError(f"cannot download: {e}") from None


def read_item(
    item: InputItem, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = DEFAULT_TIMEOUT_S
) -> bytes:
    """The bytes of one input; raises InputError with the row's reason."""
    if item.error:
        raise InputError(item.error)
    if item.url is not None:
        return fetch_url(item.url, max_bytes=max_bytes, timeout=timeout)
    assert item.path is not None
    return read_file(item.path, max_bytes=max_bytes)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
