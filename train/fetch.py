"""Download GIFGIF's public dump: resumable HTTP, integrity checks, a SHA-256 manifest, safe extraction.

Files (under ``base_url``): the votes CSV (gzip, ~52 MiB) and the GIF tar (~5.3 GiB).
For each file:

1. Download into ``<name>.part``; after a dropped connection, resume with an HTTP ``Range``
   request (a server that ignores Range restarts the file). The byte count must equal the
   server's length (``Content-Length`` of a 200, the total of a 206's ``Content-Range``).
2. Verify the content before it takes the final name: the gzip stream decompresses to its
   end (CRC and length checked by :mod:`gzip`); every tar member header and body is readable,
   and every member is safe (below). The SHA-256 is computed in the same pass.
3. Record name, size and SHA-256 in ``manifest.json`` (no checksums are published, so the
   first download is the reference); on later runs a present file must match it.

Extraction refuses the whole archive if any member is unsafe: an absolute path, a path that
leaves the target folder, a symlink, a hardlink, a device or FIFO. It extracts into a staging
folder renamed into place at the end, so an interrupted extraction is never mistaken for a
finished one.

Library code: no rich/typer. Progress goes to an optional callback
``progress(label, done, total)`` (bytes, or members while extracting; total may be None).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from gifsent_infer.errors import GifsentError
from gifsent_infer.files import file_sha256, write_json

DEFAULT_BASE_URL = "https://s3-eu-west-1.amazonaws.com/lum-public/"
VOTES_FILE = "gifgif-dataset-20150121-v1.csv.gz"
IMAGES_FILE = "gifgif-images-v1.tar"
MANIFEST_NAME = "manifest.json"
IMAGES_DIR = "gifs"
CHUNK = 1 << 20

Progress = Callable[[str, int, "int | None"], None]


class FetchError(GifsentError, RuntimeError):
    """A download, verification or extraction failed; the message says what to do."""


@dataclass
class FetchResult:
    dest: Path
    votes: Path | None  # the votes CSV.gz
    images_tar: Path | None  # None when the tar was not fetched, or was removed after extraction
    images_dir: Path | None  # extracted GIFs, None when not extracted
    manifest: Path
    downloaded: list[str] = field(default_factory=list)  # fetched in this run
    reused: list[str] = field(default_factory=list)  # already present and matching the manifest


def _noop(label: str, done: int, total: int | None) -> None:
    pass


# ----------------------------------------------------------------------------- download

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _content_range(value: str | None) -> tuple[int, int, int | None]:
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        raise FetchError(f"server sent a partial response with a bad Content-Range {value!r}")
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


def _unsatisfiable_total(value: str | None) -> int | None:
    m = re.match(r"bytes\s+\*/(\d+)", value or "")
    return int(m.group(1)) if m else None


class _Incomplete(Exception):
    pass


def download(
    url: str,
    path: str | os.PathLike,
    *,
    progress: Progress | None = None,
    timeout: float = 60.0,
    retries: int = 5,
    retry_wait: float = 2.0,
    chunk_size: int = CHUNK,
) -> int:
    """Download ``url`` to ``path`` through ``path.part``, resuming after drops; returns bytes.

    Retries up to ``retries`` times (waiting ``retry_wait * attempt`` seconds) on network
    errors and 5xx answers; each retry resumes from the bytes already on disk. A ``.part``
    left by an earlier, interrupted run is resumed too.
    """
    path = Path(path)
    part = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    progress = progress or _noop
    label = f"download {path.name}"
    total: int | None = None
    failures = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "gifsent-fetch", "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=timeout
            ) as resp:
                if resp.status == 206:
                    start, _end, size = _content_range(resp.headers.get("Content-Range"))
                    if start != have:
                        raise FetchError(f"{url}: server resumed at byte {start}, asked for {have}")
                    mode = "ab"
                elif resp.status == 200:
                    length = resp.headers.get("Content-Length")
                    size = int(length) if length is not None else None
                    have, mode = 0, "wb"  # no Range support (or a fresh start): from byte 0
                else:
                    raise FetchError(f"{url}: unexpected HTTP status {resp.status}")
                if total is not None and size is not None and size != total:
                    raise FetchError(
                        f"{url}: the server's length changed from {total} to {size} bytes "
                        f"between requests; delete {part} and try again"
                    )
                total = size if size is not None else total
                progress(label, have, total)
                with open(part, mode) as f:
                    while True:
                        chunk = resp.read(chunk_size)
                        if not chunk:
                            break
                        f.write(chunk)
                        have += len(chunk)
                        progress(label, have, total)
            if total is not None and have != total:
                raise _Incomplete(f"got {have} of {total} bytes")
            break
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:
                # Nothing left to send from `have` on: complete if the server's total agrees.
                size = _unsatisfiable_total(err.headers.get("Content-Range"))
                if size == have:
                    total = size
                    break
                part.unlink()  # our .part is longer than the file, or unverifiable: restart
            elif err.code < 500:
                raise FetchError(f"{url}: HTTP {err.code} {err.reason}") from err
            failures += 1
            if failures > retries:
                raise FetchError(f"{url}: HTTP {err.code} after {retries} retries") from err
            time.sleep(retry_wait * failures)
        except (
            _Incomplete,
            urllib.error.URLError,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
            OSError,
        ) as err:
            failures += 1
            if failures > retries:
                raise FetchError(
                    f"{url}: download failed after {retries} retries ({err}); "
                    f"run again to resume from {part}"
                ) from err
            time.sleep(retry_wait * failures)
    os.replace(part, path)
    return have


# ----------------------------------------------------------------------------- verification


class _HashingReader:
    """A read-only file wrapper that hashes and counts every byte read through it."""

    def __init__(self, f, progress: Progress, label: str, total: int | None):
        self._f = f
        self.sha = hashlib.sha256()
        self.count = 0
        self._progress, self._label, self._total = progress, label, total

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha.update(data)
        self.count += len(data)
        self._progress(self._label, self.count, self._total)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def sha256_file(path: str | os.PathLike, progress: Progress | None = None) -> str:
    path = Path(path)
    progress, label, total = progress or _noop, f"sha256 {path.name}", path.stat().st_size
    return file_sha256(path, on_read=lambda done: progress(label, done, total))


def check_gzip(path: str | os.PathLike, progress: Progress | None = None) -> str:
    """Decompress the whole gzip stream (CRC and size verified); returns the file's SHA-256."""
    path = Path(path)
    with open(path, "rb") as f:
        reader = _HashingReader(f, progress or _noop, f"verify {path.name}", path.stat().st_size)
        try:
            with gzip.GzipFile(fileobj=reader, mode="rb") as gz:
                while gz.read(CHUNK):
                    pass
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise FetchError(f"{path}: corrupt or truncated gzip ({err})") from err
        reader.drain()
    return reader.sha.hexdigest()


