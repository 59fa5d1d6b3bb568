"""The GIF reader: exact compositing and timing on GIFs built here, sampling arithmetic,
resize/crop, resource limits and bad input (ffmpeg comparison: test_gifio_reference.py)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.reading import gifio
from gifsent_infer.reading.gifio import (
    DEFAULT_LIMITS,
    DecodedGif,
    GifError,
    ReaderLimits,
    decode_for_spec,
    decode_gif,
    is_gif,
    read_gif,
    sample_decoded,
    sample_indices,
)

# ------------------------------------------------------------------ a tiny GIF encoder
# Written for the tests (independent of Pillow's writer) so every field is under control.


def lzw_encode(indices: np.ndarray, min_code_size: int = 8) -> bytes:
    """A valid GIF LZW stream of literal codes: a clear code before every run short enough
    that the code width never grows (min_code_size + 1 bits), so any decoder reads it."""
    clear, eoi = 1 << min_code_size, (1 << min_code_size) + 1
    width = min_code_size + 1
    run = (1 << min_code_size) - 2  # table entries added per run stay below the width step
    codes: list[int] = []
    flat = [int(v) for v in np.asarray(indices, dtype=np.uint8).reshape(-1)]
    for start in range(0, len(flat), run):
        codes.append(clear)
        codes.extend(flat[start : start + run])
    codes.append(eoi)
    acc = nbits = 0
    out = bytearray()
    for code in codes:
        acc |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def sub_blocks(payload: bytes) -> bytes:
    chunks = [payload[i : i + 255] for i in range(0, len(payload), 255)]
    return b"".join(bytes([len(c)]) + c for c in chunks) + b"\x00"


def palette_bytes(colours) -> tuple[bytes, int]:
    """Raw colour table padded to a power of two (>= 2 entries), and its size field."""
    n = max(2, len(colours))
    size_field = max(0, (n - 1).bit_length() - 1)
    padded = list(colours) + [(0, 0, 0)] * ((2 << size_field) - len(colours))
    return bytes(c for rgb in padded for c in rgb), size_field


def interlace_rows(a: np.ndarray) -> np.ndarray:
    order = [*range(0, len(a), 8), *range(4, len(a), 8), *range(2, len(a), 4), *range(1, len(a), 2)]
    return a[order]


def frame_bytes(
    indices,
    *,
    left=0,
    top=0,
    delay_cs=10,
    disposal=0,
    transparency=None,
    palette=None,
    interlace=False,
    gce=True,
    min_code_size=8,
    size=None,
) -> bytes:
    a = np.asarray(indices, dtype=np.uint8)
    h, w = a.shape if size is None else size
    out = b""
    if gce:
        flags = (disposal << 2) | (1 if transparency is not None else 0)
        out += struct.pack("<BBBBHBB", 0x21, 0xF9, 4, flags, delay_cs, transparency or 0, 0)
    packed = 0x40 if interlace else 0
    table = b""
    if palette is not None:
        table, size_field = palette_bytes(palette)
        packed |= 0x80 | size_field
    out += struct.pack("<BHHHHB", 0x2C, left, top, w, h, packed) + table
    pixels = interlace_rows(a) if interlace else a
    return out + bytes([min_code_size]) + sub_blocks(lzw_encode(pixels, min_code_size))


def make_gif(
    width, height, frames, *, palette=None, trailer=True, version=b"GIF89a", bg=0
) -> bytes:
    """frames: list of dicts of frame_bytes keyword arguments (indices required)."""
    packed, table = 0, b""
    if palette is not None:
        table, size_field = palette_bytes(palette)
        packed = 0x80 | 0x70 | size_field
    head = version + struct.pack("<HHBBB", width, height, packed, bg, 0) + table
    body = b"".join(frame_bytes(**f) for f in frames)
    return head + body + (b";" if trailer else b"")


RED, GREEN, BLUE, BLACK, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0), (255, 255, 255)
YELLOW, GREY = (255, 255, 0), (128, 128, 128)
PAL = [RED, GREEN, BLUE, BLACK, WHITE, YELLOW, GREY]  # index: 0 red, 1 green, 2 blue, ...
MATTE = (10, 20, 30)


def full(h, w, index):
    return np.full((h, w), index, dtype=np.uint8)


@pytest.fixture(params=[True, False], ids=["indexed-fast-path", "general"])
def both_paths(request, monkeypatch):
    """Run a test through the indexed fast path and through the general compositor."""
    monkeypatch.setattr(gifio, "_INDEXED_FAST_PATH", request.param)
    return request.param


def colours_of(frame: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in c) for c in frame.reshape(-1, 3)}


# ---------------------------------------------------------------------- decoding


def test_is_gif():
    assert is_gif(b"GIF89a....") and is_gif(b"GIF87a")
    assert not is_gif(b"GIF88a") and not is_gif(b"\x89PNG\r\n") and not is_gif(b"")


def test_known_colours_and_delays(both_paths):
    data = make_gif(
        6, 4,
        [dict(indices=full(4, 6, 0), delay_cs=10), dict(indices=full(4, 6, 1), delay_cs=50),
         dict(indices=full(4, 6, 2), delay_cs=0), dict(indices=full(4, 6, 5), delay_cs=1),
         dict(indices=full(4, 6, 6), delay_cs=2)],
        palette=PAL,
    )  # fmt: skip
    d = decode_gif(data)
    assert d.frames.shape == (5, 4, 6, 3) and d.frames.dtype == np.uint8
    assert (d.width, d.height) == (6, 4)
    assert [colours_of(f) for f in d.frames] == [{RED}, {GREEN}, {BLUE}, {YELLOW}, {GREY}]
    # 0 and 10 ms are under the 20 ms minimum: browsers show them for 100 ms; 20 ms stays.
    assert d.durations_ms.tolist() == [100, 500, 100, 100, 20]
    assert d.durations_ms.dtype == np.int64
    assert d.duration_s == pytest.approx(0.82)
    custom = decode_gif(data, min_delay_ms=0, clamped_delay_ms=70)
    assert custom.durations_ms.tolist() == [100, 500, 0, 10, 20]
    assert decode_gif(data, min_delay_ms=60, clamped_delay_ms=70).durations_ms.tolist() == [
        100, 500, 70, 70, 70,
    ]  # fmt: skip


def test_frame_without_gce_and_gif87a():
    data = make_gif(2, 2, [dict(indices=full(2, 2, 2), gce=False)], palette=PAL, version=b"GIF87a")
    d = decode_gif(data)
    assert colours_of(d.frames[0]) == {BLUE} and d.durations_ms.tolist() == [100]


def test_partial_frame_dispose_none(both_paths):
    small = full(2, 3, 0)  # red 3x2 at (1, 1)
    data = make_gif(
        5, 4,
        [dict(indices=full(4, 5, 2), disposal=1), dict(indices=small, left=1, top=1, disposal=1),
         dict(indices=full(1, 1, 1), left=4, top=3)],
        palette=PAL,
    )  # fmt: skip
    d = decode_gif(data, matte=MATTE)
    expect = np.empty((4, 5, 3), np.uint8)
    expect[:] = BLUE
    expect[1:3, 1:4] = RED
    np.testing.assert_array_equal(d.frames[1], expect)
    expect[3, 4] = GREEN
    np.testing.assert_array_equal(d.frames[2], expect)  # red kept: disposal "none"


def test_dispose_background_clears_to_matte():
    data = make_gif(
        5, 4,
        [dict(indices=full(4, 5, 2), disposal=1),
         dict(indices=full(2, 3, 0), left=1, top=1, disposal=2),
         dict(indices=full(1, 1, 1), left=0, top=0)],
        palette=PAL, bg=1,  # the background colour index (green) is ignored, as browsers do
    )  # fmt: skip
    d = decode_gif(data, matte=MATTE)
    assert colours_of(d.frames[1][1:3, 1:4]) == {RED}
    expect = np.empty((4, 5, 3), np.uint8)
    expect[:] = BLUE
    expect[1:3, 1:4] = MATTE  # cleared to transparent, shown over the matte
    expect[0, 0] = GREEN
    np.testing.assert_array_equal(d.frames[2], expect)


@pytest.mark.parametrize("method", [3, 4])  # browsers read 4 as "restore previous" too
def test_dispose_previous_restores(method):
    data = make_gif(
        5, 4,
        [dict(indices=full(4, 5, 2), disposal=1),
         dict(indices=full(2, 3, 0), left=1, top=1, disposal=method),
         dict(indices=full(1, 1, 1), left=0, top=0, disposal=1)],
        palette=PAL,
    )  # fmt: skip
    d = decode_gif(data, matte=MATTE)
    expect = np.empty((4, 5, 3), np.uint8)
    expect[:] = BLUE
    expect[0, 0] = GREEN
    np.testing.assert_array_equal(d.frames[2], expect)


def test_dispose_previous_on_first_frame_restores_transparent():
    data = make_gif(
        4, 2,
        [dict(indices=full(2, 2, 0), disposal=3), dict(indices=full(1, 1, 1), left=3, top=1)],
        palette=PAL,
    )  # fmt: skip
    d = decode_gif(data, matte=MATTE)
    assert colours_of(d.frames[0][:, :2]) == {RED} and colours_of(d.frames[0][:, 2:]) == {MATTE}
    expect = np.empty((2, 4, 3), np.uint8)
    expect[:] = MATTE
    expect[1, 3] = GREEN
    np.testing.assert_array_equal(d.frames[1], expect)


@pytest.mark.parametrize("method", [0, 5, 6, 7])  # unspecified and reserved values keep
def test_other_disposals_keep(method):
    data = make_gif(
        3, 1,
        [dict(indices=full(1, 3, 0), disposal=method), dict(indices=full(1, 1, 1), left=2)],
        palette=PAL,
    )  # fmt: skip
    d = decode_gif(data)
    assert [tuple(p) for p in d.frames[1][0]] == [RED, RED, GREEN]


def test_transparency_first_and_later_frames(both_paths):
    first = np.array([[0, 6, 6], [6, 1, 6]], np.uint8)  # 6 (grey) is transparent in frame 0
    later = np.array([[2, 2, 3], [3, 3, 3]], np.uint8)  # 3 (black) is transparent in frame 1
    data = make_gif(
        3, 2,
        [dict(indices=first, transparency=6, disposal=1), dict(indices=later, transparency=3)],
        palette=PAL,
    )  # fmt: skip
    d = decode_gif(data, matte=MATTE)
    np.testing.assert_array_equal(
        d.frames[0], np.array([[RED, MATTE, MATTE], [MATTE, GREEN, MATTE]], np.uint8)
    )
    np.testing.assert_array_equal(
        d.frames[1], np.array([[BLUE, BLUE, MATTE], [MATTE, GREEN, MATTE]], np.uint8)
    )
    white = decode_gif(data)  # default matte: white
    assert tuple(white.frames[0][0, 1]) == WHITE


def test_transparent_index_only_counts_when_flagged(both_paths):
    """The GCE's index byte is ignored unless the transparency flag is set."""
    data = make_gif(2, 1, [dict(indices=np.array([[6, 0]]), transparency=None)], palette=PAL)
    d = decode_gif(data, matte=MATTE)
    assert [tuple(p) for p in d.frames[0][0]] == [GREY, RED]


