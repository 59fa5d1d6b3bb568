"""Every animated format through one reader contract: GIF, WebP, APNG/PNG, MP4/MOV, WebM/MKV -> sampled frames.

The format is recognised from the content (never the file name) and each format is turned
into the same thing a GIF is: a *display timeline* (frames, each shown for a duration) that
`gifio.sample_indices` samples by time, then the same resize-shorter-side + centre crop.

* GIF: `gifio.read_gif`, unchanged (same pixels, same numbers as before this module).
* WebP (animated or still) and still PNG: Pillow decodes (libwebp's animation decoder does
  blending and disposal). APNG: FFmpeg's APNG decoder via PyAV (Pillow's APNG compositing
  drifted from the source GIF on some real files; FFmpeg's matched it exactly). RGBA is
  composited over the spec's matte. Durations come from the file's own frame records
  (ANMF, fcTL), read here in Python before any decoder sees the file, and get the same
  delay clamp as GIF (browsers clamp all animated images alike). A still image is one
  frame shown for `clamped_delay_ms`, exactly like a one-frame GIF without a delay.
* MP4/MOV (H.264, HEVC, AV1...) and WebM/MKV (VP8, VP9, AV1): PyAV (FFmpeg). The timeline
  is the video packets' presentation times (variable frame rate is therefore exact), read by
  demuxing without decoding; each frame lasts until the next one, the last one for its
  packet duration. Only the frames sampling needs are decoded: from the nearest keyframe at
  or before each needed frame, jumping over stretches with no needed frame (a seek within
  the demuxed packets, exact even where container seeks are not), and stopping after the
  last needed one. Rotation metadata (display matrix) is applied, audio is ignored, and no
  delay clamp applies (a 60 fps video's 16.7 ms frames are real).

`ReaderLimits` hold for every format before pixels are allocated: bytes (when reading),
canvas/frame pixels from the header (PNG IHDR, WebP VP8X/VP8/VP8L, the video stream's
dimensions, and FFmpeg's own ``max_pixels`` for sizes that only the bitstream states),
frame count from the frame records or packets, decoded pixels from the decode plan, and
`max_duration_s` from the container's header and the timeline (GIF keeps its historical
limits, which bound duration through max_frames).

Errors: every bad input raises `MediaError`, a `gifio.GifError` (hence a ValueError), with
a one-line reason; content in no supported format says what it looks like instead.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.reading import gifio
from gifsent_infer.reading.gifio import (
    DEFAULT_LIMITS,
    DecodedGif,
    GifError,
    GifSource,
    ReaderLimits,
    SampledGif,
)

__all__ = [
    "FORMATS",
    "MEDIA_SUFFIXES",
    "MediaError",
    "MediaInfo",
    "decode_for_spec",
    "decode_media",
    "probe_media",
    "read_media",
    "sniff_format",
]

# What the `format` column can hold.
FORMATS = ("gif", "webp", "png", "apng", "mp4", "mov", "webm", "mkv")
VIDEO_FORMATS = ("mp4", "mov", "webm", "mkv")
# Names a folder scan takes even when their content is unreadable, so that a broken file
# gets an error row instead of vanishing (content decides for every other name).
MEDIA_SUFFIXES = (".gif", ".webp", ".png", ".apng", ".mp4", ".m4v", ".mov", ".webm", ".mkv")
SNIFF_BYTES = 64  # enough of a file's head for sniff_format


class MediaError(GifError):
    """Bad, corrupt, truncated, oversized or unsupported media; the message says which and why."""


# ----------------------------------------------------------------------------- sniffing

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MOV_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


def sniff_format(head: bytes) -> str | None:
    """The format of a file from its first bytes (SNIFF_BYTES suffice; APNG vs PNG needs the
    chunks before the image data, so pass the whole file to be sure), or None when it is
    none of FORMATS."""
    head = bytes(head[:4096])
    if gifio.is_gif(head):
        return "gif"
    if head.startswith(_PNG_MAGIC):
        return "apng" if _png_is_animated(head) else "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head[4:8] in _MOV_ATOMS and int.from_bytes(head[:4], "big") >= 8:
        return "mov"  # old QuickTime files start with a movie atom, no ftyp
    if head.startswith(b"\x1aE\xdf\xa3"):  # EBML: the DocType says webm or matroska
        return "webm" if b"webm" in head[:64] else "mkv"
    return None


def _png_is_animated(data: bytes) -> bool:
    """True when an acTL chunk comes before the first IDAT (what makes a PNG an APNG)."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"acTL":
            return True
        if kind == b"IDAT":
            return False
        pos += 12 + length
    return False