def unsafe_member_reason(member: tarfile.TarInfo) -> str | None:
    """Why a tar member must not be extracted, or None when it is a plain file or folder."""
    name = member.name
    if member.issym() or member.islnk():
        return f"link ({'symlink' if member.issym() else 'hardlink'} to {member.linkname!r})"
    if not (member.isreg() or member.isdir()):
        return "not a regular file or folder (device, FIFO or unknown type)"
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    norm = posixpath.normpath(name.replace("\\", "/"))
    if norm == ".." or norm.startswith("../") or "/../" in f"/{norm}/":
        return "path escapes the target folder"
    return None


def check_tar(path: str | os.PathLike, progress: Progress | None = None) -> tuple[str, int]:
    """Read every header and body of the tar and check every member is safe.

    Returns (SHA-256 of the file, number of members). Raises FetchError on a truncated or
    corrupt archive, or naming the first unsafe member.
    """
    path = Path(path)
    members = 0
    with open(path, "rb") as f:
        reader = _HashingReader(f, progress or _noop, f"verify {path.name}", path.stat().st_size)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for member in tar:
                    reason = unsafe_member_reason(member)
                    if reason:
                        raise FetchError(
                            f"{path}: refusing archive, member {member.name!r} is unsafe: {reason}"
                        )
                    if member.isreg():
                        body = tar.extractfile(member)
                        got = 0
                        while True:
                            chunk = body.read(CHUNK)
                            if not chunk:
                                break
                            got += len(chunk)
                        if got != member.size:
                            raise FetchError(f"{path}: member {member.name!r} is truncated")
                    members += 1
        except (tarfile.TarError, OSError, EOFError) as err:
            raise FetchError(f"{path}: corrupt or truncated tar ({err})") from err
        reader.drain()
    if members == 0:
        raise FetchError(f"{path}: the tar archive is empty")
    return reader.sha.hexdigest(), members


