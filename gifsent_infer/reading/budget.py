"""Bounding decode memory by bytes in flight, not by worker count.

Eight workers decoding eight large-but-legal GIFs at once can need gigabytes, while eight
workers on ordinary GIFs need a few megabytes. So before a worker decodes an input it
reserves that input's expected footprint from one budget shared by every worker and thread
of a Scorer, and waits while the budget is spent. An input larger than the whole budget
waits until nothing else is decoding and then runs alone, so every input still gets a row.

The footprint estimate is deliberately coarse and errs high; it is made from the header
only (nothing is decoded to estimate a decode), by each format's header probe in the format
registry (`formats.Format.peak_bytes`): for a GIF, the bytes themselves plus the canvas's
pixels times what the compositor keeps per pixel; for a video, its frame size from the
container's header times the decoder's reference frames and the frames kept, so a long,
small, low-bitrate video is sized by what it decodes to, not by its file.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.reading.formats import format_of, unknown_peak_bytes
from gifsent_infer.reading.gifio import ReaderLimits

DEFAULT_MEMORY_BUDGET = 1 << 30  # 1 GiB of decoding at once; with the model, runtime and
# the raw bytes of the inputs in flight, a run stays within ~2 GB at any --workers.


class MemoryBudget:
    """A counting semaphore in bytes. hold(n) reserves min(n, limit) bytes for a `with` block."""

    def __init__(self, limit: int = DEFAULT_MEMORY_BUDGET) -> None:
        if limit < 1:
            raise ValueError(f"memory budget must be at least 1 byte, got {limit}")
        self.limit = int(limit)
        self.used = 0
        self.peak = 0  # the most bytes ever reserved at once (for tests and benchmarks)
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[int]:
        n = max(0, min(int(nbytes), self.limit))
        with self._cond:
            # `used > 0`: an input bigger than what is free still runs once nothing else does
            while self.used > 0 and self.used + n > self.limit:
                self._cond.wait()
            self.used += n
            self.peak = max(self.peak, self.used)
        try:
            yield n
        finally:
            with self._cond:
                self.used -= n
                self._cond.notify_all()


def estimate_decode_bytes(data: bytes, spec: SamplingSpec, limits: ReaderLimits) -> int:
    """Bytes that sampling `data` with `spec` may hold at its peak (an overestimate), from
    its format's header probe; content in no format, or whose header is unreadable, will be
    an error row and is sized from its bytes."""
    fmt = format_of(data[:4096])
    if fmt is None:
        return unknown_peak_bytes(data)
    try:
        return int(fmt.peak_bytes(data, spec, limits))
    except Exception:  # a header the probe cannot read (MediaError, an FFmpeg error...): the
        return unknown_peak_bytes(data)  # decode will say why in the row; the estimate never does


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """ "2G", "1.5GiB", "512M", "800000000" -> bytes (K/M/G/T are powers of 1024)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 2G, 512M or a number of bytes)")
    value = float(m.group(1)) * 1024 ** " kmgt".index((m.group(2) or " ").lower())
    if value < 1:
        raise ValueError(f"size must be at least 1 byte, got {text!r}")
    return int(value)


def return_freed_memory(threshold: int = 1 << 20) -> bool:
    """Make glibc give large freed blocks back to the OS (mallopt M_MMAP_THRESHOLD).

    By default glibc raises its mmap threshold after large blocks are freed (up to 32 MiB),
    so later canvases come from per-thread heaps ("arenas") that keep their memory: with 8
    decoder threads, RSS then grows towards 8 decodes even while the budget lets only one
    run (measured: 705 MiB instead of 297 MiB, benchmarks/bench_fuzz.py). A fixed
    threshold keeps every block of `threshold` bytes or more in its own mapping, returned
    on free. The same as MALLOC_MMAP_THRESHOLD_=1048576 in the environment; process-wide,
    so the CLI calls it and a library user may. Returns whether it took effect.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(-3, int(threshold)))  # -3: M_MMAP_THRESHOLD
