"""The run's report: Table 1 like the study's, a per-emotion table, Figure 1 and Figure 3.

Inputs are plain data (the metrics dict the pipeline writes to metrics.json), so the
report can be rebuilt from a finished run without touching features or models.
matplotlib is imported inside the figure functions with the Agg backend.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from gifsent_infer.contract import EMOTIONS

# Row order and display names of Table 1; keys are the pipeline's model keys.
TABLE1_ROWS = (
    ("mean", "Training mean (baseline)"),
    ("ridge", "Ridge on pooled features (baseline)"),
    ("maxpool", "Best MaxPool"),
    ("rnn", "Best LSTM"),
)
TABLE1_COLUMNS = ("model", "train_rmse", "dev_rmse", "test_rmse", "test_ev")


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def table1_rows(models: dict[str, dict]) -> list[dict]:
    """models: key -> {"train": {"rmse",...}, "dev": {...}, "test": {...}} -> Table 1 rows."""
    rows = []
    for key, label in TABLE1_ROWS:
        m = models.get(key)
        if not m:
            continue
        rows.append(
            {
                "model": label,
                "train_rmse": m.get("train", {}).get("rmse"),
                "dev_rmse": m.get("dev", {}).get("rmse"),
                "test_rmse": m.get("test", {}).get("rmse"),
                "test_ev": m.get("test", {}).get("ev"),
            }
        )
    return rows


def table1_markdown(models: dict[str, dict]) -> str:
    rows = table1_rows(models)
    out = io.StringIO()
    out.write("| Model | Train RMSE | Dev RMSE | Test RMSE | Test EV |\n")
    out.write("|---|---:|---:|---:|---:|\n")
    for r in rows:
        out.write(
            f"| {r['model']} | {_fmt(r['train_rmse'])} | {_fmt(r['dev_rmse'])} | "
            f"{_fmt(r['test_rmse'])} | {_fmt(r['test_ev'])} |\n"
        )
    return out.getvalue()


def _write_csv(path: Path, rows: list[dict], columns) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})


PER_EMOTION_COLUMNS = (
    "model",
    "emotion",
    "rmse",
    "r2",
    "pearson",
    "spearman",
    "spread",
    "target_mean",
    "target_std",
    "pred_mean",
    "pred_std",
    "truth_spearman",
)


def per_emotion_markdown(rows: list[dict]) -> str:
    out = io.StringIO()
    out.write("| Model | Emotion | RMSE | R² | Pearson | Spearman | Spread | vs truth |\n")
    out.write("|---|---|---:|---:|---:|---:|---:|---:|\n")
    for r in rows:
        out.write(
            f"| {r['model']} | {r['emotion']} | {_fmt(r['rmse'])} | {_fmt(r['r2'])} | "
            f"{_fmt(r['pearson'])} | {_fmt(r['spearman'])} | {_fmt(r['spread'])} | "
            f"{_fmt(r.get('truth_spearman'))} |\n"
        )
    return out.getvalue()


def figure1(scores: np.ndarray, path: Path) -> Path:
    """Figure 1: histogram of the (scaled) scores of every GIF, one panel per emotion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = np.asarray(scores, dtype=np.float64)
    fig, axes = plt.subplots(3, 6, figsize=(15, 7.5), sharex=True)
    for e, ax in enumerate(axes.flat):
        if e >= scores.shape[1]:
            ax.axis("off")
            continue
        ax.hist(scores[:, e], bins=30, color="#4c72b0")
        ax.set_title(EMOTIONS[e], fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("Figure 1: distribution of Bradley-Terry scores per emotion (min-max scaled)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def figure3(curves: dict[str, dict[str, list[float]]], path: Path) -> Path:
    """Figure 3: train and dev MSE per epoch of the best model of each head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(curves), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items(), strict=False):
        ep = np.arange(1, len(c.get("train", [])) + 1)
        ax.plot(ep, c.get("train", []), label="train")
        ax.plot(ep, c.get("dev", []), label="dev")
        if c.get("best_epoch") is not None:
            ax.axvline(c["best_epoch"] + 1, color="grey", ls=":", label="best dev")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("MSE")
        ax.set_yscale("log")
        ax.legend()
    fig.suptitle("Figure 3: training and dev loss of the best models")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_report(
    out_dir: Path,
    models: dict[str, dict],
    per_emotion_rows: list[dict],
    scores: np.ndarray | None = None,
    curves: dict | None = None,
    extra_markdown: str = "",
) -> dict[str, Path]:
    """Write table1.md/.csv, per_emotion.md/.csv, figure1.png, figure3.png, report.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    t1 = table1_markdown(models)
    (out / "table1.md").write_text(t1, encoding="utf-8")
    _write_csv(out / "table1.csv", table1_rows(models), TABLE1_COLUMNS)
    files["table1_md"], files["table1_csv"] = out / "table1.md", out / "table1.csv"
    _write_csv(out / "per_emotion.csv", per_emotion_rows, PER_EMOTION_COLUMNS)
    pe_md = per_emotion_markdown(per_emotion_rows)
    (out / "per_emotion.md").write_text(pe_md, encoding="utf-8")
    files["per_emotion_csv"], files["per_emotion_md"] = (
        out / "per_emotion.csv",
        out / "per_emotion.md",
    )
    if scores is not None and len(scores):
        files["figure1"] = figure1(scores, out / "figure1.png")
    if curves:
        files["figure3"] = figure3(curves, out / "figure3.png")
    md = ["# gifsent training report", "", "## Table 1", "", t1]
    if extra_markdown:
        md += [extra_markdown, ""]
    md += ["## Per emotion (test split)", "", pe_md]
    for key in ("figure1", "figure3"):
        if key in files:
            md.append(f"![{key}]({files[key].name})\n")
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    files["report_md"] = out / "report.md"
    return files
