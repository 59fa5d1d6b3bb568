"""The decoders behind the format registry (`formats.py`): each turns a file's bytes into a
`Reader` -- its display timeline read from the header and frame records (no pixel decoded)
and a function that decodes the frames sampling asks for.

* GIF: `gifio` (parse_structure for the timeline, its own compositor for the pixels).
* WebP (animated or still) and still PNG: Pillow decodes (libwebp's animation decoder does
  blending and disposal). APNG: FFmpeg's APNG decoder via PyAV (Pillow's APNG compositing
  drifted from the source GIF on some real files; FFmpeg's matched it exactly). RGBA is
  composited over the spec's matte. Durations come from the file's own frame records
  (ANMF, fcTL), read here in Python before any decoder sees the file.
* Video (MP4/MOV, WebM/MKV) and AVIF (an AV1 image sequence in ISO-BMFF): PyAV (FFmpeg).
  The timeline is the packets' presentation times (variable frame rate is therefore exact),
  read by demuxing without decoding; each frame lasts until the next one, the last one for
  its packet duration. Only the frames sampling needs are decoded: from the nearest
  keyframe at or before each needed frame, jumping over stretches with no needed frame (a
  seek within the demuxed packets, exact even where container seeks are not), and stopping
  after the last needed one. Rotation metadata (display matrix) is applied, audio ignored.

Whether a timeline gets GIF's delay clamp is the format's business (`formats.Format.clamp`),
not the decoder's. `ReaderLimits` hold for every decoder before pixels are allocated.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from gifsent_infer.reading import gifio
from gifsent_infer.reading.gifio import GifError, ReaderLimits


class MediaError(GifError):
    """Bad, corrupt, truncated, oversized or unsupported media; the message says which and why."""


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
class Reader:
    """A file opened for sampling: its timeline (no pixel decoded yet) and its frames on demand."""

    info: MediaInfo
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


def webp_reader(data: bytes, limits: ReaderLimits) -> Reader:
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
    return Reader(info, lambda keep, matte: _pillow_frames(data, keep, matte))


# --- PNG / APNG -----------------------------------------------------------------------------


def png_reader(data: bytes, limits: ReaderLimits) -> Reader:
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
        return Reader(info, lambda keep, matte: _apng_frames(data, keep, matte))
    return Reader(info, lambda keep, matte: _pillow_frames(data, keep, matte))


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


def first_stream(videos: list):
    """The first video stream, as players take it."""
    return videos[0]


def longest_stream(videos: list):
    """The video stream with the most frames: an animated AVIF holds its still "primary
    item" as stream 0 and the animation as a track after it."""
    return max(videos, key=lambda s: s.frames or 0)


def _open_container(data: bytes, fmt: str, demuxer: str, choose: Callable = first_stream):
    """(container, video stream) of a file FFmpeg demuxes as `demuxer`; `choose` picks the
    stream from the container's video streams."""
    import av  # PyAV: FFmpeg's demuxers and decoders, bundled in its wheels

    try:
        container = av.open(io.BytesIO(data), format=demuxer, metadata_errors="replace")
    except (av.error.FFmpegError, ValueError) as e:  # ValueError: UnicodeDecodeError too
        raise MediaError(f"cannot open {fmt}: {e}") from None
    videos = list(container.streams.video)
    if not videos:
        container.close()
        raise MediaError(f"no video stream in this {fmt} file")
    stream = choose(videos)
    if stream.codec_context is None:
        container.close()
        raise MediaError(f"unsupported video codec in this {fmt} file")
    return container, stream


def video_header(data: bytes, fmt: str, demuxer: str, *, choose: Callable = first_stream):
    """(width, height, frames) from the container's header alone: nothing is demuxed past
    what FFmpeg reads to open the file, nothing decoded. `frames` is the header's count, else
    its duration times the frame rate (0 when it states neither)."""
    container, stream = _open_container(data, fmt, demuxer, choose)
    try:
        cc = stream.codec_context
        frames = int(stream.frames or 0)
        if not frames and container.duration and container.duration > 0:
            frames = int(container.duration / 1e6 * float(stream.guessed_rate or 25)) + 1
        return cc.width, cc.height, frames
    finally:
        container.close()