def test_local_palettes(both_paths):
    local = [YELLOW, GREY]
    data = make_gif(
        2, 2,
        [dict(indices=full(2, 2, 0), disposal=1),
         dict(indices=np.array([[0, 1]], np.uint8), top=1, palette=local),
         dict(indices=np.array([[1]], np.uint8), left=1, top=0)],
        palette=PAL,
    )  # fmt: skip
    d = decode_gif(data)
    np.testing.assert_array_equal(d.frames[1], np.array([[RED, RED], [YELLOW, GREY]], np.uint8))
    # frame 2 has no local table again: index 1 is the global palette's green
    np.testing.assert_array_equal(d.frames[2], np.array([[RED, GREEN], [YELLOW, GREY]], np.uint8))


def test_interlaced_frame(both_paths):
    rows = np.arange(11, dtype=np.uint8)[:, None].repeat(3, axis=1)  # row r has index r
    grey = [(i * 15, i * 15, i * 15) for i in range(16)]
    d = decode_gif(make_gif(3, 11, [dict(indices=rows, interlace=True)], palette=grey))
    np.testing.assert_array_equal(d.frames[0][:, 0, 0], np.arange(11) * 15)


def test_index_past_palette_is_black_and_no_palette_is_grey(both_paths):
    data = make_gif(2, 1, [dict(indices=np.array([[1, 7]], np.uint8))], palette=[RED, GREEN])
    assert [tuple(p) for p in decode_gif(data).frames[0][0]] == [GREEN, BLACK]
    data = make_gif(2, 1, [dict(indices=np.array([[0, 200]], np.uint8))])  # no table at all
    assert [tuple(p) for p in decode_gif(data).frames[0][0]] == [(0, 0, 0), (200, 200, 200)]


