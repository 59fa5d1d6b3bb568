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
    # The linear head is this ridge regression, made exportable; one row for both.
    ("ridge", "Ridge on pooled features = linear head (baseline)"),
    ("maxpool", "Best MaxPool"),
    ("rnn", "Best LSTM"),
)
TABLE1_COLUMNS = (
    "model",
    "train_rmse",
    "dev_rmse",
    "test_rmse",
    "test_rmse_std",
    "test_ev",
    "test_ev_std",
    "seeds",
)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _seed_stat(m: dict, split: str, key: str) -> tuple[float | None, float | None, int]:
    """(mean, std, n) over seed repeats, or the single run's value with n = 1."""
    s = (m.get("seeds") or {}).get(split, {}).get(key)
    if s and len(s.get("values", [])) > 1:
        return s["mean"], s["std"], len(s["values"])
    return m.get(split, {}).get(key), None, 1


def table1_rows(models: dict[str, dict]) -> list[dict]:
    """models: key -> {"train": {"rmse",...}, "dev": {...}, "test": {...}, "seeds": ...} -> rows.

    Test RMSE and EV are means over the seed repeats when there are several (with their
    standard deviation); train and dev are the kept (search) model's.
    """
    rows = []
    for key, label in TABLE1_ROWS:
        m = models.get(key)
        if not m:
            continue
        rmse, rmse_sd, n = _seed_stat(m, "test", "rmse")
        ev, ev_sd, _ = _seed_stat(m, "test", "ev")
        rows.append(
            {
                "model": label,
                "train_rmse": m.get("train", {}).get("rmse"),
                "dev_rmse": m.get("dev", {}).get("rmse"),
                "test_rmse": rmse,
                "test_rmse_std": rmse_sd,
                "test_ev": ev,
                "test_ev_std": ev_sd,
                "seeds": n,
            }
        )
    return rows


def _pm(v, sd) -> str:
    return _fmt(v) if sd is None else f"{_fmt(v)} ± {_fmt(sd)}"


def table1_markdown(models: dict[str, dict]) -> str:
    rows = table1_rows(models)
    n = max((r["seeds"] for r in rows), default=1)
    suffix = f" (mean ± std, {n} seeds)" if n > 1 else ""
    out = io.StringIO()
    out.write(f"| Model | Train RMSE | Dev RMSE | Test RMSE{suffix} | Test EV{suffix} |\n")
    out.write("|---|---:|---:|---:|---:|\n")
    for r in rows:
        out.write(
            f"| {r['model']} | {_fmt(r['train_rmse'])} | {_fmt(r['dev_rmse'])} | "
            f"{_pm(r['test_rmse'], r['test_rmse_std'])} | {_pm(r['test_ev'], r['test_ev_std'])} |\n"
        )
    if n > 1:
        out.write(
            "\nTrain and dev: the search's kept model. The baselines and the linear head are "
            "closed-form, so every seed gives them the same numbers (std 0).\n"
        )
    return out.getvalue()


HEAD_LABELS = {
    "linear": "linear (ridge)",
    "maxpool": "MaxPool",
    "rnn": "LSTM",
    "mean": "training mean",
    "ridge": "ridge",
}


def shipped_markdown(m: dict) -> str:
    """Which head is best on dev, i.e. what `gifsent-export --model best` exports."""
    best = m.get("best_head")
    if not best:
        return ""
    models = m.get("models", {})
    dev = ", ".join(
        f"{HEAD_LABELS.get(h, h)} {models[h]['dev']['rmse']:.4f}"
        for h in ("linear", "maxpool", "rnn")
        if h in models and models[h].get("dev")
    )
    return (
        "## Shipped model\n\n"
        f"Best head on dev: **{HEAD_LABELS.get(best, best)}** (dev RMSE: {dev}). "
        f"`checkpoints/best.pt` points at `best-{best}.pt`; `gifsent-export --model best` "
        "exports it.\n"
    )


def _section(title: str, intro: str, header: str, align: str, rows: list[str]) -> str:
    """A report section: `## title`, its intro paragraph, then a table (header, alignment row,
    one line a row)."""
    return f"## {title}\n\n{intro}\n\n{header}\n{align}\n" + "".join(f"{row}\n" for row in rows)