def _check_video_header(container, stream, limits: ReaderLimits) -> None:
    cc = stream.codec_context
    _check_canvas(cc.width, cc.height, limits)
    if stream.frames and stream.frames > limits.max_frames:
        raise MediaError(
            f"the header says {stream.frames} frames, more than {limits.max_frames} (frame limit)"
        )
    if container.duration is not None and container.duration > 0:
        _check_duration(container.duration / 1e6, limits, "the header's duration")
    if stream.duration and stream.time_base:
        _check_duration(float(stream.duration * stream.time_base), limits, "the stream's duration")


def _demux(container, stream, fmt: str, limits: ReaderLimits) -> list:
    """The stream's packets in decode order (a damaged tail is cut off; decoding will tell)."""
    import av

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
    return packets


def _timeline(stream, packets: list, limits: ReaderLimits) -> tuple[np.ndarray, np.ndarray]:
    """(display order -> decode index, durations in ms) from the packets' presentation times."""
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
    _check_duration(float(ends[-1]) / 1000, limits)
    return order, np.round(ends - times, 6)


def video_reader(
    data: bytes,
    fmt: str,
    demuxer: str,
    limits: ReaderLimits,
    *,
    choose: Callable = first_stream,
    still_is_untimed: bool = False,
    pix: str = "rgb24",
) -> Reader:
    """A file FFmpeg demuxes (`demuxer`: "mov", "matroska") as a Reader named `fmt`.
    `still_is_untimed`: a one-frame file is a still image, shown for 0 ms before the delay
    clamp like a one-frame GIF or WebP (an AVIF still's item has no real duration). `pix`:
    the frames' pixel format ("rgb24": [H, W, 3]; "gray": [H, W], for an alpha plane)."""
    container, stream = _open_container(data, fmt, demuxer, choose)
    try:
        _check_video_header(container, stream, limits)
        cc = stream.codec_context
        width, height = cc.width, cc.height
        packets = _demux(container, stream, fmt, limits)
        order, durations = _timeline(stream, packets, limits)
        if still_is_untimed and len(packets) == 1:
            durations = np.zeros(1, dtype=np.int64)
        codec = cc.name
    except BaseException:
        container.close()
        raise

    # PyAV decodes the packets with the stream's codec context, which lives as long as the
    # container: the reader closes it after decoding (or in `close` when nothing is decoded).
    info = MediaInfo(fmt, width, height, durations, codec=codec)

    def frames(keep: Sequence[int], matte: tuple[int, int, int]) -> dict[int, np.ndarray]:
        try:
            out, info.rotation = _decode_video(
                stream, packets, order, keep, limits, (width, height, pix)
            )
        finally:
            container.close()
        if info.rotation in (90, 270):
            info.width, info.height = height, width
        return out

    return Reader(info, frames, container.close)


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


def _decode_video(stream, packets, order, keep, limits, size):
    import av

    width, height, pix = size
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
            rgb = frame.to_ndarray(format=pix, width=width, height=height, interpolation="BICUBIC")
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


# --- GIF --------------------------------------------------------------------------------------


def gif_reader(data: bytes, limits: ReaderLimits) -> Reader:
    """A GIF as a Reader: the timeline from its structure (delays as stored); frames from
    gifio's compositor. (Sampling and decoding a GIF go through gifio.read_gif and
    gifio.decode_gif directly, see formats.GIF; this is for callers that want a Reader.)"""
    st = gifio.parse_structure(data, limits)
    info = MediaInfo("gif", st.width, st.height, gifio.frame_durations(st, 0, 0))

    def frames(keep: Sequence[int], matte: tuple[int, int, int]) -> dict[int, np.ndarray]:
        decoded = gifio.decode_gif(data, matte=matte, limits=limits)
        return {int(k): decoded.frames[int(k)] for k in keep}

    return Reader(info, frames)


# --- AVIF ---------------------------------------------------------------------------------------


class _NoAlpha(MediaError):
    """The file has no alpha plane (not an error: it is opaque)."""


