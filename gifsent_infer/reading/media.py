"""Every animated format through one reader contract: GIF, WebP, APNG/PNG, AVIF, MP4/MOV, WebM/MKV -> sampled frames.

The format is recognised from the content (never the file name) by the format registry
(`formats.py`: one entry per format, with its reader, header probe and whether its timeline
gets the delay clamp), and each format is turned into the same thing a GIF is: a *display
timeline* (frames, each shown for a duration) that `gifio.sample_indices` samples by time,
then the same resize-shorter-side + centre crop.

* GIF: `gifio.read_gif`, unchanged (same pixels, same numbers as before this module).
* WebP, PNG/APNG, AVIF: animated images. Their durations come from the file's own frame
  records and get the same delay clamp as GIF (browsers clamp all animated images alike).
  A still image is one frame shown for `clamped_delay_ms`, exactly like a one-frame GIF
  without a delay.
* MP4/MOV and WebM/MKV: video, timed by the packets' presentation times; no delay clamp
  applies (a 60 fps video's 16.7 ms frames are real).
* HEIF/HEIC: recognised by its `ftyp` brand and refused ("unsupported format heif").
  (`decoders.py` says how each is decoded.)

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

from dataclasses import replace

import numpy as np

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.reading import gifio
from gifsent_infer.reading.decoders import MediaError, MediaInfo
from gifsent_infer.reading.formats import (
    FORMATS,
    MEDIA_SUFFIXES,
    VIDEO_FORMATS,
    Format,
    describe_non_gif,
    format_of,
    sniff_format,
)
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
    "VIDEO_FORMATS",
    "MediaError",
    "MediaInfo",
    "decode_for_spec",
    "decode_media",
    "probe_media",
    "read_media",
    "sniff_format",
]


def _data(source: GifSource, limits: ReaderLimits) -> bytes:
    try:
        return gifio.read_source(source, limits)
    except GifError as e:
        raise MediaError(str(e).replace("no GIF data", "no data")) from None


def _format(data: bytes) -> Format:
    """The registry entry for `data`; MediaError naming what it looks like when there is none."""
    fmt = format_of(data)
    if fmt is None:
        raise MediaError(describe_non_gif(data[:16]))
    return fmt


def _clamped(info: MediaInfo, clamp: bool, delays: tuple[int, int]) -> np.ndarray:
    """The timeline as shown: GIF's delay clamp (a delay under `min_delay_ms` is shown for
    `clamped_delay_ms`) for the formats whose registry entry says so, never for video."""
    d = info.durations_ms
    if not clamp:
        return d
    min_delay_ms, clamped_delay_ms = delays
    d = d.copy()
    d[d < min_delay_ms] = clamped_delay_ms
    return d


def probe_media(source: GifSource, *, limits: ReaderLimits = DEFAULT_LIMITS) -> MediaInfo:
    """Format, size and frame durations of a file, without decoding pixels (GIF included).
    Durations are as stored (before the delay clamp)."""
    data = _data(source, limits)
    r = _format(data).reader(data, limits)
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
    fmt = _format(data)
    if fmt.sample is not None:  # the format's own sampler (GIF)
        return fmt.sample(
            data, spec, limits=limits, offset=offset, crop_shift=crop_shift, flip=flip
        )
    r = fmt.reader(data, limits)
    try:
        durations = _clamped(r.info, fmt.clamp, (spec.min_delay_ms, spec.clamped_delay_ms))
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
    fmt = _format(data)
    if fmt.decode is not None:  # the format's own decoder (GIF)
        return fmt.decode(
            data,
            matte=m,
            limits=limits,
            min_delay_ms=min_delay_ms,
            clamped_delay_ms=clamped_delay_ms,
        )
    r = fmt.reader(data, limits)
    try:
        durations = _clamped(r.info, fmt.clamp, (min_delay_ms, clamped_delay_ms))
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