def _unsupported(data: bytes) -> MediaError:
    from gifsent_infer.reading.inputs import describe_non_gif  # inputs imports this module

    return MediaError(describe_non_gif(data[:16]))


# ----------------------------------------------------------------------------- timelines


@dataclass
class MediaInfo:
    """What a file holds, before any pixel is decoded (see probe_media)."""

    format: str
    width: int  # as displayed (after rotation)
    height: int
    durations_ms: np.ndarray  # [N] display time of each frame, before any delay clamp
    codec: str = ""  # video codec name, e.g. "h264" ("" for images)
    rotation: int = 0  # clockwise degrees applied to decoded video frames

    @property
    def n_frames(self) -> int:
        return len(self.durations_ms)

    @property
    def times_ms(self) -> np.ndarray:
        """[N] when each frame appears, from 0."""
        return np.cumsum(self.durations_ms) - self.durations_ms


@dataclass
class _Reader:
    info: MediaInfo
    clamp: bool  # animated images get the GIF delay clamp, video does not
    # frames(indices, matte) -> {index: uint8 [H, W, 3]} for the display indices asked for
    frames: Callable[[Sequence[int], tuple[int, int, int]], dict[int, np.ndarray]]
    close: Callable[[], None] = lambda: None  # frees what `frames` would have needed


def _check_canvas(width: int, height: int, limits: ReaderLimits, what: str = "canvas") -> None:
    if width <= 0 or height <= 0:
        raise MediaError(f"invalid {what} {width}x{height}: zero width or height")
    if width * height > limits.max_canvas_pixels:
        raise MediaError(
            f"{what} {width}x{height} = {width * height} pixels is over the limit of "
            f"{limits.max_canvas_pixels} (decompression bomb?)"
        )


def _check_frames(n: int, pixels_each: int, limits: ReaderLimits) -> None:
    if n > limits.max_frames:
        raise MediaError(f"{n} frames, more than {limits.max_frames} (frame limit)")
    if n * pixels_each > limits.max_decoded_pixels:
        raise MediaError(
            f"{n} frames of {pixels_each} pixels are more than {limits.max_decoded_pixels} "
            "decoded pixels (decoded-pixel limit)"
        )


def _check_duration(seconds: float, limits: ReaderLimits, what: str = "duration") -> None:
    if not np.isfinite(seconds) or seconds > limits.max_duration_s:
        raise MediaError(
            f"{what} {seconds:.1f} s is over the limit of {limits.max_duration_s:g} s "
            "(duration limit)"
        )


def _over_matte(rgba: np.ndarray, matte: tuple[int, int, int]) -> np.ndarray:
    """uint8 [H, W, 4] -> [H, W, 3]: straight alpha composited over `matte`, rounded.
    Alpha 255 keeps the colour and alpha 0 gives the matte exactly (GIF's binary case)."""
    rgb, a = rgba[..., :3], rgba[..., 3:4]
    if (a == 255).all():
        return np.ascontiguousarray(rgb)
    a16 = a.astype(np.uint16)
    m = np.asarray(matte, dtype=np.uint16)
    out = (rgb.astype(np.uint16) * a16 + m * (255 - a16) + 127) // 255
    return out.astype(np.uint8)


# --- WebP ---------------------------------------------------------------------------------


def _riff_chunks(data: bytes):
    """(fourcc, payload start, payload end) of each chunk of a RIFF WEBP file."""
    size = int.from_bytes(data[4:8], "little") + 8
    end = min(len(data), size)
    pos = 12
    while pos + 8 <= end:
        fourcc = data[pos : pos + 4]
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        start = pos + 8
        if start + length > len(data):
            raise MediaError(f"truncated file: ends inside a WebP {fourcc!r} chunk")
        yield fourcc, start, start + length
        pos = start + length + (length & 1)


def _vp8_size(data: bytes, fourcc: bytes, s: int, e: int) -> tuple[int, int]:
    if fourcc == b"VP8 ":
        if e - s < 10 or data[s + 3 : s + 6] != b"\x9d\x01\x2a":
            raise MediaError("corrupt WebP: bad VP8 frame header")
        w, h = struct.unpack_from("<HH", data, s + 6)
        return w & 0x3FFF, h & 0x3FFF
    if e - s < 5 or data[s] != 0x2F:
        raise MediaError("corrupt WebP: bad VP8L header")
    bits = int.from_bytes(data[s + 1 : s + 5], "little")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1


