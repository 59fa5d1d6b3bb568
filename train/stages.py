"""The four stages of a training run — scores, features, search, report — one class each.

Each stage declares what it reads (``inputs``: a hash of the files and config fields it
depends on), what it writes (the paths recorded in ``<run>/stages.json``) and how it runs.
The bookkeeping is written once, in `Stage.execute`: hash the inputs, skip when the
recorded hash matches and every recorded output still exists, otherwise run, then record
the inputs, outputs and seconds and keep wall/CPU timings for ``timings.json``.

Stages share nothing through attributes of a run object: what one stage hands to a later
one in the same process (the GIF index, the encoder) is an explicit field of `Context`,
and a stage run on its own rebuilds it. Everything a stage writes lives in the run folder
(``gifsent_train.run.RunLayout``), except the feature cache, which is shared between runs
and keyed by content.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from gifsent_infer.files import file_sha256 as _sha_file
from gifsent_infer.files import read_json
from gifsent_infer.files import write_json as atomic_write_json
from gifsent_train.config import TrainConfig, no_data_message
from gifsent_train.run import RunLayout, strict_json
from gifsent_train.splits import load_splits

__all__ = [
    "STAGES",
    "Context",
    "FeaturesStage",
    "NoDataError",
    "ReportStage",
    "Reporter",
    "ScoresStage",
    "SearchStage",
    "Stage",
    "StageBook",
    "load_data",
    "make_encoder",
    "read_scores_matrix",
    "read_scores_stderr",
    "save_best",
    "train_weights",
    "truth_map",
]


# ------------------------------------------------------------------ reporting hooks


class Reporter:
    """What the pipeline tells its caller; the CLI draws rich progress bars, tests stay silent."""

    def stage(self, name: str, skipped: bool = False) -> None: ...

    def log(self, message: str) -> None: ...

    def progress(self, task: str, done: int, total: int) -> None: ...

    def done(self, task: str) -> None: ...


class NoDataError(FileNotFoundError):
    """No votes/GIFs where the config points; the message says how to get some."""


# ------------------------------------------------------------------ helpers


def _sha_obj(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------ bookkeeping


@dataclass
class StageRecord:
    inputs: str  # sha256 of what the stage read
    outputs: list[str]  # the files it wrote (all must still exist for a skip)
    seconds: float  # wall seconds of the run that wrote them
    finished: float  # time.time() when it finished


@dataclass(frozen=True)
class StageBook:
    """``<run>/stages.json``: per stage, the record of its last finished run."""

    path: Path

    def records(self) -> dict:
        return read_json(self.path, {}) or {}

    def current(self, stage: str, inputs: str) -> bool:
        """Finished with these inputs, and every output it recorded is still there."""
        rec = self.records().get(stage)
        return bool(
            rec
            and rec.get("inputs") == inputs
            and all(Path(p).exists() for p in rec.get("outputs", []))
        )

    def record(self, stage: str, inputs: str, outputs: list[Path], seconds: float) -> None:
        recs = self.records()
        recs[stage] = asdict(
            StageRecord(inputs, [str(p) for p in outputs], round(seconds, 3), time.time())
        )
        atomic_write_json(self.path, recs)

    def output_hash(self, stage: str) -> str:
        """The inputs hash of a finished stage: what a later stage's inputs build on."""
        return self.records().get(stage, {}).get("inputs", "")


@dataclass
class Context:
    """What the stages of one run share: config, run folder, reporter, bookkeeping, and the
    objects one stage builds that a later one reuses in the same process."""

    config: TrainConfig
    layout: RunLayout
    reporter: Reporter = field(default_factory=Reporter)
    force: bool = False  # run stages even when current (the search also drops its old trials)
    # filled by ScoresStage.inputs (id -> GIF file); FeaturesStage indexes the folder itself
    # when the scores stage did not run in this process
    gif_index: dict[str, Path] | None = None
    # built by FeaturesStage.inputs; SearchStage builds its own when features did not run
    encoder: Any = None
    report_files: dict[str, Path] = field(default_factory=dict)  # set by ReportStage
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per stage run now
    cpu_timings: dict[str, float] = field(default_factory=dict)  # CPU seconds, all threads

    @property
    def book(self) -> StageBook:
        return StageBook(self.layout.stages)

    def write_timings(self) -> None:
        """Merge this process's stage timings into ``timings.json`` (stages skipped now keep
        the timings of the run that did them)."""
        p = self.layout.timings
        old = read_json(p, {}) or {}
        for k, v in self.timings.items():
            old[k] = {"wall_s": round(v, 2), "cpu_s": round(self.cpu_timings.get(k, 0.0), 2)}
        atomic_write_json(p, old)


