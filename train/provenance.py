"""What a training run was trained on, read from its run folder: the contract's provenance and score quantiles.

Export calls these when it writes a model (schema 2), so that every model says whether it
learned from GIFGIF's votes, from gifsent's procedural demo data or from something else, and
carries the distribution of its training targets for runtime percentiles.

Sources in the run folder (gifsent_train.run.RunLayout): ``data.json`` (the votes file and
GIF folder the scores stage read, vote statistics), ``config.json`` (the same paths as
configured, for runs without data.json), ``scores.csv`` (Bradley-Terry scores per GIF, with
per-emotion comparison counts), ``splits.json`` (which GIFs are training GIFs). The kind of
dataset is decided by what sits beside the votes file: ``demo.json`` of format
``gifsent-demo-data`` (written by ``gifsent-train demo-data``) means the procedural demo;
GIFGIF's votes file name or a GIFGIF fetch manifest means GIFGIF; anything else is custom.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gifsent_infer.contract import EMOTIONS, EncoderInfo, Provenance, ScoreQuantiles
from gifsent_infer.files import read_json
from gifsent_infer.running.readable import compute_quantiles
from gifsent_train.run import RunLayout

GIFGIF_VOTES_PREFIX = "gifgif-dataset-"  # gifgif-dataset-20150121-v1.csv.gz
GIFGIF_NAME = "GIFGIF (MIT Media Lab)"


def _votes_path(run: RunLayout) -> Path | None:
    """The votes file the run's scores were fitted on (data.json, else config.json)."""
    data = read_json(run.data, None)
    if isinstance(data, dict) and data.get("votes"):
        return Path(data["votes"])
    cfg = read_json(run.config, None)
    if isinstance(cfg, dict):
        if cfg.get("votes"):
            return Path(cfg["votes"]).expanduser()
        if cfg.get("data_dir"):
            d = Path(cfg["data_dir"]).expanduser()
            found = sorted(d.glob("*.csv.gz")) + sorted(d.glob("*.csv")) if d.is_dir() else []
            found = [p for p in found if p.name not in ("truth.csv", "scores.csv")]
            return found[0] if found else None
    return None


def dataset_kind(votes: Path) -> tuple[str, str, str]:
    """(kind, name, vote cut-off date) of the dataset whose votes file is `votes`."""
    folder = votes.parent
    demo = read_json(folder / "demo.json", None)
    if isinstance(demo, dict) and demo.get("format") == "gifsent-demo-data":
        seed = demo.get("seed")
        return "procedural-demo", f"{folder.name} (gifsent-train demo-data, seed {seed})", ""
    manifest = read_json(folder / "manifest.json", None)
    is_fetched = isinstance(manifest, dict) and manifest.get("format") == "gifsent-gifgif-manifest"
    if votes.name.startswith(GIFGIF_VOTES_PREFIX) or is_fetched:
        # The dump's name carries its date (gifgif-dataset-20150121-v1): the last votes' day.
        m = re.search(r"(\d{4})(\d{2})(\d{2})", votes.name)
        cutoff = f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else ""
        return "gifgif", f"{GIFGIF_NAME}, {votes.name}", cutoff
    return "custom", votes.name, ""


def _scores_table(run: RunLayout) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(ids, scores [N, 17] in the target scale, comparisons [N, 17]) from scores.csv."""
    if not run.scores.is_file():
        return None
    from gifsent_train.bradley_terry import read_scores_csv

    try:
        bt = read_scores_csv(run.scores)
    except (OSError, ValueError):
        return None
    return list(bt.ids), np.asarray(bt.scores, np.float64), np.asarray(bt.comparisons)


def _train_ids(run: RunLayout) -> list[str] | None:
    splits = read_json(run.splits, None)
    if isinstance(splits, dict) and isinstance(splits.get("train"), list):
        return [str(g) for g in splits["train"]]
    return None


def encoder_weights_origin(encoder: EncoderInfo) -> str:
    """The encoder's weights in words: 'random init' or '<file> (<encoder description>)'."""
    w = encoder.weights
    if not w:
        return "not recorded"
    if w == "random":
        return "random init (no pretrained weights)"
    return f"{w} ({encoder.description})" if encoder.description else w


def run_provenance(run: RunLayout, encoder: EncoderInfo) -> Provenance | None:
    """The provenance of a model trained in `run`; None when the run records no data source."""
    votes = _votes_path(run)
    if votes is None:
        return None
    kind, name, cutoff = dataset_kind(votes)
    table = _scores_table(run)
    gifs = comparisons = None
    if table is not None:
        ids, _, counts = table
        gifs = len(ids)
        # scores.csv counts each decisive comparison once for each of its two GIFs
        comparisons = int(counts.sum()) // 2
    else:
        data = read_json(run.data, None)
        stats = data.get("vote_stats") if isinstance(data, dict) else None
        if isinstance(stats, dict) and isinstance(stats.get("decisive"), int):
            comparisons = stats["decisive"]
    train = _train_ids(run)
    return Provenance(
        dataset_kind=kind,
        dataset_name=name,
        gifs=gifs,
        comparisons=comparisons,
        train_gifs=len(train) if train is not None else None,
        vote_cutoff=cutoff,
        encoder_weights=encoder_weights_origin(encoder),
        run_id=run.root.name,
    )


def run_score_quantiles(run: RunLayout) -> ScoreQuantiles | None:
    """Quantiles of the training split's targets (scores.csv rows of splits' train ids)."""
    table, train = _scores_table(run), _train_ids(run)
    if table is None or not train:
        return None
    ids, scores, _ = table
    index = {g: i for i, g in enumerate(ids)}
    rows = [index[g] for g in train if g in index]
    if not rows:
        return None
    targets = scores[rows]
    assert targets.shape[1] == len(EMOTIONS)
    return compute_quantiles(targets)
