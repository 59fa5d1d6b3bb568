"""Which two GIFs to show next: expected information gain under the Bradley-Terry posterior,
mixed with spanning-tree pairs (the Hybrid-MST idea), or uniformly random pairs (the control).

Posterior. Per emotion, the project's own fit (:func:`gifsent_train.bradley_terry.fit_bradley_terry`,
MAP strengths with a standard normal prior and Fisher-diagonal standard errors) gives each GIF
a Gaussian N(mu_i, se_i^2). With ``prior`` strengths (a trained model's guesses) the prior's
centre moves there, so GIFs with few votes sit where the model puts them.

Incremental refit. Each vote updates its two GIFs at once by one Newton step on their own
marginals (mu += se^2 (y - p), precision += p (1 - p): what the full fit would do to those two
with everything else fixed); the full fit runs again, warm-started, once the votes since the
last one reach ``refit_fraction`` of all votes (at least ``refit_min``), so refits get rarer
as the ranking settles (O(log votes) of them).

Expected information gain of a pair (i, j): the mutual information between the vote and the
strengths, H(E[p]) - E[H(p)] with p = sigmoid(theta_i - theta_j) and theta_i - theta_j ~
N(mu_i - mu_j, se_i^2 + se_j^2), by 12-point Gauss-Hermite quadrature. It is largest for
pairs whose order is both uncertain (close means) and unsettled (large standard errors).

Candidates. Not all n(n-1)/2 pairs (18 M at 6,000 GIFs): the ``anchors`` GIFs with the
largest standard errors plus as many random ones, each against its ``window`` nearest
neighbours in the current ranking and a few random GIFs: ~6,000 pairs scored in one
vectorised pass, whatever n is.

Spanning-tree pairs. Hybrid-MST (Li et al., 2018) asks, in batches, the n - 1 pairs of the
maximum-information spanning tree, which keeps every GIF compared and the comparison graph
connected. Here a ``tree_share`` of the picks comes from such a tree: built over the edges
between GIFs at most 4 places apart in the current ranking (the ranking's path is among them,
so the tree spans every GIF), weighted by information gain (scipy's minimum spanning tree on
the negated gain); when its pairs are used up, the next tree is built from the then-current
posterior. Until the decisive votes connect all GIFs, every pick comes from the tree.

A voter never gets a pair they have seen (``seen``: pair keys from storage), and a pair just
handed to another voter and not yet answered is not handed out again for ``pending_s``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

from gifsent_train.bradley_terry import DEFAULT_L2, fit_bradley_terry

MODES = ("active", "random")
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(12)
_GH_W = _GH_W / _GH_W.sum()


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def expected_information_gain(
    mu_i: np.ndarray, mu_j: np.ndarray, var_i: np.ndarray, var_j: np.ndarray
) -> np.ndarray:
    """Mutual information (nats) between one vote on (i, j) and the strengths; vectorised."""
    d = np.asarray(mu_i - mu_j, dtype=np.float64)[:, None]
    s = np.sqrt(np.asarray(var_i + var_j, dtype=np.float64))[:, None]
    p = expit(d + s * _GH_X[None, :])  # [m, 12]
    mean_p = p @ _GH_W
    return _entropy(mean_p) - _entropy(p) @ _GH_W


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))
        self.sets = n

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb
            self.sets -= 1


@dataclass
class EmotionState:
    """One emotion's votes and posterior."""

    n: int
    prior: np.ndarray | None
    winners: list[int] = field(default_factory=list)
    losers: list[int] = field(default_factory=list)
    mu: np.ndarray = None  # type: ignore[assignment]
    precision: np.ndarray = None  # type: ignore[assignment]
    fitted_votes: int = 0  # decisive votes in the last full fit
    issued: int = 0
    tree_issued: int = 0  # of which from spanning trees
    answered: int = 0  # all answers, "neither" included
    tree: deque = field(default_factory=deque)
    components: _UnionFind = None  # type: ignore[assignment]
    pending: dict[tuple[int, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mu = np.zeros(self.n) if self.prior is None else self.prior.astype(np.float64).copy()
        self.precision = np.full(self.n, DEFAULT_L2)
        self.components = _UnionFind(self.n)

    @property
    def se(self) -> np.ndarray:
        return 1.0 / np.sqrt(self.precision)

    @property
    def decisive(self) -> int:
        return len(self.winners)


class PairChooser:
    """Chooses pairs for every emotion of one GIF list; thread-safe (one lock)."""

    def __init__(
        self,
        ids: Sequence[str],
        emotions: Sequence[str],
        *,
        mode: str = "active",
        prior: dict[str, np.ndarray] | None = None,
        tree_share: float = 0.25,
        anchors: int = 48,
        window: int = 48,
        refit_fraction: float = 0.1,
        refit_min: int = 20,
        pending_s: float = 120.0,
        seed: int | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"pairs must be one of {MODES}, got {mode!r}")
        if len(ids) < 2:
            raise ValueError(f"need at least 2 GIFs to make pairs, got {len(ids)}")
        self.ids = list(ids)
        self.index = {g: i for i, g in enumerate(self.ids)}
        self.emotions = list(emotions)
        self.mode = mode
        self.tree_share = float(tree_share)
        self.anchors, self.window = int(anchors), int(window)
        self.refit_fraction, self.refit_min = float(refit_fraction), int(refit_min)
        self.pending_s = float(pending_s)
        self.rng = np.random.default_rng(seed)
        self.lock = threading.RLock()
        n = len(self.ids)
        self.states = {
            e: EmotionState(n, None if prior is None else np.asarray(prior[e])) for e in emotions
        }

    # -- votes ---------------------------------------------------------------------------------
    def add_vote(self, emotion: str, left: str, right: str, choice: str) -> None:
        """Take one answer into the posterior (an online step; see the module docstring)."""
        st = self.states.get(emotion)
        i, j = self.index.get(left), self.index.get(right)
        if st is None or i is None or j is None or i == j:
            return  # a GIF that left the folder, or an emotion no longer asked about
        with self.lock:
            st.answered += 1
            st.pending.pop((min(i, j), max(i, j)), None)
            if choice not in ("left", "right"):
                return
            w, lo = (i, j) if choice == "left" else (j, i)
            st.winners.append(w)
            st.losers.append(lo)
            st.components.union(w, lo)
            p = expit(st.mu[w] - st.mu[lo])  # P(the winner wins) before this vote
            h = p * (1.0 - p)
            st.precision[w] += h
            st.precision[lo] += h
            st.mu[w] += (1.0 - p) / st.precision[w]
            st.mu[lo] -= (1.0 - p) / st.precision[lo]

    def refit_due(self, emotion: str) -> bool:
        st = self.states[emotion]
        new = st.decisive - st.fitted_votes
        return new >= max(self.refit_min, self.refit_fraction * st.fitted_votes)

    def refit(self, emotion: str) -> None:
        """Full warm-started fit; the slow part runs outside the lock."""
        st = self.states[emotion]
        with self.lock:
            w = np.array(st.winners, dtype=np.intp)
            lo = np.array(st.losers, dtype=np.intp)
            start = st.mu.copy()
        fit = fit_bradley_terry(w, lo, st.n, prior_mean=st.prior, init=start, tol=1e-4)
        with self.lock:
            st.mu = fit.strength
            st.precision = 1.0 / fit.stderr**2
            st.fitted_votes = len(w)
            # votes that came in during the fit: apply their online steps again
            for k in range(len(w), st.decisive):
                a, b = st.winners[k], st.losers[k]
                p = expit(st.mu[a] - st.mu[b])
                h = p * (1.0 - p)
                st.precision[a] += h
                st.precision[b] += h
                st.mu[a] += (1.0 - p) / st.precision[a]
                st.mu[b] -= (1.0 - p) / st.precision[b]

    # -- choosing --------------------------------------------------------------------------------
    def next_emotion(self) -> str:
        """The emotion with the fewest pairs handed out (balanced collection)."""
        with self.lock:
            return min(self.emotions, key=lambda e: (self.states[e].issued, self.rng.random()))

    def choose(
        self, emotion: str, seen: Callable[[str, str], bool] | None = None
    ) -> tuple[str, str] | None:
        """The next pair for ``emotion`` as (left id, right id), sides in random order; None
        when this voter has seen every pair we tried (nearly never)."""
        seen = seen or (lambda a, b: False)
        st = self.states[emotion]
        with self.lock:
            now = time.monotonic()
            if st.pending and len(st.pending) > 4 * self.anchors:
                cutoff = now - self.pending_s
                st.pending = {k: t for k, t in st.pending.items() if t > cutoff}
            pair = None
            if self.mode == "random":
                pair = self._random_pair(st, seen, now)
            else:
                use_tree = st.components.sets > 1 or (st.issued * self.tree_share > st.tree_issued)
                if use_tree:
                    pair = self._tree_pair(st, seen, now)
                if pair is None:
                    pair = self._gain_pair(st, seen, now)
                if pair is None:
                    pair = self._random_pair(st, seen, now)
            if pair is None:
                return None
            i, j = pair
            st.issued += 1
            st.pending[(min(i, j), max(i, j))] = now
            if self.rng.random() < 0.5:
                i, j = j, i
            return self.ids[i], self.ids[j]

    def _free(self, st: EmotionState, i: int, j: int, seen, now: float) -> bool:
        t = st.pending.get((min(i, j), max(i, j)))
        if t is not None and now - t < self.pending_s:
            return False
        return not seen(self.ids[i], self.ids[j])

    def _random_pair(self, st: EmotionState, seen, now: float) -> tuple[int, int] | None:
        for _ in range(200):
            i, j = self.rng.choice(st.n, size=2, replace=False)
            if self._free(st, int(i), int(j), seen, now):
                return int(i), int(j)
        return None

    def _tree_pair(self, st: EmotionState, seen, now: float) -> tuple[int, int] | None:
        if not st.tree:
            st.tree.extend(self.spanning_tree(st))
        for k, (i, j) in enumerate(st.tree):
            if k >= 64:
                break
            if self._free(st, i, j, seen, now):
                del st.tree[k]
                st.tree_issued += 1
                return i, j
        return None

    def _ranking(self, st: EmotionState) -> np.ndarray:
        # ties (no votes yet) broken at random, so the first tree is a random path
        return np.lexsort((self.rng.random(st.n), st.mu))

    def spanning_tree(self, st: EmotionState) -> list[tuple[int, int]]:
        """The maximum-information spanning tree's n - 1 pairs, most informative first."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import minimum_spanning_tree

        order = self._ranking(st)
        var = 1.0 / st.precision
        rows, cols = [], []
        for gap in range(1, min(5, st.n)):
            rows.append(order[:-gap])
            cols.append(order[gap:])
        a, b = np.concatenate(rows), np.concatenate(cols)
        gain = expected_information_gain(st.mu[a], st.mu[b], var[a], var[b])
        weight = gain.max() - gain + 1e-6  # > 0: scipy reads a 0 as "no edge"
        tree = minimum_spanning_tree(coo_matrix((weight, (a, b)), shape=(st.n, st.n))).tocoo()
        first = np.argsort(tree.data)  # smallest weight = largest gain first
        return [(int(tree.row[k]), int(tree.col[k])) for k in first]

    def candidates(self, st: EmotionState) -> tuple[np.ndarray, np.ndarray]:
        """Candidate pairs (i, j) with i != j: see the module docstring."""
        n = st.n
        k = min(self.anchors, n)
        se = 1.0 / np.sqrt(st.precision)
        top = np.argpartition(-se, k - 1)[:k] if k < n else np.arange(n)
        anchors = np.concatenate([top, self.rng.integers(0, n, size=k)])
        order = self._ranking(st)
        pos = np.empty(n, dtype=np.intp)
        pos[order] = np.arange(n)
        half = self.window // 2
        offsets = np.concatenate([np.arange(-half, 0), np.arange(1, half + 1)])
        near = np.clip(pos[anchors][:, None] + offsets[None, :], 0, n - 1)
        partners = np.concatenate(
            [order[near], self.rng.integers(0, n, size=(len(anchors), 8))], axis=1
        )
        i = np.repeat(anchors, partners.shape[1])
        j = partners.ravel()
        keep = i != j
        return i[keep], j[keep]

    def _gain_pair(self, st: EmotionState, seen, now: float) -> tuple[int, int] | None:
        i, j = self.candidates(st)
        var = 1.0 / st.precision
        gain = expected_information_gain(st.mu[i], st.mu[j], var[i], var[j])
        best = np.argsort(-gain)[:256]
        for k in best:
            if self._free(st, int(i[k]), int(j[k]), seen, now):
                return int(i[k]), int(j[k])
        return None

    # -- reporting ---------------------------------------------------------------------------
    def settled(self, emotion: str, draws: int = 32) -> float:
        """Expected Spearman between the current ranking and the truth under the posterior
        (1 = settled); from ``draws`` samples of the strengths."""
        st = self.states[emotion]
        with self.lock:
            mu, se = st.mu.copy(), st.se
        if st.n < 3:
            return 1.0
        rng = np.random.default_rng(0)
        ranks = np.argsort(np.argsort(mu)).astype(np.float64)
        sample = mu[None, :] + se[None, :] * rng.standard_normal((draws, st.n))
        sranks = np.argsort(np.argsort(sample, axis=1), axis=1).astype(np.float64)
        rc = ranks - ranks.mean()
        sc = sranks - sranks.mean(axis=1, keepdims=True)
        rho = (sc @ rc) / (math.sqrt(float(rc @ rc)) * np.sqrt((sc * sc).sum(axis=1)))
        return float(np.mean(rho))

    def top(self, emotion: str, k: int = 5) -> list[tuple[str, float, int]]:
        """The k strongest GIFs: (id, strength, decisive votes)."""
        st = self.states[emotion]
        with self.lock:
            mu = st.mu.copy()
            counts = np.bincount(np.array(st.winners + st.losers, dtype=np.intp), minlength=st.n)
        best = np.argsort(-mu)[:k]
        return [(self.ids[i], float(mu[i]), int(counts[i])) for i in best]