class Stage:
    """One stage: `inputs` (hash; may also prepare what `run` needs in the context),
    `run` (does the work, returns the files to record), and the bookkeeping in `execute`."""

    name: ClassVar[str]

    def inputs(self, ctx: Context) -> str:
        raise NotImplementedError

    def is_current(self, ctx: Context, inputs: str) -> bool:
        return ctx.book.current(self.name, inputs)

    def skipped(self, ctx: Context) -> None:
        """Hook for a stage that hands something on even when it is skipped."""

    def run(self, ctx: Context) -> list[Path]:
        raise NotImplementedError

    def execute(self, ctx: Context) -> None:
        inputs = self.inputs(ctx)
        if not ctx.force and self.is_current(ctx, inputs):
            ctx.reporter.stage(self.name, skipped=True)
            self.skipped(ctx)
            return
        ctx.reporter.stage(self.name)
        t0, c0 = time.perf_counter(), time.process_time()
        outputs = self.run(ctx)
        dt = time.perf_counter() - t0
        ctx.book.record(self.name, inputs, outputs, dt)
        ctx.timings[self.name] = dt
        ctx.cpu_timings[self.name] = time.process_time() - c0


# ------------------------------------------------------------------ stage: scores


def _votes_fingerprint(votes: Path | str) -> str:
    """The votes file's sha256; a `collect` database's vote count and last id (its file alone
    would miss votes still in the write-ahead log)."""
    from gifsent_train.collect.storage import Store, is_database

    if not is_database(votes):
        return _sha_file(votes)
    store = Store.open(votes, migrate=False)
    try:
        return store.fingerprint()
    finally:
        store.close()


class ScoresStage(Stage):
    """Votes -> Bradley-Terry scores, target scale, splits (and agreement with a truth file)."""

    name = "scores"

    def inputs(self, ctx: Context) -> str:
        cfg = ctx.config
        votes = cfg.votes_source()
        if votes is None or (isinstance(votes, Path) and not votes.is_file()):
            raise NoDataError(no_data_message(cfg))
        gifs = cfg.gifs_path()
        if not gifs.is_dir():
            raise NoDataError(no_data_message(cfg))
        from gifsent_train.votes import index_gifs

        ctx.gif_index = index_gifs(gifs)
        if not ctx.gif_index:
            raise NoDataError(no_data_message(cfg))
        truth = cfg.truth_path()
        return _sha_obj(
            {
                "votes": _votes_fingerprint(votes),
                "gifs": sorted(ctx.gif_index),
                "truth": _sha_file(truth) if truth and truth.is_file() else "",
                "seed": cfg.seed,
                "fractions": cfg.split_fractions,
                "limit": cfg.limit_gifs,
            }
        )

    def run(self, ctx: Context) -> list[Path]:
        from gifsent_train import bradley_terry as bt
        from gifsent_train import splits as sp
        from gifsent_train.votes import filter_votes, missing_gifs, read_votes

        cfg, lay = ctx.config, ctx.layout
        votes = read_votes(cfg.votes_source())
        present = ctx.gif_index
        if cfg.limit_gifs:
            keep = [g for g in votes.ids if g in present][: cfg.limit_gifs]
            present = {g: present[g] for g in keep}
        miss = missing_gifs(votes, present)
        votes = filter_votes(votes, present)
        ctx.reporter.log(
            f"{votes.stats.rows} vote rows, {votes.n_gifs} GIFs with files "
            f"({miss.n_missing} voted-on GIFs missing)"
        )
        fitted = bt.fit_all_emotions(votes)
        scores, scale = fitted.scores, fitted.target
        bt.write_scores_csv(lay.scores, fitted)
        atomic_write_json(lay.target_scale, scale.to_dict())
        ids = list(fitted.ids)
        splits = sp.make_splits(ids, seed=cfg.seed, fractions=cfg.split_fractions)
        sp.save_splits(lay.splits, splits, seed=cfg.seed, fractions=cfg.split_fractions)
        data_info = {
            "votes": str(cfg.votes_source()),
            "gifs": str(cfg.gifs_path()),
            "vote_stats": votes.stats.to_dict(),
            "missing": {k: v for k, v in miss.to_dict().items() if k != "missing_ids"},
            "missing_ids": miss.missing_ids[:1000],
        }
        tmap = truth_map(cfg)
        if tmap is not None:
            have = [i for i, g in enumerate(ids) if g in tmap]
            from gifsent_train import metrics as M

            strengths = scale.to_strength(scores)
            data_info["bt_vs_truth"] = M.agreement(
                np.stack([tmap[ids[i]] for i in have]), strengths[have]
            )
        atomic_write_json(lay.data, strict_json(data_info))
        return [lay.scores, lay.target_scale, lay.splits]