def test_small_lzw_code_size(both_paths):
    idx = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], np.uint8)
    d = decode_gif(make_gif(4, 2, [dict(indices=idx, min_code_size=2)], palette=PAL[:4]))
    np.testing.assert_array_equal(d.frames[0], np.asarray(PAL, np.uint8)[idx])


def test_frame_beyond_canvas_is_clipped(both_paths):
    data = make_gif(
        3, 3,
        [dict(indices=full(3, 3, 2)), dict(indices=full(4, 4, 0), left=1, top=1)],
        palette=PAL,
    )  # fmt: skip
    d = decode_gif(data)
    assert d.frames.shape == (2, 3, 3, 3)
    assert colours_of(d.frames[1][1:, 1:]) == {RED} and tuple(d.frames[1][0, 0]) == BLUE


def test_short_image_data_leaves_pixels_undrawn(both_paths):
    """LZW data that ends before the last pixel: the rest of the frame is not drawn."""
    base = full(4, 5, 2)
    red = full(4, 5, 0)
    # Encode only the first 2 rows of frame 1 but declare 4 rows.
    data = make_gif(
        5, 4, [dict(indices=base, disposal=1), dict(indices=red[:2], size=(4, 5))], palette=PAL
    )
    d = decode_gif(data)
    assert colours_of(d.frames[1][:2]) == {RED} and colours_of(d.frames[1][2:]) == {BLUE}