def paired_markdown(paired: list[dict]) -> str:
    """Each head vs each baseline on the same test GIFs (per-GIF squared errors)."""
    if not paired:
        return ""
    rows = []
    for r in paired:
        lo, hi = r.get("ci_low"), r.get("ci_high")
        ci = "—" if lo is None or hi is None else f"[{lo:+.2e}, {hi:+.2e}]"
        p = r.get("p_wilcoxon")
        share = r.get("better_share")
        rows.append(
            f"| {HEAD_LABELS.get(r['model'], r['model'])} | {HEAD_LABELS.get(r['baseline'], r['baseline'])} "
            f"| {r.get('seeds', 1)} | {_fmt(r['rmse_model'])} | {_fmt(r['rmse_base'])} "
            f"| {r['mse_diff']:+.2e} | {ci} | {'—' if p is None else f'{p:.3g}'} "
            f"| {'—' if share is None else f'{share:.0%}'} |"
        )
    return _section(
        "Paired comparison with the baselines (test split)",
        "Per test GIF, the squared error averaged over emotions (and over the head's seeds); "
        "d = head − baseline. Negative ΔMSE: the head is better. 95% bootstrap interval over "
        "GIFs (2000 resamples) and two-sided Wilcoxon signed-rank p-value (scipy.stats).",
        "| Head | vs | seeds | RMSE head | RMSE baseline | ΔMSE | 95% interval | p | GIFs better |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
        rows,
    )


def temporal_markdown(demo: dict, models: dict) -> str:
    """Demo data: per emotion, how much of the true signal only motion shows, next to how well
    each model's test predictions rank the true strengths (Spearman)."""
    shares = demo.get("signal_shares")
    if not shares:
        return ""
    agree = {
        k: (models.get(k) or {}).get("truth_agreement", {}).get("spearman", {})
        for k in ("ridge", "maxpool", "rnn")
    }
    rows = []
    for e in EMOTIONS:
        s = shares.get(e)
        if not s:
            continue
        cells = [_fmt(agree[k].get(e)) for k in ("ridge", "maxpool", "rnn")]
        rows.append(
            f"| {e} | {s['temporal']:.0%} | {s['static']:.0%} | {s['noise']:.0%} | "
            + " | ".join(cells)
            + " |"
        )
    return _section(
        "Where the signal lives (demo data)",
        f"Temporal share knob {demo.get('temporal_share')}; {demo.get('moment_share', 0):.0%} "
        "of GIFs show their expression only in a short part of the timeline. Shares of each "
        "true strength's variance, measured on the generated data: temporal (only motion and "
        "timing show it), static (any single frame shows it), noise (no pixel shows it). "
        "Right: Spearman of test predictions against the true strengths.",
        "| Emotion | temporal | static | noise | ridge | MaxPool | LSTM |",
        "|---|---:|---:|---:|---:|---:|---:|",
        rows,
    )


def timeline_markdown(m: dict) -> str:
    """Issue 22's timeline number: how often the timeline peaks inside the true moment."""
    tl = m.get("timeline") or {}
    rows = [(h, v) for h, v in tl.items() if v.get("gifs")]
    if not rows:
        return ""
    which = rows[0][1].get("emotions", "top 3 by truth")
    what = (
        "the emotions its moment carries (the truth file's moment_emotions: those the moment's "
        "expression raises most)"
        if which == "moment_emotions"
        else "its 3 truly strongest emotions (a truth file without moment_emotions)"
    )
    return _section(
        "Where in the GIF: the timeline (demo data, test split)",
        "For test GIFs whose expression shows only in a short moment: how often the segment "
        f"where the timeline (segment_scores) of {what} peaks lies inside the moment, against "
        "chance (the moment's share of the segments). The peak: each emotion's deviation from "
        "its mean over the GIF in units of its spread over the GIF, summed over those emotions "
        "(for an LSTM whose timeline is its running estimate, what each segment adds to it). "
        "'each' counts every "
        "emotion's own peak. ± is the ratio's binomial standard error. Rows with more segments: "
        "the same heads' timeline sampled finer (`gifsent-infer --timeline --segments N`; "
        "an LSTM needs its own S). The issue's bar is 3x chance.",
        "| Head | moment GIFs | segments | peak in moment | chance | ratio | each emotion |",
        "|---|---:|---:|---:|---:|---:|---:|",
        [_timeline_row(h, x) for h, v in rows for x in (v, v.get("fine")) if x and x.get("gifs")],
    )


