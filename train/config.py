"""The training configuration: `TrainConfig` (every field a run depends on, with the reason
for its default), the named presets, and loading a TOML/JSON config file with validation.

Precedence when a run is configured (`resolve_config`): preset < config file < explicit
options. A bad file (unknown key, wrong type) fails here, before a run folder is made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gifsent_infer import paths
from gifsent_train.run import RunLayout

PG_SCHEMES = ("postgresql://", "postgres://")  # --data as a `collect` database's URL

__all__ = [
    "PRESETS",
    "TrainConfig",
    "check_config_types",
    "load_config_file",
    "no_data_message",
    "resolve_config",
]


@dataclass
class TrainConfig:
    """Everything a run depends on. Empty strings / zeros mean "the documented default"."""

    # -- data ------------------------------------------------------------------------------
    data_dir: str = ""  # default: $GIFSENT_HOME/data/gifgif, where `gifsent-train fetch` puts it
    votes: str = ""  # votes CSV(.gz); default: the one *.csv(.gz) in data_dir
    gifs: str = ""  # folder of <id>.gif at any depth; default: data_dir/gifs, else data_dir
    truth: str = ""  # demo data's true strengths (CSV); default: data_dir/truth.csv if present
    limit_gifs: int = 0  # use only the first N GIFs with files (quick trials); 0: all
    # -- encoder and sampling ----------------------------------------------------------------
    encoder: str = "resnext101-kinetics"  # the study's encoder; weights must be supplied
    encoder_weights: str = ""  # local weights file; "" = the encoder's own default source
    random_init: bool = False  # allow random encoder weights (tests, tiny encoders only)
    segments: int = 0  # sparse S; 0 = the encoder's default spec
    fps: float = 0.0  # segment frame rate; 0 = the encoder's default
    size: int = 0  # shorter side before the crop; 0 = default (the crop is the network's)
    sampling: str = "sparse"  # sparse | dense | augmented (the study's three modes)
    views: int = 4  # augmented: views per training GIF, the canonical one included
    dense_segments: int = 16  # dense: S for both training and the exported graph
    encoder_batch: int = 8  # GIF-views per encoder call (memory only)
    use_onnxruntime: str = "auto"  # auto | true | false; ORT is ~8x faster for CNNs on a CPU
    threads: int = 0  # intra-op threads for torch and onnxruntime; 0 = library default
    # torch threads while fitting heads (0: as `threads`). Small heads run fastest on one
    # thread, far faster on a busy machine; results are bit-identical per thread count.
    fit_threads: int = 1
    cache_dir: str = ""  # feature cache; default $GIFSENT_HOME/cache/features (shared by runs)
    # Run the feature stage on Ray Data instead of this process: "" = no Ray; "local" = start
    # a Ray instance here; "auto" or HOST:6379 or ray://HOST:10001 = join that cluster. The
    # cache and its entries are the same either way (gifsent_train.ray_features).
    ray_address: str = ""
    # -- fitting and search ------------------------------------------------------------------
    # "linear" is ridge on segment-mean features (closed form, penalty chosen on dev); the
    # head best on dev is what checkpoints/best.pt points at (gifsent-export --model best).
    heads: tuple[str, ...] = ("maxpool", "rnn", "linear")
    trials: int = 20  # randomized trials per head (the study's search)
    # Training stops on patience; the ceiling is generous so that it rarely decides. Trials
    # that reach it with dev loss still improving are flagged in the report.
    max_epochs: int = 300
    patience: int = 10  # epochs without a dev improvement before stopping
    # Repeat the best configuration of each trained head with this many fit seeds (same
    # splits): Table 1 shows mean +- std, the report a paired test against the baselines.
    seeds: int = 1
    # Loss weights: "none" (plain MSE, the study's) or "inverse-variance" (each GIF and
    # emotion weighted by 1 / se^2 of its Bradley-Terry score, capped at weight_cap times the
    # emotion's median weight, rescaled to mean 1).
    loss_weights: str = "none"
    weight_cap: float = 10.0
    # What the MaxPool head's timeline (segment_scores) is: "mil", its own readout (a second
    # MLP trained beside it so that its per-segment outputs' max explains each GIF's label;
    # no labels inside the GIF needed, no cost to the scores), or "shared", the score MLP on
    # each segment alone (before issue 22's fourth push the only kind). "": "mil", or
    # "shared" when segment_weight > 0 (runs from before the field keep their meaning).
    maxpool_timeline: str = ""
    # The shared timeline's multiple-instance term (0: off, the study's loss): the score MLP's
    # per-segment outputs, max-pooled over the segments, must also explain each GIF's label,
    # weighted this much beside the MSE of its score. Its timeline then peaks where the
    # emotion is, at a cost in test RMSE (+7-9% at 10; BENCHMARKS.md, "Peak-in-moment"),
    # which the "mil" readout does not pay.
    segment_weight: float = 0.0
    include_default_trial: bool = True  # trial 0 = head defaults (rnn: the study's best)
    seed: int = 0  # splits, search and every fit derive from it
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # the study's 80/10/10
    # -- where the run goes --------------------------------------------------------------------
    run_dir: str = ""  # parent of runs; default $GIFSENT_HOME/runs
    run_name: str = ""  # default: derived from data + encoder + sampling + a config hash

    def __post_init__(self) -> None:
        self.heads = tuple(self.heads)
        self.split_fractions = tuple(float(f) for f in self.split_fractions)
        if isinstance(self.use_onnxruntime, bool):
            self.use_onnxruntime = "true" if self.use_onnxruntime else "false"
        self.use_onnxruntime = str(self.use_onnxruntime).lower()
        if self.use_onnxruntime not in ("auto", "true", "false"):
            raise ValueError("use_onnxruntime must be auto, true or false")
        if self.sampling not in ("sparse", "dense", "augmented"):
            raise ValueError(f"sampling must be sparse, dense or augmented, got {self.sampling!r}")
        for h in self.heads:
            if h not in ("maxpool", "rnn", "linear"):
                raise ValueError(f"unknown head {h!r}; expected maxpool, rnn or linear")
        if not self.heads:
            raise ValueError("heads must name at least one of maxpool, rnn, linear")
        if self.loss_weights not in ("none", "inverse-variance"):
            raise ValueError(
                f"loss_weights must be none or inverse-variance, got {self.loss_weights!r}"
            )
        if int(self.seeds) < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if int(self.max_epochs) < 1 or int(self.patience) < 1:
            raise ValueError("max_epochs and patience must be >= 1")
        if not (math.isfinite(float(self.segment_weight)) and float(self.segment_weight) >= 0):
            raise ValueError(f"segment_weight must be a number >= 0, got {self.segment_weight}")
        if self.maxpool_timeline not in ("", "mil", "shared"):
            raise ValueError(
                f"maxpool_timeline must be mil or shared, got {self.maxpool_timeline!r}"
            )
        if self.maxpool_timeline == "mil" and self.segment_weight:
            raise ValueError(
                "segment_weight is the shared MaxPool timeline's term (its score MLP on single "
                "segments); the mil readout trains on its own loss: give maxpool_timeline "
                "shared with it, or leave segment_weight at 0"
            )
        if not float(self.weight_cap) >= 1.0:
            raise ValueError(f"weight_cap must be >= 1, got {self.weight_cap}")
        if self.data_url() and urlsplit(self.data_url()).password:
            # the run folder's config.json records data_dir: keep secrets out of it
            raise ValueError(
                "--data: leave the password out of the PostgreSQL URL (the run folder records "
                "--data); give it in PGPASSWORD or ~/.pgpass, which PostgreSQL's client reads"
            )

    # -- resolution of defaults ----------------------------------------------------------------
    def maxpool_timeline_kind(self) -> str:
        """The MaxPool timeline its heads are built with: "mil" or "shared" (see the field)."""
        return self.maxpool_timeline or self._automatic_timeline()

    def _automatic_timeline(self) -> str:
        return "shared" if self.segment_weight else "mil"

    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else paths.gifgif_dir()

    def data_url(self) -> str | None:
        """`--data postgresql://...`: a `gifsent-train collect` database on a PostgreSQL server."""
        return self.data_dir if self.data_dir.startswith(PG_SCHEMES) else None

    def votes_source(self) -> Path | str | None:
        """Where the votes are read from: a file or SQLite database (`votes_path`), or the
        PostgreSQL URL given as `--data`."""
        url = self.data_url()
        return url if url and not self.votes else self.votes_path()

    def votes_path(self) -> Path | None:
        if self.votes:
            return Path(self.votes).expanduser()
        if self.data_url():
            return None  # not a file: see votes_source
        d = self.data_path()
        if _is_votes_db(d):  # `gifsent-train collect`'s database, read directly
            return d
        if not d.is_dir():
            return None
        found = sorted(d.glob("*.csv.gz")) + sorted(d.glob("*.csv"))
        found = [p for p in found if p.name not in ("truth.csv", "scores.csv")]
        return found[0] if found else None

    def gifs_path(self) -> Path:
        if self.gifs:
            return Path(self.gifs).expanduser()
        d = self.data_path()
        url = self.data_url()
        if url or _is_votes_db(d):  # the folder `gifsent-train collect --gifs` served
            from gifsent_train.collect.storage import Store

            store = Store.open(url or d, migrate=False)
            try:
                served = store.get_meta("gifs_dir")
            finally:
                store.close()
            # a URL without a recorded folder: a path that is no folder, so "no data" says why
            return Path(served) if served else (d if url else d.parent)
        for sub in ("gifs", "images"):
            if (d / sub).is_dir():
                return d / sub
        return d

    def truth_path(self) -> Path | None:
        if self.truth:
            return Path(self.truth).expanduser()
        for name in ("truth.csv", "truth.csv.gz"):
            p = self.data_path() / name
            if p.is_file():
                return p
        return None

    def backend(self) -> str:
        return {"auto": "auto", "true": "onnxruntime", "false": "torch"}[self.use_onnxruntime]

    def run_layout(self) -> RunLayout:
        parent = Path(self.run_dir).expanduser() if self.run_dir else paths.runs_dir()
        return RunLayout(parent / (self.run_name or self.default_run_name()))

    def default_run_name(self) -> str:
        keep = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("run_dir", "run_name", "threads", "ray_address")
            # off / automatic: the names runs had before these options
            and not (k == "segment_weight" and not v)
            and not (k == "maxpool_timeline" and v in ("", self._automatic_timeline()))
        }
        h = hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:8]
        data = self.data_path().name or "data"
        return f"{data}-{self.encoder}-{self.sampling}-{h}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["heads"] = list(self.heads)
        d["split_fractions"] = list(self.split_fractions)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(names)}")
        check_config_types(cls, data)
        return cls(**data)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def check_config_types(cls, data: dict) -> None:
    """Raise ValueError naming every key whose value has the wrong type (`trials = "abc"`),
    so a bad config file fails before a run folder is made, not deep inside a stage."""
    import typing

    hints = typing.get_type_hints(cls)
    problems = []
    for key, value in data.items():
        want = hints.get(key)
        ok = True
        if want is bool:
            ok = isinstance(value, bool)
        elif want is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif want is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif want is str:
            ok = (
                isinstance(value, (str, bool))
                if key == "use_onnxruntime"
                else isinstance(value, str)
            )
        elif typing.get_origin(want) is tuple:
            args = typing.get_args(want)
            item = args[0] if args else object
            ok = isinstance(value, (list, tuple)) and all(
                isinstance(v, item) or (item is float and isinstance(v, int)) for v in value
            )
            if ok and args and args[-1] is not Ellipsis:
                ok = len(value) == len(args)
        if not ok:
            kind = getattr(want, "__name__", str(want))
            problems.append(f"{key} must be {kind}, not {type(value).__name__} {value!r}")
    if problems:
        raise ValueError("bad config value(s): " + "; ".join(problems))


# Presets: named starting points; options and config files override them.
PRESETS: dict[str, dict] = {
    # The study's setting, on the real GIFGIF dump (needs the ResNeXt-101 Kinetics weights).
    # Three seeds per best configuration, so a difference between heads can be told from noise.
    "study": {"encoder": "resnext101-kinetics", "sampling": "sparse", "trials": 20, "seeds": 3},
    # The README demo: 600 procedural GIFs, ImageNet EfficientNet-Lite0 (offline weights),
    # about 15 minutes for all of train + export + infer on a 2-core CPU. Chosen by
    # measurement (see the training report for the timings).
    "demo": {
        "encoder": "efficientnet-lite0",
        "sampling": "augmented",  # canonical + 1 augmented view per training GIF
        "segments": 4,  # 4 frames per GIF: enough to see motion's direction and extent
        "views": 2,
        "trials": 4,  # per head; trial 0 is the head's default (rnn: the study's best)
        "max_epochs": 150,  # a ceiling; patience ends the fits
        "patience": 6,
        "seeds": 3,
    },
    # CI: a tiny random encoder and two trials per head, seconds on a CPU.
    "tiny": {
        "encoder": "resnext3d-tiny",
        "random_init": True,
        "sampling": "sparse",
        "trials": 2,
        "max_epochs": 15,
        "patience": 4,
        "seeds": 2,
    },
}


def load_config_file(path: str | os.PathLike) -> dict:
    """A JSON or TOML file (by suffix) holding TrainConfig fields, flat or under [train]."""
    p = Path(path)
    text = p.read_bytes()
    if p.suffix.lower() == ".toml":
        try:
            import tomllib  # Python 3.11+
        except ImportError:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        data = tomllib.loads(text.decode("utf-8"))
    else:
        data = json.loads(text)
    if isinstance(data.get("train"), dict) and len(data) == 1:
        data = data["train"]
    return data


def resolve_config(
    preset: str | None = None, config_file: str | os.PathLike | None = None, **overrides
) -> TrainConfig:
    """preset < config file < explicit overrides (None values are ignored)."""
    data: dict = {}
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; available: {sorted(PRESETS)}")
        data.update(PRESETS[preset])
    if config_file:
        data.update(load_config_file(config_file))
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(data)


def no_data_message(cfg: TrainConfig) -> str:
    if cfg.data_url() and not cfg.gifs:
        return (
            f"no GIF folder recorded in the votes database {cfg.data_url()}: give --gifs DIR "
            "(the folder `gifsent-train collect --gifs` served)"
        )
    d = cfg.data_path()
    return (
        f"no training data at {d} (votes CSV and GIFs).\n"
        f"  Get GIFGIF (52 MiB votes + 5.3 GiB GIFs):  gifsent-train fetch\n"
        f"  or make the procedural demo dataset:       gifsent-train demo-data DIR "
        f"&& gifsent-train run --data DIR --preset demo"
    )


def _is_votes_db(path: Path) -> bool:
    from gifsent_train.collect.storage import is_database

    return path.is_file() and is_database(path)
