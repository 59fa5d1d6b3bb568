"""GIFGIF's pairwise votes: stream the CSV into per-emotion winner/loser index arrays.

The file (plain or gzip, detected by its magic bytes) has the header
``metric,left,right,choice``: ``metric`` names one of the 17 emotions, ``left``/``right``
are GIF ids (Giphy ids) and ``choice`` says which GIF expresses the emotion more.

Policy, applied row by row and counted in :class:`VoteStats`:

- ``choice`` ``left`` or ``right`` (case and surrounding spaces ignored) is *decisive*:
  it becomes one (winner, loser) comparison for that emotion.
- Any other ``choice`` (GIFGIF records e.g. "neither" when the voter did not decide) is
  *non-decisive*: it is counted per emotion and per value, and **dropped from the fit**.
  Both GIFs still join the id list, so a GIF seen only in undecided votes is scored
  (at the prior mean) rather than silently lost.
- Corrupt rows are counted per reason and skipped: ``empty_id`` (left or right id empty),
  ``unknown_metric`` (not one of the 17 emotions, compared case-insensitively),
  ``malformed`` (too few fields), ``same_gif`` (a GIF compared with itself, which carries no
  information).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.errors import GifsentError

HEADER = ("metric", "left", "right", "choice")
DECISIVE = ("left", "right")
CORRUPT_REASONS = ("empty_id", "unknown_metric", "malformed", "same_gif")


class VotesFormatError(GifsentError, ValueError):
    """The votes file cannot be read as GIFGIF's CSV (wrong header, truncated gzip, ...)."""


@dataclass
class VoteStats:
    rows: int = 0  # data rows read, header excluded
    decisive: int = 0
    non_decisive: int = 0
    corrupt: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CORRUPT_REASONS, 0))
    decisive_per_emotion: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EMOTIONS, 0))
    non_decisive_per_emotion: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(EMOTIONS, 0)
    )
    non_decisive_choices: dict[str, int] = field(default_factory=dict)  # choice value -> rows

    @property
    def corrupt_total(self) -> int:
        return sum(self.corrupt.values())

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "decisive": self.decisive,
            "non_decisive": self.non_decisive,
            "corrupt": dict(self.corrupt),
            "corrupt_total": self.corrupt_total,
            "decisive_per_emotion": dict(self.decisive_per_emotion),
            "non_decisive_per_emotion": dict(self.non_decisive_per_emotion),
            "non_decisive_choices": dict(self.non_decisive_choices),
        }