def _timeline_row(head: str, v: dict) -> str:
    return (
        f"| {head} | {v['gifs']} | {v['segments']} | {v['peak_in_moment']:.1%} | "
        f"{v['chance']:.1%} | {v['ratio'] or 0:.2f}x ± {v.get('ratio_se') or 0:.2f} | "
        f"{v.get('per_emotion_ratio') or 0:.2f}x |"
    )


def intervals_markdown(m: dict) -> str:
    """Issue 22's interval numbers: conformal coverage, width and Spearman(spread, |err|)."""
    iv = m.get("intervals") or {}
    rows = []
    for head, ks in iv.items():
        for k, entry in sorted(ks.items()):
            test = entry.get("test") if isinstance(entry, dict) else None
            for level, v in ((test or {}).get("levels") or {}).items():
                rows.append((head, k[1:], level, v, test.get("spearman_spread_abs_error")))
    if not rows:
        return ""
    return _section(
        "How sure: calibrated intervals (test split)",
        "Split-conformal intervals calibrated on dev, per emotion; K heads = the search's best "
        "config refit with K seeds (K = 1: the best model alone). Coverage should sit within 3 "
        "points of the level; Spearman is between the seeds' spread and |error| (near 0: the "
        "spread says little and the conformal width carries the guarantee).",
        "| Head | K | level | coverage (mean) | worst emotion | mean width | Spearman |",
        "|---|---:|---:|---:|---:|---:|---:|",
        [
            f"| {head} | {k} | {level} | {v['coverage_mean']:.3f} | {v['coverage_worst']:.3f} "
            f"({v['worst_emotion']}) | {v['width_mean']:.3f} | {_fmt(rho)} |"
            for head, k, level, v, rho in rows
        ],
    )


def training_length_markdown(m: dict) -> str:
    """Epoch counts (from 1, as Figure 3) and the trials that reached the epoch ceiling."""
    tr = m.get("training") or {}
    if not tr:
        return ""
    lines = [
        "## Training length",
        "",
        f"Early stopping on dev loss, patience {tr.get('patience')} epochs, ceiling "
        f"{tr.get('max_epochs')} epochs; epochs are counted from 1 here and in Figure 3. "
        f"Loss: {'MSE' if tr.get('loss_weights') == 'none' else 'MSE weighted by capped inverse Bradley-Terry variance (cap ' + str(tr.get('weight_cap')) + '× median)'}."
        + (
            f" MaxPool adds a multiple-instance term (weight {tr['segment_weight']:g}): its "
            "per-segment outputs' max must explain each GIF's label too."
            if tr.get("segment_weight")
            else ""
        )
        + (
            " MaxPool's timeline is its own readout (a second MLP on each segment, trained "
            "beside it so that its per-segment outputs' max explains each GIF's label, with its "
            "own early stopping on that loss on dev; the scores train as without it)."
            if tr.get("maxpool_timeline") == "mil"
            else ""
        )
        + (
            " The LSTM's timeline is a readout of the same kind beside it (its scores train as "
            "without it)."
            if ((m.get("models") or {}).get("rnn") or {}).get("readout_best_epoch") is not None
            else ""
        ),
        "",
    ]
    for head in ("maxpool", "rnn"):
        h = (m.get("models") or {}).get(head)
        if h and h.get("best_epoch") is not None:
            how = "patience" if h.get("stopped_early") else "the ceiling"
            lines.append(
                f"- best {HEAD_LABELS[head]}: best epoch {h['best_epoch']} of "
                f"{h.get('epochs_run')} run (ended by {how})"
                + (
                    f"; its timeline readout's best epoch {h['readout_best_epoch']}"
                    if h.get("readout_best_epoch")
                    else ""
                )
            )
    hits = m.get("ceiling_hits") or []
    if hits:
        lines += [
            "",
            f"**Warning: {len(hits)} trial(s) reached the {tr.get('max_epochs')}-epoch ceiling "
            "with dev loss still improving within the patience window** (a higher "
            "`--max-epochs` may find better models):",
            "",
        ]
        lines += [
            f"- {HEAD_LABELS.get(h['head'], h['head'])} trial {h['trial']}: best epoch "
            f"{h['best_epoch']} of {h['ceiling']}"
            for h in hits
        ]
    else:
        lines += ["", "No trial reached the epoch ceiling: patience ended every fit."]
    return "\n".join(lines) + "\n"


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
        if c.get("best_epoch") is not None:  # counted from 1, like the x axis and the report
            ax.axvline(c["best_epoch"], color="grey", ls=":", label="best dev")
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
