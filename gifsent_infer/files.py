"""Files written whole or not at all, file hashes and JSON documents: the one copy of each.

Atomic write (`atomic_open`, `atomic_path`, `atomic_write_bytes`, `write_json`): the data
goes to a temporary file with a unique name in the destination's folder (same file system,
so the rename is atomic), which is flushed and fsynced, renamed over the destination, and
then the folder is fsynced so the rename itself survives a power cut. A reader sees the old
file or the new one, never half of one; on any error (or Ctrl-C) the temporary file is
removed and the destination is untouched. Created files get the usual mode (0666 minus the
umask), not tempfile.mkstemp's 0600, so a model or run written by one user is readable by
the group as any other file they write.

Temporary names are ``.<name>.<pid>.<8 hex>.tmp`` next to the destination: hidden, unique
across processes and threads, and recognisable as leftovers if a machine dies mid-write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CHUNK",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "file_sha256",
    "fsync_dir",
    "read_json",
    "write_json",
]

CHUNK = 1 << 20  # bytes read per step when hashing: 1 MiB keeps memory flat for any size

_MISSING: Any = object()


def file_sha256(path: str | os.PathLike, *, on_read: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (memory does not grow with size).

    on_read(bytes read so far) is called after each chunk (progress bars for large files).
    """
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
            done += len(block)
            if on_read is not None:
                on_read(done)
    return digest.hexdigest()


def fsync_dir(folder: str | os.PathLike) -> None:
    """fsync a folder so that a rename inside it is durable; a no-op where folders cannot be
    opened (Windows) or fsynced (some network file systems)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reserve_temp(path: Path) -> Path:
    """Create (exclusively) an empty temporary file next to `path`; mode 0666 minus umask."""
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
        os.close(fd)
        return tmp


@contextlib.contextmanager
def _replacing(path: str | os.PathLike, *, sync_file: bool) -> Iterator[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _reserve_temp(path)
    try:
        yield tmp
        if sync_file:
            _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_path(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """For writers that want a file name (onnx.save, torch.onnx.export): yields a temporary
    path next to `path`; when the block ends without error it is fsynced and renamed over
    `path`. The temporary file exists (empty) when the block starts; overwrite it.

        with atomic_path(out) as tmp:
            onnx.save(model, tmp)
    """
    return _replacing(path, sync_file=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """open() for writing that replaces `path` only when the block ends without error.

    mode: "wb", "w" or "wt"; kwargs go to open() (encoding=, newline=).

        with atomic_open(out, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
    """
    if mode not in ("wb", "w", "wt"):
        raise ValueError(f"atomic_open writes whole files: mode must be wb, w or wt, not {mode!r}")
    with _replacing(path, sync_file=False) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace `path` with `data` atomically (see the module docstring); returns the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Replace `path` with `text` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def write_json(
    path: str | os.PathLike, obj: Any, *, indent: int | None = 2, sort_keys: bool = True
) -> Path:
    """Write `obj` as JSON (UTF-8, a final newline) atomically; returns the path.

    The defaults (indent 2, sorted keys) make run files diff well; callers whose files are
    read by people in a given order pass sort_keys=False.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n"
    return atomic_write_text(path, text)


def read_json(path: str | os.PathLike, default: Any = _MISSING) -> Any:
    """The JSON document at `path`. Without `default`, a missing or malformed file raises
    (OSError / ValueError); with it, such a file gives `default` instead."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        if default is _MISSING:
            raise
        return default