# ------------------------------------------------------------------ stage: features


def make_encoder(cfg: TrainConfig):
    """The run's encoder, with the config's sampling changes; deterministic for random init."""
    import torch

    from gifsent_models.registry import create_encoder

    # Random-init encoders (tests, tiny ones) must come out identical in every process
    # that uses this run, so their features in the cache stay valid.
    torch.manual_seed(cfg.seed)
    enc = create_encoder(
        cfg.encoder, weights=cfg.encoder_weights or None, random_init=cfg.random_init
    )
    changes = {}
    if cfg.segments:
        changes["segments"] = cfg.segments
    if cfg.sampling == "dense":
        changes["segments"] = cfg.dense_segments
    if cfg.fps:
        changes["fps"] = float(cfg.fps)
    if cfg.size:
        changes["size"] = int(cfg.size)
    if changes:
        torch.manual_seed(cfg.seed)
        enc = create_encoder(
            cfg.encoder,
            weights=cfg.encoder_weights or None,
            random_init=cfg.random_init,
            spec=dataclasses.replace(enc.spec, **changes),
        )
    return enc.eval()


def feature_options(cfg: TrainConfig):
    from gifsent_train.features import FeatureOptions

    return FeatureOptions(
        mode=cfg.sampling,
        views=cfg.views,
        dense_segments=cfg.dense_segments,
        batch_size=cfg.encoder_batch,
        backend=cfg.backend(),
        threads=cfg.threads or None,
    )


class FeaturesStage(Stage):
    """Encoder features of every split's GIFs into the shared cache; the run's index of them."""

    name = "features"

    def inputs(self, ctx: Context) -> str:
        from gifsent_train.features import weights_key

        cfg = ctx.config
        if not ctx.layout.splits.is_file():
            raise RuntimeError("run the scores stage first (no splits.json)")
        ctx.encoder = make_encoder(cfg)
        return _sha_obj(
            {
                "splits": ctx.book.output_hash("scores"),
                "encoder": cfg.encoder,
                "weights": weights_key(ctx.encoder),
                "spec": ctx.encoder.spec.to_dict(),
                "mode": cfg.sampling,
                "views": feature_options(cfg).train_views(),
            }
        )

    def is_current(self, ctx: Context, inputs: str) -> bool:
        return super().is_current(ctx, inputs) and self._cache_intact(ctx.layout)

    @staticmethod
    def _cache_intact(lay: RunLayout) -> bool:
        """Every cache file the run's features index names still exists (caches get pruned)."""
        idx = read_json(lay.features_index, {}) or {}
        return all(Path(p).is_file() for e in idx.get("entries", {}).values() for p in e.values())

    def run(self, ctx: Context) -> list[Path]:
        from gifsent_train.features import FeatureItem, extract_features
        from gifsent_train.votes import index_gifs

        cfg, lay = ctx.config, ctx.layout
        splits = load_splits(lay.splits)
        opts = feature_options(cfg)
        index = ctx.gif_index or index_gifs(cfg.gifs_path())
        items = []
        for split, ids in splits.items():
            nv = opts.train_views() if split == "train" else 1
            items += [FeatureItem(g, index[g], nv) for g in ids if g in index]
        extract = extract_features
        if cfg.ray_address:  # same cache, same entries; where the encoder runs is all that changes
            from functools import partial

            from gifsent_train.ray_features import extract_features_with_ray

            address = None if cfg.ray_address == "local" else cfg.ray_address
            extract = partial(extract_features_with_ray, address=address)
        res = extract(
            ctx.encoder,
            items,
            opts,
            cache_root=Path(cfg.cache_dir) if cfg.cache_dir else None,
            progress=lambda d, t: ctx.reporter.progress("features", d, t),
            log=ctx.reporter.log,
        )
        ctx.reporter.done("features")
        idx = res.index()
        idx["splits"] = {k: len(v) for k, v in splits.items()}
        atomic_write_json(lay.features_index, idx)
        atomic_write_json(lay.feature_failures, res.failures)
        ctx.reporter.log(
            f"features: {res.encoded} encoded, {res.cached} from cache, "
            f"{len(res.failures)} failed ({res.backend or 'cache only'}, {res.seconds:.1f} s)"
        )
        return [lay.features_index]