def test_missing_trailer_is_accepted():
    frames = [dict(indices=full(2, 2, 0)), dict(indices=full(2, 2, 1))]
    a = decode_gif(make_gif(2, 2, frames, palette=PAL))
    b = decode_gif(make_gif(2, 2, frames, palette=PAL, trailer=False))
    np.testing.assert_array_equal(a.frames, b.frames)


def test_trailing_garbage_after_a_frame_ends_the_stream():
    data = make_gif(2, 2, [dict(indices=full(2, 2, 0))], palette=PAL, trailer=False)
    assert len(decode_gif(data + b"GIF89a rest of another file").frames) == 1
    assert len(decode_gif(data + b";" + b"\xff" * 10).frames) == 1


def test_sources(tmp_path):
    data = make_gif(3, 2, [dict(indices=full(2, 3, 1))], palette=PAL)
    path = tmp_path / "a.gif"
    path.write_bytes(data)
    expect = decode_gif(data).frames
    with open(path, "rb") as f:
        from_file = decode_gif(f).frames
    for src in (str(path), path, bytearray(data), memoryview(data), io.BytesIO(data)):
        np.testing.assert_array_equal(decode_gif(src).frames, expect)
    np.testing.assert_array_equal(from_file, expect)
    with pytest.raises(TypeError):
        decode_gif(12345)
    with pytest.raises(TypeError, match="binary"):
        decode_gif(io.StringIO("GIF89a"))
    with pytest.raises(FileNotFoundError):
        decode_gif(tmp_path / "missing.gif")


# ------------------------------------------------------------------ bad input -> GifError

GOOD = make_gif(4, 3, [dict(indices=full(3, 4, 0)), dict(indices=full(3, 4, 1))], palette=PAL)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"hello, this is a text file\n", "not a GIF"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a GIF"),
        (b"GIF89a", "truncated"),
        (b"GIF89a\x04\x00\x03\x00", "truncated"),
        (GOOD[:13], "truncated"),  # header only, no frame
        (GOOD[:20], "truncated"),  # inside the global colour table
        (make_gif(4, 3, [], palette=PAL), "no complete frame"),  # trailer but no frame
        (make_gif(0, 3, [dict(indices=full(3, 4, 0))], palette=PAL), "zero width"),
        (make_gif(4, 0, [dict(indices=full(3, 4, 0))], palette=PAL), "zero width or height"),
        (GOOD[:13] + bytes(24) + b"\x99", "unknown block"),
    ],
)
def test_bad_input_raises_gif_error(data, match):
    with pytest.raises(GifError, match=match):
        decode_gif(data)
    assert issubclass(GifError, ValueError)


def test_truncated_anywhere_raises_or_keeps_whole_frames():
    """Cut the file at every byte: a cut inside a block raises GifError("truncated ..."),
    a cut exactly between blocks after a complete frame reads the complete frames."""
    ends = {len(GOOD) - 1}  # without the trailer
    first_end = len(make_gif(4, 3, [dict(indices=full(3, 4, 0))], palette=PAL)) - 1
    ends.add(first_end)
    for cut in range(len(GOOD) - 1):
        data = GOOD[:cut]
        if cut in ends:
            assert len(decode_gif(data).frames) == (1 if cut == first_end else 2)
            continue
        with pytest.raises(GifError) as err:
            decode_gif(data)
        assert (
            "truncated" in str(err.value)
            or "empty" in str(err.value)
            or "not a GIF" in str(err.value)
        ), (cut, err.value)