def _alpha_stream(videos: list):
    """The alpha plane of the colour stream (longest_stream): FFmpeg shows an AVIF's alpha
    auxiliary image (item or track) as a grey video stream after its colour stream, with as
    many frames."""
    colour = longest_stream(videos)
    for s in videos:
        cc = s.codec_context
        if (
            s.index > colour.index
            and cc is not None
            and (cc.pix_fmt or "").startswith("gray")
            and (s.frames or 0) == (colour.frames or 0)
        ):
            return s
    raise _NoAlpha("no alpha plane")


def has_av1_decoder() -> bool:
    """Whether this PyAV's FFmpeg has an AV1 decoder (libdav1d, libaom-av1 or its own)."""
    import av

    return any(c in av.codecs_available for c in ("libdav1d", "libaom-av1", "av1"))


def avif_reader(data: bytes, limits: ReaderLimits) -> Reader:
    """AVIF through FFmpeg (PyAV): an animated AVIF is its track (its "avis" sequence), not
    the still primary item FFmpeg shows first; a still AVIF is the item, one frame shown
    like a one-frame GIF. Transparency: the alpha auxiliary image (a grey stream) is decoded
    for the same frames and the colour composited over the matte. Colour frames are
    ffmpeg's decode of that stream, pixel for pixel."""
    if not has_av1_decoder():
        raise MediaError("unsupported format avif: this PyAV's FFmpeg has no AV1 decoder")
    colour = video_reader(data, "avif", "mov", limits, choose=longest_stream, still_is_untimed=True)
    try:
        alpha = video_reader(
            data, "avif", "mov", limits, choose=_alpha_stream, still_is_untimed=True, pix="gray"
        )
    except _NoAlpha:
        return colour  # opaque
    except BaseException:
        colour.close()
        raise
    if alpha.info.n_frames != colour.info.n_frames:
        alpha.close()
        colour.close()
        raise MediaError(
            f"corrupt AVIF: {colour.info.n_frames} colour frames but "
            f"{alpha.info.n_frames} alpha frames"
        )

    def frames(keep: Sequence[int], matte: tuple[int, int, int]) -> dict[int, np.ndarray]:
        try:
            rgb = colour.frames(keep, matte)
        except BaseException:
            alpha.close()
            raise
        a = alpha.frames(keep, matte)
        return {k: _over_matte(np.dstack([rgb[k], a[k]]), matte) for k in rgb}

    def close() -> None:
        colour.close()
        alpha.close()

    return Reader(colour.info, frames, close)


# --- ISO-BMFF headers (MP4, MOV, AVIF), read in Python -------------------------------------


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, box end) of each box in data[start:end]; stops at a box that
    does not fit (a truncated file)."""
    pos = start
    while pos + 8 <= end:
        size, kind, head = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8], 8
        if size == 1 and pos + 16 <= end:
            size, head = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            return
        yield kind, pos + head, pos + size
        pos += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in _boxes(data, start, end) if k == kind), None)


def _track_size(data: bytes, s: int, e: int) -> tuple[int, int, int] | None:
    """(width, height, samples) of a video or image track (trak box payload), else None."""
    tkhd, mdia = _child(data, s, e, b"tkhd"), _child(data, s, e, b"mdia")
    if tkhd is None or mdia is None:
        return None
    hdlr = _child(data, *mdia, b"hdlr")
    if hdlr is None or data[hdlr[0] + 8 : hdlr[0] + 12] not in (b"vide", b"pict", b"auxv"):
        return None
    at = tkhd[0] + (88 if data[tkhd[0]] == 1 else 76)  # after the times, layer..., matrix
    if at + 8 > tkhd[1]:
        return None
    width, height = data[at : at + 2], data[at + 4 : at + 6]  # 16.16 fixed point: integer part
    samples = 0
    minf = _child(data, *mdia, b"minf")
    stbl = _child(data, *minf, b"stbl") if minf else None
    stsz = (_child(data, *stbl, b"stsz") or _child(data, *stbl, b"stz2")) if stbl else None
    if stsz is not None and stsz[0] + 12 <= stsz[1]:
        samples = int.from_bytes(data[stsz[0] + 8 : stsz[0] + 12], "big")
    return int.from_bytes(width, "big"), int.from_bytes(height, "big"), samples


def bmff_header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, frames) of an ISO-BMFF file from its boxes alone (no FFmpeg, nothing
    decoded): the largest video/image track's tkhd size and stsz sample count, or for a
    still image (HEIF/AVIF items, no track) its largest `ispe` property and one frame.
    None when the boxes do not say (FFmpeg's open then tells)."""
    best = None
    for kind, s, e in _boxes(data, 0, len(data)):
        if kind == b"moov":
            for k, ts, te in _boxes(data, s, e):
                size = _track_size(data, ts, te) if k == b"trak" else None
                if size and size[0] * size[1] > 0 and (best is None or size[2] > best[2]):
                    best = size
        elif kind == b"meta" and best is None:  # a FullBox: its children after 4 bytes
            iprp = _child(data, s + 4, e, b"iprp")
            ipco = _child(data, *iprp, b"ipco") if iprp else None
            for k, ps, pe in _boxes(data, *ipco) if ipco else ():
                if k == b"ispe" and ps + 12 <= pe:
                    w = int.from_bytes(data[ps + 4 : ps + 8], "big")
                    h = int.from_bytes(data[ps + 8 : ps + 12], "big")
                    if best is None or w * h > best[0] * best[1]:
                        best = (w, h, 1)
    return best


