"""The format registry: every format gifsent recognises, one `Format` entry each.

An entry says everything the rest of the runtime needs to know about a format:

* `name` -- what the `format` column holds; `suffixes` -- the file names a folder scan takes
  even when their content is unreadable (so a broken file gets an error row instead of
  vanishing); `kind` -- "image" or "video" (how the HTML report shows it);
* `sniff` -- recognises the content from its first bytes (never from the file name);
* `peak_bytes` -- the header probe: the decode's peak memory from the header alone, nothing
  decoded (the memory budget reserves it before a worker decodes; `budget.py`);
* `open` -- the reader (`decoders.Reader`: the timeline, then the frames sampling needs), or
  None for a format that is recognised but refused ("unsupported format heif: ...");
* `clamp` -- whether the timeline gets GIF's delay clamp (`SamplingSpec.min_delay_ms`: a
  delay under it is shown for `clamped_delay_ms`, as browsers do for animated images). Never
  for video: a 60 fps video's 16.7 ms frames are real;
* `sample` / `decode` -- a format's own sampler and full decoder, when it has better ones
  than the generic path over `open` (GIF: gifio composites only what sampling needs).

Adding a format is one entry here (plus its decoder in `decoders.py` when no existing one
fits) and its tests. `media.py` (sampling and decoding), `inputs.py` (what a folder scan or
stdin takes), `budget.py` (decode memory) and `views/report.py` (image or video) read this
table and nothing else.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.reading import decoders, gifio
from gifsent_infer.reading.decoders import MediaError, Reader
from gifsent_infer.reading.gifio import ReaderLimits

__all__ = [
    "FORMATS",
    "MEDIA_SUFFIXES",
    "REGISTRY",
    "SNIFF_BYTES",
    "VIDEO_FORMATS",
    "Format",
    "by_name",
    "by_suffix",
    "describe_non_gif",
    "format_of",
    "sniff_format",
    "unknown_peak_bytes",
]

SNIFF_BYTES = 64  # enough of a file's head for every sniff (APNG vs PNG: see _png_is_animated)

PeakBytes = Callable[[bytes, SamplingSpec, ReaderLimits], int]


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    kind: str  # "image" or "video"
    sniff: Callable[[bytes], bool]
    clamp: bool
    peak_bytes: PeakBytes
    open: Callable[[bytes, ReaderLimits], Reader] | None
    sample: Callable | None = (
        None  # (data, spec, *, limits, offset, crop_shift, flip) -> SampledGif
    )
    decode: Callable | None = None  # (data, *, matte, limits, min_delay_ms, clamped_delay_ms)
    refusal: str = ""  # why a recognised format is not read (when `open` is None)

    def reader(self, data: bytes, limits: ReaderLimits) -> Reader:
        """The file opened for sampling; MediaError "unsupported format NAME" when refused."""
        if self.open is None:
            raise MediaError(f"unsupported format {self.name}: {self.refusal}")
        return self.open(data, limits)


# --- sniffing -----------------------------------------------------------------------------------

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MOV_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
# ISO-BMFF brands (the `ftyp` box): AVIF (AV1 images, ISO/IEC 23000-22 + AV1-ISOBMFF) and
# HEIF (HEVC images, ISO/IEC 23008-12). mif1/msf1/miaf are generic image brands: the
# compatible brands then say which codec. Anything else with an ftyp box is an MP4 video.
_AVIF_BRANDS = {b"avif", b"avis", b"avio"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_GENERIC_IMAGE_BRANDS = {b"mif1", b"msf1", b"mif2", b"miaf"}


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


def _bmff_brand(head: bytes) -> str | None:
    """ "avif", "heif", "mov" or "mp4" for a file starting with an ISO-BMFF ftyp box; None otherwise."""
    if head[4:8] != b"ftyp":
        return None
    major = head[8:12]
    if major == b"qt  ":
        return "mov"
    if major in _AVIF_BRANDS:
        return "avif"
    if major in _HEIF_BRANDS:
        return "heif"
    if major in _GENERIC_IMAGE_BRANDS:
        size = int.from_bytes(head[:4], "big")
        end = min(len(head), max(size, 16))
        compatible = {head[i : i + 4] for i in range(16, end - 3, 4)}
        return "avif" if compatible & _AVIF_BRANDS else "heif"
    return "mp4"


def _is_mov(head: bytes) -> bool:
    if _bmff_brand(head) == "mov":
        return True
    # old QuickTime files start with a movie atom, no ftyp
    return head[4:8] in _MOV_ATOMS and int.from_bytes(head[:4], "big") >= 8


def _is_ebml(head: bytes) -> bool:
    return head.startswith(b"\x1aE\xdf\xa3")  # EBML: the DocType says webm or matroska


# --- header probes: a decode's peak memory, from the header alone ------------------------------


def unknown_peak_bytes(data: bytes) -> int:
    """What an input in no readable format may hold (it becomes an error row)."""
    return 4 * len(data) + (1 << 20)


def _gif_peak(data: bytes, spec: SamplingSpec, limits: ReaderLimits) -> int:
    """The logical screen's size times what gifio's compositor keeps per pixel (packed uint32
    canvas, one packed copy per sampled frame, a saved region, index and colour temporaries)."""
    if len(data) < 10:
        return unknown_peak_bytes(data)
    width, height = struct.unpack("<HH", data[6:10])
    pixels = min(max(width * height, 1), limits.max_canvas_pixels)
    # frames kept: one packed copy per distinct sampled frame, never more than the reader's
    # decoded-pixel limit lets exist
    kept = min(spec.num_frames, max(1, limits.max_decoded_pixels // pixels))
    per_pixel = 4 * kept + 32  # + canvas, saved region, index/colour/mask temporaries
    return 2 * len(data) + pixels * per_pixel


def _peak(
    width: int, height: int, frames: int, spec: SamplingSpec, limits: ReaderLimits
) -> tuple[int, int]:
    """(pixels per frame, frames kept) for a header's size and frame count (0: unknown)."""
    pixels = min(max(width * height, 1), limits.max_canvas_pixels)
    kept = min(spec.num_frames, max(1, limits.max_decoded_pixels // pixels))
    return pixels, min(kept, frames) if frames > 0 else kept


def _image_peak(open_: Callable[[bytes, ReaderLimits], Reader]) -> PeakBytes:
    """Pillow or FFmpeg's APNG decoder: the decoder's RGBA canvas, an RGBA copy and our RGB
    frame per kept frame, plus temporaries. The header is the file's chunk records, read
    without decoding (the reader's own first step)."""

    def peak(data: bytes, spec: SamplingSpec, limits: ReaderLimits) -> int:
        info = open_(data, limits).info  # chunk records only: no pixel is decoded here
        pixels, kept = _peak(info.width, info.height, info.n_frames, spec, limits)
        return 2 * len(data) + pixels * (7 * kept + 16)

    return peak


def _video_peak(name: str, demuxer: str, choose: Callable = decoders.first_stream) -> PeakBytes:
    """FFmpeg's decoder: its reference and threading frames (YUV, ~1.5 bytes a pixel, up to
    ~20 of them in H.264/HEVC/AV1), the RGB conversion and our RGB copy of each kept frame;
    the demuxed packets (the file, and an object per packet). From the container's header
    (ISO-BMFF: its tkhd and stsz boxes; Matroska: its Tracks and Info; both read in Python,
    FFmpeg's open only where they do not say): a long, small, low-bitrate video is sized by
    its pixels, not by its file."""

    def peak(data: bytes, spec: SamplingSpec, limits: ReaderLimits) -> int:
        parse = decoders.bmff_header if demuxer == "mov" else decoders.matroska_header
        header = parse(data)
        if header is None:
            header = decoders.video_header(data, name, demuxer, choose=choose)
        width, height, frames = header
        frames = min(frames, limits.max_frames + 1)  # more is refused before decoding
        pixels, kept = _peak(width, height, frames, spec, limits)
        return 2 * len(data) + 256 * frames + pixels * (3 * kept + 40)

    return peak


# --- readers --------------------------------------------------------------------------------------


def _video(name: str, demuxer: str) -> Callable[[bytes, ReaderLimits], Reader]:
    return lambda data, limits: decoders.video_reader(data, name, demuxer, limits)


def _image_format(
    name: str,
    suffixes: tuple[str, ...],
    sniff: Callable[[bytes], bool],
    open_: Callable[[bytes, ReaderLimits], Reader],
) -> Format:
    """An animated image format read by one of `decoders`' image readers (delays clamped)."""
    return Format(
        name, suffixes, "image", sniff, clamp=True, peak_bytes=_image_peak(open_), open=open_
    )


def _video_format(
    name: str, suffixes: tuple[str, ...], sniff: Callable[[bytes], bool], demuxer: str
) -> Format:
    """A video container read by FFmpeg's `demuxer` (delays not clamped)."""
    return Format(
        name,
        suffixes,
        "video",
        sniff,
        clamp=False,
        peak_bytes=_video_peak(name, demuxer),
        open=_video(name, demuxer),
    )


REGISTRY: tuple[Format, ...] = (
    Format(
        "gif",
        (".gif",),
        "image",
        gifio.is_gif,
        clamp=True,
        peak_bytes=_gif_peak,
        open=decoders.gif_reader,
        sample=gifio.read_gif,
        decode=gifio.decode_gif,
    ),
    _image_format(
        "webp", (".webp",), lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", decoders.webp_reader
    ),
    _image_format(
        "png",
        (".png",),
        lambda h: h.startswith(_PNG_MAGIC) and not _png_is_animated(h),
        decoders.png_reader,
    ),
    _image_format(
        "apng",
        (".apng",),
        lambda h: h.startswith(_PNG_MAGIC) and _png_is_animated(h),
        decoders.png_reader,
    ),
    Format(
        "avif",
        (".avif", ".avifs"),
        "image",
        lambda h: _bmff_brand(h) == "avif",
        clamp=True,  # an animated image, like WebP and APNG
        peak_bytes=_video_peak("avif", "mov", decoders.longest_stream),
        open=decoders.avif_reader,
    ),
    Format(
        "heif",
        (".heic", ".heif", ".heics", ".heifs", ".hif"),
        "image",
        lambda h: _bmff_brand(h) == "heif",
        clamp=True,
        peak_bytes=lambda data, spec, limits: unknown_peak_bytes(data),
        open=None,
        refusal=(
            "HEIF/HEIC images are recognised but not read (no HEIF decoder here); "
            "convert them to PNG, WebP, AVIF or MP4"
        ),
    ),
    _video_format("mp4", (".mp4", ".m4v"), lambda h: _bmff_brand(h) == "mp4", "mov"),
    _video_format("mov", (".mov",), _is_mov, "mov"),
    _video_format("webm", (".webm",), lambda h: _is_ebml(h) and b"webm" in h[:64], "matroska"),
    _video_format("mkv", (".mkv",), lambda h: _is_ebml(h) and b"webm" not in h[:64], "matroska"),
)

# What the `format` column can hold: the formats that are read.
FORMATS = tuple(f.name for f in REGISTRY if f.open is not None)
VIDEO_FORMATS = tuple(f.name for f in REGISTRY if f.kind == "video")
# Names a folder scan takes even when their content is unreadable (content decides for
# every other name): every recognised format's, refused ones included (they get an error
# row that says "unsupported format ...", not silence).
MEDIA_SUFFIXES = tuple(s for f in REGISTRY for s in f.suffixes)

_BY_NAME = {f.name: f for f in REGISTRY}
_BY_SUFFIX = {s: f for f in REGISTRY for s in f.suffixes}


def format_of(head: bytes) -> Format | None:
    """The registry entry for a file's first bytes (SNIFF_BYTES suffice; APNG vs PNG needs the
    chunks before the image data, so pass the whole file to be sure), or None."""
    head = bytes(head[:4096])
    return next((f for f in REGISTRY if f.sniff(head)), None)


def sniff_format(head: bytes) -> str | None:
    """The name of a file's format from its first bytes (see format_of), or None when it is
    in no recognised format. Refused formats (heif) are recognised: reading them says so."""
    f = format_of(head)
    return f.name if f is not None else None


def by_name(name: str) -> Format:
    return _BY_NAME[name]


def by_suffix(suffix: str) -> Format | None:
    """The format a file name's suffix (".mp4", case-insensitive) usually holds, or None."""
    return _BY_SUFFIX.get(suffix.lower())


def describe_non_gif(head: bytes) -> str:
    """A row's reason for content in no recognised format, naming what it looks like."""
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
