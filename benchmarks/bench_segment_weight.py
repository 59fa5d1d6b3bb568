"""MaxPool's timeline kinds compared on a finished demo run's cached features: the shared
timeline with its multiple-instance term (`gifsent-train --maxpool-timeline shared
--segment-weight W`) and the mil readout (the default). Per variant, N fit seeds of MaxPool's
default configuration, each one's test RMSE and its timeline's peak-in-moment ratio (issue 22)
on the test and dev moment GIFs at the model's S and at --segments N, and test+dev pooled;
mean ± sd over the seeds.

    .venv/bin/python benchmarks/bench_segment_weight.py RUN_DIR [--variants shared:0,shared:10,mil]
    .venv/bin/python benchmarks/bench_segment_weight.py RUN_DIR --weights 0,1,3,10   # shared:W each

A variant is `shared:W` (the score MLP's own timeline, term weight W) or `mil` (its own readout).

RUN_DIR: a `gifsent-train` run on demo data whose truth.csv records moments (demo data v3,
e.g. `gifsent-train demo-data DIR --moment-share 0.5`, then `gifsent-train --preset demo --data
DIR`). The fits use the run's training settings (patience, epoch ceiling, one thread) and its
cached features; the test and dev moment GIFs are re-encoded once at --segments. An accuracy
number: the machine's load changes only how long it takes (~5 s per fit, plus ~1-2 minutes of
encoding, on 2 busy cores).
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
from bench_timeline import _encode
from machine import cpu_line, load_tag

SPLITS = ("test", "dev")


def _ratios(model, sets, moments, truth, carried) -> dict:
    """(split, S) -> ratio, and ("pooled", S) -> pooled ratio of one model."""
    from gifsent_train import study

    out, acc = {}, {}
    for (split, s), (ids, x, spec) in sets.items():
        d = SimpleNamespace(ids={"test": ids}, x={"test": x})
        v = study.timeline_study(model, d, moments, spec, truth, carried)
        out[split, s] = v["ratio"]
        h, c, n = acc.get(s, (0.0, 0.0, 0))
        acc[s] = (h + v["peak_in_moment"] * v["gifs"], c + v["chance"] * v["gifs"], n + v["gifs"])
    for s, (h, c, _n) in acc.items():
        out["pooled", s] = h / c
    return out


def _variant(text: str) -> tuple[str, dict, float]:
    """ "shared:W" or "mil" -> (its name, MaxPool's head config, the term's weight)."""
    kind, _, w = text.strip().partition(":")
    if kind == "mil" and not w:
        return "mil", {"timeline": "mil"}, 0.0
    if kind == "shared":
        return f"shared, W={float(w or 0):g}", {"timeline": "shared"}, float(w or 0)
    raise SystemExit(f"bad variant {text!r}: shared:W or mil")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished gifsent-train run folder (demo data)")
    ap.add_argument(
        "--variants", default="shared:0,shared:10,mil", help="shared:W or mil, comma-separated"
    )
    ap.add_argument("--weights", default="", help="shared timeline term weights (shared:W each)")
    ap.add_argument("--seeds", type=int, default=5, help="fit seeds per variant")
    ap.add_argument("--segments", type=int, default=16, help="the finer timeline S")
    a = ap.parse_args(argv)
    if a.weights:
        a.variants = ",".join(f"shared:{w.strip()}" for w in a.weights.split(",") if w.strip())
    variants = [_variant(v) for v in a.variants.split(",") if v.strip()]

    from gifsent_models.checkpoint import load_checkpoint
    from gifsent_train.config import TrainConfig
    from gifsent_train.demo_data import read_moment_emotions, read_moments
    from gifsent_train.fit import FitConfig, fit_head, predict
    from gifsent_train.run import RunLayout
    from gifsent_train.stages import load_data, truth_map

    cfg = TrainConfig.from_dict(json.loads((a.run / "config.json").read_text()))
    lay = RunLayout(a.run)
    data = load_data(cfg, lay)
    truth, p = truth_map(cfg), cfg.truth_path()
    moments, carried = read_moments(p), read_moment_emotions(p)
    enc = load_checkpoint(lay.checkpoint(cfg.heads[0])).encoder
    gifs = Path(cfg.gifs) if cfg.gifs else Path(cfg.data_dir) / "gifs"
    own = enc.spec.segments
    fine = dataclasses.replace(enc.spec, segments=a.segments)
    print(cpu_line())
    print(load_tag())
    sets = {}
    for split in SPLITS:
        ids = [g for g in data.ids[split] if g in moments]
        row = {g: i for i, g in enumerate(data.ids[split])}
        sets[split, own] = (ids, data.x[split][[row[g] for g in ids]], enc.spec)
        if a.segments != own:
            sets[split, a.segments] = (ids, _encode(enc, gifs, ids, a.segments), fine)
    print(f"run {a.run.name}: model S={own}; moment GIFs: "
          + ", ".join(f"{s} {len(sets[s, own][0])}" for s in SPLITS))  # fmt: skip
    cols = [(sp, s) for s in dict.fromkeys((own, a.segments)) for sp in (*SPLITS, "pooled")]
    print("| timeline | test RMSE | " + " | ".join(f"{sp} @{s}" for sp, s in cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    for name, head_cfg, w in variants:
        rmse, got, t0 = [], [], time.perf_counter()
        for seed in range(a.seeds):
            fc = FitConfig(
                max_epochs=cfg.max_epochs, patience=cfg.patience, seed=seed, threads=1,
                segment_weight=w,
            )  # fmt: skip
            m, _ = fit_head("maxpool", head_cfg, data.x["train"], data.y["train"],
                            data.x["dev"], data.y["dev"], fc)  # fmt: skip
            rmse.append(float(np.sqrt(np.mean((predict(m, data.x["test"]) - data.y["test"]) ** 2))))
            got.append(_ratios(m, sets, moments, truth, carried))
        cells = [
            f"{np.mean([g[c] for g in got]):.2f} ± {np.std([g[c] for g in got]):.2f}" for c in cols
        ]
        print(f"| {name} | {np.mean(rmse):.4f} ± {np.std(rmse):.4f} | " + " | ".join(cells)
              + f" |  ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    print(f"mean ± sd over {a.seeds} fit seeds; ratio = peak-in-moment rate / chance")
    print(load_tag())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
