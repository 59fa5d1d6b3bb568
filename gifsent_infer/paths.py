"""Where gifsent keeps things, so that train, export and infer agree without being told.

Everything lives under one home folder, ``$GIFSENT_HOME`` (default ``~/.gifsent``)::

    $GIFSENT_HOME/
      data/gifgif/            votes CSV, images tar, extracted GIFs, manifest.json (fetch)
      cache/features/         encoder feature cache, shared by all runs
      runs/<run-id>/          one training run (its files: gifsent_train.run.RunLayout)
      runs/LATEST             text file: the run id of the newest finished run (gifsent_train.run)
      models/gifsent-<head>.onnx   where gifsent-export writes and gifsent-infer looks

``gifsent-infer`` picks its model from ``--model``, then ``$GIFSENT_MODEL``, then the
first of ``models/gifsent-rnn.onnx``, ``-maxpool.onnx`` and ``-linear.onnx`` that exists,
then, when ``$GIFSENT_HOME`` is not set, the same names under ``./demo-home/models/`` (where
``make demo`` puts its model when run in this folder), so the README's next line after
``make demo`` finds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from gifsent_infer.contract import HEADS

HOME_ENV = "GIFSENT_HOME"
MODEL_ENV = "GIFSENT_MODEL"
DEFAULT_HEAD_ORDER = ("rnn", "maxpool", "linear")  # the study's best model first
DEMO_HOME_NAME = "demo-home"  # the Makefile's DEMO_HOME default, relative to the repository


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


def model_dirs() -> list[Path]:
    """The folders the default lookup searches, in order: $GIFSENT_HOME/models, then, when
    $GIFSENT_HOME is not set (a chosen home is the only one), ./demo-home/models: what
    `make demo` wrote when run from the current folder."""
    dirs = [models_dir()]
    demo = Path.cwd() / DEMO_HOME_NAME / "models"
    if not os.environ.get(HOME_ENV) and demo.resolve() != dirs[0].resolve():
        dirs.append(demo)
    return dirs


def default_model_candidates() -> list[Path]:
    """Every file the default lookup tries, in order (for finding and for "looked in" messages)."""
    return [d / f"gifsent-{head}.onnx" for d in model_dirs() for head in DEFAULT_HEAD_ORDER]


def find_default_model() -> Path | None:
    """The model gifsent-infer uses when not told: $GIFSENT_MODEL, else the default exports."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env).expanduser()
    for path in default_model_candidates():
        if path.is_file():
            return path
    return None


def models_nearby() -> list[Path]:
    """.onnx files in the lookup's folders that it does not pick by name (e.g. an int8 export
    or a renamed file): what a "no model" message can point at."""
    found: list[Path] = []
    for d in model_dirs():
        if d.is_dir():
            found.extend(sorted(d.glob("*.onnx")))
    return found