@dataclass
class Votes:
    """Decisive comparisons per emotion, as indices into ``ids``.

    ``winners[e][k]`` beat ``losers[e][k]`` in the k-th decisive vote for emotion ``e``;
    both are int32 arrays of the same length. ``ids`` lists every GIF seen in a valid row,
    in order of first appearance.
    """

    ids: list[str]
    winners: dict[str, np.ndarray]
    losers: dict[str, np.ndarray]
    stats: VoteStats

    @property
    def n_gifs(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        return {gif_id: i for i, gif_id in enumerate(self.ids)}

    def comparisons(self) -> np.ndarray:
        """Decisive comparisons per GIF and emotion, int64 [n_gifs, 17]."""
        out = np.zeros((self.n_gifs, len(EMOTIONS)), dtype=np.int64)
        for k, e in enumerate(EMOTIONS):
            out[:, k] = np.bincount(self.winners[e], minlength=self.n_gifs) + np.bincount(
                self.losers[e], minlength=self.n_gifs
            )
        return out

    def subset(self, keep_ids: Iterable[str]) -> Votes:
        """Votes restricted to GIFs in ``keep_ids`` (a comparison survives if both GIFs do).

        The id order of ``self`` is kept; stats are copied and gain nothing (see
        :func:`missing_gifs` for what was dropped).
        """
        keep = set(keep_ids)
        mask = np.fromiter((g in keep for g in self.ids), dtype=bool, count=self.n_gifs)
        new_index = np.full(self.n_gifs, -1, dtype=np.int64)
        new_index[mask] = np.arange(int(mask.sum()))
        ids = [g for g, m in zip(self.ids, mask, strict=True) if m]
        winners, losers = {}, {}
        for e in EMOTIONS:
            w, lo = self.winners[e], self.losers[e]
            ok = mask[w] & mask[lo]
            winners[e] = new_index[w[ok]].astype(np.int32)
            losers[e] = new_index[lo[ok]].astype(np.int32)
        return Votes(ids=ids, winners=winners, losers=losers, stats=self.stats)


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as f:
        magic = f.read(2)
    raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def read_votes(path: str | os.PathLike) -> Votes:
    """Stream GIFGIF's votes CSV (plain or gzip) into :class:`Votes`; see the module policy.

    A votes database of `gifsent-train collect` (SQLite file) reads the same way, straight
    from its votes table.
    """
    from gifsent_train.collect.storage import Store, is_database

    if is_database(path):
        store = Store.open(path, migrate=False)
        try:
            return _tally((r.emotion, r.left, r.right, r.choice) for r in store.votes())
        finally:
            store.close()
    path = Path(path)
    try:
        with _open_text(path) as text:
            reader = csv.reader(text)
            header = next(reader, None)
            if header is None:
                raise VotesFormatError(f"{path}: empty file, expected header {','.join(HEADER)}")
            names = [h.strip().lower() for h in header]
            if names and names[0].startswith("\ufeff"):
                names[0] = names[0][1:]
            missing = [h for h in HEADER if h not in names]
            if missing:
                raise VotesFormatError(
                    f"{path}: header {header!r} lacks column(s) {missing}; "
                    f"expected {','.join(HEADER)}"
                )
            return _tally(reader, tuple(names.index(h) for h in HEADER))
    except (EOFError, gzip.BadGzipFile, OSError, csv.Error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise VotesFormatError(f"{path}: unreadable votes file ({err})") from err


def _tally(rows: Iterable, columns: tuple[int, int, int, int] = (0, 1, 2, 3)) -> Votes:
    """Rows (metric, left, right, choice at ``columns``) -> :class:`Votes`, by the module's policy."""
    ids: dict[str, int] = {}
    win = {e: array("i") for e in EMOTIONS}
    lose = {e: array("i") for e in EMOTIONS}
    # metric name as written -> (winner append, loser append, emotion); hot loop, so the
    # bound methods are looked up once
    sinks = {e: (win[e].append, lose[e].append, e) for e in EMOTIONS}
    stats = VoteStats()
    choices: Counter[str] = Counter()
    rows_read = 0
    undecided: Counter[str] = Counter()  # emotion -> undecided rows
    cm, cl, cr, cc = columns
    width = max(columns) + 1
    corrupt = stats.corrupt
    for row in rows:
        rows_read += 1
        if len(row) < width:
            if not row:  # a blank line is not a vote
                rows_read -= 1
                continue
            corrupt["malformed"] += 1
            continue
        left, right = row[cl].strip(), row[cr].strip()
        if not left or not right:
            corrupt["empty_id"] += 1
            continue
        sink = sinks.get(row[cm]) or sinks.get(row[cm].strip().lower())
        if sink is None:
            corrupt["unknown_metric"] += 1
            continue
        if left == right:
            corrupt["same_gif"] += 1
            continue
        li = ids.get(left)
        if li is None:
            li = ids[left] = len(ids)
        ri = ids.get(right)
        if ri is None:
            ri = ids[right] = len(ids)
        choice = row[cc]
        if choice not in ("left", "right"):
            choice = choice.strip().lower()
        if choice == "left":
            sink[0](li)
            sink[1](ri)
        elif choice == "right":
            sink[0](ri)
            sink[1](li)
        else:
            undecided[sink[2]] += 1
            choices[choice] += 1

    stats.rows = rows_read
    for e, k in undecided.items():
        stats.non_decisive_per_emotion[e] = k
    stats.non_decisive = sum(undecided.values())
    winners = {e: np.frombuffer(win[e], dtype=np.int32).copy() for e in EMOTIONS}
    losers = {e: np.frombuffer(lose[e], dtype=np.int32).copy() for e in EMOTIONS}
    for e in EMOTIONS:
        stats.decisive_per_emotion[e] = len(winners[e])
    stats.decisive = sum(stats.decisive_per_emotion.values())
    stats.non_decisive_choices = dict(sorted(choices.items()))
    return Votes(ids=list(ids), winners=winners, losers=losers, stats=stats)


def index_gifs(folder: str | os.PathLike) -> dict[str, Path]:
    """Map GIF id -> file for every ``<id>.gif`` under ``folder``, at any depth, or a video
    or image rendition (``<id>.mp4``, ``.webm``, ``.webp``, ... : gifsent_infer.reading.media) for
    ids that have no ``.gif``.

    The suffix match is case-insensitive. When one id occurs twice, the path that sorts
    first wins (a ``.gif`` before any rendition), so the result does not depend on
    directory listing order.
    """
    from gifsent_infer.reading.formats import MEDIA_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"GIF folder {folder} does not exist")
    found: dict[str, Path] = {}
    renditions: dict[str, Path] = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if len(name) > 4 and name[-4:].lower() == ".gif" and not name.startswith("."):
                found.setdefault(name[:-4], Path(root) / name)
            elif not name.startswith("."):
                stem, dot, ext = name.rpartition(".")
                if stem and dot and "." + ext.lower() in MEDIA_SUFFIXES:
                    renditions.setdefault(stem, Path(root) / name)
    for gid, path in renditions.items():
        found.setdefault(gid, path)
    return found


@dataclass
class MissingReport:
    """Which voted-on GIFs have no file, and how many decisive votes that costs."""

    n_voted: int  # GIFs in the votes
    n_present: int  # of those, with a file
    missing_ids: list[str]
    decisive_total: int
    decisive_kept: int  # decisive votes whose two GIFs are both present
    decisive_kept_per_emotion: dict[str, int]

    @property
    def n_missing(self) -> int:
        return len(self.missing_ids)

    def to_dict(self) -> dict:
        return {
            "n_voted": self.n_voted,
            "n_present": self.n_present,
            "n_missing": self.n_missing,
            "missing_ids": list(self.missing_ids),
            "decisive_total": self.decisive_total,
            "decisive_kept": self.decisive_kept,
            "decisive_kept_per_emotion": dict(self.decisive_kept_per_emotion),
        }


def missing_gifs(votes: Votes, present: Mapping[str, object] | Iterable[str]) -> MissingReport:
    """Report voted-on GIFs absent from ``present`` (ids, or the mapping of :func:`index_gifs`)."""
    have = set(present)
    mask = np.fromiter((g in have for g in votes.ids), dtype=bool, count=votes.n_gifs)
    kept = {}
    for e in EMOTIONS:
        kept[e] = int(np.count_nonzero(mask[votes.winners[e]] & mask[votes.losers[e]]))
    return MissingReport(
        n_voted=votes.n_gifs,
        n_present=int(mask.sum()),
        missing_ids=[g for g, m in zip(votes.ids, mask, strict=True) if not m],
        decisive_total=votes.stats.decisive,
        decisive_kept=sum(kept.values()),
        decisive_kept_per_emotion=kept,
    )


def filter_votes(votes: Votes, present: Mapping[str, object] | Iterable[str]) -> Votes:
    """Votes restricted to GIFs that have a file (both sides of a comparison must)."""
    return votes.subset(present)
