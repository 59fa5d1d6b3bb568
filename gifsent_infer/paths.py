"""Where gifsent keeps things, so that train, export and infer agree without being told.

Everything lives under one home folder, ``$GIFSENT_HOME`` (default ``~/.gifsent``)::

    $GIFSENT_HOME/
      data/gifgif/            votes CSV, images tar, extracted GIFs, manifest.json (fetch)
      cache/features/         encoder feature cache, shared by all runs
      runs/<run-id>/          one training run (see RunLayout)
      runs/LATEST             text file: the run id of the newest finished run
      models/gifsent-<head>.onnx   where gifsent-export writes and gifsent-infer looks

``gifsent-infer`` picks its model from ``--model``, then ``$GIFSENT_MODEL``, then the
first of ``models/gifsent-rnn.onnx``, ``-maxpool.onnx`` and ``-linear.onnx`` that exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class RunLayout:
    """The files of one training run. Every stage writes only inside its own run folder."""

    root: Path

    @property
    def config(self) -> Path:  # resolved config of the run (JSON)
        return self.root / "config.json"

    @property
    def scores(self) -> Path:  # Bradley-Terry scores: id, 17 scores, 17 std errors (CSV)
        return self.root / "scores.csv"

    @property
    def target_scale(self) -> Path:  # TargetScale of the run (JSON)
        return self.root / "target_scale.json"

    @property
    def splits(self) -> Path:  # {"train": [...ids], "dev": [...], "test": [...]} (JSON)
        return self.root / "splits.json"

    @property
    def features_index(self) -> Path:  # which cache entries this run uses (JSON)
        return self.root / "features.json"

    @property
    def trials(self) -> Path:  # one JSON per search trial: config, curves, metrics
        return self.root / "trials"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, head: str) -> Path:  # the best checkpoint of a head on dev
        return self.checkpoints / f"best-{head}.pt"

    @property
    def metrics(self) -> Path:  # all metrics of the run (JSON)
        return self.root / "metrics.json"

    @property
    def report(self) -> Path:  # table1.md/.csv, per_emotion.csv, figure1.png, figure3.png
        return self.root / "report"

    def ensure(self) -> RunLayout:
        for d in (self.root, self.trials, self.checkpoints, self.report):
            d.mkdir(parents=True, exist_ok=True)
        return self


def latest_run() -> RunLayout | None:
    """The newest finished run, as recorded in runs/LATEST."""
    marker = runs_dir() / "LATEST"
    if not marker.is_file():
        return None
    run_id = marker.read_text(encoding="utf-8").strip()
    root = runs_dir() / run_id
    return RunLayout(root) if run_id and root.is_dir() else None


def mark_latest(run: RunLayout) -> None:
    """Record `run` as the newest finished run (atomic replace of runs/LATEST)."""
    runs = runs_dir()
    runs.mkdir(parents=True, exist_ok=True)
    tmp = runs / f".LATEST.{os.getpid()}.tmp"
    tmp.write_text(run.root.name + "\n", encoding="utf-8")
    os.replace(tmp, runs / "LATEST")
