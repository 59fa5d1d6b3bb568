"""Issue 22's timeline number at a finer sampling: a finished demo run's heads on the held-out
moment GIFs, their timeline scored at --segments N (what `gifsent-infer --timeline --segments N`
does; MaxPool and linear only: an LSTM's running estimate needs the model's own S).

    .venv/bin/python benchmarks/bench_timeline.py RUN_DIR [--segments 16] [--split test,dev]

RUN_DIR: a `gifsent-train` run on demo data whose truth.csv records moments (demo data v2+;
moment_emotions from v3). Prints, per head, split and S (the model's own, then N), the peak-in-
moment rate, chance and their ratio (gifsent_train.study.timeline_study: the moment's emotions,
one peak per GIF), for the run's model (K=1) and its K seed refits fused (what `gifsent-export
--ensemble` ships: the mean of their timelines), and the splits pooled (hits over all their
moment GIFs / the pooled chance). An accuracy number: the machine's load changes only how long
it takes (a few minutes for ~60 GIFs at S=16 on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_line, load_tag


def _encode(enc, gifs: Path, ids: list[str], segments: int) -> np.ndarray:
    from gifsent_infer.reading import media
    from gifsent_train.features import TorchRunner, encode_segments

    spec = dataclasses.replace(enc.spec, segments=segments)
    runner = TorchRunner(enc, channels_last=True)
    frames = (media.read_media(gifs / f"{g}.gif", spec).frames[None] for g in ids)
    return np.stack([encode_segments(runner, f, enc.spec, segments)[0] for f in frames])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished gifsent-train run folder (demo data)")
    ap.add_argument("--segments", type=int, default=16, help="the finer S for MaxPool/linear")
    ap.add_argument("--split", default="test,dev", help="test, dev or both (test,dev): pooled")
    a = ap.parse_args(argv)
    splits = [x.strip() for x in a.split.split(",") if x.strip()]
    if not splits or set(splits) - {"test", "dev"}:
        ap.error(f"--split takes test, dev or test,dev; got {a.split!r}")

    from gifsent_models.checkpoint import load_checkpoint
    from gifsent_models.heads import EnsembleHead
    from gifsent_train import study
    from gifsent_train.config import TrainConfig
    from gifsent_train.demo_data import read_moment_emotions, read_moments
    from gifsent_train.run import RunLayout
    from gifsent_train.stages import load_data, truth_map

    cfg = TrainConfig.from_dict(json.loads((a.run / "config.json").read_text()))
    lay = RunLayout(a.run)
    data = load_data(cfg, lay)
    truth, p = truth_map(cfg), cfg.truth_path()
    moments, carried = read_moments(p), read_moment_emotions(p)
    print(cpu_line())
    print(load_tag())
    models = {}
    for h in cfg.heads:
        cks = [load_checkpoint(c) for c in lay.seed_checkpoints(h)]
        models[h] = {1: cks[0].head} | (
            {len(cks): EnsembleHead([c.head for c in cks])} if len(cks) > 1 else {}
        )
    enc = load_checkpoint(lay.checkpoint(cfg.heads[0])).encoder
    gifs = Path(cfg.gifs) if cfg.gifs else Path(cfg.data_dir) / "gifs"
    own_s = enc.spec.segments
    fine_spec = dataclasses.replace(enc.spec, segments=a.segments)
    sets = {}  # (split, S) -> (ids, features, spec)
    for split in splits:
        ids = [g for g in data.ids[split] if g in moments]
        row = {g: i for i, g in enumerate(data.ids[split])}
        sets[split, own_s] = (ids, data.x[split][[row[g] for g in ids]], enc.spec)
        t0 = time.perf_counter()
        sets[split, a.segments] = (ids, _encode(enc, gifs, ids, a.segments), fine_spec)
        print(f"run {a.run.name}: {len(ids)} moment GIFs in {split}, encoded at "
              f"S={a.segments} in {time.perf_counter() - t0:.0f} s")  # fmt: skip
    print(f"model S={own_s}, segment_weight {cfg.segment_weight:g}")
    print("| head | K | S | split | moment GIFs | peak in moment | chance | ratio ± se |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for h, by_k in models.items():
        for k, head in by_k.items():
            for s in dict.fromkeys((own_s, a.segments)):
                if h == "rnn" and s != own_s:
                    continue
                hits = gifs_n = chance = 0.0
                for split in splits:
                    ids, x, sp = sets[split, s]
                    d = SimpleNamespace(ids={"test": ids}, x={"test": x})
                    v = study.timeline_study(head, d, moments, sp, truth, carried)
                    print(
                        f"| {h} | {k} | {s} | {split} | {v['gifs']} | {v['peak_in_moment']:.1%} | "
                        f"{v['chance']:.1%} | {v['ratio']:.2f}x ± {v['ratio_se']:.2f} |"
                    )
                    hits += v["peak_in_moment"] * v["gifs"]
                    chance += v["chance"] * v["gifs"]
                    gifs_n += v["gifs"]
                if len(splits) > 1 and gifs_n:
                    rate, base = hits / gifs_n, chance / gifs_n
                    se = math.sqrt(rate * (1 - rate) / gifs_n) / base
                    print(
                        f"| {h} | {k} | {s} | **pooled** | {gifs_n:.0f} | {rate:.1%} | "
                        f"{base:.1%} | **{rate / base:.2f}x** ± {se:.2f} |"
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
