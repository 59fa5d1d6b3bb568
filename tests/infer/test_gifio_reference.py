"""The GIF reader against an independent decoder: ffmpeg (from the imageio-ffmpeg wheel).

On every file of ../shared/gifs/edge and ../shared/gifs/real (skipped when absent), the
composited frames must equal ffmpeg's RGBA output composited over the same matte, pixel
for pixel, and the display times must equal ffmpeg's frame durations. The differences that
are tolerated are where ffmpeg deliberately differs from browsers, each explained below
(see `expected_ffmpeg_frames` and `allowed_pixel_differences`).
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from shared_corpus import SHARED_GIFS, missing_shared, require_shared

from gifsent_infer.reading import gifio
from gifsent_infer.reading.gifio import GifError, decode_gif

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

# A matte that no test GIF uses much, so that "shown over the matte" is visible.
MATTE = (255, 0, 255)

# Files our reader refuses on purpose; ffmpeg must refuse them too.
REFUSED = {
    "decompression_bomb.gif": "frame rectangle of 65535x1321 pixels: over the canvas limit",
    "zero_width.gif": "logical screen of width 0",
}
# Files ffmpeg cannot read at all while we can.
FFMPEG_UNREADABLE = {
    # ffmpeg: "picture doesn't have either global or local palette" and nothing is output.
    # We read palette-less frames as greyscale (index i -> (i, i, i)), as Pillow does.
    "no_palette.gif",
}

_SHOWINFO = re.compile(
    r"n:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:(\S+)\s+duration:\s*(\S+)\s+duration_time:(\S+)"
    r".*?\bs:(\d+)x(\d+)"
)


def _ffmpeg() -> str:
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # the wheel's binary can be missing on exotic platforms
        pytest.skip(f"ffmpeg from imageio-ffmpeg is unusable: {e}")


def ffmpeg_decode(path: Path, matte=MATTE) -> tuple[np.ndarray, np.ndarray] | None:
    """(uint8 [N, H, W, 3] over `matte`, int64 [N] durations in ms), or None if ffmpeg fails.

    `-fps_mode passthrough` keeps one output frame per GIF frame (no duplication or drops
    for a constant output rate); showinfo prints each frame's pts and duration, in the GIF
    demuxer's 1/100 s time base. ffmpeg, like browsers, shows delays under 2 cs for 10 cs
    (its gif demuxer's min_delay/default_delay), the same clamp as ours.
    """
    cmd = [
        _ffmpeg(), "-hide_banner", "-nostdin", "-v", "info", "-i", str(path),
        "-vf", "showinfo=checksum=0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgba", "-",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    info = _SHOWINFO.findall(proc.stderr.decode(errors="replace"))
    if proc.returncode != 0 or not info:
        return None
    w, h = int(info[0][5]), int(info[0][6])
    rgba = np.frombuffer(proc.stdout, dtype=np.uint8).reshape(-1, h, w, 4)
    assert len(rgba) == len(info)
    alpha = rgba[..., 3:]
    if np.logical_or(
        alpha == 0, alpha == 255
    ).all():  # GIF transparency is binary: no float blending needed
        rgb = np.where(alpha == 255, rgba[..., :3], np.asarray(matte, np.uint8))
    else:
        a = alpha.astype(np.float64) / 255.0
        rgb = np.rint(rgba[..., :3] * a + np.asarray(matte, np.float64) * (1 - a))
    durations = np.array([round(float(i[4]) * 1000) for i in info], dtype=np.int64)
    return rgb.astype(np.uint8), durations


def images_before_first_extension(data: bytes, st) -> int:
    """How many images come before the file's first extension block (or all of them)."""
    pos = 13 + (len(st.palette) if st.palette is not None else 0)
    starts = [f.data.start for f in st.frames]
    while pos < st.end and data[pos] == 0x2C:
        pos = next(f.data.stop for f, s in zip(st.frames, starts, strict=True) if s > pos)
    return sum(s < pos for s in starts) if pos < st.end else len(st.frames)


def expected_ffmpeg_frames(data: bytes) -> tuple[list[int], bool]:
    """Which of our frames ffmpeg shows, and whether it may show more after them.

    * ffmpeg's GIF parser puts every image before the file's first extension block into
      the first packet, and its decoder shows only the first image of a packet. So a GIF
      that starts with several images and no extension (GCE, comment, ...) between them
      shows one frame there (test_extents.gif, decompression_bomb_extents.gif,
      no_palette_with_background.gif: no extension at all). Browsers show every image,
      and so do we. Seen with this ffmpeg, not a documented ffmpeg rule: when it changes,
      the assertion on the frame count below says so.
    * ffmpeg drops frames that have no colour table at all (no local and no global one);
      we draw them in greyscale (no_palette_after_rgb.gif).
    * Our stream ends at data that is neither an extension, an image nor the trailer, as
      in Chrome and Firefox; ffmpeg reads on, e.g. into a second GIF appended to the file
      (test_extents_transparency.gif), so it may show extra frames after ours.
    """
    st = gifio.parse_structure(data, gifio.DEFAULT_LIMITS)
    k = images_before_first_extension(data, st)
    frames = [0, *range(max(k, 1), len(st.frames))]
    frames = [i for i in frames if st.frames[i].palette is not None or st.palette is not None]
    more = st.end < len(data) and data[st.end] != 0x3B
    return frames, more


# The edge files are tiny and checked through both compositing paths: decode them once.
ffmpeg_decode_cached = functools.cache(ffmpeg_decode)


def allowed_pixel_differences(data: bytes, ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """bool [N, H, W]: pixels where our output may differ from ffmpeg's.

    Disposal 2 ("restore to background"): browsers make the frame's rectangle transparent
    (so it shows the matte) and ignore the background colour index; ffmpeg paints the
    global palette's background colour, opaque, when the frame has no transparent index
    (dispose_bgnd.gif, dispose_bgnd_rgba.gif). Only that exact pair of values is tolerated.
    """
    st = gifio.parse_structure(data, gifio.DEFAULT_LIMITS)
    if st.palette is None:
        return np.zeros(ours.shape[:3], dtype=bool)
    bg_index = data[11]
    table = np.frombuffer(st.palette, np.uint8).reshape(-1, 3)
    bg = table[bg_index] if bg_index < len(table) else np.zeros(3, np.uint8)
    return np.all(ours == np.asarray(MATTE, np.uint8), axis=-1) & np.all(theirs == bg, axis=-1)


def _files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.gif"))
    if not files:
        missing_shared(f"no GIFs in {folder}")  # skips, or fails under CI=true
    return files


def check_against_ffmpeg(path: Path, reference=ffmpeg_decode) -> str:
    data = path.read_bytes()
    theirs = reference(path)
    if path.name in REFUSED:
        with pytest.raises(GifError):
            decode_gif(data, matte=MATTE)
        assert theirs is None, f"{path.name}: ffmpeg decoded a file we refuse"
        return "refused by both"
    ours = decode_gif(data, matte=MATTE)
    if path.name in FFMPEG_UNREADABLE:
        assert theirs is None, f"{path.name}: ffmpeg can read it now; compare instead"
        return "ffmpeg cannot read it"
    assert theirs is not None, f"{path.name}: ffmpeg failed on a file we read"
    ff_frames, ff_durations = theirs
    shown, more = expected_ffmpeg_frames(data)
    if more:
        assert len(ff_frames) >= len(shown), path.name
        ff_frames, ff_durations = ff_frames[: len(shown)], ff_durations[: len(shown)]
    assert len(ff_frames) == len(shown), (path.name, len(ff_frames), shown)
    if len(shown) < len(ours.frames) and shown != list(range(len(shown))):
        # Frames were folded or dropped before later ones: ffmpeg's later canvases lack the
        # images it skipped, so only the frames before the first gap are comparable.
        gap = next(j for j, i in enumerate(shown) if i != j)
        shown, ff_frames = shown[:gap], ff_frames[:gap]
    mine = ours.frames[shown]
    assert ff_frames.shape == mine.shape, path.name
    if np.array_equal(mine, ff_frames):
        differ = np.zeros((), dtype=bool)
        unexplained = differ
    else:
        differ = np.any(mine != ff_frames, axis=-1)
        unexplained = differ & ~allowed_pixel_differences(data, mine, ff_frames)
    assert not unexplained.any(), (
        f"{path.name}: {int(unexplained.sum())} pixels differ from ffmpeg in frames "
        f"{sorted(set(np.nonzero(unexplained)[0].tolist()))}"
    )
    if len(shown) == len(ours.frames):  # one to one: every display time must agree
        np.testing.assert_array_equal(ours.durations_ms, ff_durations, err_msg=path.name)
    else:  # ffmpeg folded or dropped frames, so only the first frame's start is shared
        assert shown[0] == 0
    return "tolerated differences" if differ.any() else "identical"


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed-fast-path", "general"])
def test_edge_gifs_match_ffmpeg(edge_gifs, monkeypatch, indexed):
    monkeypatch.setattr(gifio, "_INDEXED_FAST_PATH", indexed)
    results = {p.name: check_against_ffmpeg(p, ffmpeg_decode_cached) for p in _files(edge_gifs)}
    # Most files must be identical, so that the tolerances above cannot hide a regression.
    identical = sum(r == "identical" for r in results.values())
    assert identical >= len(results) - len(REFUSED) - len(FFMPEG_UNREADABLE) - 4, results


def test_real_gifs_match_ffmpeg(real_gifs):
    results = {p.name: check_against_ffmpeg(p) for p in _files(real_gifs)}
    assert set(results.values()) == {"identical"}, results


def test_tolerances_are_needed():
    """Each documented tolerance really occurs (otherwise it should be removed)."""
    edge = require_shared(SHARED_GIFS / "edge")  # skips when absent; fails under CI=true
    data = (edge / "dispose_bgnd.gif").read_bytes()
    ours = decode_gif(data, matte=MATTE).frames
    theirs, _ = ffmpeg_decode(edge / "dispose_bgnd.gif")
    assert np.any(ours != theirs)
    assert allowed_pixel_differences(data, ours, theirs).any()
    shown, more = expected_ffmpeg_frames((edge / "test_extents.gif").read_bytes())
    assert shown == [0] and not more
    shown, more = expected_ffmpeg_frames((edge / "test_extents_transparency.gif").read_bytes())
    assert shown == [0] and more