def test_dangling_gce_is_truncation():
    data = GOOD[:-1] + struct.pack("<BBBBHBB", 0x21, 0xF9, 4, 0, 10, 0, 0)
    with pytest.raises(GifError, match="truncated"):
        decode_gif(data)


def test_corrupt_lzw_raises():
    head = make_gif(4, 3, [], palette=PAL, trailer=False)
    bad = (
        head
        + struct.pack("<BHHHHB", 0x2C, 0, 0, 4, 3, 0)
        + b"\x02"
        + sub_blocks(b"\xff" * 30)
        + b";"
    )
    with pytest.raises(GifError, match="frame 0"):
        decode_gif(bad)
    with pytest.raises(GifError, match="LZW minimum code size"):
        decode_gif(
            head
            + struct.pack("<BHHHHB", 0x2C, 0, 0, 4, 3, 0)
            + b"\x0e"
            + sub_blocks(b"\x00")
            + b";"
        )


# ------------------------------------------------------------------ resource limits


def test_file_size_limit(tmp_path):
    limits = ReaderLimits(max_file_bytes=len(GOOD) - 1)
    path = tmp_path / "a.gif"
    path.write_bytes(GOOD)
    for src in (GOOD, path, io.BytesIO(GOOD)):
        with pytest.raises(GifError, match="byte limit"):
            decode_gif(src, limits=limits)
    assert len(decode_gif(GOOD, limits=ReaderLimits(max_file_bytes=len(GOOD))).frames) == 2


def test_canvas_and_frame_rect_limits():
    with pytest.raises(GifError, match="canvas 4x3"):
        decode_gif(GOOD, limits=ReaderLimits(max_canvas_pixels=11))
    huge_rect = make_gif(2, 2, [], palette=PAL, trailer=False) + struct.pack(
        "<BHHHHB", 0x2C, 0, 0, 60000, 60000, 0
    )  # the descriptor alone, no data: the limit fires before any data is needed
    with pytest.raises(GifError, match="frame 0 is 60000x60000"):
        decode_gif(huge_rect)


def test_frame_and_decoded_pixel_limits():
    with pytest.raises(GifError, match="more than 1 frames"):
        decode_gif(GOOD, limits=ReaderLimits(max_frames=1))
    with pytest.raises(GifError, match="decoded pixels"):
        decode_gif(GOOD, limits=ReaderLimits(max_decoded_pixels=12 * 2 - 1))
    assert (
        len(decode_gif(GOOD, limits=ReaderLimits(max_frames=2, max_decoded_pixels=24)).frames) == 2
    )


def test_200k_tiny_frames_stop_at_the_frame_limit_quickly():
    one = frame_bytes(full(1, 1, 0), delay_cs=2)
    data = make_gif(1, 1, [], palette=PAL, trailer=False) + one * 200_000 + b";"
    spec = SamplingSpec(segments=2, frames_per_segment=2, fps=10, size=8, crop=8)
    start = time.perf_counter()
    with pytest.raises(GifError, match=f"more than {DEFAULT_LIMITS.max_frames} frames"):
        decode_gif(data)
    with pytest.raises(GifError, match="frame limit"):
        read_gif(data, spec)
    assert time.perf_counter() - start < 2.0  # ~10k block headers parsed, no pixel decoded


def _peak_bytes_while_raising(fn) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(GifError):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("name", "match"),
    [("decompression_bomb.gif", "decompression bomb"), ("zero_width.gif", "zero width")],
)
def test_shared_bombs_fail_without_allocating(edge_gifs, monkeypatch, name, match):
    path = edge_gifs / name
    # Nothing may reach the pixel decoder: the limits fire on the block structure.
    monkeypatch.setattr(gifio, "_decode_into", lambda *a, **k: pytest.fail("decoder was called"))
    with pytest.raises(GifError, match=match):
        decode_gif(path)
    spec = SamplingSpec(segments=2, frames_per_segment=2, fps=10, size=8, crop=8)
    peak = _peak_bytes_while_raising(lambda: read_gif(path, spec))
    assert peak < 256 * 1024, peak  # the bomb declares up to 65535x1321 RGB frames (~260 MB)


def test_generated_canvas_bomb_fails_without_allocating(monkeypatch):
    bomb = (
        b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0) + frame_bytes(full(1, 1, 0)) + b";"
    )
    monkeypatch.setattr(gifio, "_decode_into", lambda *a, **k: pytest.fail("decoder was called"))
    peak = _peak_bytes_while_raising(lambda: decode_gif(bomb))
    assert peak < 64 * 1024, peak  # 65535^2 RGB would be 12.9 GB
    with pytest.raises(GifError, match="canvas 65535x65535"):
        decode_gif(bomb)


