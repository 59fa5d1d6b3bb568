"""Where gifsent keeps things, so that train, export and infer agree without being told.

Everything lives under one home folder, ``$GIFSENT_HOME`` (default ``~/.gifsent``)::

    $GIFSENT_HOME/
      data/gifgif/            votes CSV, images tar, extracted GIFs, manifest.json (fetch)
      cache/features/         encoder feature cache, shared by all runs
      runs/<run-id>/          one training run (its files: gifsent_train.run.RunLayout)
      runs/LATEST             text file: the run id of the newest finished run (gifsent_train.run)
      models/gifsent-<head>.onnx   where gifsent-export writes and gifsent-infer looks

``gifsent-infer`` picks its model from ``--model``, then ``$GIFSENT_MODEL``, then the
first of ``models/gifsent-rnn.onnx``, ``-maxpool.onnx`` and ``-linear.onnx`` that exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from gifsent_infer.contract import HEADS

HOME_ENV = "GIFSENT_HOME"
MODEL_ENV = "GIFSENT_MODEL"
DEFAULT_HEAD_ORDER = ("rnn", "maxpool", "linear")  # the study's best model first


def home() -> Path:
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".gifsent"


def data_dir() -> Path:
    return home() / "data"


def gifgif_dir() -> Path:
    return data_dir() / "gifgif"


def cache_dir() -> Path:
    return home() / "cache"


def features_cache_dir() -> Path:
    return cache_dir() / "features"


def runs_dir() -> Path:
    return home() / "runs"


def models_dir() -> Path:
    return home() / "models"


def default_model_path(head: str = "rnn", precision: str = "fp32") -> Path:
    """Where `gifsent-export --model HEAD` writes by default."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
    suffix = "" if precision == "fp32" else f"-{precision}"
    return models_dir() / f"gifsent-{head}{suffix}.onnx"


def find_default_model() -> Path | None:
    """The model gifsent-infer uses when not told: $GIFSENT_MODEL, else the default exports."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env).expanduser()
    for head in DEFAULT_HEAD_ORDER:
        path = default_model_path(head)
        if path.is_file():
            return path
    return None