# ------------------------------------------------------------------ stage: search


def load_data(cfg: TrainConfig, lay: RunLayout):
    """The run's cached features and scores as train/dev/test arrays (`SplitData`)."""
    from gifsent_train.search import SplitData

    idx = read_json(lay.features_index, None)
    splits = load_splits(lay.splits)
    ids_all, y_all = read_scores_matrix(lay.scores)
    ymap = dict(zip(ids_all, y_all, strict=True))
    entries = idx["entries"]
    views = feature_options(cfg).train_views()
    x, y, ids = {}, {}, {}

    def stack(split_ids, nv):
        rows, rid = [], []
        for g in split_ids:
            e = entries.get(g)
            if not e or g not in ymap:
                continue
            for v in range(nv):
                p = e.get(str(v))
                if p:
                    rows.append(np.load(p, allow_pickle=False))
                    rid.append(g)
        if not rows:
            raise RuntimeError("no features for a split; did every GIF fail to decode?")
        return np.stack(rows).astype(np.float32), rid

    for split in ("train", "dev", "test"):
        nv = views if split == "train" else 1
        x[split], ids[split] = stack(splits[split], nv)
        y[split] = np.stack([ymap[g] for g in ids[split]]).astype(np.float32)
    train_eval = "train"
    if views > 1:
        x["train_view0"], ids["train_view0"] = stack(splits["train"], 1)
        y["train_view0"] = np.stack([ymap[g] for g in ids["train_view0"]]).astype(np.float32)
        train_eval = "train_view0"
    return SplitData(x=x, y=y, ids=ids, train_eval=train_eval)


def train_weights(cfg: TrainConfig, lay: RunLayout, data) -> np.ndarray | None:
    """Loss weights [rows, 17] of the training rows, or None for plain MSE."""
    if cfg.loss_weights == "none":
        return None
    from gifsent_train.study import certainty_weights

    ids, se = read_scores_stderr(lay.scores)
    row = {g: i for i, g in enumerate(ids)}
    w = certainty_weights(se, cfg.weight_cap)
    return np.stack([w[row[g]] for g in data.ids["train"]]).astype(np.float32)


def truth_map(cfg: TrainConfig) -> dict[str, np.ndarray] | None:
    """id -> true strengths [17] from the config's truth file (demo data), or None."""
    from gifsent_train.demo_data import read_truth

    p = cfg.truth_path()
    if not p or not p.is_file():
        return None
    ids, vals = read_truth(p)
    return dict(zip(ids, vals, strict=True))


FINE_SEGMENTS = 16  # the report's finer timeline: MaxPool and linear score any S (--segments)


def fine_features(encoder, paths: list[Path], segments: int):
    """(features [N, segments, D] of the GIFs at `paths`, canonical view, and that spec): the
    timeline a user gets with `gifsent-infer --timeline --segments N`."""
    import dataclasses

    from gifsent_infer.reading import media
    from gifsent_train.features import TorchRunner, encode_segments

    spec = dataclasses.replace(encoder.spec, segments=segments)
    runner = TorchRunner(encoder)
    frames = (media.read_media(p, spec).frames[None] for p in paths)
    x = [encode_segments(runner, f, encoder.spec, segments)[0] for f in frames]
    return np.stack(x).astype(np.float32), spec


