"""Bradley-Terry at GIFGIF scale: our stacked Newton-CG fit of 17 emotions vs choix on one.

GIFGIF: 6,170 GIFs; decisive comparisons per emotion from 39,609 (relief) to 106,877
(happiness), about 1.09M in all. The votes here are simulated from the demo data's ground
truth (strengths with std 1, correlated across emotions), so agreement with the truth is
measurable too.

    .venv/bin/python benchmarks/bench_bradley_terry.py [--runs 3] [--choix opt|ilsr|none]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from scipy.stats import spearmanr

from gifsent_infer.contract import EMOTIONS
from gifsent_train.bradley_terry import DEFAULT_L2, fit_all_emotions, fit_bradley_terry
from gifsent_train.demo_data import true_strengths
from gifsent_train.votes import Votes, VoteStats

N_GIFS = 6170
LOW, HIGH, TOTAL = 39_609, 106_877, 1_090_000


def gifgif_counts() -> dict[str, int]:
    """17 counts from LOW (relief) to HIGH (happiness) summing to about TOTAL."""
    u = np.linspace(0.0, 1.0, len(EMOTIONS))
    lo_p, hi_p = 0.1, 10.0
    for _ in range(60):  # bisect the skew so the total matches
        p = (lo_p + hi_p) / 2
        total = (LOW + (HIGH - LOW) * u**p).sum()
        lo_p, hi_p = (p, hi_p) if total > TOTAL else (lo_p, p)
    counts = np.round(LOW + (HIGH - LOW) * u**p).astype(int)
    others = [e for e in EMOTIONS if e not in ("relief", "happiness")]
    order = ["relief", *others, "happiness"]
    return dict(zip(order, counts.tolist(), strict=True))


def simulate(seed: int = 0) -> tuple[Votes, np.ndarray]:
    rng = np.random.default_rng(seed)
    _, truth = true_strengths(N_GIFS, rng)
    counts = gifgif_counts()
    winners, losers = {}, {}
    for k, e in enumerate(EMOTIONS):
        m = counts[e]
        a = rng.integers(0, N_GIFS, m)
        b = (a + rng.integers(1, N_GIFS, m)) % N_GIFS
        a_wins = rng.random(m) < 1.0 / (1.0 + np.exp(-(truth[a, k] - truth[b, k])))
        winners[e] = np.where(a_wins, a, b).astype(np.int32)
        losers[e] = np.where(a_wins, b, a).astype(np.int32)
    ids = [f"g{i:05d}" for i in range(N_GIFS)]
    return Votes(ids=ids, winners=winners, losers=losers, stats=VoteStats()), truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--choix", choices=("opt", "ilsr", "none"), default="opt")
    ap.add_argument("--l2", type=float, default=DEFAULT_L2)
    args = ap.parse_args()

    votes, truth = simulate()
    n_cmp = sum(len(w) for w in votes.winners.values())
    print(
        f"data: {N_GIFS} GIFs, {n_cmp:,} decisive comparisons, "
        f"per emotion {min(gifgif_counts().values()):,}..{max(gifgif_counts().values()):,}"
    )
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")

    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        scores = fit_all_emotions(votes, l2=args.l2)
        times.append(time.perf_counter() - t)
    print(
        f"ours, all 17 emotions: median {statistics.median(times):.2f} s over {args.runs} runs "
        f"(runs: {', '.join(f'{x:.2f}' for x in times)}); Newton iterations {scores.iterations}, "
        f"converged {scores.converged}"
    )
    rho = np.array([spearmanr(scores.strength[:, k], truth[:, k])[0] for k in range(17)])
    print(
        f"ours vs truth, Spearman per emotion: min {rho.min():.4f} ({EMOTIONS[int(rho.argmin())]}), "
        f"mean {rho.mean():.4f}, max {rho.max():.4f} ({EMOTIONS[int(rho.argmax())]})"
    )

    e = "happiness"
    k = EMOTIONS.index(e)
    w, lo = votes.winners[e], votes.losers[e]
    t = time.perf_counter()
    one = fit_bradley_terry(w, lo, N_GIFS, l2=args.l2)
    print(f"ours, {e} alone ({len(w):,} comparisons): {time.perf_counter() - t:.2f} s")
    if args.choix == "none":
        return
    import choix

    data = list(zip(w.tolist(), lo.tolist(), strict=True))
    t = time.perf_counter()
    if args.choix == "opt":  # the same MAP estimator: choix penalises alpha*||theta||^2
        theirs = choix.opt_pairwise(N_GIFS, data, alpha=args.l2 / 2)
    else:  # ILSR's alpha is a pseudo-count, not the same prior: expect close, not equal
        theirs = choix.ilsr_pairwise(N_GIFS, data, alpha=args.l2 / 2)
    took = time.perf_counter() - t
    theirs = theirs - theirs.mean()
    print(f"choix {args.choix}_pairwise, {e}: {took:.1f} s")
    print(
        f"ours vs choix on {e}: Spearman {spearmanr(one.strength, theirs)[0]:.6f}, "
        f"max |diff| {np.max(np.abs(one.strength - theirs)):.2e} logits"
    )
    print(
        f"choix vs truth on {e}: Spearman {spearmanr(theirs, truth[:, k])[0]:.4f}; "
        f"ours {spearmanr(one.strength, truth[:, k])[0]:.4f}"
    )


if __name__ == "__main__":
    main()
