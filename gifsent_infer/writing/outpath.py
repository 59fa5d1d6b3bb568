"""Where `gifsent-infer score --out` writes, checked before any input is read or scored.

A run that scores ten thousand GIFs and then cannot write its output has wasted its time, so
every way an output path can be wrong is found first:

- a folder, a socket or a block device, a symlink loop: an error;
- a parent that is not a folder, or one where no file can be created (read-only
  filesystem, no permission, /proc): an error; missing parent folders are created;
- ``-``, ``/dev/stdout``: rows go to standard output;
- a FIFO or a character device (``/dev/null``, a terminal): rows are streamed into it as
  they are scored; nothing beside it is created and it is never replaced;
- a symlink to a file (or to where a file will be): its target is written, the link stays;
- a regular file or a new name: written atomically through ``<file>.partial`` (see
  outputs.FileSink). New files get the usual mode (0666 less the umask).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.reading.inputs import display_name, special_kind

STDOUT, STREAM, FILE = "stdout", "stream", "file"
_STDOUT_NAMES = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


class OutputPathError(GifsentError, ValueError):
    """The output path cannot be written; the message says why and what to do."""

    exit_code = USAGE


@dataclass(frozen=True)
class OutputTarget:
    given: str  # what the user typed
    kind: str  # STDOUT, STREAM or FILE
    path: Path | None = None  # STREAM: open this; FILE: write here (a symlink's target)


def _why(e: OSError) -> str:
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.EROFS:
        return "read-only file system"
    if e.errno == errno.ELOOP:
        return "symlink loop"
    if e.errno == errno.ENAMETOOLONG:
        return "file name too long"
    if e.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    return e.strerror or str(e)


def _probe(folder: Path, name: str) -> None:
    """Create and remove a file in `folder`, the only test that is right for root, read-only
    mounts and pseudo filesystems alike (os.access is not)."""
    probe = folder / f".{name[:64]}.{os.getpid()}.probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise OutputPathError(
            f"cannot write the output in {display_name(str(folder))}: {_why(e)}; "
            "choose another --out"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_output(out: str | os.PathLike) -> OutputTarget:
    """Classify and check `out`; raises OutputPathError (a usage error) when it cannot work."""
    given = os.fspath(out)
    if given in _STDOUT_NAMES:
        return OutputTarget(given, STDOUT)
    shown = display_name(given)
    path = Path(given).expanduser()
    try:
        st = os.stat(path)  # follows symlinks: what a write would reach
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OutputPathError(f"cannot use --out {shown}: {_why(e)}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputPathError(
                f"--out {shown} is a folder; give a file in it, e.g. {shown.rstrip('/')}/scores.csv"
            )
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
            return OutputTarget(given, STREAM, path)  # /dev/null, a FIFO, a terminal
        if not stat.S_ISREG(st.st_mode):
            raise OutputPathError(
                f"--out {shown} is {special_kind(st.st_mode)}, not a file; choose another --out"
            )
    # A regular file, or a name to create. Through a symlink, write the target in place.
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.name in ("", ".", ".."):
        raise OutputPathError(f"--out {shown} names no file; give e.g. scores.csv")
    parent = target.parent
    existing = parent
    while True:
        try:
            pst = os.stat(existing)
        except FileNotFoundError:
            if existing.parent == existing:
                break
            existing = existing.parent
            continue
        except OSError as e:
            raise OutputPathError(f"cannot use --out {shown}: {_why(e)}") from None
        if not stat.S_ISDIR(pst.st_mode):
            raise OutputPathError(
                f"cannot write --out {shown}: {display_name(str(existing))} is not a folder"
            )
        break
    _probe(existing, target.name)  # the folder to create in (parents are made later)
    return OutputTarget(given, FILE, target)
