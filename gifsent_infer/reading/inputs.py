"""What to score: expand command-line inputs (files, folders, globs, URLs, `-`) and read their bytes.

Expansion decides *which* inputs there are; reading happens later, in the worker pool, so a
slow disk or server never holds up the model. Every input the user named explicitly gets a
row even when it is not a GIF; files met while walking a folder or a glob are taken when
their content is in a format of the registry (`formats.py`), or their name ends like one
(.gif, .mp4, ...: so that a broken file gets an error row instead of vanishing).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import glob
import hashlib
import http
import http.client
import ipaddress
import os
import socket
import ssl
import stat
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.reading.formats import (
    MEDIA_SUFFIXES,
    SNIFF_BYTES,
    describe_non_gif,  # noqa: F401 (re-exported: it was defined here)
    sniff_format,
)
from gifsent_infer.reading.gifio import DEFAULT_LIMITS
from gifsent_infer.reading.netpolicy import ALLOW_HINT, address_refusal
from gifsent_infer.reading.stores import StoreError, is_store_uri, list_objects
from gifsent_infer.version import __version__

DEFAULT_MAX_BYTES = DEFAULT_LIMITS.max_file_bytes  # per input, files and downloads alike
DEFAULT_TIMEOUT_S = 30.0  # whole download, not per socket read
_CHUNK = 1 << 16


class InputError(GifsentError, ValueError):
    """One input cannot be read or is not a GIF; the message is the row's `error`."""


class NoInputsError(GifsentError, ValueError):
    """Nothing to score at all; the message says what was looked at."""

    exit_code = USAGE


@dataclass(frozen=True)
class InputItem:
    """One thing to score. `name` is what the output's `path` column shows."""

    name: str
    path: Path | None = None
    url: str | None = None
    error: str | None = None  # known bad before reading (e.g. no such file)
    data: bytes | None = field(default=None, repr=False)  # bytes given directly (stdin)


