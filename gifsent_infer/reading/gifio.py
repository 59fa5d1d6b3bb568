"""The GIF reader: bytes -> composited RGB frames with display times -> the model's sampled frames.

numpy + Pillow only (never torch). Training and inference both sample through here, so a
model sees the same pixels in both.

How a GIF is read (browser semantics, checked against ffmpeg in tests/infer/test_gifio_reference.py):

* The block structure is parsed in Python first (cheap: no pixels). That parse enforces the
  `ReaderLimits` before anything is allocated: file size, canvas pixels, each frame's
  rectangle, frame count (a GIF of 200,000 tiny frames stops at ``max_frames + 1``) and
  total decoded pixels. It also yields every frame's delay, so sampling can be planned
  before any pixel is decoded and decoding can stop after the last frame sampling needs.
* Pillow's C decoder turns each frame's LZW data into palette indices (called directly,
  so Pillow's own compositing, which differs from browsers, never runs); compositing is
  done here: the canvas starts transparent; a frame draws its opaque pixels (palette entry != the
  GCE transparent index) inside its rectangle, clipped to the logical screen (like ffmpeg
  and browsers for later frames; Pillow instead grows the canvas); local palettes replace
  the global one for their frame; palette indices past the table's end are black; a GIF
  without any palette is read as greyscale (index i -> (i, i, i), as Pillow does).
  Disposal after a frame: 0/1 keep, 2 clear the rectangle to transparent (what browsers
  do; the background colour index is ignored), 3 (and 4, as browsers map it) restore the
  rectangle to what it was before the frame, 5-7 keep. Transparent canvas pixels are the
  matte colour in the output, i.e. the canvas is composited over the matte.
  Fast path, same pixels (tested): when the frames share one palette, never dispose to
  background/previous and the first frame fills the canvas opaquely (most real GIFs),
  frames are decoded straight into one index canvas and only sampled frames get colours.
* Delays: a GCE delay (centiseconds) under ``min_delay_ms`` shows for ``clamped_delay_ms``
  (browsers: 0 and 10 ms become 100 ms); a frame without a GCE has delay 0, so 100 ms.
* Truncation policy: a file that ends cleanly after a complete frame but lacks the
  ``;`` trailer is accepted (common on the web). A file that ends inside a block (an
  extension, an image descriptor, a palette or image data) raises GifError("truncated
  ...") even when earlier frames are complete: simplest, and a truncated download is
  better re-fetched than scored on its first frames. Bytes after the trailer are ignored;
  an unknown block introducer after at least one frame ends the stream (Chrome and
  Firefox do the same), before any frame it is an error. LZW data that ends early leaves
  the rest of the frame's rectangle undrawn (as browsers and Pillow do).

Bad, corrupt and oversized input raises GifError (a ValueError); an unreadable path raises
the usual OSError. Sampling follows `SamplingSpec` (see gifsent_infer/contract.py).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.errors import GifsentError

__all__ = [
    "DEFAULT_LIMITS",
    "DecodedGif",
    "GifError",
    "ReaderLimits",
    "SampleInfo",
    "SampledGif",
    "decode_gif",
    "is_gif",
    "read_gif",
    "sample_decoded",
    "sample_indices",
]

GifSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


class GifError(GifsentError, ValueError):
    """Bad, corrupt, truncated or oversized GIF input; the message says which and why."""


@dataclass(frozen=True)
class ReaderLimits:
    """Resource guards, each checked from the block structure before pixels are allocated."""

    max_file_bytes: int = 64 << 20  # GIFGIF averages 0.9 MiB a GIF (5.3 GiB / 6,170)
    max_canvas_pixels: int = 4096 * 4096  # logical screen, and each frame's rectangle
    max_frames: int = 10_000  # ~17 min at 10 fps; a 200,000-frame GIF stops here
    # Sum over frames of the pixels decoded and composited (canvas, or the frame's
    # rectangle when larger): bounds both CPU time and decode_gif's output (3 bytes each).
    max_decoded_pixels: int = 1_000_000_000
    # Timeline length. Checked for WebP, APNG and video (from the container's header before
    # demuxing, then from the timeline); a GIF's length is bounded through max_frames.
    max_duration_s: float = 3600.0


DEFAULT_LIMITS = ReaderLimits()

_MAGICS = (b"GIF87a", b"GIF89a")
_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
}


def is_gif(head: bytes) -> bool:
    """True when `head` (at least the first 6 bytes of a file) starts with a GIF signature."""
    return bytes(head[:6]) in _MAGICS


@dataclass
class DecodedGif:
    frames: np.ndarray  # uint8 [N, H, W, 3] RGB, composited over `matte`
    # int64 [N] (float64 ms for video): display time of each frame after clamping
    durations_ms: np.ndarray
    width: int
    height: int
    matte: tuple[int, int, int] = (255, 255, 255)  # what transparent pixels became

    @property
    def duration_s(self) -> float:
        return float(self.durations_ms.sum()) / 1000.0


@dataclass
class SampleInfo:
    n_frames: int  # frames in the GIF
    duration_s: float  # its timeline length after delay clamping
    width: int  # canvas size before resizing
    height: int
    segments: int  # S
    padded_frames: int  # sampled frames whose time wrapped past the end (loop padding)
    padding: float  # padded_frames / (S * T)
    format: str = "gif"  # the container/format read (gifsent_infer.reading.formats.FORMATS)


@dataclass
class SampledGif:
    frames: np.ndarray  # uint8 [S*T, crop, crop, 3] RGB, segment-major
    info: SampleInfo


# ----------------------------------------------------------------------------- parsing


@dataclass
class _Frame:
    left: int
    top: int
    width: int
    height: int
    interlace: bool
    palette: bytes | None  # local colour table (raw RGB triples) or None
    lzw_bits: int
    data: slice  # the image data sub-blocks in the file, terminator included
    delay_cs: int = 0
    disposal: int = 0
    transparency: int | None = None
    has_gce: bool = False  # whether a graphic control extension preceded the frame


@dataclass
class _Structure:
    width: int
    height: int
    palette: bytes | None  # global colour table
    frames: list[_Frame] = field(default_factory=list)
    end: int = 0  # byte offset where parsing stopped (at the trailer, EOF or unknown data)


def read_source(source: Any, limits: ReaderLimits) -> bytes:
    """All bytes of `source`, refusing more than limits.max_file_bytes before reading them."""
    cap = limits.max_file_bytes
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        size = os.stat(source).st_size
        if size > cap:
            raise GifError(f"file is {size} bytes, over the {cap}-byte limit")
        with open(source, "rb") as f:
            data = _read_capped(f, cap, chunk=size + 1)
    elif hasattr(source, "read"):
        data = _read_capped(source, cap)
    else:
        raise TypeError(
            f"GIF source must be a path, bytes or a binary file object, got {type(source).__name__}"
        )
    if len(data) > cap:
        raise GifError(f"file is over the {cap}-byte limit")
    if not data:
        raise GifError("empty file: no GIF data")
    return data


def _read_capped(f: Any, cap: int, chunk: int = 1 << 16) -> bytes:
    """Read to EOF in chunks (read(cap) would allocate cap bytes up front), stopping just
    past `cap` bytes."""
    chunks, total = [], 0
    while total <= cap:
        chunk_bytes = f.read(min(chunk, cap + 1 - total))
        if not chunk_bytes:
            break
        if not isinstance(chunk_bytes, (bytes, bytearray)):
            raise TypeError("a file object source must be opened in binary mode")
        chunks.append(chunk_bytes)
        total += len(chunk_bytes)
    return b"".join(chunks)


def _skip_sub_blocks(data: bytes, pos: int, what: str) -> int:
    """Position after the sub-block chain starting at `pos` (its zero terminator included)."""
    n = len(data)
    while True:
        if pos >= n:
            raise GifError(f"truncated file: ends inside {what}")
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos


def _parse_screen(data: bytes, limits: ReaderLimits) -> tuple[_Structure, int]:
    """The header, logical screen descriptor and global colour table: (structure, position)."""
    if len(data) < 6 or not is_gif(data):
        raise GifError(
            f"not a GIF file (starts with {data[:6]!r}, expected b'GIF87a' or b'GIF89a')"
        )
    if len(data) < 13:
        raise GifError("truncated file: ends inside the logical screen descriptor")
    width, height, packed = struct.unpack_from("<HHB", data, 6)
    if width == 0 or height == 0:
        raise GifError(f"invalid canvas {width}x{height}: zero width or height")
    canvas = width * height
    if canvas > limits.max_canvas_pixels:
        raise GifError(
            f"canvas {width}x{height} = {canvas} pixels is over the limit of "
            f"{limits.max_canvas_pixels} (decompression bomb?)"
        )
    pos = 13
    palette = None
    if packed & 0x80:
        size = 3 << ((packed & 7) + 1)
        if pos + size > len(data):
            raise GifError("truncated file: ends inside the global colour table")
        palette = data[pos : pos + size]
        pos += size
    return _Structure(width, height, palette), pos


def _parse_frame(
    data: bytes,
    pos: int,
    st: _Structure,
    gce: tuple[int, int, int | None] | None,
    limits: ReaderLimits,
    decoded_pixels: int,
) -> tuple[int, int]:
    """Parse the image descriptor at `pos` and its data onto `st.frames`:
    (position after it, decoded pixels so far)."""
    n = len(data)
    if pos + 10 > n:
        raise GifError(f"truncated file: ends inside frame {len(st.frames)}'s descriptor")
    left, top, fw, fh, fpacked = struct.unpack_from("<HHHHB", data, pos + 1)
    pos += 10
    index = len(st.frames)
    if index >= limits.max_frames:
        raise GifError(f"more than {limits.max_frames} frames (frame limit)")
    if fw * fh > limits.max_canvas_pixels:
        raise GifError(
            f"frame {index} is {fw}x{fh} = {fw * fh} pixels, over the limit of "
            f"{limits.max_canvas_pixels} (decompression bomb?)"
        )
    decoded_pixels += max(st.width * st.height, fw * fh)
    if decoded_pixels > limits.max_decoded_pixels:
        raise GifError(
            f"more than {limits.max_decoded_pixels} decoded pixels by frame {index} "
            f"({st.width}x{st.height} canvas; decoded-pixel limit)"
        )
    local = None
    if fpacked & 0x80:
        size = 3 << ((fpacked & 7) + 1)
        if pos + size > n:
            raise GifError(f"truncated file: ends inside frame {index}'s colour table")
        local = data[pos : pos + size]
        pos += size
    if pos >= n:
        raise GifError(f"truncated file: ends before frame {index}'s image data")
    bits = data[pos]
    if not 1 <= bits <= 11:
        raise GifError(f"corrupt frame {index}: LZW minimum code size {bits}")
    start = pos + 1
    pos = _skip_sub_blocks(data, start, f"frame {index}'s image data")
    delay, disposal, transparency = gce if gce is not None else (0, 0, None)
    st.frames.append(
        _Frame(
            left=left,
            top=top,
            width=fw,
            height=fh,
            interlace=bool(fpacked & 0x40),
            palette=local,
            lzw_bits=bits,
            data=slice(start, pos),
            delay_cs=delay,
            disposal=disposal,
            transparency=transparency,
            has_gce=gce is not None,
        )
    )
    return pos, decoded_pixels


def parse_structure(data: bytes, limits: ReaderLimits) -> _Structure:
    """Every frame's place in `data` and its settings, checked against `limits`, without
    decoding any image data."""
    st, pos = _parse_screen(data, limits)
    gce: tuple[int, int, int | None] | None = None  # (delay_cs, disposal, transparency)
    decoded_pixels = 0
    n = len(data)
    while True:
        if pos >= n:
            if not st.frames:
                raise GifError("truncated file: no complete frame")
            if gce is not None:  # a dangling GCE announces a frame that never came
                raise GifError(f"truncated file: ends before frame {len(st.frames)}")
            break  # a missing trailer after a complete frame is common and harmless
        tag = data[pos]
        if tag == 0x3B:  # trailer
            if not st.frames:
                raise GifError("no complete frame before the trailer")
            break
        if tag == 0x21:  # extension
            if pos + 2 > n:
                raise GifError("truncated file: ends inside an extension")
            label = data[pos + 1]
            start = pos + 2
            end = _skip_sub_blocks(data, start, "an extension")
            if label == 0xF9 and data[start] >= 4:  # graphic control extension
                flags, delay, tindex = struct.unpack_from("<BHB", data, start + 1)
                gce = (delay, (flags >> 2) & 7, tindex if flags & 1 else None)
            pos = end
        elif tag == 0x2C:  # image descriptor
            pos, decoded_pixels = _parse_frame(data, pos, st, gce, limits, decoded_pixels)
            gce = None
        else:
            if not st.frames:
                raise GifError(f"corrupt file: unknown block type 0x{tag:02x} at byte {pos}")
            break  # extraneous data after a frame: browsers stop here, so do we
    st.end = pos
    return st


def frame_durations(st: _Structure, min_delay_ms: int, clamped_delay_ms: int) -> np.ndarray:
    ms = np.fromiter((f.delay_cs for f in st.frames), dtype=np.int64, count=len(st.frames)) * 10
    ms[ms < min_delay_ms] = clamped_delay_ms
    return ms


# ---------------------------------------------------------------------------- decoding


def _pack(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] RGB -> uint32 [...] (bytes R, G, B, 0 in memory order)."""
    rgbx = np.zeros((*rgb.shape[:-1], 4), dtype=np.uint8)
    rgbx[..., :3] = rgb
    return rgbx.view(np.uint32)[..., 0]


