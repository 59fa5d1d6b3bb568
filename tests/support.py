"""What tests make over and over, made one way: GIF files, model documents, tiny checkpoints.

- `write_gif` / `gif_bytes` / `write_gifs`: animated GIFs from RGB arrays (Pillow's encoder),
  and small GIFs whose colours depend on a seed.
- `model_document`: a valid ModelDocument, for a real encoder (its spec, normalisation and
  provenance) or for the runtime's tiny mean-colour test model (`infer_support`).
- `tiny_checkpoint`: an untrained resnext3d-tiny + head checkpoint written by the real
  save_checkpoint.

Importing this module never imports torch (the runtime's no-torch tests use it); the
functions that need torch import it when called.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gifsent_infer.contract import (
    EncoderInfo,
    HeadInfo,
    ModelDocument,
    Normalization,
    SamplingSpec,
    TargetScale,
)

# The runtime tests' model: 2 segments of 2 frames at 16x16 (see infer_support.build_model).
SPEC = SamplingSpec(segments=2, frames_per_segment=2, fps=10.0, size=16, crop=16)
# Heads small enough to export and run in milliseconds.
TINY_HEADS = {
    "maxpool": {"num_layers": 2, "hidden": 32},
    "rnn": {"num_layers": 2, "hidden": 16},
    "linear": {"alpha": 10.0},
}


# -- GIFs ------------------------------------------------------------------------------------


def write_gif(
    dest: str | os.PathLike | io.BytesIO, frames: Sequence[np.ndarray], *, delay_ms: int = 100
) -> Any:
    """Write RGB frames (uint8 [H, W, 3] each) as a looping animated GIF to a path or buffer."""
    from PIL import Image

    images = [Image.fromarray(np.asarray(f, dtype=np.uint8), "RGB") for f in frames]
    images[0].save(
        dest, format="GIF", save_all=True, append_images=images[1:], duration=delay_ms, loop=0
    )
    return dest


def gif_bytes(
    seed: int, *, frames: int = 4, size: tuple[int, int] = (24, 20), delay_ms: int = 100
) -> bytes:
    """A small animated GIF whose colours depend on `seed`."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    arrays = []
    for i in range(frames):
        arr = np.empty((size[1], size[0], 3), np.uint8)
        arr[:] = (base + 37 * i) % 256
        # a block in the corner, so that frames differ in layout as well as colour
        arr[: size[1] // 2, : size[0] // 2] = (255 - base) % 256
        arrays.append(arr)
    return write_gif(io.BytesIO(), arrays, delay_ms=delay_ms).getvalue()


def write_gifs(folder: Path, count: int, *, start: int = 0, **kw) -> list[Path]:
    """`count` GIFs g<start>.gif ... in `folder`, each `gif_bytes(i, **kw)`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        p = folder / f"g{i:05d}.gif"
        p.write_bytes(gif_bytes(i, **kw))
        paths.append(p)
    return paths


# -- model documents and checkpoints -----------------------------------------------------------


def model_document(
    encoder=None,
    head_name: str = "rnn",
    head_cfg: dict | None = None,
    *,
    target: TargetScale | None = None,
    metrics: dict | None = None,
    spec: SamplingSpec = SPEC,
) -> ModelDocument:
    """A valid document for `encoder` (a gifsent_models Encoder) with head `head_name` and
    config `head_cfg` resolved by gifsent_models.heads; without an encoder, the runtime
    tests' mean-colour model (sampling `spec`, features = mean RGB, a 1-layer rnn, scores
    in [-1, 1])."""
    if encoder is None:
        return ModelDocument(
            sampling=spec,
            normalization=Normalization(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0)),
            encoder=EncoderInfo(name="mean-colour-test", feature_dim=3, weights="random"),
            head=HeadInfo(name=head_name, config=head_cfg or {"num_layers": 1, "hidden": 3}),
            target=target or TargetScale(low=[-1.0] * 17, high=[1.0] * 17),
            metrics={"test": {"rmse": 0.1, "ev": 0.2}} if metrics is None else metrics,
        )
    from gifsent_models.heads import config_dict, head_config

    return ModelDocument(
        sampling=encoder.spec,
        normalization=encoder.normalization,
        encoder=encoder.info(),
        head=HeadInfo(head_name, config_dict(head_config(head_name, head_cfg))),
        target=target or TargetScale("identity"),
        metrics=metrics or {},
    )


def tiny_checkpoint(path: Path, head_name: str, seed: int = 0) -> str:
    """An untrained resnext3d-tiny + TINY_HEADS[head_name] checkpoint, written by the real
    save_checkpoint (min-max target in [-2, 2], dev RMSE 0.1 recorded); returns its sha256."""
    import torch

    from gifsent_models.checkpoint import save_checkpoint
    from gifsent_models.heads import create_head, head_config
    from gifsent_models.registry import create_encoder

    torch.manual_seed(seed)
    encoder = create_encoder("resnext3d-tiny", random_init=True)
    cfg = head_config(head_name, TINY_HEADS[head_name])
    head = create_head(head_name, encoder.feature_dim, cfg)
    doc = model_document(
        encoder,
        head_name,
        TINY_HEADS[head_name],
        target=TargetScale("minmax", low=[-2.0] * 17, high=[2.0] * 17),
        metrics={"dev": {"rmse": 0.1}},
    )
    return save_checkpoint(
        path, encoder=encoder, head_name=head_name, head_config=cfg, head=head, document=doc
    )