def safe_extract(
    tar_path: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    progress: Progress | None = None,
    total_members: int | None = None,
) -> int:
    """Extract a tar into ``dest`` (which must not exist) via a staging folder; returns members.

    Every member is checked first (see :func:`unsafe_member_reason`); one unsafe member
    refuses the whole archive before anything is written.
    """
    tar_path, dest = Path(tar_path), Path(dest)
    progress = progress or _noop
    if dest.exists():
        raise FetchError(f"{dest} already exists; remove it to extract again")
    staging = dest.with_name(dest.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    label = f"extract {tar_path.name}"
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            members = tar.getmembers()
            for member in members:
                reason = unsafe_member_reason(member)
                if reason:
                    raise FetchError(
                        f"{tar_path}: refusing archive, member {member.name!r} is unsafe: {reason}"
                    )
            staging.mkdir(parents=True)
            root = staging.resolve()
            total = total_members or len(members)
            for k, member in enumerate(members, 1):
                target = (root / member.name).resolve()
                if target != root and root not in target.parents:  # belt and braces
                    raise FetchError(f"{tar_path}: member {member.name!r} escapes {dest}")
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, root, set_attrs=False, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tar.extract(member, root, set_attrs=False)
                progress(label, k, total)
    except (tarfile.TarError, OSError, EOFError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(f"{tar_path}: extraction failed ({err})") from err
    except FetchError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(staging, dest)
    return len(members)


# ----------------------------------------------------------------------------- manifest


def load_manifest(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        return {"format": "gifsent-gifgif-manifest", "version": 1, "files": {}, "extracted": {}}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FetchError(f"{path}: unreadable manifest ({err}); delete it to start over") from err
    if doc.get("format") != "gifsent-gifgif-manifest":
        raise FetchError(f"{path}: not a gifsent GIFGIF manifest")
    doc.setdefault("files", {})
    doc.setdefault("extracted", {})
    return doc


def save_manifest(path: str | os.PathLike, doc: dict) -> None:
    write_json(path, doc)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- the dump


def _verify(path: Path, progress: Progress) -> tuple[str, dict]:
    if path.name.endswith(".gz"):
        return check_gzip(path, progress), {"check": "gzip"}
    if path.name.endswith(".tar"):
        sha, members = check_tar(path, progress)
        return sha, {"check": "tar", "members": members}
    return sha256_file(path, progress), {"check": "none"}


def _fetch_file(
    name: str,
    base_url: str,
    dest: Path,
    manifest: dict,
    manifest_path: Path,
    result: FetchResult,
    *,
    progress: Progress,
    verify_existing: bool,
    **download_kw,
) -> Path:
    path = dest / name
    record = manifest["files"].get(name)
    if path.exists():
        if record is not None:
            if path.stat().st_size != record["size"]:
                raise FetchError(
                    f"{path} has {path.stat().st_size} bytes but the manifest recorded "
                    f"{record['size']}; delete the file to download it again"
                )
            if verify_existing and sha256_file(path, progress) != record["sha256"]:
                raise FetchError(
                    f"{path} does not match the SHA-256 recorded in {manifest_path}; "
                    "it changed since it was downloaded: delete it to download it again"
                )
            result.reused.append(name)
            return path
        sha, extra = _verify(path, progress)  # a file put there by hand: adopt it if sound
        result.reused.append(name)
    else:
        url = base_url.rstrip("/") + "/" + name
        download(url, path, progress=progress, **download_kw)
        try:
            sha, extra = _verify(path, progress)
        except FetchError as err:
            bad = path.with_name(path.name + ".corrupt")
            os.replace(path, bad)
            raise FetchError(
                f"{url}: the downloaded file failed verification and was kept as {bad}: {err}"
            ) from err
        if record is not None and record["sha256"] != sha:
            raise FetchError(
                f"{path}: the download's SHA-256 {sha} differs from {record['sha256']} recorded "
                f"in {manifest_path}: the server's file changed; delete the manifest entry to accept it"
            )
        result.downloaded.append(name)
    manifest["files"][name] = {
        "size": path.stat().st_size,
        "sha256": sha,
        "url": base_url.rstrip("/") + "/" + name,
        "recorded": _now(),
        **extra,
    }
    save_manifest(manifest_path, manifest)
    return path


def fetch_gifgif(
    dest: str | os.PathLike,
    base_url: str = DEFAULT_BASE_URL,
    *,
    images: bool = True,
    extract: bool = True,
    progress: Progress | None = None,
    verify_existing: bool = True,
    timeout: float = 60.0,
    retries: int = 5,
    retry_wait: float = 2.0,
    votes_file: str = VOTES_FILE,
    images_file: str = IMAGES_FILE,
) -> FetchResult:
    """Fetch (or re-check) GIFGIF's votes and GIFs into ``dest``.

    Layout: ``dest/<votes_file>``, ``dest/<images_file>``, ``dest/gifs/`` (extracted),
    ``dest/manifest.json``. Safe to run again: present files are checked against the
    manifest (``verify_existing``: re-hash them), interrupted downloads resume, a finished
    extraction is kept (and the tar may then be deleted to save space).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    progress = progress or _noop
    manifest_path = dest / MANIFEST_NAME
    manifest = load_manifest(manifest_path)
    manifest["base_url"] = base_url
    result = FetchResult(
        dest=dest, votes=None, images_tar=None, images_dir=None, manifest=manifest_path
    )
    kw = {"timeout": timeout, "retries": retries, "retry_wait": retry_wait}

    def fetch(name: str) -> Path:
        return _fetch_file(
            name,
            base_url,
            dest,
            manifest,
            manifest_path,
            result,
            progress=progress,
            verify_existing=verify_existing,
            **kw,
        )

    result.votes = fetch(votes_file)
    if not images:
        return result
    images_dir = dest / IMAGES_DIR
    done = manifest["extracted"].get(images_file)
    tar_path = dest / images_file
    if done and images_dir.is_dir() and not tar_path.exists():
        result.reused.append(images_file)
        result.images_dir = images_dir
        return result
    tar_path = fetch(images_file)
    result.images_tar = tar_path
    if not extract:
        return result
    sha = manifest["files"][images_file]["sha256"]
    if done and done.get("sha256") == sha and images_dir.is_dir():
        result.images_dir = images_dir
        return result
    if images_dir.exists():
        raise FetchError(
            f"{images_dir} exists but was not extracted from this {images_file}; "
            "move it away to extract again"
        )
    with contextlib.suppress(KeyError):
        del manifest["extracted"][images_file]
    members = safe_extract(
        tar_path,
        images_dir,
        progress=progress,
        total_members=manifest["files"][images_file].get("members"),
    )
    manifest["extracted"][images_file] = {
        "sha256": sha,
        "members": members,
        "dir": IMAGES_DIR,
        "recorded": _now(),
    }
    save_manifest(manifest_path, manifest)
    result.images_dir = images_dir
    return result