# --- Matroska/WebM headers, read in Python -------------------------------------------------

_EBML_MASTERS = {
    0x18538067,  # Segment
    0x1549A966,  # Info
    0x1654AE6B,  # Tracks
    0xE0,  # Video (inside a TrackEntry)
}


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    """(value, length) of the EBML variable-size integer at `pos`; value -1 for "unknown"."""
    first = data[pos]
    length = 9 - first.bit_length() if first else 9
    if length > 8 or pos + length > len(data):
        raise MediaError("corrupt Matroska header")
    value = int.from_bytes(data[pos : pos + length], "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (-1 if value == (1 << (7 * length)) - 1 else value), length


def _ebml(data: bytes, start: int, end: int, out: dict, depth: int = 0) -> None:
    """Collect the header elements a size needs into `out` (the segment's duration and
    timecode scale; the first video track's pixel size and default duration under
    out["track"]); stops at the first Cluster (the frames)."""
    if depth > 4:  # Segment > Tracks > TrackEntry > Video: deeper is not a header
        return
    pos = start
    while pos < end:
        eid, n = _vint(data, pos, keep_marker=True)
        size, m = _vint(data, pos + n, keep_marker=False)
        body = pos + n + m
        stop = end if size < 0 else min(end, body + size)
        if eid == 0x1F43B675:  # Cluster: the header is over
            out["done"] = True
            return
        if eid == 0xAE:  # TrackEntry: the first video track (TrackType 1) decides
            track: dict = {}
            _ebml(data, body, stop, track, depth + 1)
            if track.get(0x83) == 1 and "track" not in out:
                out["track"] = track
        elif eid in _EBML_MASTERS:
            _ebml(data, body, stop, out, depth + 1)
        elif eid in (0xB0, 0xBA, 0x83, 0x23E383, 0x2AD7B1) and size > 0:
            out.setdefault(eid, int.from_bytes(data[body:stop], "big"))
        elif eid == 0x4489 and size in (4, 8):  # Duration: a float, in timecode units
            out.setdefault(eid, struct.unpack(">f" if size == 4 else ">d", data[body:stop])[0])
        if out.get("done"):
            return
        pos = stop


def matroska_header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, frames) of a Matroska/WebM file from its EBML header alone (no FFmpeg,
    nothing decoded); frames 0 when the header does not state a frame duration. None when
    the header does not give the size (FFmpeg's open then tells)."""
    out: dict = {}
    try:
        _ebml(data, 0, len(data), out)
    except (MediaError, struct.error):
        return None
    track = out.get("track", {})
    if 0xB0 not in track or 0xBA not in track:
        return None
    frames = 0
    duration, frame_ns = out.get(0x4489), track.get(0x23E383)
    if duration and frame_ns:
        frames = int(duration * out.get(0x2AD7B1, 1_000_000) / frame_ns) + 1
    return track[0xB0], track[0xBA], frames