def _webp_reader(data: bytes, limits: ReaderLimits) -> _Reader:
    width = height = 0
    durations: list[int] = []
    for fourcc, s, e in _riff_chunks(data):
        if fourcc == b"VP8X":
            if e - s < 10:
                raise MediaError("corrupt WebP: short VP8X chunk")
            width = int.from_bytes(data[s + 4 : s + 7], "little") + 1
            height = int.from_bytes(data[s + 7 : s + 10], "little") + 1
            _check_canvas(width, height, limits)
        elif fourcc == b"ANMF":
            if e - s < 16:
                raise MediaError("corrupt WebP: short ANMF chunk")
            fw = int.from_bytes(data[s + 6 : s + 9], "little") + 1
            fh = int.from_bytes(data[s + 9 : s + 12], "little") + 1
            _check_canvas(fw, fh, limits, f"frame {len(durations)}")
            durations.append(int.from_bytes(data[s + 12 : s + 15], "little"))
            _check_frames(len(durations), width * height, limits)
        elif fourcc in (b"VP8 ", b"VP8L") and not width:  # a still image without VP8X
            width, height = _vp8_size(data, fourcc, s, e)
            _check_canvas(width, height, limits)
    if not width:
        raise MediaError("corrupt WebP: no image data")
    animated = bool(durations)
    if not animated:
        durations = [0]  # one frame; clamped to clamped_delay_ms like a one-frame GIF
    _check_duration(sum(durations) / 1000, limits)
    info = MediaInfo("webp", width, height, np.asarray(durations, dtype=np.int64))
    return _Reader(info, True, lambda keep, matte: _pillow_frames(data, keep, matte))


# --- PNG / APNG -----------------------------------------------------------------------------


def _png_reader(data: bytes, limits: ReaderLimits) -> _Reader:
    pos, n = 8, len(data)
    width = height = 0
    animated = False
    seen_idat = False
    durations: list[float] = []
    while True:
        if pos + 8 > n:
            raise MediaError("truncated file: ends before the PNG's IEND chunk")
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        s, e = pos + 8, pos + 8 + length
        if e + 4 > n:
            raise MediaError(f"truncated file: ends inside a PNG {kind!r} chunk")
        if kind == b"IHDR":
            if length < 13:
                raise MediaError("corrupt PNG: short IHDR chunk")
            width, height = struct.unpack_from(">II", data, s)
            _check_canvas(width, height, limits)
        elif kind == b"acTL" and not seen_idat:
            animated = True
        elif kind == b"fcTL" and animated:
            if length < 26:
                raise MediaError("corrupt APNG: short fcTL chunk")
            fw, fh, _x, _y, num, den = struct.unpack_from(">IIIIHH", data, s + 4)
            _check_canvas(fw, fh, limits, f"frame {len(durations)}")
            durations.append(num * 1000.0 / (den or 100))  # den 0 means 1/100 s
            _check_frames(len(durations), width * height, limits)
        elif kind == b"IDAT":
            seen_idat = True
        elif kind == b"IEND":
            break
        pos = e + 4  # past the CRC
    if not width or not seen_idat:
        raise MediaError("corrupt PNG: no IHDR or no image data")
    if not animated or not durations:
        animated, durations = False, [0.0]
    _check_duration(sum(durations) / 1000, limits)
    fmt = "apng" if animated else "png"
    d = np.asarray(durations, dtype=np.float64)
    if (d == np.round(d)).all():
        d = d.astype(np.int64)  # whole milliseconds: sample exactly like a GIF
    info = MediaInfo(fmt, width, height, d)
    if animated:  # FFmpeg composites APNG like browsers (Pillow's blending drifts on some files)
        return _Reader(info, True, lambda keep, matte: _apng_frames(data, keep, matte))
    return _Reader(info, True, lambda keep, matte: _pillow_frames(data, keep, matte))


def _apng_frames(
    data: bytes, keep: Sequence[int], matte: tuple[int, int, int]
) -> dict[int, np.ndarray]:
    """Composited APNG frames `keep` (display indices, as the fcTL records count them) via
    FFmpeg's APNG decoder, in order up to the last one needed (FFmpeg, like browsers, leaves
    out a default image that is not part of the animation)."""
    import av

    want = set(int(k) for k in keep)
    out: dict[int, np.ndarray] = {}
    if not want:
        return out
    last = max(want)
    try:
        with av.open(io.BytesIO(data), format="apng") as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            i = 0
            for packet in container.demux(stream):
                for frame in packet.decode():
                    if i in want:
                        out[i] = _over_matte(frame.to_ndarray(format="rgba"), matte)
                    i += 1
                if i > last:
                    break
    except av.error.FFmpegError as e:
        raise MediaError(f"cannot decode APNG frame {len(out)}: {e}") from None
    if len(out) < len(want):
        raise MediaError(f"truncated or corrupt APNG: frame {min(want - set(out))} cannot be read")
    return out