# ------------------------------------------------------------------ sampling arithmetic


def spec_of(S=2, T=3, fps=10.0, size=8, crop=8, **kw) -> SamplingSpec:
    return SamplingSpec(segments=S, frames_per_segment=T, fps=fps, size=size, crop=crop, **kw)


def test_segment_times_on_a_uniform_timeline():
    d = [100] * 10  # 1 s, frame i on [100 i, 100 i + 100) ms
    idx, wrapped = sample_indices(d, spec_of(S=2, T=3, fps=10))
    assert idx.tolist() == [0, 1, 2, 5, 6, 7]  # segments start at 0 and 500 ms
    assert not wrapped.any()
    idx, wrapped = sample_indices(d, spec_of(S=2, T=3, fps=10), offset=0.5)
    assert idx.tolist() == [2, 3, 4, 7, 8, 9]  # starts at 250 and 750 ms
    idx, wrapped = sample_indices(d, spec_of(S=4, T=1))
    assert idx.tolist() == [0, 2, 5, 7]  # 0, 250, 500, 750 ms


def test_times_follow_variable_delays_not_frame_indices():
    d = [100, 700, 100, 100]  # frame 1 shows for 700 ms: 100..800
    idx, _ = sample_indices(d, spec_of(S=1, T=10, fps=10))
    assert idx.tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 2, 3]


def test_loop_padding_wraps_and_counts():
    d = [100, 100, 100]  # 300 ms
    idx, wrapped = sample_indices(d, spec_of(S=2, T=4, fps=10))
    # segment 0 at 0: 0,100,200,300->0 ; segment 1 at 150: 150,250,350->50,450->150
    assert idx.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert wrapped.tolist() == [False, False, False, True, False, False, True, True]


def test_single_frame_gif_repeats():
    idx, wrapped = sample_indices([100], spec_of(S=3, T=4, fps=12.5))
    assert idx.tolist() == [0] * 12
    # 12.5 fps: samples at +0, 80, 160, 240 ms; segment starts 0, 33.3, 66.7 ms
    # (segment start + sample time) >= 100 ms wraps
    assert wrapped.tolist() == [False, False, True, True] + [False, True, True, True] * 2
    data = make_gif(2, 2, [dict(indices=full(2, 2, 1), delay_cs=0)], palette=PAL)
    out = read_gif(data, spec_of(S=3, T=4, fps=12.5, size=2, crop=2))
    assert out.frames.shape == (12, 2, 2, 3) and colours_of(out.frames) == {GREEN}
    assert out.info.n_frames == 1 and out.info.padded_frames == 8
    assert out.info.padding == pytest.approx(8 / 12) and out.info.duration_s == pytest.approx(0.1)


def test_boundaries_are_exact_despite_float_steps():
    # At 30 fps, sample k=3 is at 3 * 33.33.. ms = 100 ms exactly: frame 1 starts there.
    idx, _ = sample_indices([100, 100], spec_of(S=1, T=4, fps=30))
    assert idx.tolist() == [0, 0, 0, 1]


def test_sample_indices_validation():
    with pytest.raises(ValueError, match="offset"):
        sample_indices([100], spec_of(), offset=1.0)
    with pytest.raises(ValueError, match="offset"):
        sample_indices([100], spec_of(), offset=-0.1)
    with pytest.raises(ValueError, match="non-empty"):
        sample_indices([], spec_of())
    idx, _ = sample_indices([0, 0, 0], spec_of(S=3, T=1))  # all-zero delays: equal lengths
    assert idx.tolist() == [0, 1, 2]


# ------------------------------------------------------------------ read_gif: resize and crop


def stripes_gif(width, height, n_frames=4, delay_cs=10) -> bytes:
    """Frame f: column x has palette index (x + f) % 4 (R, G, B, black)."""
    frames = [
        dict(
            indices=np.tile((np.arange(width, dtype=np.uint8) + f) % 4, (height, 1)),
            delay_cs=delay_cs,
        )
        for f in range(n_frames)
    ]
    return make_gif(width, height, frames, palette=PAL[:4])


def reference_resize_crop(frame, spec, shift=(0.0, 0.0)):
    """Resize the whole frame then crop (the definition that read_gif's box resize follows)."""
    h, w = frame.shape[:2]
    if w <= h:
        rw, rh = spec.size, int(h * spec.size / w)  # truncated, as Hara et al.'s extractor
    else:
        rw, rh = int(w * spec.size / h), spec.size
    im = Image.fromarray(frame).resize((rw, rh), Image.Resampling.BILINEAR)
    cx = round((rw - spec.crop) / 2 * (1 + shift[0]))
    cy = round((rh - spec.crop) / 2 * (1 + shift[1]))
    return np.asarray(im)[cy : cy + spec.crop, cx : cx + spec.crop]


