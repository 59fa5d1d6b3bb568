"""Does weighting the MSE by the certainty of each Bradley-Terry score help? Measured on demo data.

Trains the same preset twice on the same data, features and splits, once with plain MSE and
once with `--loss-weights inverse-variance`, and compares what matters on demo data: how
well each head's test predictions rank the *true* emotion strengths (mean Spearman over
emotions, averaged over the seed repeats' kept model), plus test RMSE against the
Bradley-Terry scores (mean ± std over seeds).

    GIFSENT_HOME=/tmp/g python benchmarks/bench_weighted_loss.py --data /tmp/g/data/demo

The feature cache is shared, so the second run only repeats the search (minutes on a CPU).
"""

from __future__ import annotations

import argparse
import json

from gifsent_train.pipeline import resolve_config, run_all


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="demo data folder (with truth.csv)")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cap", type=float, default=10.0, help="weight cap, times the median")
    args = ap.parse_args(argv)

    rows = {}
    for mode in ("none", "inverse-variance"):
        cfg = resolve_config(
            args.preset,
            None,
            data_dir=args.data,
            seed=args.seed,
            loss_weights=mode,
            weight_cap=args.cap,
            run_name=f"weights-{mode}-seed{args.seed}",
        )
        res = run_all(cfg)
        m = json.loads(res.layout.metrics.read_text(encoding="utf-8"))
        rows[mode] = {
            h: {
                "truth_spearman": m["models"][h].get("truth_agreement", {}).get("mean_spearman"),
                "test_rmse": m["models"][h]["seeds"]["test"]["rmse"],
            }
            for h in cfg.heads
            if h in m["models"]
        }
    print("| head | loss | mean Spearman vs truth (test) | test RMSE (mean ± std over seeds) |")
    print("|---|---|---:|---:|")
    for h in rows["none"]:
        for mode in rows:
            r = rows[mode][h]
            t = r["test_rmse"]
            print(
                f"| {h} | {mode} | {r['truth_spearman']:.3f} | {t['mean']:.4f} ± {t['std']:.4f} |"
            )


if __name__ == "__main__":
    main()
