"""Does weighting the MSE by the certainty of each Bradley-Terry score help? Measured on demo data.

On a finished demo run (its features, scores and splits), fits the same head configuration
(the head's default, trial 0 of every search) with plain MSE and with the inverse-variance
weights of `--loss-weights inverse-variance`, over several fit seeds each, and compares
what matters on demo data: how well test predictions rank the *true* emotion strengths
(Spearman per emotion, averaged over emotions), and test RMSE against the Bradley-Terry
scores. Same data, splits, configuration and seeds for both arms; only the loss differs.

    GIFSENT_HOME=/tmp/g python benchmarks/bench_weighted_loss.py /tmp/g/runs/<demo run>
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a finished training run on demo data (with truth)")
    ap.add_argument("--heads", default="maxpool,rnn")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cap", type=float, default=10.0, help="weight cap, times the median")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from gifsent_models.heads import head_config
    from gifsent_train import metrics as M
    from gifsent_train.config import TrainConfig
    from gifsent_train.fit import FitConfig, fit_head, predict
    from gifsent_train.run import RunLayout
    from gifsent_train.stages import load_data, train_weights, truth_map

    if args.threads:
        torch.set_num_threads(args.threads)
    saved = json.loads((args.run / "config.json").read_text(encoding="utf-8"))
    cfg = TrainConfig.from_dict(
        {**saved, "run_dir": str(args.run.parent), "run_name": args.run.name}
    )
    # Read the finished run through the stages' readers (nothing in it is rewritten).
    weighted = cfg.replace(loss_weights="inverse-variance", weight_cap=args.cap)
    layout = RunLayout(args.run)
    data = load_data(weighted, layout)
    weights = train_weights(weighted, layout, data)
    truth = truth_map(weighted)
    if truth is None:
        raise SystemExit("the run's data has no truth.csv: use demo data")
    have = [i for i, g in enumerate(data.ids["test"]) if g in truth]
    tv = np.stack([truth[data.ids["test"][i]] for i in have])
    print(
        f"weights: min {weights.min():.3f}, median {np.median(weights):.3f}, "
        f"max {weights.max():.3f} (cap {args.cap}x median, mean 1)"
    )
    print("| head | loss | mean Spearman vs truth (test) | test RMSE vs BT scores |")
    print("|---|---|---:|---:|")
    for head in args.heads.split(","):
        for mode, w in (("plain MSE", None), ("inverse-variance", weights)):
            rho, rmse = [], []
            for s in range(args.seeds):
                fit = FitConfig(max_epochs=cfg.max_epochs, patience=cfg.patience, seed=1000 * s)
                hc = asdict(head_config(head, None))
                model, _ = fit_head(
                    head,
                    hc,
                    data.x["train"],
                    data.y["train"],
                    data.x["dev"],
                    data.y["dev"],
                    fit,
                    w_train=w,
                )
                p = predict(model, data.x["test"])
                rho.append(M.agreement(tv, p[have])["mean_spearman"])
                rmse.append(M.rmse(data.y["test"], p))
            print(
                f"| {head} | {mode} | {np.mean(rho):.3f} ± {np.std(rho, ddof=1):.3f} "
                f"| {np.mean(rmse):.4f} ± {np.std(rmse, ddof=1):.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