@pytest.mark.parametrize(
    ("width", "height", "box"),
    [
        # 112 * 500 / 374 = 149.73 -> 149 (truncated, not rounded to 150); crop x =
        # round((149 - 112) / 2) = round(18.5) = 18 (half to even); source scale 500 / 149.
        (500, 374, (18 * 500 / 149, 0.0, 130 * 500 / 149, 374.0)),
        # Portrait: 112 * 400 / 300 = 149.33 -> 149, crop y = 18, source scale 400 / 149.
        (300, 400, (0.0, 18 * 400 / 149, 300.0, 130 * 400 / 149)),
        # 112 * 250 / 179 = 156.42 -> 156; crop x = 22; round would also give 156 here.
        (250, 179, (22 * 250 / 156, 0.0, 134 * 250 / 156, 179.0)),
        # Square: no slack, the whole frame.
        (64, 64, (0.0, 0.0, 64.0, 64.0)),
    ],
)
def test_crop_box_truncates_the_longer_side_like_the_reference_extractor(width, height, box):
    spec = spec_of(size=112, crop=112)
    got = gifio.crop_box(width, height, spec, (0.0, 0.0))
    assert got == pytest.approx(box, abs=1e-9)


@pytest.mark.parametrize(("w", "h"), [(40, 20), (20, 40), (30, 30), (7, 5), (41, 23)])
def test_read_gif_shapes_and_resize_crop(w, h, both_paths):
    data = stripes_gif(w, h)
    spec = spec_of(S=2, T=3, fps=10, size=16, crop=12)
    out = read_gif(data, spec)
    assert out.frames.shape == (6, 12, 12, 3) and out.frames.dtype == np.uint8
    assert out.frames.flags.c_contiguous
    info = out.info
    assert (info.n_frames, info.width, info.height, info.segments) == (4, w, h, 2)
    assert info.duration_s == pytest.approx(0.4)
    # 0.4 s timeline, segments at 0 and 200 ms, samples 100 ms apart: 0,1,2 and 2,3,(0 wrapped)
    assert info.padded_frames == 1 and info.padding == pytest.approx(1 / 6)
    decoded = decode_gif(data)
    for shift in [(0.0, 0.0), (-1.0, 1.0), (1.0, -0.5)]:
        got = read_gif(data, spec, crop_shift=shift).frames
        for j, i in enumerate([0, 1, 2, 2, 3, 0]):
            ref = reference_resize_crop(decoded.frames[i], spec, shift)
            # Resizing only the crop's box equals resize-then-crop up to rounding.
            assert np.abs(got[j].astype(int) - ref).max() <= 1


def test_crop_shift_and_flip_move_and_mirror():
    # Left half red, right half blue, 40x10; resized to 20x... no: size 10 keeps 40x10.
    idx = np.zeros((10, 40), np.uint8)
    idx[:, 20:] = 2
    data = make_gif(40, 10, [dict(indices=idx)], palette=PAL)
    spec = spec_of(S=1, T=1, size=10, crop=10)
    left = read_gif(data, spec, crop_shift=(-1.0, 0.0)).frames[0]
    right = read_gif(data, spec, crop_shift=(1.0, 0.0)).frames[0]
    assert colours_of(left) == {RED} and colours_of(right) == {BLUE}
    centre = read_gif(data, spec).frames[0]  # columns 15..24: 5 red then 5 blue
    assert colours_of(centre[:, :5]) == {RED} and colours_of(centre[:, 5:]) == {BLUE}
    flipped = read_gif(data, spec, flip=True).frames[0]
    np.testing.assert_array_equal(flipped, centre[:, ::-1])
    with pytest.raises(ValueError, match="crop_shift"):
        read_gif(data, spec, crop_shift=(1.5, 0.0))


def test_resize_filters_differ_and_read_gif_equals_sample_decoded():
    data = stripes_gif(33, 21, n_frames=5, delay_cs=7)
    outs = {}
    for name in ("bilinear", "bicubic", "area"):
        spec = spec_of(S=3, T=2, fps=8, size=14, crop=10, resize_filter=name, matte=MATTE)
        a = read_gif(data, spec, offset=0.3, crop_shift=(0.5, -0.5), flip=True)
        dec = decode_for_spec(data, spec)
        b = sample_decoded(dec, spec, offset=0.3, crop_shift=(0.5, -0.5), flip=True)
        np.testing.assert_array_equal(a.frames, b.frames)
        assert a.info == b.info
        outs[name] = a.frames
    assert not np.array_equal(outs["bilinear"], outs["bicubic"])
    assert not np.array_equal(outs["bilinear"], outs["area"])


