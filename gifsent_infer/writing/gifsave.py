"""Writing animated GIFs: the one way gifsent saves frames it made (report thumbnails, demo
and export sample GIFs) as a looping GIF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from PIL import Image

__all__ = ["save_gif"]


def save_gif(
    frames: Sequence[Image.Image],
    dest: Path | BinaryIO,
    durations: int | Sequence[int],
    *,
    optimize: bool | None = None,
) -> None:
    """Write `frames` as one GIF that loops forever to `dest` (a path or a binary file); each
    frame shows for its entry of `durations` in ms (one number: every frame). `optimize`: whether
    Pillow shrinks the palette and frames (None: Pillow's own default)."""
    extra = {} if optimize is None else {"optimize": optimize}
    frames[0].save(
        dest,
        format="GIF",
        save_all=True,
        append_images=list(frames[1:]),
        duration=durations,
        loop=0,
        **extra,
    )