def _lut(palette: bytes | None) -> np.ndarray:
    """uint32 [256] packed colour per palette index; entries past the table's end are black."""
    if palette is None:
        return _GREY_LUT
    lut = np.zeros((256, 3), dtype=np.uint8)
    table = np.frombuffer(palette, dtype=np.uint8).reshape(-1, 3)[:256]
    lut[: len(table)] = table
    return _pack(lut)


_GREY_LUT = _pack(np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1))


def _decode_into(
    img: Image.Image, payload: bytes, f: _Frame, origin: tuple[int, int], transparency: int
) -> bool:
    """LZW-decode one frame's image data (sub-blocks) into the "L" image `img` at `origin`,
    as palette indices, skipping pixels equal to `transparency` (-1: none). Returns whether
    the data held every pixel (when not, the remaining pixels are left as they were).

    Uses Pillow's C GIF decoder directly (``Image._getdecoder``; the 3-argument form with
    transparency is Pillow >= 9.1), so that Pillow's own compositing never runs.
    """
    x, y = origin
    decoder = Image._getdecoder("L", "gif", (f.lzw_bits, f.interlace, transparency))
    try:
        decoder.setimage(img.im, (x, y, x + f.width, y + f.height))
        buf = payload
        while True:  # like ImageFile.load: re-feed what the decoder left unconsumed
            consumed, err = decoder.decode(buf)
            if consumed < 0 or err < 0 or consumed == 0 or consumed >= len(buf):
                break
            buf = buf[consumed:]
    finally:
        decoder.cleanup()
    if err < 0:
        raise GifError(f"corrupt LZW data (Pillow decoder error {err})")
    return consumed < 0


