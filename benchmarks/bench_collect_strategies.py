"""Why active pair choice saves ~20% of the votes on the demo data and not 50%: the numbers.

1. Spread: the demo data's true strengths (one emotion, 300 GIFs, Bradley-Terry logits) and
   how decided a random pair is (P(the stronger GIF wins)).
2. Fisher information of one vote, I(d) = ((1-l) p(1-p))^2 / (p'(1-p')), p = sigmoid(d),
   p' = l/2 + (1-l) p (l = share of random clicks): a random pair's mean vs an even pair's.
3. An ideal bound: votes until Spearman reaches 0.8 / 0.9 for an estimator whose error per
   GIF is N(0, 1/D_i), D_i = the Fisher information its votes carry. Random pairs: D uniform
   at a random pair's mean information. Ideal: every vote on an exactly even pair (the most
   information any vote can carry) AND the votes spread over GIFs by the best power of the
   strength density (more votes where GIFs are dense, ranks move most). No strategy beats
   this: it ignores that even pairs are unknown before the votes, and that a graph of only
   even pairs is badly connected (see 4). Calibrated: its "random" row predicts the measured
   random baseline within a few percent.
4. Pair-choice strategies, simulated on the same voters (BT noise, random clicks) and scored
   by the same fit (`fit_bradley_terry`, its N(0, 1) prior, Spearman over all GIFs), votes
   until Spearman 0.8 / 0.9 (checked every 30 votes), median over seeds:
   - random: uniform pairs (the `--pairs random` control);
   - active: `PairChooser` as the app runs it (EIG + 25% spanning-tree pairs; the default);
   - hybrid-mst: Hybrid-MST's batch mode (Li et al. 2018): refit, then ask the n-1 pairs of
     the maximum-EIG spanning tree over all n(n-1)/2 pairs, and again;
   - neighbours: a GIF drawn with probability proportional to its posterior variance, its
     partner the highest-EIG GIF among its 20 neighbours either side in the current ranking;
   - rank-variance: the pair that most reduces the expected number of misordered pairs,
     sum over pairs of Phi(-|mu_i - mu_j| / sqrt(v_i + v_j)), under the Laplace posterior
     (an expected-ranking-error criterion instead of a parameter one; O(n^2) per vote);
   - oracle-info: knows the truth; a uniform GIF, its partner drawn in proportion to the
     vote's true Fisher information (the most informative pairs, still a random graph).

    python benchmarks/bench_collect_strategies.py                      # ~10 min on 2 idle cores
    python benchmarks/bench_collect_strategies.py --seeds 5 --lapse 0 --spread 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.special import expit
from scipy.stats import gaussian_kde, norm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_collect import THRESHOLDS, spearman  # the same measure as the main benchmark
from machine import cpu_line

from gifsent_train.bradley_terry import fit_bradley_terry
from gifsent_train.collect.pairs import PairChooser, expected_information_gain
from gifsent_train.demo_data import true_strengths

STRATEGIES = ("random", "active", "hybrid-mst", "neighbours", "rank-variance", "oracle-info")


def info(d: np.ndarray | float, lapse: float) -> np.ndarray:
    """Fisher information about the strength difference d of one vote with random clicks."""
    q = expit(d)
    pp = lapse / 2 + (1 - lapse) * q
    return ((1 - lapse) * q * (1 - q)) ** 2 / (pp * (1 - pp))


def strengths(seed: int, n: int, spread: float) -> np.ndarray:
    _, truth = true_strengths(n, np.random.default_rng(seed))
    return truth[:, 0] * spread


# -- 1-3: spread, information, the ideal bound ------------------------------------------------
def analyse(n: int, lapse: float, spread: float, seeds: int) -> None:
    s = strengths(0, n, spread)
    i, j = np.triu_indices(n, 1)
    d = np.abs(s[i] - s[j])
    p = expit(d)
    print(f"\n## spread: {n} GIFs, strengths x{spread:g} (std {s.std():.2f} logits)")
    print(f"|s_i - s_j| of random pairs, quartiles: {np.percentile(d, [25, 50, 75]).round(2)}")
    print(
        f"P(stronger wins), quartiles {np.percentile(p, [25, 50, 75]).round(2)}; "
        f"near even (< 0.6): {(p < 0.6).mean():.0%}, decided (> 0.9): {(p > 0.9).mean():.0%}"
    )
    for lp in sorted({0.0, lapse}):
        best, mean = float(info(0.0, lp)), float(info(s[i] - s[j], lp).mean())
        print(
            f"Fisher information per vote, {lp:.0%} random clicks: even pair {best:.3f}, "
            f"random pair {mean:.3f} = {mean / best:.2f}x"
        )
    print(f"\n## ideal bound ({lapse:.0%} random clicks, x{spread:g}), median of {seeds} seeds")
    rows = {t: [] for t in THRESHOLDS}
    for seed in range(seeds):
        s = strengths(seed, n, spread)
        mean_info = float(info(s[i] - s[j], lapse).mean())
        density = gaussian_kde(s)(s)
        for t in THRESHOLDS:
            rand = _votes_for(s, mean_info, np.ones(n), t)
            ideal = min(
                _votes_for(s, float(info(0.0, lapse)), density**a / np.mean(density**a), t)
                for a in (0.0, 0.5, 1.0, 1.5)
            )
            rows[t].append((rand, ideal))
    for t in THRESHOLDS:
        r = statistics.median(x for x, _ in rows[t])
        b = statistics.median(y for _, y in rows[t])
        print(f"Spearman {t}: random-pair model {r:.0f} votes, ideal {b:.0f} votes: {b / r:.2f}x")


def _votes_for(s: np.ndarray, per_vote: float, alloc: np.ndarray, target: float) -> int:
    """Fewest votes (bisection) whose information, spread as `alloc`, gives Spearman >= target
    (median over 40 draws of the estimation error)."""
    n = len(s)
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((40, n))

    def rho(votes: int) -> float:
        sd = 1.0 / np.sqrt(alloc * (2 * votes / n) * per_vote)
        return float(np.median([spearman(s + z * sd, s) for z in noise]))

    lo, hi = 1, 400 * n
    while hi - lo > max(5, lo // 200):
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if rho(mid) >= target else (mid, hi)
    return hi


# -- 4: strategies ---------------------------------------------------------------------------
class _Posterior:
    """MAP strengths and Fisher-diagonal variances: refit every `every` votes, one Newton step
    on the two GIFs of each vote in between (as `PairChooser` does)."""

    def __init__(self, n: int):
        self.mu, self.var = np.zeros(n), np.ones(n)
        self.w: list[int] = []
        self.lo: list[int] = []

    def add(self, w: int, lo: int) -> None:
        self.w.append(w)
        self.lo.append(lo)
        p = expit(self.mu[w] - self.mu[lo])
        h = p * (1 - p)
        pw, pl = 1 / self.var[w] + h, 1 / self.var[lo] + h
        self.mu[w] += (1 - p) / pw
        self.mu[lo] -= (1 - p) / pl
        self.var[w], self.var[lo] = 1 / pw, 1 / pl

    def refit(self) -> None:
        if self.w:
            fit = fit_bradley_terry(np.array(self.w), np.array(self.lo), len(self.mu), tol=1e-4)
            self.mu, self.var = fit.strength.copy(), fit.stderr**2


def _hybrid_mst(post: _Posterior, queue: list, rng, n: int) -> tuple[int, int]:
    if not queue:
        post.refit()
        a, b = np.triu_indices(n, 1)
        gain = expected_information_gain(post.mu[a], post.mu[b], post.var[a], post.var[b])
        tree = minimum_spanning_tree(coo_matrix((gain.max() - gain + 1e-9, (a, b)), (n, n)))
        tree = tree.tocoo()
        queue.extend(zip(tree.row.tolist(), tree.col.tolist(), strict=True))
        rng.shuffle(queue)
    return queue.pop()


def _neighbours(post: _Posterior, rng, n: int, width: int = 20) -> tuple[int, int]:
    order = np.lexsort((rng.random(n), post.mu))
    pos = np.empty(n, dtype=np.intp)
    pos[order] = np.arange(n)
    i = int(rng.choice(n, p=post.var / post.var.sum()))
    near = pos[i] + np.r_[-width:0, 1 : width + 1]
    js = order[near[(near >= 0) & (near < n)]]
    gain = expected_information_gain(post.mu[i], post.mu[js], post.var[i], post.var[js])
    return i, int(js[np.argmax(gain)])


def _rank_variance(post: _Posterior, pairs: tuple[np.ndarray, np.ndarray]) -> tuple[int, int]:
    mu, var = post.mu, post.var
    diff = np.abs(mu[:, None] - mu[None, :])
    sd = np.sqrt(var[:, None] + var[None, :])
    z = diff / sd
    # d/dv_i of sum_j Phi(-|d_ij| / sd_ij): how much GIF i's variance costs in misorderings
    slope = (norm.pdf(z) * diff / (2 * sd**3)).sum(axis=1)
    a, b = pairs
    q = expit(mu[a] - mu[b])
    h = q * (1 - q)
    drop_a = var[a] ** 2 * h / (1 + var[a] * h)
    drop_b = var[b] ** 2 * h / (1 + var[b] * h)
    own = norm.sf(z[a, b]) - norm.sf(diff[a, b] * np.sqrt(1 / sd[a, b] ** 2 + h))
    k = int(np.argmax(slope[a] * drop_a + slope[b] * drop_b + own))
    return int(a[k]), int(b[k])


def simulate(strategy: str, seed: int, n: int, lapse: float, spread: float, max_votes: int):
    """(votes to each threshold or None, votes per GIF)."""
    s = strengths(seed, n, spread)
    rng = np.random.default_rng(seed + 1000)
    post = _Posterior(n)
    chooser = PairChooser([str(k) for k in range(n)], ["e"], seed=seed + 1000)
    pairs = np.triu_indices(n, 1)
    queue: list = []
    need: dict[float, int | None] = dict.fromkeys(THRESHOLDS)
    for v in range(1, max_votes + 1):
        if strategy == "random":
            i, j = (int(x) for x in rng.choice(n, 2, replace=False))
        elif strategy == "active":
            left, right = chooser.choose("e")
            i, j = int(left), int(right)
        elif strategy == "hybrid-mst":
            i, j = _hybrid_mst(post, queue, rng, n)
        elif strategy == "oracle-info":
            i = int(rng.integers(n))
            weight = info(s[i] - s, lapse)
            weight[i] = 0
            j = int(rng.choice(n, p=weight / weight.sum()))
        else:
            if v % 30 == 1:
                post.refit()
            if strategy == "neighbours":
                i, j = _neighbours(post, rng, n)
            else:
                i, j = _rank_variance(post, pairs)
        clicks = rng.random() < lapse
        i_wins = rng.random() < (0.5 if clicks else expit(s[i] - s[j]))
        w, lo = (i, j) if i_wins else (j, i)
        post.add(w, lo)
        if strategy == "active":
            chooser.add_vote("e", str(i), str(j), "left" if i_wins else "right")
            if chooser.refit_due("e"):
                chooser.refit("e")
        if v % 30 == 0:
            fit = fit_bradley_terry(np.array(post.w), np.array(post.lo), n, tol=1e-4)
            rho = spearman(fit.strength, s)
            for t in THRESHOLDS:
                if need[t] is None and rho >= t:
                    need[t] = v
            if need[THRESHOLDS[-1]] is not None:
                break
    return need, np.bincount(post.w + post.lo, minlength=n)


def _median(values):
    return None if None in values else int(statistics.median(values))


def compare(strategies, n: int, lapse: float, spread: float, seeds: int) -> None:
    print(
        f"\n## strategies: {n} GIFs, one emotion, {lapse:.0%} random clicks, x{spread:g}, "
        f"median of {seeds} seeds (votes until Spearman 0.8 / 0.9; None = not in 40/GIF)"
    )
    base = None
    for name in strategies:
        t0 = time.perf_counter()
        runs = [simulate(name, k, n, lapse, spread, 40 * n) for k in range(seeds)]
        med = {t: _median([r[0][t] for r in runs]) for t in THRESHOLDS}
        if name == "random":
            base = med
        ratio = (
            f"{med[0.9] / base[0.9]:.2f}x random"
            if base and base[0.9] and med[0.9] and name != "random"
            else ""
        )
        counts = np.concatenate([r[1] for r in runs])
        print(
            f"{name:14s} {med[0.8]} / {med[0.9]}  {ratio:>12s}  per seed at 0.9 "
            f"{[r[0][0.9] for r in runs]}; votes per GIF min {counts.min()} median "
            f"{int(np.median(counts))} max {counts.max()}  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gifs", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lapse", type=float, default=0.05, help="share of random clicks")
    ap.add_argument("--spread", type=float, default=1.0, help="true strengths x this")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="comma list")
    ap.add_argument("--skip-bound", action="store_true", help="only the strategies (part 4)")
    args = ap.parse_args(argv)
    print(f"# bench_collect_strategies  {cpu_line()}")
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not args.skip_bound:
        analyse(args.gifs, args.lapse, args.spread, args.seeds)
    names = [s for s in args.strategies.split(",") if s]
    unknown = set(names) - set(STRATEGIES)
    if unknown:
        ap.error(f"unknown strategies {sorted(unknown)}; choose from {', '.join(STRATEGIES)}")
    compare(names, args.gifs, args.lapse, args.spread, args.seeds)
    print(f"\nload average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
