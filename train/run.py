"""The run folder: the one place that knows its files, its keys and ``runs/LATEST``.

Training (``gifsent_train.pipeline``) writes a run; export, scripts and tests read it only
through this module, so a file name or a key changes here and nowhere else::

    <runs>/<run-id>/
      config.json            the resolved TrainConfig
      stages.json            per stage: hash of its inputs, its outputs, seconds
      scores.csv             Bradley-Terry: id, 17 scores, strengths, std errors, vote counts
      target_scale.json      TargetScale (maps scores back to strengths)
      splits.json            gifsent-splits document: ids of train / dev / test
      data.json              what the scores stage resolved: {"votes": file, "gifs": folder, ...}
      features.json          which feature-cache entries the run uses
      feature_failures.json  GIFs the encoder stage could not read (id, path, error)
      trials/                one JSON per search trial
      checkpoints/best-<head>.pt   the best checkpoint of each head on dev
      metrics.json           {"models": {<head>: {"train"|"dev"|"test": {...}, ...}}, ...}
      report/                table1.md/.csv, per_emotion.csv, figure1.png, figure3.png
      timings.json           wall and CPU seconds per stage
    <runs>/LATEST            text: the id of the newest finished run

The readers (``gif_folder``, ``split_ids``, ``split_files``, ``test_metrics``) return None
(or []) when the run does not have the thing yet, so a caller can fall back and say so.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gifsent_infer.files import atomic_write_text, read_json
from gifsent_infer.paths import runs_dir

__all__ = ["RunLayout", "latest_run", "mark_latest", "run_for_checkpoint", "strict_json"]

LATEST = "LATEST"  # file in the runs folder naming the newest finished run


@dataclass(frozen=True)
class RunLayout:
    """The files of one training run. Every stage writes only inside its own run folder."""

    root: Path

    # -- files ---------------------------------------------------------------------------
    @property
    def config(self) -> Path:  # resolved config of the run (JSON)
        return self.root / "config.json"

    @property
    def stages(self) -> Path:  # stage bookkeeping: inputs hash, outputs, seconds (JSON)
        return self.root / "stages.json"

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
    def data(self) -> Path:  # what the scores stage resolved: votes file, GIF folder (JSON)
        return self.root / "data.json"

    @property
    def features_index(self) -> Path:  # which cache entries this run uses (JSON)
        return self.root / "features.json"

    @property
    def feature_failures(self) -> Path:  # GIFs the feature stage could not read (JSON)
        return self.root / "feature_failures.json"

    @property
    def trials(self) -> Path:  # one JSON per search trial: config, curves, metrics
        return self.root / "trials"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best_checkpoint(self) -> Path:  # link to the checkpoint of the head best on dev
        return self.checkpoints / "best.pt"

    def link_best(self, head: str) -> Path:
        """Point checkpoints/best.pt at best-<head>.pt (a relative symlink; a copy where the
        file system has no symlinks), replacing what was there atomically."""
        target = self.checkpoint(head)
        link = self.best_checkpoint
        tmp = link.with_name(f".best-{os.getpid()}.tmp")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        try:
            os.symlink(target.name, tmp)
        except OSError:
            shutil.copyfile(target, tmp)
        os.replace(tmp, link)
        return link

    def checkpoint(self, head: str) -> Path:  # the best checkpoint of a head on dev
        return self.checkpoints / f"best-{head}.pt"

    def seed_checkpoint(self, head: str, r: int) -> Path:  # the best config refit, seed r >= 1
        return self.checkpoints / f"seed{r}-{head}.pt"

    def seed_checkpoints(self, head: str) -> list[Path]:
        """best-<head>.pt and its seed refits seed1-, seed2-... (what a K-head export fuses)."""
        found, r = [self.checkpoint(head)], 1
        while self.seed_checkpoint(head, r).is_file():
            found.append(self.seed_checkpoint(head, r))
            r += 1
        return found if found[0].is_file() else []

    def intervals(self, head: str, heads: int) -> dict[str, Any] | None:
        """The conformal calibration (a contract Intervals dict) of `head` with `heads` seeds
        fused, from metrics.json's intervals.<head>.k<heads>, or None."""
        doc = read_json(self.metrics, None)
        entry = (doc.get("intervals") or {}).get(head) if isinstance(doc, dict) else None
        k = entry.get(f"k{heads}") if isinstance(entry, dict) else None
        return k.get("calibration") if isinstance(k, dict) else None

    @property
    def metrics(self) -> Path:  # all metrics of the run (JSON)
        return self.root / "metrics.json"

    @property
    def report(self) -> Path:  # table1.md/.csv, per_emotion.csv, figure1.png, figure3.png
        return self.root / "report"

    @property
    def timings(self) -> Path:  # wall and CPU seconds per stage (JSON)
        return self.root / "timings.json"

    def ensure(self) -> RunLayout:
        for d in (self.root, self.trials, self.checkpoints, self.report):
            d.mkdir(parents=True, exist_ok=True)
        return self

    # -- typed readers ---------------------------------------------------------------------
    def gif_folder(self) -> Path | None:
        """The GIF folder the run trained on (data.json's "gifs"), if it still exists."""
        data = read_json(self.data, None)
        gifs = data.get("gifs") if isinstance(data, dict) else None
        if not isinstance(gifs, str) or not gifs:
            return None
        folder = Path(gifs).expanduser()
        return folder if folder.is_dir() else None

    def split_ids(self, split: str) -> list[str] | None:
        """The GIF ids of one split ("train", "dev", "test"); None without a readable
        splits.json (the scores stage has not run, or the file is damaged)."""
        from gifsent_train.splits import SPLITS, load_splits

        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        try:
            return load_splits(self.splits)[split]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def split_files(self, split: str) -> list[Path]:
        """The GIF files of one split, in splits.json's order; ids without a file in
        `gif_folder()` are left out, and [] when the ids or the folder are unknown."""
        from gifsent_train.votes import index_gifs

        ids = self.split_ids(split)
        folder = self.gif_folder()
        if not ids or folder is None:
            return []
        index = index_gifs(folder)
        return [index[i] for i in ids if i in index]

    def test_metrics(self, head: str) -> dict[str, Any] | None:
        """Test-split metrics of the run's best `head` (metrics.json's models.<head>.test)."""
        doc = read_json(self.metrics, None)
        models = doc.get("models") if isinstance(doc, dict) else None
        entry = models.get(head) if isinstance(models, dict) else None
        test = entry.get("test") if isinstance(entry, dict) else None
        return test if isinstance(test, dict) else None


def latest_run() -> RunLayout | None:
    """The newest finished run, as recorded in runs_dir()/LATEST."""
    runs = runs_dir()
    marker = runs / LATEST
    if not marker.is_file():
        return None
    run_id = marker.read_text(encoding="utf-8").strip()
    root = runs / run_id
    return RunLayout(root) if run_id and root.is_dir() else None


def mark_latest(run: RunLayout) -> None:
    """Record `run` as the newest finished run (atomic replace of runs_dir()/LATEST)."""
    atomic_write_text(runs_dir() / LATEST, run.root.name + "\n")


def run_for_checkpoint(checkpoint: str | Path) -> RunLayout | None:
    """The run a checkpoint belongs to, when it sits in <run>/checkpoints/ of a run folder."""
    parent = Path(checkpoint).resolve().parent
    run = RunLayout(parent.parent)
    if parent.name == "checkpoints" and (run.splits.is_file() or run.config.is_file()):
        return run
    return None


def strict_json(obj):
    """A copy of `obj` that is strict JSON for the run folder's files: NaN/inf become null,
    numpy scalars plain numbers, dict keys strings, tuples lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.generic):
        return strict_json(obj.item())
    return obj
