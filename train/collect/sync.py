"""Several servers on one PostgreSQL: each server's pair chooser follows the votes the others
take, by polling the votes table for new rows.

Why polling (and not LISTEN/NOTIFY). A poll is one query on the votes table's primary key
(``id > last seen``) that returns only the rows this server has not seen, so its cost is the
new votes, whatever the table's size; it needs no second connection or listener state, goes
through the store's reconnect logic, and catches up by itself after a server or the database
was away (a NOTIFY sent while a listener's connection is down is lost, so LISTEN would still
need this catch-up poll). The refresh bound is the poll interval (``--sync``, 1 s by default):
a vote committed anywhere is in every server's posterior at the next poll.

Late commits. Vote ids come from a sequence when the row is inserted, but transactions commit
in any order: id 101 can be visible before id 100 commits. "id > highest seen" alone would
skip 100 for ever. So every id skipped over is remembered as a gap and asked for again at each
poll (``id IN (...)``) until it appears or ``grace_s`` passes (a gap that old is an id that
never committed: a duplicate answer, a rollback; a gap under a vote written more than twice
``grace_s`` ago, by its ``created_at``, is not kept at all, so reading the history at start
adds none). Gaps are few (one per lost race or retried POST), at most ``max_gaps`` are kept.

Exactly once. The server also applies its own votes at once, as before (the voter's next page
already knows them); :meth:`VoteFeed.claim` and :meth:`VoteFeed.poll` decide under one lock
which of the two applies a given vote, so a vote enters the posterior once. (The one case
left out: an own vote whose commit lands more than ``grace_s`` after a later id was seen is
taken by neither; it is in the database, and in the posterior after a restart.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gifsent_train.collect.storage import Store, VoteRow


class VoteFeed:
    """The votes table as a feed of rows this server has not applied yet."""

    def __init__(
        self, store: Store, *, grace_s: float = 60.0, max_gaps: int = 4096, batch: int = 5000
    ):
        self.store = store
        self.grace_s = float(grace_s)
        self.max_gaps = int(max_gaps)
        self.batch = int(batch)
        self.top = 0  # highest vote id seen
        self.gaps: dict[int, float] = {}  # ids below top not seen yet -> when first skipped
        self.mine: set[int] = set()  # own votes applied before the feed reached them
        self.lock = threading.Lock()
        self.applied = 0  # votes of other servers (or from before the start) applied
        self.last_poll = 0.0  # time.time() of the last poll that completed

    def claim(self, vote_id: int) -> bool:
        """This server just recorded ``vote_id``: True if the caller should apply it now (the
        feed will then skip it), False if a poll already applied it."""
        with self.lock:
            if vote_id <= self.top and vote_id not in self.gaps:
                return False
            self.mine.add(vote_id)
            return True

    def poll(self, apply: Callable[[VoteRow], None]) -> int:
        """Apply every vote committed since the last poll that this server has not applied;
        returns how many. ``apply`` runs under the feed's lock."""
        now = time.monotonic()
        with self.lock:
            for gap in [g for g, t in self.gaps.items() if now - t > self.grace_s]:
                del self.gaps[gap]
            wanted = sorted(self.gaps)
            top = self.top
        n = 0
        if wanted:
            n += self._take(self.store.votes_by_id(wanted), apply, now)
        while True:
            rows = self.store.votes_page(top, self.batch)
            n += self._take(rows, apply, now)
            if len(rows) < self.batch:
                break
            top = rows[-1].id
        self.last_poll = time.time()
        return n

    def _take(self, rows: list[VoteRow], apply, now: float) -> int:
        n = 0
        with self.lock:
            for row in rows:
                vid = row.id
                if vid > self.top:
                    if vid > self.top + 1 and time.time() - row.created_at < 2 * self.grace_s:
                        # ids below vid were handed out before it; when vid itself is old
                        # (a server's first read of the history), they never committed
                        first = max(self.top + 1, vid - self.max_gaps)
                        self.gaps.update(dict.fromkeys(range(first, vid), now))
                    self.top = vid
                elif vid in self.gaps:
                    del self.gaps[vid]
                else:
                    continue  # applied before (a gap refilled twice cannot happen; be safe)
                if vid in self.mine:
                    self.mine.discard(vid)
                    continue
                apply(row)
                n += 1
            if len(self.gaps) > self.max_gaps:  # keep the newest
                for gap in sorted(self.gaps)[: len(self.gaps) - self.max_gaps]:
                    del self.gaps[gap]
        self.applied += n
        return n

    def state(self) -> dict:
        with self.lock:
            return {
                "last_vote_id": self.top,
                "open_gaps": len(self.gaps),
                "applied_from_feed": self.applied,
                "last_poll_age_s": round(time.time() - self.last_poll, 3)
                if self.last_poll
                else None,
            }