def _pillow_frames(
    data: bytes, keep: Sequence[int], matte: tuple[int, int, int]
) -> dict[int, np.ndarray]:
    """Composited frames `keep` (display indices) via Pillow, decoding in order up to the last."""
    out: dict[int, np.ndarray] = {}
    try:
        with Image.open(io.BytesIO(data)) as im:
            for i in sorted(set(int(k) for k in keep)):
                im.seek(i)
                frame = im.convert("RGBA")
                out[i] = _over_matte(np.asarray(frame), matte)
    except MediaError:
        raise
    except EOFError:
        raise MediaError(f"truncated file: frame {len(out)} cannot be read") from None
    except (OSError, ValueError, SyntaxError, struct.error) as e:
        raise MediaError(f"cannot decode frame {len(out)}: {e}") from None
    return out


# --- video ------------------------------------------------------------------------------------

_DEMUXERS = {"mp4": "mov", "mov": "mov", "webm": "matroska", "mkv": "matroska"}


def _video_reader(data: bytes, fmt: str, limits: ReaderLimits) -> _Reader:
    import av  # PyAV: FFmpeg's demuxers and decoders, bundled in its wheels

    try:
        container = av.open(io.BytesIO(data), format=_DEMUXERS[fmt], metadata_errors="replace")
    except (av.error.FFmpegError, ValueError) as e:  # ValueError: UnicodeDecodeError too
        raise MediaError(f"cannot open {fmt}: {e}") from None
    try:
        if not container.streams.video:
            raise MediaError(f"no video stream in this {fmt} file")
        stream = container.streams.video[0]
        cc = stream.codec_context
        if cc is None:
            raise MediaError(f"unsupported video codec in this {fmt} file")
        width, height = cc.width, cc.height
        _check_canvas(width, height, limits)
        if stream.frames and stream.frames > limits.max_frames:
            raise MediaError(
                f"the header says {stream.frames} frames, more than {limits.max_frames} "
                "(frame limit)"
            )
        if container.duration is not None and container.duration > 0:
            _check_duration(container.duration / 1e6, limits, "the header's duration")
        if stream.duration and stream.time_base:
            _check_duration(
                float(stream.duration * stream.time_base), limits, "the stream's duration"
            )

        # 1. the timeline from the packets (no decoding): decode order, presentation times
        packets = []
        try:
            for p in container.demux(stream):
                if p.size == 0:
                    continue  # the demuxer's end-of-stream marker
                packets.append(p)
                if len(packets) > limits.max_frames:
                    raise MediaError(f"more than {limits.max_frames} frames (frame limit)")
        except av.error.FFmpegError:
            pass  # a damaged tail: keep the packets before it (decoding will tell)
        if not packets:
            raise MediaError(f"no video frames in this {fmt} file")
        tb = stream.time_base
        pts = np.array(
            [p.pts if p.pts is not None else (p.dts if p.dts is not None else -1) for p in packets],
            dtype=np.int64,
        )
        if (pts < 0).all():  # no times at all: one frame per packet at the stream's rate
            rate = float(stream.guessed_rate or 25)
            pts = np.arange(len(packets), dtype=np.int64)
            tb_ms = 1000.0 / rate
        else:
            pts[pts < 0] = pts.max()  # a packet without a time shows last (rare, broken)
            tb_ms = float(tb) * 1000.0
        order = np.argsort(pts, kind="stable")  # display order -> decode index
        shown = pts[order]
        times = (shown - shown[0]) * tb_ms
        last = packets[int(order[-1])].duration
        if last and last > 0:
            last_ms = float(last) * tb_ms
        elif len(times) > 1:
            last_ms = float(np.median(np.diff(times)))
        else:
            last_ms = 1000.0 / float(stream.guessed_rate or 10)
        ends = np.append(times[1:], times[-1] + last_ms)
        durations = np.round(ends - times, 6)
        _check_duration(float(ends[-1]) / 1000, limits)
        codec = cc.name
    except BaseException:
        container.close()
        raise

    # PyAV decodes the packets with the stream's codec context, which lives as long as the
    # container: the reader closes it after decoding (or in `close` when nothing is decoded).
    info = MediaInfo(fmt, width, height, durations, codec=codec)

    def frames(keep: Sequence[int], matte: tuple[int, int, int]) -> dict[int, np.ndarray]:
        try:
            out, info.rotation = _decode_video(stream, packets, order, keep, limits, width, height)
        finally:
            container.close()
        if info.rotation in (90, 270):
            info.width, info.height = height, width
        return out

    return _Reader(info, False, frames, container.close)


