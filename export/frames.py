"""GIFs for export checks: GIFs named by the user, or generated ones, decoded with the runtime's reader.

A run's own test and training GIFs come from the run folder's reader
(``gifsent_train.run.RunLayout.split_files``).

Frames are decoded and sampled by the runtime's own reader (gifsent_infer.reading.gifio.read_gif)
with the model's sampling spec, so parity is checked on exactly what gifsent-infer feeds
the graph.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.writing.gifsave import save_gif


def gif_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into a list of .gif files."""
    out: list[Path] = []
    for p in paths:
        p = Path(p).expanduser()
        if p.is_dir():
            out.extend(
                sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() == ".gif")
            )
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such GIF file or folder: {p}")
    return out


def generate_gifs(
    folder: str | os.PathLike, n: int, *, seed: int = 0, size: int = 96
) -> list[Path]:
    """Write `n` synthetic animated GIFs (moving shapes over gradients, varied lengths and delays).

    They differ strongly from each other in colour, motion and length, so a model's scores
    spread across them and a ranking check means something even for an untrained model.
    """
    from PIL import Image, ImageDraw

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(n):
        n_frames = int(rng.integers(1, 24))
        delay = int(rng.choice([20, 40, 60, 100]))
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xx + np.sin(angle) * yy
        base = (c0 * (1 - t[..., None]) + c1 * t[..., None]).clip(0, 255).astype(np.uint8)
        shape_color = tuple(int(v) for v in rng.integers(0, 256, 3))
        r = int(rng.integers(size // 10, size // 3))
        x0, y0 = rng.uniform(0, size, 2)
        vx, vy = rng.uniform(-size / 6, size / 6, 2)
        frames = []
        for k in range(n_frames):
            im = Image.fromarray(base)
            draw = ImageDraw.Draw(im)
            cx, cy = (x0 + vx * k) % size, (y0 + vy * k) % size
            if i % 2:
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=shape_color)
            else:
                draw.rectangle([cx - r, cy - r / 2, cx + r, cy + r / 2], fill=shape_color)
            frames.append(im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
        path = folder / f"generated-{seed}-{i:03d}.gif"
        save_gif(frames, path, delay)
        paths.append(path)
    return paths


def load_frames(
    paths: Sequence[str | os.PathLike],
    spec: SamplingSpec,
    *,
    limit: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, list[Path]]:
    """Decode and sample GIFs with `spec`: uint8 [N, S*T, crop, crop, 3] and the paths used.

    GIFs the reader rejects are skipped with a warning; at most `limit` GIFs are used.
    """
    from gifsent_infer.reading.gifio import GifError, read_gif

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    frames, used = [], []
    for p in paths:
        if limit is not None and len(used) >= limit:
            break
        try:
            frames.append(read_gif(p, spec).frames)
        except (GifError, OSError) as e:
            warn(f"skipping {p}: {e}")
            continue
        used.append(Path(p))
    if not frames:
        shape = (0, spec.num_frames, spec.crop, spec.crop, 3)
        return np.zeros(shape, np.uint8), []
    return np.stack(frames), used
