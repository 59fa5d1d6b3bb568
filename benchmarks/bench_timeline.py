"""Issue 22's timeline number at a finer sampling: a finished demo run's heads on the test split's
moment GIFs, their timeline scored at --segments N (what `gifsent-infer --timeline --segments N`
does; MaxPool and linear only: an LSTM's running estimate needs the model's own S).

    .venv/bin/python benchmarks/bench_timeline.py RUN_DIR [--segments 16] [--split test]

RUN_DIR: a `gifsent-train` run on demo data whose truth.csv records moments (demo data v2+;
moment_emotions from v3). Prints, per head and per S (the model's own, then N), the peak-in-
moment rate, chance and their ratio (gifsent_train.study.timeline_study: the moment's emotions,
one peak per GIF). An accuracy number: the machine's load changes only how long it takes (a
few minutes for ~30 GIFs at S=16 on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_line, load_tag


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished gifsent-train run folder (demo data)")
    ap.add_argument("--segments", type=int, default=16, help="the finer S for MaxPool/linear")
    ap.add_argument("--split", default="test", choices=("test", "dev"))
    a = ap.parse_args(argv)

    from gifsent_infer.reading import media
    from gifsent_models.checkpoint import load_checkpoint
    from gifsent_train import study
    from gifsent_train.config import TrainConfig
    from gifsent_train.demo_data import read_moment_emotions, read_moments
    from gifsent_train.features import TorchRunner, encode_segments
    from gifsent_train.run import RunLayout
    from gifsent_train.stages import load_data, truth_map

    cfg = TrainConfig.from_dict(json.loads((a.run / "config.json").read_text()))
    lay = RunLayout(a.run)
    data = load_data(cfg, lay)
    truth, p = truth_map(cfg), cfg.truth_path()
    moments, carried = read_moments(p), read_moment_emotions(p)
    ids = [g for g in data.ids[a.split] if g in moments]
    print(cpu_line())
    print(load_tag())
    print(f"run {a.run.name}: {len(ids)} moment GIFs in {a.split}")
    heads = {h: load_checkpoint(lay.checkpoint(h)) for h in cfg.heads}
    enc = next(iter(heads.values())).encoder
    spec = dataclasses.replace(enc.spec, segments=a.segments)
    runner = TorchRunner(enc, channels_last=True)
    t0 = time.perf_counter()
    gifs = Path(cfg.gifs) if cfg.gifs else Path(cfg.data_dir) / "gifs"
    fine = np.stack(
        [
            encode_segments(runner, media.read_media(gifs / f"{g}.gif", spec).frames[None],
                            enc.spec, a.segments)[0]
            for g in ids
        ]
    )  # fmt: skip
    print(f"encoded at S={a.segments} in {time.perf_counter() - t0:.0f} s")
    row = {g: i for i, g in enumerate(data.ids[a.split])}
    own = data.x[a.split][[row[g] for g in ids]]
    print("| head | S | moment GIFs | peak in moment | chance | ratio ± se | each emotion |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for h, lc in heads.items():
        for s, x, sp in ((enc.spec.segments, own, enc.spec), (a.segments, fine, spec)):
            if h == "rnn" and s != enc.spec.segments:
                continue
            d = SimpleNamespace(ids={"test": ids}, x={"test": x})
            v = study.timeline_study(lc.head, d, moments, sp, truth, carried)
            print(
                f"| {h} | {s} | {v['gifs']} | {v['peak_in_moment']:.1%} | {v['chance']:.1%} | "
                f"{v['ratio']:.2f}x ± {v['ratio_se']:.2f} | {v['per_emotion_ratio']:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