def _fine_timeline(out: dict, data, fitted: dict, tl_args: tuple, encoder, index) -> None:
    """Adds "fine" (timeline_study at FINE_SEGMENTS) to each non-LSTM head's timeline entry."""
    from types import SimpleNamespace

    from gifsent_train import study

    moments, truth, carried = tl_args
    ids = [g for g in data.ids["test"] if g in moments and g in index]
    heads = [h for h in fitted if h != "rnn"]  # a running estimate needs the model's own S
    if not ids or not heads or encoder.spec.segments >= FINE_SEGMENTS:
        return
    x, fspec = fine_features(encoder, [index[g] for g in ids], FINE_SEGMENTS)
    d = SimpleNamespace(ids={"test": ids}, x={"test": x})
    for h in heads:
        out["timeline"][h]["fine"] = study.timeline_study(
            fitted[h][0], d, moments, fspec, truth, carried
        )


def where_and_how_sure(
    cfg: TrainConfig, data, spec, fitted: dict, truth, encoder=None, index=None
) -> dict:
    """metrics.json's "intervals" (per head: conformal calibration on dev and coverage on test,
    K = 1 and K = seeds) and "timeline" (per head: peak-in-moment rate vs chance on the test
    GIFs with a known moment; absent without a truth file holding moments). With the
    `encoder` and the GIF `index` (id -> path), MaxPool's and linear's entries add "fine": the
    same number with the timeline sampled at FINE_SEGMENTS (the test moment GIFs re-encoded)."""
    from gifsent_train import study
    from gifsent_train.demo_data import read_moment_emotions, read_moments

    out: dict = {"intervals": {}}
    for head, models in fitted.items():
        try:
            out["intervals"][head] = study.interval_study(models, data)
        except ValueError as e:  # too few dev GIFs for any level: say so in the metrics
            out["intervals"][head] = {"error": str(e)}
    p = cfg.truth_path()
    moments = read_moments(p) if p and p.is_file() else {}
    if moments:
        carried = read_moment_emotions(p)
        out["timeline"] = {
            head: study.timeline_study(models[0], data, moments, spec, truth, carried)
            for head, models in fitted.items()
        }
        if encoder is not None and index:
            _fine_timeline(out, data, fitted, (moments, truth, carried), encoder, index)
    return out


def head_fit_defaults(cfg: TrainConfig, base) -> dict:
    """head -> its FitConfig defaults: `base` for each head, with MaxPool's multiple-instance
    term (cfg.segment_weight, max pool) where asked. The LSTM's timeline is a running estimate
    (its max says "by now"), so the term is MaxPool's only."""
    import dataclasses

    out = {h: base for h in cfg.heads}
    if cfg.segment_weight and "maxpool" in out:
        out["maxpool"] = dataclasses.replace(
            base, segment_weight=float(cfg.segment_weight), segment_pool="max"
        )
    return out