@dataclass
class Expansion:
    items: list[InputItem]
    notes: list[str] = field(default_factory=list)  # warnings for the user (stderr)


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def display_name(name: str) -> str:
    """`name` made printable: bytes of a non-UTF-8 file name (surrogate-escaped) as \\xff,
    control characters as escapes, so a terminal or rich never chokes on a file name."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def _os_reason(e: OSError) -> str:
    """An OSError as a row's reason, in plain words (no traceback, no errno numbers)."""
    n = e.errno
    if n in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if n == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if n == errno.ENAMETOOLONG:
        return "file name too long"
    if n == errno.ENOENT:
        return "no such file or folder"
    if n == errno.ENOTDIR:
        return "no such file or folder (a part of the path is not a folder)"
    return f"cannot read: {e.strerror or e}"


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_kind(mode: int) -> str | None:
    """What a non-regular, non-folder file is ("a FIFO (named pipe)", ...); None otherwise."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def not_regular_reason(mode: int) -> str:
    return f"not a regular file: {special_kind(mode)} (only regular files are read)"


def _stat(path: str | os.PathLike) -> os.stat_result | str:
    """os.stat(path), or the reason it failed ("permission denied", "symlink loop", ...)."""
    try:
        return os.stat(path)
    except OSError as e:
        if e.errno == errno.ENOENT and os.path.islink(path):
            return "broken symlink (its target does not exist)"
        return _os_reason(e)
    except ValueError:  # an embedded NUL byte
        return "not a valid file name (contains a NUL byte)"


def _looks_like_gif(path: Path, st: os.stat_result) -> bool:
    """Take a file met while walking: named like media (.gif, .mp4, ...), supported media by
    content, or unreadable (so the user hears about it). Only regular files are opened,
    without blocking."""
    if path.suffix.lower() in MEDIA_SUFFIXES:
        return True
    if not stat.S_ISREG(st.st_mode):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        return e.errno in (errno.EACCES, errno.EPERM)
    try:
        return (
            stat.S_ISREG(os.fstat(fd).st_mode)
            and sniff_format(os.read(fd, SNIFF_BYTES)) is not None
        )
    except OSError:
        return False
    finally:
        os.close(fd)


def _walk(folder: Path, recursive: bool) -> Iterable[tuple[Path, os.stat_result | str]]:
    """(path, stat or reason) for every entry that is not a folder; a folder that cannot be
    listed yields (folder, reason). Symlinked folders are not followed (no loops)."""

    def entries(d: Path) -> tuple[list[tuple[str, os.DirEntry]], str | None]:
        try:
            with os.scandir(d) as it:
                return sorted(((e.name, e) for e in it), key=lambda t: t[0]), None
        except OSError as e:
            return [], _os_reason(e)

    stack = [folder]
    while stack:
        d = stack.pop()
        listed, reason = entries(d)
        if reason is not None:
            yield d, f"cannot list folder: {reason}"
            continue
        subdirs = []
        for name, entry in listed:
            p = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                if recursive and not name.startswith("."):  # skip .git, .cache, ...
                    subdirs.append(p)
                continue
            st = _stat(p)
            if not isinstance(st, str) and stat.S_ISDIR(st.st_mode):
                continue  # a symlink to a folder: not followed
            yield p, st
        stack.extend(reversed(subdirs))


_NO_OBJECT = "no such object or prefix"


def _store_items(uri: str, recursive: bool) -> tuple[list[InputItem], int, str]:
    """(items, objects skipped as not media, a note) for an object-store URI: the object
    itself (named explicitly: always a row), or the media objects under a prefix."""
    try:
        kind, objects = list_objects(uri, recursive)
    except StoreError as e:
        return [InputItem(name=uri, url=uri, error=str(e))], 0, ""
    if kind == "missing":
        return [InputItem(name=uri, url=uri, error=_NO_OBJECT)], 0, ""
    if kind == "object":
        return [InputItem(name=uri, url=uri)], 0, ""
    taken = [o for o in objects if o.uri.lower().endswith(MEDIA_SUFFIXES)]
    note = "" if taken else f"{display_name(uri)}: no GIFs under this prefix"
    return [InputItem(name=o.uri, url=o.uri) for o in taken], len(objects) - len(taken), note


class _Expander:
    """The state of one expand_inputs call: items in order, notes, what was skipped."""

    def __init__(self, recursive: bool) -> None:
        self.recursive = recursive
        self.items: list[InputItem] = []
        self.notes: list[str] = []
        self.seen: set[str] = set()
        self.skipped = 0
        self.missing: list[str] = []

    def add(self, item: InputItem, key: str) -> None:
        if key not in self.seen:
            self.seen.add(key)
            self.items.append(item)

    def add_file(self, path: Path, st: os.stat_result | str) -> None:
        key = os.path.normpath(os.path.abspath(path))
        if isinstance(st, str):
            self.add(InputItem(name=str(path), path=path, error=st), key)
        elif not stat.S_ISREG(st.st_mode):
            self.add(
                InputItem(name=str(path), path=path, error=not_regular_reason(st.st_mode)), key
            )
        else:
            self.add(InputItem(name=str(path), path=path), key)

    def add_folder(self, folder: Path) -> int:
        n = 0
        for p, st in _walk(folder, self.recursive):
            if isinstance(st, str) or _looks_like_gif(p, st):
                self.add_file(p, st)
                n += 1
            else:
                self.skipped += 1
        return n

    def add_glob(self, arg: str) -> None:
        found = 0
        for m in sorted(glob.glob(os.path.expanduser(arg), recursive=True)):
            mp = Path(m)
            mst = _stat(mp)
            if not isinstance(mst, str) and stat.S_ISDIR(mst.st_mode):
                found += self.add_folder(mp)
            elif isinstance(mst, str) or _looks_like_gif(mp, mst):
                self.add_file(mp, mst)
                found += 1
            else:
                self.skipped += 1
        if not found:
            self.notes.append(f"{display_name(arg)}: the pattern matched no GIFs")

    def one(self, arg: str) -> None:
        if is_url(arg):
            self.add(InputItem(name=arg, url=arg), arg)
            return
        if is_store_uri(arg):  # an object or a prefix in object storage (reading/stores.py)
            found, skipped, note = _store_items(arg, self.recursive)
            for item in found:
                self.add(item, item.name)
            self.skipped += skipped
            self.notes.extend([note] if note else [])
            return
        path = Path(arg).expanduser() if arg.startswith("~") else Path(arg)
        st = _stat(path)
        if not isinstance(st, str) and stat.S_ISDIR(st.st_mode):
            if self.add_folder(path) == 0:
                self.notes.append(f"{display_name(arg)}: no GIFs in this folder")
            return
        if not isinstance(st, str) or st != "no such file or folder":
            self.add_file(path, st)  # named explicitly: always a row, GIF or not
            return
        if _has_glob(arg):
            self.add_glob(arg)
            return
        self.missing.append(arg)
        self.add(InputItem(name=arg, error="no such file or folder"), "missing:" + arg)

    def finish(self) -> Expansion:
        if self.skipped:
            self.notes.append(f"skipped {self.skipped} file(s) that are not GIFs")
        if all(i.error for i in self.items):  # nothing real: a typo or an empty folder
            what = "; ".join(
                self.notes
                + [f"{display_name(m)}: no such file or folder" for m in self.missing]
                + [
                    f"{display_name(i.name)}: {i.error}"
                    for i in self.items
                    if i.name not in self.missing
                ]
            )
            raise NoInputsError(f"nothing to score ({what or 'no inputs given'})")
        return Expansion(items=self.items, notes=self.notes)


def expand_inputs(
    args: Iterable[str],
    *,
    stdin: TextIO | BinaryIO | None = None,
    recursive: bool = True,
    max_stdin_bytes: int | None = None,
) -> Expansion:
    """Turn command-line inputs into InputItems, in order, without duplicates.

    `-` reads one input per line from `stdin` (blank lines and # comments skipped); when
    stdin holds GIF bytes instead (`cat x.gif | gifsent-infer -`), they are one input,
    named `<stdin>`. Every input named gets exactly one item: FIFOs, sockets, devices,
    unreadable files and folders, symlink loops and over-long names get an item with the
    reason in `error` (nothing that is not a regular file is ever opened). Files met in
    folders are dedup'd by the name they were met under, so two symlinks to one file keep
    one row each. Raises NoInputsError when nothing at all is found to score.
    """
    ex = _Expander(recursive)
    for arg in args:
        if arg != "-":
            ex.one(arg)
            continue
        if stdin is None:
            raise NoInputsError("'-' given but there is no standard input to read")
        data = _read_stdin(stdin, max_stdin_bytes or DEFAULT_MAX_BYTES)
        if isinstance(data, InputItem):
            ex.add(data, "stdin:")
            continue
        for line in data:
            line = line.strip()
            if line and not line.startswith("#") and line != "-":
                ex.one(line)
    return ex.finish()


def explicit_item(name: str) -> InputItem:
    """The item of one input named exactly (a manifest's row): a URL, a store object or a
    file; never expanded (a folder or a missing file is an error row, read as such)."""
    if is_url(name) or is_store_uri(name):
        return InputItem(name=name, url=name)
    path = Path(name).expanduser() if name.startswith("~") else Path(name)
    st = _stat(path)
    if isinstance(st, str):
        return InputItem(name=name, path=path, error=st)
    if stat.S_ISDIR(st.st_mode):
        return InputItem(name=name, path=path, error="is a folder")
    if not stat.S_ISREG(st.st_mode):
        return InputItem(name=name, path=path, error=not_regular_reason(st.st_mode))
    return InputItem(name=name, path=path)


STDIN_NAME = "<stdin>"


BINARY_SHARE = 0.3  # of bytes that are control characters or not UTF-8: not a list of names


def looks_binary(data: bytes) -> bool:
    """True for bytes that are not a list of names: a NUL byte, or control characters
    (other than tab, CR, LF) together with a share of over BINARY_SHARE of bytes that are
    control characters or not UTF-8. Names that are not UTF-8, or hold a control character,
    stay a list: they are a few bytes of a line, random data is half of them."""
    if b"\0" in data:
        return True
    if not data:
        return False
    controls = sum(1 for b in data if (b < 32 and b not in (9, 10, 13)) or b == 127)
    if controls == 0:
        return False
    text = data.decode("utf-8", "surrogateescape")
    invalid = sum(1 for ch in text if "\udc80" <= ch <= "\udcff")
    return (controls + invalid) / len(data) > BINARY_SHARE


def _read_stdin(stdin: TextIO | BinaryIO, max_bytes: int) -> list[str] | InputItem:
    """stdin's lines (names decoded losslessly: surrogateescape), or one InputItem holding
    media bytes (a GIF, MP4, WebP...) piped in. Other binary data (NUL bytes) is a usage error, not a traceback."""
    raw = getattr(stdin, "buffer", stdin)
    try:
        data = raw.read(max_bytes + 1)
    except OSError as e:
        raise NoInputsError(f"cannot read standard input: {e.strerror or e}") from None
    if isinstance(data, str):  # a text stream without a buffer (tests, StringIO)
        data = data.encode("utf-8", "surrogateescape")
    if sniff_format(bytes(data[:SNIFF_BYTES])) is not None:  # a GIF, MP4, WebP... piped in
        if len(data) > max_bytes:
            return InputItem(
                name=STDIN_NAME,
                error=f"input is over the {_size_text(max_bytes)} limit (--max-bytes)",
            )
        return InputItem(name=STDIN_NAME, data=bytes(data))
    if looks_binary(bytes(data[:65536])):
        raise NoInputsError(
            "standard input holds binary data that is not a GIF or other supported media; '-' reads a list of paths or "
            "URLs, one per line, or the bytes of one GIF (cat x.gif | gifsent-infer -)"
        )
    if len(data) > max_bytes:
        data += raw.read()  # a very long list of names: take it all
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
    return data.decode("utf-8", "surrogateescape").splitlines()


# --- reading -----------------------------------------------------------------------------------


def _size_text(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def read_file(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a regular file, refusing files over `max_bytes`; raises InputError.

    FIFOs, sockets and devices are refused before anything is opened (stat first), and the
    file is opened with O_NONBLOCK and checked again (fstat) so that a file swapped for a
    FIFO in between cannot block the run either.
    """
    st = _stat(path)
    if isinstance(st, str):
        raise InputError(st)
    if stat.S_ISDIR(st.st_mode):
        raise InputError("is a folder")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(not_regular_reason(st.st_mode))
    if st.st_size > max_bytes:
        raise InputError(_over_limit(st.st_size, max_bytes, "file"))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise InputError(_os_reason(e)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(not_regular_reason(st.st_mode))
        os.set_blocking(fd, True)  # a regular file: plain reads from here on
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except IsADirectoryError:
        raise InputError("is a folder") from None
    except OSError as e:
        raise InputError(_os_reason(e)) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise InputError(f"file grew over the {_size_text(max_bytes)} limit while being read")
    return data


def _over_limit(size: int, max_bytes: int, what: str) -> str:
    """ "file is 64.0 MiB + 17 bytes, over the 64.0 MiB limit": says by how much, so a file
    just over the limit does not read as the limit itself."""
    extra = size - max_bytes
    return (
        f"{what} is {_size_text(size)} ({_size_text(extra)} over the {_size_text(max_bytes)} "
        "limit; raise it with --max-bytes)"
    )


MAX_REDIRECTS = 5  # in all, per URL
_REDIRECT_CODES = (301, 302, 303, 307, 308)
_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="gifsent-dns")


def _timed_out(timeout: float) -> InputError:
    return InputError(f"download timed out after {timeout:g} s (--timeout)")


def _resolve(host: str, port: int, deadline: float, timeout: float) -> list[str]:
    """The addresses of `host`, within the URL's deadline (getaddrinfo itself cannot time out:
    it runs in a helper thread that is abandoned when the deadline passes)."""
    try:
        ipaddress.ip_address(host)
        return [host]  # a literal: no lookup
    except ValueError:
        pass
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=max(0.0, deadline - time.monotonic()))
    except concurrent.futures.TimeoutError:
        raise _timed_out(timeout) from None
    except socket.gaierror:
        raise InputError(f"cannot download: host {host!r} not found") from None
    except (OSError, UnicodeError):
        raise InputError(f"cannot download: cannot resolve host {host!r}") from None
    seen: list[str] = []
    for *_, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(sockaddr[0])
    return seen


class _Watchdog:
    """Shuts the socket down when the deadline passes, so a read blocked on a server that
    drips one byte a second (status line, headers or body) returns at once."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.fired = False
        self._sock = sock
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)  # the fd, also under TLS

    def cancel(self) -> None:
        self._timer.cancel()


def _connect(
    host: str, port: int, https: bool, deadline: float, timeout: float, allow_private: bool
) -> socket.socket:
    """A socket connected to an address of `host` that the policy allows (TLS for https)."""
    addresses = _resolve(host, port, deadline, timeout)
    if not allow_private:
        for address in addresses:
            why = address_refusal(address)
            if why is not None:
                shown = host if host == address else f"{host} ({address})"
                raise InputError(
                    f"refused to fetch {shown}: {why}; private, loopback and link-local "
                    f"addresses are not fetched by default ({ALLOW_HINT})"
                )
    if not addresses:
        raise InputError(f"cannot download: host {host!r} has no address")
    last: OSError | None = None
    for address in addresses:  # the checked address itself: no second lookup (rebinding)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timed_out(timeout)
        try:
            sock = socket.create_connection((address, port), timeout=remaining)
            break
        except TimeoutError:
            raise _timed_out(timeout) from None
        except OSError as e:
            last = e
    else:
        why = (last.strerror if last is not None else None) or "unreachable"
        raise InputError(f"cannot download: {why.lower()} ({host} port {port})")
    if https:
        context = ssl.create_default_context()
        try:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock = context.wrap_socket(sock, server_hostname=host)
        except TimeoutError:
            sock.close()
            raise _timed_out(timeout) from None
        except ssl.SSLError as e:
            sock.close()
            raise InputError(f"cannot download: TLS failed ({e.reason or 'handshake'})") from None
        except OSError as e:
            sock.close()
            raise InputError(
                f"cannot download: TLS failed ({e.strerror or 'connection'})"
            ) from None
    return sock


def _status_text(code: int) -> str:
    """ "HTTP 404 Not Found", with the standard phrase (never the server's own words)."""
    try:
        return f"HTTP {code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def fetch_url(
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT_S,
    allow_private: bool = False,
) -> bytes:
    """Download `url` (http/https) whole; raises InputError with the row's reason.

    One wall-clock deadline of `timeout` seconds covers everything: DNS, connect, TLS, the
    status line and headers, every redirect hop (at most MAX_REDIRECTS in all) and the body.
    Bodies over `max_bytes` are refused (by Content-Length before reading, else by
    counting). Each hop's addresses are checked against the SSRF policy (netpolicy) unless
    `allow_private`. Error messages are our own words: they never repeat bytes or banners
    that the server sent. Content-Encoding is not requested and never decoded (no gzip
    bombs). Proxies from the environment are not used.
    """
    if not is_url(url):
        raise InputError("only http:// and https:// URLs can be fetched")
    deadline = time.monotonic() + timeout
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        status, payload = _fetch_once(current, deadline, timeout, max_bytes, allow_private)
        if status == 200:
            return payload
        location = payload.decode("latin-1")
        target = urllib.parse.urljoin(current, location)
        if not is_url(target):
            raise InputError(f"{_status_text(status)}: redirect to a non-HTTP URL is not followed")
        current = target
    raise InputError(f"too many redirects (more than {MAX_REDIRECTS})")


def _fetch_once(
    url: str, deadline: float, timeout: float, max_bytes: int, allow_private: bool
) -> tuple[int, bytes]:
    """One GET: (200, body) or (redirect status, Location); raises InputError otherwise."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise InputError("not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InputError("only http:// and https:// URLs can be fetched")
    host = parts.hostname
    if not host:
        raise InputError("not a valid URL (no host)")
    https = scheme == "https"
    port = port or (443 if https else 80)
    sock = _connect(host, port, https, deadline, timeout, allow_private)
    watchdog = _Watchdog(sock, deadline - time.monotonic())
    conn = http.client.HTTPConnection(host, port, timeout=max(0.01, deadline - time.monotonic()))
    conn.sock = sock  # already connected (to the checked address), TLS done
    try:
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        default = 443 if https else 80
        host_header = f"[{host}]" if ":" in host else host
        conn.putheader("Host", host_header if port == default else f"{host_header}:{port}")
        conn.putheader("User-Agent", f"gifsent/{__version__}")
        conn.putheader("Accept", "image/gif,image/*;q=0.9,*/*;q=0.5")
        conn.putheader("Accept-Encoding", "identity")
        conn.putheader("Connection", "close")
        conn.endheaders()
        resp = conn.getresponse()
        if resp.status in _REDIRECT_CODES:
            location = resp.getheader("Location")
            if not location:
                raise InputError(f"{_status_text(resp.status)} without a Location to follow")
            return resp.status, location.encode("latin-1", "replace")
        if resp.status != 200:
            raise InputError(_status_text(resp.status))
        encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise InputError(
                f"the server sent compressed content (Content-Encoding {encoding[:20]!r}), "
                "which is not decoded"
            )
        length = resp.getheader("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > max_bytes:
            raise InputError(_over_limit(int(length), max_bytes, "download"))
        chunks: list[bytes] = []
        got = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timed_out(timeout)
            sock.settimeout(remaining)  # and the watchdog, for a drip of tiny reads
            chunk = resp.read1(_CHUNK)
            if not chunk:
                break
            got += len(chunk)
            if got > max_bytes:
                raise InputError(
                    f"download is over the {_size_text(max_bytes)} limit (--max-bytes)"
                )
            chunks.append(chunk)
        if watchdog.fired:
            raise _timed_out(timeout)
        return 200, b"".join(chunks)
    except InputError:
        raise
    except TimeoutError:
        raise _timed_out(timeout) from None
    except Exception as e:  # reset, short body, garbage instead of HTTP: our words only
        if watchdog.fired or time.monotonic() >= deadline:
            raise _timed_out(timeout) from None
        raise InputError(f"cannot download: {_http_failure(e)}") from None
    finally:
        watchdog.cancel()
        conn.close()
        with contextlib.suppress(OSError):
            sock.close()


def _http_failure(e: BaseException) -> str:
    """Why a download failed, without repeating anything the server sent."""
    if isinstance(e, http.client.BadStatusLine):
        return "the server did not answer in HTTP (bad status line)"
    if isinstance(e, http.client.LineTooLong):
        return "the server sent an over-long header line"
    if isinstance(e, http.client.IncompleteRead):
        return f"the connection closed early ({len(e.partial)} bytes received)"
    if isinstance(e, http.client.HTTPException):
        return f"malformed HTTP response ({type(e).__name__})"
    if isinstance(e, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(e, OSError):
        return (e.strerror or type(e).__name__).lower()
    return f"malformed HTTP response ({type(e).__name__})"


def read_item(
    item: InputItem,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT_S,
    allow_private: bool = False,
) -> bytes:
    """The bytes of one input; raises InputError with the row's reason."""
    if item.error:
        raise InputError(item.error)
    if item.data is not None:
        if len(item.data) > max_bytes:
            raise InputError(_over_limit(len(item.data), max_bytes, "input"))
        return item.data
    if item.url is not None and is_store_uri(item.url):
        return read_store_object(item.url, max_bytes=max_bytes)
    if item.url is not None:
        return fetch_url(
            item.url, max_bytes=max_bytes, timeout=timeout, allow_private=allow_private
        )
    assert item.path is not None
    return read_file(item.path, max_bytes=max_bytes)


def read_store_object(uri: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of an object-store object (reading/stores.py), refusing objects over
    `max_bytes` before reading them; raises InputError."""
    from gifsent_infer.reading.stores import object_size, read_object

    try:
        size = object_size(uri)
        if size > max_bytes:
            raise InputError(_over_limit(size, max_bytes, "object"))
        data = read_object(uri, max_bytes)
    except StoreError as e:
        raise InputError(str(e)) from None
    if len(data) > max_bytes:
        raise InputError(f"object grew over the {_size_text(max_bytes)} limit while being read")
    return data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