def _plan(packets: list, order: np.ndarray, keep: Sequence[int]) -> list[tuple[int, int]]:
    """Decode-order packet ranges [start, stop) that produce the display indices in `keep`:
    each starts at the last keyframe at or before the needed packet; ranges that touch or
    overlap merge (decoding on through them is cheaper than restarting at a keyframe)."""
    keyframes = np.flatnonzero([p.is_keyframe for p in packets])
    if keyframes.size == 0 or keyframes[0] != 0:
        keyframes = np.insert(keyframes, 0, 0)  # decode from the start; errors conceal
    ranges: list[tuple[int, int]] = []
    # A frame comes out of the decoder a few packets after its own (B-frame reordering):
    # run each range up to the largest decode index among frames displayed up to the target.
    latest = np.maximum.accumulate(order)  # display index -> last decode index needed
    for d in sorted(set(int(k) for k in keep)):
        need = int(order[d])
        start = int(keyframes[np.searchsorted(keyframes, need, side="right") - 1])
        stop = int(latest[d]) + 1
        if ranges and start <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], stop))
        else:
            ranges.append((start, stop))
    return ranges


def _decode_video(stream, packets, order, keep, limits, width, height):
    import av

    cc = stream.codec_context
    cc.thread_count = 1  # the batch pool decodes several files at once, one per core
    # FFmpeg's own guard: frames larger than the limit fail in the decoder before their
    # buffers exist (a bitstream can state a size its container header does not).
    cc.options = {**cc.options, "max_pixels": str(limits.max_canvas_pixels)}
    ranges = _plan(packets, order, keep)
    planned = sum(b - a for a, b in ranges)
    _check_frames(planned, width * height, limits)

    pts_of = {}  # presentation time -> display index, for the frames wanted
    for d in set(int(k) for k in keep):
        p = packets[int(order[d])]
        pts_of[p.pts if p.pts is not None else p.dts] = d
    got: dict[int, np.ndarray] = {}
    decoded_pixels = 0
    rotation = 0
    errors = 0

    def take(frame) -> None:
        nonlocal decoded_pixels, rotation
        decoded_pixels += frame.width * frame.height
        if decoded_pixels > limits.max_decoded_pixels:
            raise MediaError(
                f"more than {limits.max_decoded_pixels} decoded pixels (decoded-pixel limit)"
            )
        t = frame.pts
        if t in pts_of and pts_of[t] not in got:
            # bicubic chroma upsampling: what the ffmpeg CLI uses (pixel-identical in tests)
            rgb = frame.to_ndarray(
                format="rgb24", width=width, height=height, interpolation="BICUBIC"
            )
            rotation = round(-(getattr(frame, "rotation", 0) or 0) / 90) * 90 % 360
            if rotation:
                rgb = np.ascontiguousarray(np.rot90(rgb, k=-rotation // 90))
            got[pts_of[t]] = rgb

    for a, b in ranges:
        cc.flush_buffers()  # a fresh start at the range's keyframe
        for p in packets[a:b]:
            try:
                for frame in cc.decode(p):
                    take(frame)
            except MediaError:
                raise
            except av.error.FFmpegError as e:
                errors += 1  # one damaged packet: FFmpeg conceals what it can
                last_error = e
        try:
            for frame in cc.decode(None):  # drain the frames still held for reordering
                take(frame)
        except av.error.FFmpegError as e:
            errors += 1
            last_error = e
    if not got:
        reason = f": {last_error}" if errors else ""
        raise MediaError(
            f"no decodable video frame (corrupt data, or frames over the {limits.max_canvas_pixels}"
            f"-pixel limit){reason}"
        )
    # A wanted frame the decoder never produced (a damaged or invisible packet) shows the
    # frame before it, as a player would.
    out: dict[int, np.ndarray] = {}
    for d in sorted(set(int(k) for k in keep)):
        if d in got:
            out[d] = got[d]
        else:
            prev = [g for g in got if g < d]
            out[d] = got[max(prev)] if prev else got[min(got)]
    return out, rotation


# ----------------------------------------------------------------------------- the contract


def _data(source: GifSource, limits: ReaderLimits) -> bytes:
    try:
        return gifio.read_source(source, limits)
    except GifError as e:
        raise MediaError(str(e).replace("no GIF data", "no data")) from None


def _reader(data: bytes, limits: ReaderLimits) -> _Reader:
    fmt = sniff_format(data)
    if fmt in ("webp",):
        return _webp_reader(data, limits)
    if fmt in ("png", "apng"):
        return _png_reader(data, limits)
    if fmt in VIDEO_FORMATS:
        return _video_reader(data, fmt, limits)
    raise _unsupported(data)


def _clamped(info: MediaInfo, clamp: bool, spec_or_delays: tuple[int, int]) -> np.ndarray:
    d = info.durations_ms
    if not clamp:
        return d
    min_delay_ms, clamped_delay_ms = spec_or_delays
    d = d.copy()
    d[d < min_delay_ms] = clamped_delay_ms
    return d


def probe_media(source: GifSource, *, limits: ReaderLimits = DEFAULT_LIMITS) -> MediaInfo:
    """Format, size and frame durations of a file, without decoding pixels (GIF included).
    Durations are as stored (before the delay clamp)."""
    data = _data(source, limits)
    if gifio.is_gif(data[:6]):
        st = gifio.parse_structure(data, limits)
        d = gifio.frame_durations(st, 0, 0)
        return MediaInfo("gif", st.width, st.height, d)
    r = _reader(data, limits)
    r.close()
    return r.info


def read_media(
    source: GifSource,
    spec: SamplingSpec,
    *,
    limits: ReaderLimits = DEFAULT_LIMITS,
    offset: float = 0.0,
    crop_shift: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> SampledGif:
    """Any supported file as the model's input: uint8 [S*T, crop, crop, 3] plus what sampling
    did (`info.format` names the format). Same arguments and result as gifio.read_gif,
    which it calls for GIFs."""
    gifio.crop_box(1, 1, spec, crop_shift)  # argument errors before any work
    data = _data(source, limits)
    if gifio.is_gif(data[:6]):
        return gifio.read_gif(
            data, spec, limits=limits, offset=offset, crop_shift=crop_shift, flip=flip
        )
    r = _reader(data, limits)
    try:
        durations = _clamped(r.info, r.clamp, (spec.min_delay_ms, spec.clamped_delay_ms))
        idx, wrapped = gifio.sample_indices(durations, spec, offset)
        frames = r.frames(np.unique(idx).tolist(), tuple(spec.matte))
    finally:
        r.close()
    out = gifio.resize_crop(frames, idx, spec, crop_shift, flip)
    h, w = next(iter(frames.values())).shape[:2]
    info = gifio.sample_info(r.info.n_frames, durations, w, h, spec, wrapped)
    return SampledGif(out, replace(info, format=r.info.format))


def decode_media(
    source: GifSource,
    *,
    matte: tuple[int, int, int] = (255, 255, 255),
    limits: ReaderLimits = DEFAULT_LIMITS,
    min_delay_ms: int = 20,
    clamped_delay_ms: int = 100,
) -> DecodedGif:
    """Every frame of any supported file, over `matte`, with display times (video: no clamp)."""
    m = gifio.check_matte(matte)
    data = _data(source, limits)
    if gifio.is_gif(data[:6]):
        return gifio.decode_gif(
            data,
            matte=m,
            limits=limits,
            min_delay_ms=min_delay_ms,
            clamped_delay_ms=clamped_delay_ms,
        )
    r = _reader(data, limits)
    try:
        durations = _clamped(r.info, r.clamp, (min_delay_ms, clamped_delay_ms))
        frames = r.frames(list(range(r.info.n_frames)), m)
    finally:
        r.close()
    stack = np.stack([frames[i] for i in range(r.info.n_frames)])
    return DecodedGif(stack, durations, stack.shape[2], stack.shape[1], m)


def decode_for_spec(
    source: GifSource, spec: SamplingSpec, *, limits: ReaderLimits = DEFAULT_LIMITS
) -> DecodedGif:
    """decode_media with the matte and delay clamp of `spec` (what gifio.sample_decoded expects)."""
    return decode_media(
        source,
        matte=spec.matte,
        limits=limits,
        min_delay_ms=spec.min_delay_ms,
        clamped_delay_ms=spec.clamped_delay_ms,
    )