class SearchStage(Stage):
    """Baselines, the randomized search per head, seeds, checkpoints and metrics.json."""

    name = "search"

    @staticmethod
    def signature(ctx: Context) -> str:
        """What a finished search trial depends on (not the number of trials or seeds), so an
        interrupted or extended search reuses the trials it already has."""
        cfg = ctx.config
        return _sha_obj(
            {
                "features": ctx.book.output_hash("features"),
                "scores": ctx.book.output_hash("scores"),
                "epochs": cfg.max_epochs,
                "patience": cfg.patience,
                "default": cfg.include_default_trial,
                "seed": cfg.seed,
                "loss_weights": cfg.loss_weights,
                "weight_cap": cfg.weight_cap if cfg.loss_weights != "none" else None,
                # only when on, so runs from before the option keep their trials
                **({"segment_weight": cfg.segment_weight} if cfg.segment_weight else {}),
                # MaxPool's own timeline readout: its trials are new models (the LSTM's are
                # unchanged but refit too, a few seconds each)
                **(
                    {"maxpool_timeline": "mil"}
                    if "maxpool" in cfg.heads and cfg.maxpool_timeline_kind() == "mil"
                    else {}
                ),
                # bit-identical fits need the same thread count
                "threads": cfg.fit_threads or cfg.threads,
            }
        )

    def inputs(self, ctx: Context) -> str:
        cfg = ctx.config
        return _sha_obj(
            {
                "signature": self.signature(ctx),
                "heads": cfg.heads,
                "trials": cfg.trials,
                "seeds": cfg.seeds,
            }
        )

    def run(self, ctx: Context) -> list[Path]:
        from gifsent_train import study
        from gifsent_train.fit import FitConfig

        cfg, lay = ctx.config, ctx.layout
        outputs = [lay.metrics, lay.best_checkpoint] + [lay.checkpoint(h) for h in cfg.heads]
        if cfg.threads:
            import torch

            torch.set_num_threads(cfg.threads)
        data = load_data(cfg, lay)
        ctx.reporter.log(
            "training rows: "
            + ", ".join(f"{k} {v.shape[0]}" for k, v in data.x.items())
            + f"; features [S={data.x['dev'].shape[1]}, D={data.x['dev'].shape[2]}]"
        )
        self._keep_or_clear_trials(ctx)
        w_train = train_weights(cfg, lay, data)
        fit_defaults = FitConfig(
            max_epochs=cfg.max_epochs,
            patience=cfg.patience,
            seed=cfg.seed,
            threads=(cfg.fit_threads or cfg.threads) or None,
        )
        baselines = study.Baselines.fit(data)
        fit_defaults = head_fit_defaults(cfg, fit_defaults)
        heads, trials = self._fit_heads(ctx, data, baselines, fit_defaults, w_train)
        fitted: dict[str, list] = {}  # head -> [its model, then its seed refits]
        truth = truth_map(cfg)
        doc = study.evaluate_study(
            data,
            baselines,
            heads,
            settings={
                "max_epochs": cfg.max_epochs,
                "patience": cfg.patience,
                "seeds": cfg.seeds,
                "loss_weights": cfg.loss_weights,
                "weight_cap": cfg.weight_cap,
                "segment_weight": cfg.segment_weight,
                "maxpool_timeline": cfg.maxpool_timeline_kind(),
                "trials": cfg.trials,
            },
            fit_defaults=fit_defaults,
            seed=cfg.seed,
            w_train=w_train,
            truth=truth,
            scale=_target_scale(lay),
            trials=trials,
            on_seed=lambda head, r, n: ctx.reporter.progress(f"seeds {head}", r, n),
            fitted=fitted,
        )
        # issue 22: the seed refits kept for `gifsent-export --ensemble`, and the timeline and
        # interval numbers of every head
        self._save_refits(ctx, heads, fitted)
        from gifsent_train.votes import index_gifs

        index = ctx.gif_index or index_gifs(cfg.gifs_path())
        doc.update(
            where_and_how_sure(cfg, data, ctx.encoder.spec, fitted, truth, ctx.encoder, index)
        )
        # The shipped model: the head best on dev (ties: the order of cfg.heads).
        lay.link_best(doc["best_head"])
        ctx.reporter.log(f"best head on dev: {doc['best_head']} -> {lay.best_checkpoint}")
        atomic_write_json(lay.metrics, strict_json(doc))
        return outputs

    def _keep_or_clear_trials(self, ctx: Context) -> None:
        """Trials of an earlier search with other inputs are removed; those with the same
        signature are kept and reused (an interrupted search resumes after its last trial)."""
        lay, signature = ctx.layout, self.signature(ctx)
        sig_file = lay.trials / "signature.txt"
        old_sig = sig_file.read_text(encoding="utf-8").strip() if sig_file.is_file() else ""
        if ctx.force or old_sig != signature:
            for old in list(lay.trials.glob("*.json")) + list(lay.trials.glob("*.pt")):
                old.unlink()
            sig_file.write_text(signature + "\n", encoding="utf-8")

    def _fit_heads(self, ctx: Context, data, baselines, fit_defaults, w_train):
        """Each head's best model (the linear one in closed form, the others by randomized
        search), saved as its checkpoint: ({head: study.HeadFit}, every trial run)."""
        from gifsent_train import study
        from gifsent_train.search import evaluate

        cfg, lay = ctx.config, ctx.layout
        encoder = ctx.encoder if ctx.encoder is not None else make_encoder(cfg)
        ctx.encoder = encoder  # the seed refits are saved with it too (_save_refits)
        scale = _target_scale(lay)
        heads: dict[str, study.HeadFit] = {}
        all_trials: list = []
        for head in cfg.heads:
            if head == "linear":
                ridge = baselines.ridge
                model = study.linear_head(ridge, int(data.x["train"].shape[-1]))
                fit = study.HeadFit(
                    model,
                    evaluate(model, data),
                    {"head_config": {"alpha": ridge.alpha_}, "closed_form": True},
                )
            else:
                fit, trials = self._search(ctx, head, data, fit_defaults[head], w_train)
                all_trials += trials
            heads[head] = fit
            config = fit.entry["head_config"]
            save_best(lay.checkpoint(head), encoder, head, config, fit.model, scale, fit.metrics)
        return heads, all_trials

    @staticmethod
    def _save_refits(ctx: Context, heads: dict, fitted: dict[str, list]) -> None:
        """checkpoints/seed<r>-<head>.pt for each seed refit (what --ensemble fuses)."""
        lay, scale = ctx.layout, _target_scale(ctx.layout)
        for head, models in fitted.items():
            fit = heads[head]
            for r, model in enumerate(models[1:], start=1):
                config = fit.entry["head_config"]
                save_best(
                    lay.seed_checkpoint(head, r),
                    ctx.encoder,
                    head,
                    config,
                    model,
                    scale,
                    fit.metrics,
                )

    def _search(self, ctx: Context, head: str, data, fit_defaults, w_train):
        """The randomized search of one head: (its best as a study.HeadFit, its trials)."""
        from gifsent_train import study
        from gifsent_train.search import evaluate, run_search

        cfg, total = ctx.config, ctx.config.trials

        def on_trial(trial, is_best):
            ctx.reporter.progress(f"search {head}", trial.index + 1, total)
            if is_best:
                ctx.reporter.log(
                    f"{head} trial {trial.index}: dev RMSE "
                    f"{trial.metrics['dev']['rmse']:.4f} (best so far)"
                )

        ctx.reporter.progress(f"search {head}", 0, total)
        res = run_search(
            head,
            data,
            trials=cfg.trials,
            seed=cfg.seed,
            fit_defaults=fit_defaults,
            include_default=cfg.include_default_trial,
            trials_dir=ctx.layout.trials,
            on_trial=on_trial,
            w_train=w_train,
            signature=self.signature(ctx),
            head_fixed={"timeline": cfg.maxpool_timeline_kind()} if head == "maxpool" else None,
        )
        ctx.reporter.done(f"search {head}")
        best = res.best_trial
        entry = {
            "trial": best.index,
            "head_config": best.head_config,
            "fit": best.fit,
            "best_epoch": best.best_epoch + 1,  # counted from 1, as in Figure 3
            "epochs_run": best.epochs_run,
            "stopped_early": best.stopped_early,
            **(
                {"readout_best_epoch": best.readout_best_epoch + 1}
                if best.readout_best_epoch is not None
                else {}
            ),
        }
        fit = study.HeadFit(res.model, evaluate(res.model, data), entry, best, best.curves)
        return fit, res.trials