def _lzw(payload: bytes, f: _Frame, fill: int) -> tuple[np.ndarray, bool]:
    """Palette indices uint8 [height, width] of one frame, and whether the data was complete;
    pixels the data did not reach keep `fill`."""
    img = Image.new("L", (f.width, f.height), fill)
    complete = _decode_into(img, payload, f, (0, 0), -1)
    return np.asarray(img), complete


def _frame_indices(data: bytes, f: _Frame, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Palette indices uint8 [height, width] of frame `index`, and a bool mask of the pixels
    that were decoded (None: all). Image data that ends early leaves the rest undrawn."""
    payload = data[f.data]
    try:
        idx, complete = _lzw(payload, f, 0)
        if complete:
            return idx, None
        # Which pixels did the short stream reach? Those that kept their fill both times
        # are undrawn (a pixel decoded as 0 differs from fill 255, one decoded as 255 from 0).
        other, _ = _lzw(payload, f, 255)
    except GifError as e:
        raise GifError(f"frame {index}: {e}") from None
    except (OSError, ValueError, MemoryError) as e:
        raise GifError(f"frame {index}: cannot decode image data: {e}") from None
    return idx, ~((idx == 0) & (other == 255))


# The indexed fast path (below) applies to most real GIFs; tests switch it off to check it
# against the general compositor.
_INDEXED_FAST_PATH = True


def _composite(
    data: bytes,
    st: _Structure,
    matte: tuple[int, int, int],
    keep: Sequence[int] | None,
) -> dict[int, np.ndarray] | np.ndarray:
    """Composite frames in order. keep=None: all frames as uint8 [N, H, W, 3]; otherwise
    {frame index: packed uint32 [H, W]} for the frames in `keep`, stopping after the last."""
    if keep is None:
        last, wanted = len(st.frames) - 1, None
    else:
        wanted = set(keep)
        last = max(wanted) if wanted else -1
    if _INDEXED_FAST_PATH and _indexed_eligible(st, last):
        result = _composite_indexed(data, st, last, wanted)
        if result is not None:
            return result
    return _composite_general(data, st, matte, last, wanted)


def _draw_into(img: Image.Image, data: bytes, f: _Frame, index: int) -> bool:
    t = -1 if f.transparency is None else f.transparency
    try:
        return _decode_into(img, data[f.data], f, (f.left, f.top), t)
    except GifError as e:
        raise GifError(f"frame {index}: {e}") from None
    except (OSError, ValueError, MemoryError) as e:
        raise GifError(f"frame {index}: cannot decode image data: {e}") from None


def _indexed_eligible(st: _Structure, last: int) -> bool:
    """Can frames 0..last be composited as palette indices on an index canvas? Yes when
    they share one palette (no local tables), lie inside the canvas, never dispose to
    background/previous, and frame 0 fills the canvas (its opacity is checked after
    decoding it). Then the canvas is always fully opaque and the matte never shows."""
    if last < 0:
        return False
    f0 = st.frames[0]
    if (f0.left, f0.top, f0.width, f0.height) != (0, 0, st.width, st.height):
        return False
    for f in st.frames[: last + 1]:
        if f.palette is not None or f.disposal in (2, 3, 4):
            return False
        if f.left + f.width > st.width or f.top + f.height > st.height:
            return False
    return True


def _composite_indexed(
    data: bytes, st: _Structure, last: int, wanted: set[int] | None
) -> dict[int, np.ndarray] | np.ndarray | None:
    """Fast path: Pillow's decoder draws each frame straight into one index canvas, skipping
    transparent pixels; only the frames asked for are turned into colours. None when frame
    0 turns out to have transparent or missing pixels (the general path then runs)."""
    W, H = st.width, st.height
    canvas = Image.new("L", (W, H), 0)
    f0 = st.frames[0]
    if not _draw_into(canvas, data, replace(f0, transparency=None), 0):
        return None
    if f0.transparency is not None and (np.asarray(canvas) == f0.transparency).any():
        return None
    lut = _lut(st.palette)
    out_all = None if wanted is not None else np.empty((last + 1, H, W, 3), dtype=np.uint8)
    out: dict[int, np.ndarray] = {}
    for i, f in enumerate(st.frames[: last + 1]):
        if i > 0 and f.width and f.height:
            _draw_into(canvas, data, f, i)  # data that ends early leaves pixels undrawn
        if out_all is not None:
            _unpack_into(out_all[i], lut.take(np.asarray(canvas), mode="clip"))
        elif i in wanted:  # type: ignore[operator]
            out[i] = lut.take(np.asarray(canvas), mode="clip")
    return out_all if out_all is not None else out


def _composite_general(
    data: bytes,
    st: _Structure,
    matte: tuple[int, int, int],
    last: int,
    wanted: set[int] | None,
) -> dict[int, np.ndarray] | np.ndarray:
    H, W = st.height, st.width
    matte_px = _pack(np.asarray(matte, dtype=np.uint8))
    # The canvas holds packed RGB (uint32 [H, W], one element per pixel keeps numpy fast)
    # with transparent pixels already shown as the matte colour: alpha is binary, so
    # "composite over the matte at the end" equals "clear to the matte".
    canvas = np.full((H, W), matte_px, dtype=np.uint32)
    global_lut = _lut(st.palette)
    out_all = None if wanted is not None else np.empty((last + 1, H, W, 3), dtype=np.uint8)
    out: dict[int, np.ndarray] = {}
    for i, f in enumerate(st.frames[: last + 1]):
        x0, y0 = f.left, f.top
        x1, y1 = min(x0 + f.width, W), min(y0 + f.height, H)
        visible = x1 > x0 and y1 > y0  # zero-size and off-screen frames draw nothing
        saved = None
        if visible and f.disposal in (3, 4):
            saved = canvas[y0:y1, x0:x1].copy()
        if visible:
            idx, drawn = _frame_indices(data, f, i)
            idx = idx[: y1 - y0, : x1 - x0]
            lut = _lut(f.palette) if f.palette is not None else global_lut
            colours = lut.take(idx, mode="clip")
            region = canvas[y0:y1, x0:x1]
            mask = None if f.transparency is None else idx != f.transparency
            if drawn is not None:
                drawn = drawn[: y1 - y0, : x1 - x0]
                mask = drawn if mask is None else mask & drawn
            if mask is None:
                region[...] = colours
            else:
                np.copyto(region, colours, where=mask)
        if out_all is not None:
            _unpack_into(out_all[i], canvas)
        elif i in wanted:  # type: ignore[operator]
            out[i] = canvas.copy()
        if visible:
            if f.disposal == 2:
                canvas[y0:y1, x0:x1] = matte_px
            elif saved is not None:
                canvas[y0:y1, x0:x1] = saved
    return out_all if out_all is not None else out


def _unpack_into(dst: np.ndarray, packed: np.ndarray) -> None:
    """uint32 [H, W] packed RGB -> dst uint8 [H, W, 3]; channel by channel, which numpy
    copies several times faster than one [..., :3] slice with an inner dimension of 3."""
    src = packed.view(np.uint8).reshape(*packed.shape, 4)
    for c in range(3):
        dst[..., c] = src[..., c]


def check_matte(matte: Sequence[int]) -> tuple[int, int, int]:
    m = tuple(int(c) for c in matte)
    if len(m) != 3 or not all(0 <= c <= 255 for c in m):
        raise ValueError(f"matte must be three integers in 0..255, got {matte!r}")
    return m  # type: ignore[return-value]


def decode_gif(
    source: GifSource,
    *,
    matte: tuple[int, int, int] = (255, 255, 255),
    limits: ReaderLimits = DEFAULT_LIMITS,
    min_delay_ms: int = 20,
    clamped_delay_ms: int = 100,
) -> DecodedGif:
    """Every frame of a GIF, composited over `matte`, with clamped display times.

    For training, decode once with the model spec's matte and delay clamp
    (`decode_for_spec`) and draw several augmented views with `sample_decoded`.
    """
    m = check_matte(matte)
    data = read_source(source, limits)
    st = parse_structure(data, limits)
    frames = _composite(data, st, m, None)
    assert isinstance(frames, np.ndarray)
    return DecodedGif(
        frames, frame_durations(st, min_delay_ms, clamped_delay_ms), st.width, st.height, m
    )


def decode_for_spec(
    source: GifSource, spec: SamplingSpec, *, limits: ReaderLimits = DEFAULT_LIMITS
) -> DecodedGif:
    """decode_gif with the matte and delay clamp of `spec` (what sample_decoded expects)."""
    return decode_gif(
        source,
        matte=spec.matte,
        limits=limits,
        min_delay_ms=spec.min_delay_ms,
        clamped_delay_ms=spec.clamped_delay_ms,
    )


# ---------------------------------------------------------------------------- sampling


def sample_indices(
    durations_ms: np.ndarray | Sequence[int], spec: SamplingSpec, offset: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Frame shown at each sampled time, and whether that time wrapped (loop padding).

    Segment s starts at t_s = (s + offset) * D / S (D = total duration); its T samples are
    at t_s + k / fps, taken modulo D. Returns int64 [S*T] frame indices (segment-major)
    and bool [S*T], True where t_s + k / fps >= D. A GIF whose delays are all zero (only
    possible with min_delay_ms=0) is treated as frames of equal length.
    """
    if not 0.0 <= offset < 1.0:
        raise ValueError(f"offset must be in [0, 1), got {offset!r}")
    d = np.asarray(durations_ms)
    # Whole milliseconds (GIF, WebP) stay integers; video timelines are fractional ms.
    d = d.astype(np.float64) if d.dtype.kind == "f" else d.astype(np.int64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError("durations_ms must be a non-empty 1-D array")
    if (d < 0).any() or not np.isfinite(d).all():
        raise ValueError("durations_ms must be finite and non-negative")
    if d.sum() == 0:
        d = np.ones_like(d)
    total = float(d.sum())
    starts = np.cumsum(d) - d  # ms at which each frame appears
    if d.dtype.kind == "f":  # to the nanosecond, like t below, so boundaries compare equal
        starts, total = np.round(starts, 6), round(total, 6)
    S, T = spec.segments, spec.frames_per_segment
    t = (np.arange(S, dtype=np.float64)[:, None] + offset) * (total / S) + np.arange(
        T, dtype=np.float64
    )[None, :] * (1000.0 / spec.fps)
    # Round to a nanosecond so that a time meant to fall on a frame boundary (e.g. 3 * 1000/30)
    # lands on it instead of a rounding error before it.
    t = np.round(t, 6).reshape(-1)
    wrapped = t >= total
    t = np.mod(t, total)
    idx = np.searchsorted(starts, t, side="right") - 1
    return idx.astype(np.int64), wrapped


def crop_box(
    width: int, height: int, spec: SamplingSpec, crop_shift: tuple[float, float]
) -> tuple[float, float, float, float]:
    """Source-pixel box that, resized to crop x crop, equals resize-shorter-side-then-crop."""
    sx, sy = (float(v) for v in crop_shift)
    if not (-1.0 <= sx <= 1.0 and -1.0 <= sy <= 1.0):
        raise ValueError(f"crop_shift must be in [-1, 1]^2, got {crop_shift!r}")
    # The longer side is truncated, not rounded, as Hara et al.'s extractor (the ResNeXt-101
    # encoder's training) does: int(size * long / short). A 500x374 frame becomes 149x112.
    if width <= height:
        rw, rh = spec.size, max(spec.size, int(height * spec.size / width))
    else:
        rw, rh = max(spec.size, int(width * spec.size / height)), spec.size
    c = spec.crop
    # Integer crop offsets in the resized image, as a resize-then-crop would use (Python's
    # round, half to even, as the extractor's centre crop: (149 - 112) / 2 = 18.5 -> 18).
    cx = round((rw - c) / 2 * (1 + sx))
    cy = round((rh - c) / 2 * (1 + sy))
    fx, fy = width / rw, height / rh
    return (cx * fx, cy * fy, (cx + c) * fx, (cy + c) * fy)


def resize_crop(
    frames: dict[int, np.ndarray] | np.ndarray,
    which: np.ndarray,
    spec: SamplingSpec,
    crop_shift: tuple[float, float],
    flip: bool,
) -> np.ndarray:
    """uint8 [len(which), crop, crop, 3]; each distinct frame is resized once."""
    uniq, inverse = np.unique(which, return_inverse=True)
    first = frames[int(uniq[0])]
    h, w = first.shape[:2]
    box = crop_box(w, h, spec, crop_shift)
    c = spec.crop
    resample = _RESAMPLE[spec.resize_filter]
    small = np.empty((len(uniq), c, c, 3), dtype=np.uint8)
    for j, i in enumerate(uniq):
        frame = frames[int(i)]
        if frame.ndim == 2:  # packed uint32 [H, W] from _composite: RGBX without a copy
            im = Image.frombuffer("RGBX", (w, h), frame, "raw", "RGBX", 0, 1)
        else:
            im = Image.fromarray(frame, "RGB")
        # Resizing only the crop's source box does the work of the crop, not the whole frame.
        small[j] = np.asarray(im.resize((c, c), resample, box=box))[..., :3]
    if flip:
        small = small[:, :, ::-1]
    return np.ascontiguousarray(small[inverse.reshape(-1)])


def sample_info(n_frames, durations_ms, width, height, spec, wrapped) -> SampleInfo:
    padded = int(wrapped.sum())
    return SampleInfo(
        n_frames=int(n_frames),
        duration_s=float(np.asarray(durations_ms).sum()) / 1000.0,
        width=int(width),
        height=int(height),
        segments=spec.segments,
        padded_frames=padded,
        padding=padded / spec.num_frames,
    )


def sample_decoded(
    decoded: DecodedGif,
    spec: SamplingSpec,
    *,
    offset: float = 0.0,
    crop_shift: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> SampledGif:
    """Sample, resize and crop an already decoded GIF (training: one decode, many views).

    offset in [0, 1): shift of all segment starts, as a fraction of one segment spacing.
    crop_shift (x, y) in [-1, 1]^2: crop position within the slack (-1 left/top, 0 centre,
    1 right/bottom). flip: mirror horizontally after cropping.
    """
    if tuple(decoded.matte) != tuple(spec.matte):
        raise ValueError(
            f"the GIF was composited over {tuple(decoded.matte)} but the spec's matte is "
            f"{tuple(spec.matte)}; decode with decode_for_spec(source, spec)"
        )
    idx, wrapped = sample_indices(decoded.durations_ms, spec, offset)
    frames = resize_crop(decoded.frames, idx, spec, crop_shift, flip)
    info = sample_info(
        len(decoded.frames), decoded.durations_ms, decoded.width, decoded.height, spec, wrapped
    )
    return SampledGif(frames, info)


def read_gif(
    source: GifSource,
    spec: SamplingSpec,
    *,
    limits: ReaderLimits = DEFAULT_LIMITS,
    offset: float = 0.0,
    crop_shift: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> SampledGif:
    """A GIF as the model's input: uint8 [S*T, crop, crop, 3] plus what sampling did.

    Delays are planned from the block structure first; frames are composited only up to
    the last sampled one and only sampled frames are resized. See sample_decoded for the
    augmentation arguments.
    """
    crop_box(1, 1, spec, crop_shift)  # argument errors before any work
    data = read_source(source, limits)
    st = parse_structure(data, limits)
    durations = frame_durations(st, spec.min_delay_ms, spec.clamped_delay_ms)
    idx, wrapped = sample_indices(durations, spec, offset)
    composited = _composite(data, st, spec.matte, np.unique(idx).tolist())
    frames = resize_crop(composited, idx, spec, crop_shift, flip)
    return SampledGif(
        frames, sample_info(len(st.frames), durations, st.width, st.height, spec, wrapped)
    )