def test_sample_decoded_refuses_another_matte():
    data = stripes_gif(8, 8)
    with pytest.raises(ValueError, match="matte"):
        sample_decoded(decode_gif(data), spec_of(matte=(0, 0, 0)))


def test_read_gif_uses_the_specs_matte_and_delay_clamp():
    first = np.array([[0, 6]], np.uint8)
    data = make_gif(2, 1, [dict(indices=first, transparency=6, delay_cs=1)], palette=PAL)
    spec = spec_of(S=1, T=1, size=2, crop=1, matte=MATTE, min_delay_ms=5, clamped_delay_ms=40)
    out = read_gif(data, spec, crop_shift=(1.0, 0.0))
    assert colours_of(out.frames[0]) == {MATTE}
    assert out.info.duration_s == pytest.approx(0.01)  # 10 ms >= 5 ms: not clamped


def test_read_gif_stops_decoding_after_the_last_sampled_frame(monkeypatch):
    frames = [dict(indices=full(2, 2, i % 3), delay_cs=10) for i in range(10)]
    good = make_gif(2, 2, frames[:9], palette=PAL, trailer=False)
    bad_tail = (
        struct.pack("<BHHHHB", 0x2C, 0, 0, 2, 2, 0) + b"\x08" + sub_blocks(b"\xff" * 20) + b";"
    )
    data = good + bad_tail
    with pytest.raises(GifError, match="frame 9"):
        decode_gif(data)
    spec = spec_of(S=2, T=1)  # samples at 0 and 500 ms: frames 0 and 5
    out = read_gif(data, spec)
    assert out.info.n_frames == 10
    assert [colours_of(f) for f in out.frames] == [{RED}, {BLUE}]


def test_real_gifs_read(real_gifs):
    spec = SamplingSpec(segments=4, frames_per_segment=16, fps=12.5, size=112, crop=112)
    for path in sorted(real_gifs.glob("*.gif"))[:5]:
        out = read_gif(path, spec)
        assert out.frames.shape == (64, 112, 112, 3)
        assert 0 <= out.info.padded_frames <= 64 and out.info.duration_s > 0


def test_decoded_gif_is_a_plain_dataclass():
    d = DecodedGif(np.zeros((1, 2, 2, 3), np.uint8), np.array([100]), 2, 2)
    out = sample_decoded(d, spec_of(S=1, T=1, size=2, crop=2))
    assert out.frames.shape == (1, 2, 2, 3) and d.matte == (255, 255, 255)


# ------------------------------------------------------------------ imports


def test_import_does_not_pull_torch():
    code = (
        "import sys, gifsent_infer, gifsent_infer.reading.gifio\n"
        "bad = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'typer', 'rich') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


def test_zero_size_frame_draws_nothing_but_keeps_its_delay(both_paths):
    data = make_gif(
        2, 1,
        [dict(indices=full(1, 2, 0), delay_cs=10), dict(indices=full(0, 0, 0), delay_cs=30),
         dict(indices=full(1, 1, 1), left=1, delay_cs=10)],
        palette=PAL,
    )  # fmt: skip
    d = decode_gif(data)
    assert d.durations_ms.tolist() == [100, 300, 100]
    assert [tuple(p) for p in d.frames[1][0]] == [RED, RED]
    assert [tuple(p) for p in d.frames[2][0]] == [RED, GREEN]


def test_fast_path_is_taken_and_equals_the_general_path(real_gifs, monkeypatch):
    files = sorted(real_gifs.glob("*.gif"))[::3]  # a third keeps this quick
    eligible = 0
    for path in files:
        data = path.read_bytes()
        st = gifio.parse_structure(data, DEFAULT_LIMITS)
        eligible += gifio._indexed_eligible(st, len(st.frames) - 1)
        monkeypatch.setattr(gifio, "_INDEXED_FAST_PATH", True)
        fast = decode_gif(data).frames
        monkeypatch.setattr(gifio, "_INDEXED_FAST_PATH", False)
        np.testing.assert_array_equal(fast, decode_gif(data).frames, err_msg=path.name)
    assert eligible >= len(files) // 2  # the fast path matters for real GIFs