# ------------------------------------------------------------------ stage: report


def report_files(lay: RunLayout) -> dict[str, Path]:
    """The report's files, as a skipped report stage hands them on."""
    return {
        "table1_md": lay.report / "table1.md",
        "table1_csv": lay.report / "table1.csv",
        "per_emotion_csv": lay.report / "per_emotion.csv",
        "figure1": lay.report / "figure1.png",
        "figure3": lay.report / "figure3.png",
        "report_md": lay.report / "report.md",
    }


class ReportStage(Stage):
    """Table 1, per-emotion table, figures and report.md from metrics.json and scores.csv."""

    name = "report"

    def inputs(self, ctx: Context) -> str:
        # metrics.json's bytes, not only the search's inputs: `search --force` reruns the
        # search with the same inputs and writes new results, which the report must follow
        metrics = ctx.layout.metrics
        return _sha_obj(
            {
                "search": ctx.book.output_hash("search"),
                "scores": ctx.book.output_hash("scores"),
                "metrics": _sha_file(metrics) if metrics.exists() else "",
            }
        )

    def skipped(self, ctx: Context) -> None:
        ctx.report_files = report_files(ctx.layout)

    def run(self, ctx: Context) -> list[Path]:
        from gifsent_train.report import temporal_markdown, write_report

        lay = ctx.layout
        m = read_json(lay.metrics, None)
        if m is None:
            raise RuntimeError("run the search stage first (no metrics.json)")
        _, scores = read_scores_matrix(lay.scores)
        demo = read_json(ctx.config.data_path() / "demo.json", {}) or {}
        temporal = temporal_markdown(demo, m["models"])
        extra = _extra_markdown(m, read_json(lay.data, {}), temporal)
        files = write_report(lay.report, m["models"], m["per_emotion"], scores, m["curves"], extra)
        ctx.report_files = files
        return list(files.values())


