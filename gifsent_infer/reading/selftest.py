"""Startup self-test of the GIF decoder: a Pillow upgrade must not silently break decoding.

The reader (gifio) drives Pillow's C LZW decoder through the private ``Image._getdecoder``,
which Pillow may change in any release. pyproject pins Pillow below the next major version;
this check is the second guard: decode a tiny two-frame GIF (a local palette, transparency,
an LZW code-size change) and compare every pixel with the known answer, once per process,
before any input is scored. A mismatch or an exception raises PillowDecoderError with the
fix instead of scoring thousands of GIFs wrongly.
"""

from __future__ import annotations

import functools

import numpy as np

from gifsent_infer.errors import USAGE, GifsentError

# 4x2, two frames: red / green green blue blue, then the rows swapped (written by Pillow 13).
_GIF = (
    b"GIF89a\x04\x00\x02\x00\x81\x00\x00\x00\xff\x00\xff\x00\x00\x00\x00\xff\x00\x00\x00!\xff"
    b"\x0bNETSCAPE2.0\x03\x01\x00\x00\x00!\xf9\x04\x00\n\x00\x00\x00,\x00\x00\x00\x00\x04\x00"
    b"\x02\x00\x00\x08\x0b\x00\x03\x08\x0c\x00\x00\x80\x00\x01\x01\x01\x00!\xf9\x04\x01\n\x00"
    b"\x03\x00,\x00\x00\x00\x00\x04\x00\x02\x00\x81\x00\xff\x00\xff\x00\x00\x00\x00\xff\x00"
    b"\x00\x00\x08\x0b\x00\x01\x00\x10  \x80\xc1\x00\x01\x01\x00;"
)
_R, _G, _B = (255, 0, 0), (0, 255, 0), (0, 0, 255)
_EXPECTED = np.array(
    [[[_R] * 4, [_G, _G, _B, _B]], [[_G, _G, _B, _B], [_R] * 4]], dtype=np.uint8
)  # [frames 2, height 2, width 4, RGB]


class PillowDecoderError(GifsentError, ImportError):
    """Pillow's GIF decoder does not behave as the reader needs (an unusable dependency,
    like a missing one: the CLI prints the message, which is the install fix, and exits 2)."""

    exit_code = USAGE


@functools.cache
def check_gif_decoder() -> None:
    """Raise PillowDecoderError unless the reader decodes the reference GIF exactly."""
    import PIL

    from gifsent_infer.reading.gifio import decode_gif

    fix = (
        f"Pillow {PIL.__version__} changed the private decoder API that gifsent's GIF reader "
        "uses; install a supported version: pip install 'pillow>=10,<14'"
    )
    try:
        frames = decode_gif(_GIF).frames
    except Exception as e:
        raise PillowDecoderError(f"{fix} (self-test failed: {type(e).__name__}: {e})") from None
    if frames.shape != _EXPECTED.shape or not np.array_equal(frames, _EXPECTED):
        raise PillowDecoderError(f"{fix} (self-test decoded wrong pixels)")