STAGES: dict[str, type[Stage]] = {
    s.name: s for s in (ScoresStage, FeaturesStage, SearchStage, ReportStage)
}  # in run order


def _extra_markdown(m: dict, data: dict, temporal: str = "") -> str:
    from gifsent_train import report as R

    lines = []
    for block in (R.shipped_markdown(m), R.paired_markdown(m.get("paired") or [])):
        if block:
            lines += [block]
    if temporal:
        lines += [temporal]
    lines += [b for b in (R.timeline_markdown(m), R.intervals_markdown(m)) if b]
    models = m.get("models", {})
    if "bt_ceiling" in models or any("truth_agreement" in v for v in models.values()):
        lines += ["## Agreement with the true emotion strengths (demo data, test split)", ""]
        lines += ["| | mean Spearman | min Spearman |", "|---|---:|---:|"]
        names = {
            "bt_ceiling": "Bradley-Terry scores (vote-noise ceiling)",
            "ridge": "Ridge = linear head",
            "maxpool": "Best MaxPool",
            "rnn": "Best LSTM",
        }
        for k, label in names.items():
            a = models.get(k, {}).get("truth_agreement")
            if a:
                lines.append(f"| {label} | {a['mean_spearman']:.3f} | {a['min_spearman']:.3f} |")
        lines.append("")
    bt = data.get("bt_vs_truth")
    if bt:
        lines.append(
            f"Bradley-Terry vs truth over all GIFs: mean Spearman {bt['mean_spearman']:.3f}, "
            f"min {bt['min_spearman']:.3f}."
        )
    for head in ("maxpool", "rnn"):
        h = models.get(head)
        if h:
            lines.append(
                f"- best {head}: trial {h.get('trial')}, config {json.dumps(h.get('head_config'))}, "
                f"fit {json.dumps({k: h['fit'][k] for k in ('lr', 'batch_size', 'weight_decay')})}, "
                f"best epoch {h.get('best_epoch')} (from 1); test mean spread {h['test']['mean_spread']:.3f}"
            )
    block = R.training_length_markdown(m)
    if block:
        lines += ["", block]
    return "\n".join(lines)


# ------------------------------------------------------------------ adapters to the data modules


def read_scores_matrix(path: Path) -> tuple[list[str], np.ndarray]:
    """scores.csv -> (ids, scores [N, 17] in the target scale)."""
    from gifsent_train.bradley_terry import read_scores_csv

    bt = read_scores_csv(path)
    return list(bt.ids), bt.scores


def read_scores_stderr(path: Path) -> tuple[list[str], np.ndarray]:
    """scores.csv -> (ids, standard errors [N, 17] of the scores, in the target scale)."""
    from gifsent_train.bradley_terry import read_scores_csv

    bt = read_scores_csv(path)
    return list(bt.ids), bt.score_stderr


def _target_scale(lay: RunLayout):
    from gifsent_infer.contract import TargetScale

    return TargetScale.from_dict(read_json(lay.target_scale, None))


def save_best(path: Path, encoder, head: str, head_config: dict, model, scale, mets: dict) -> str:
    """Checkpoint of a best head with its contract document (metrics incl. test RMSE/EV)."""
    from gifsent_infer.contract import HeadInfo, ModelDocument
    from gifsent_models.checkpoint import save_checkpoint

    doc = ModelDocument(
        sampling=encoder.spec,
        normalization=encoder.normalization,
        encoder=encoder.info(),
        head=HeadInfo(name=head, config=dict(head_config)),
        target=scale,
        metrics=strict_json(mets),
    )
    return save_checkpoint(
        path,
        encoder=encoder,
        head_name=head,
        head_config=head_config,
        head=model,
        document=doc,
    )
