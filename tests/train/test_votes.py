"""Votes CSV reading (corrupt and undecided rows), GIF indexing, missing-GIF filtering, splits."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from gifsent_train.splits import load_splits, make_splits, save_splits
from gifsent_train.votes import (
    VotesFormatError,
    filter_votes,
    index_gifs,
    missing_gifs,
    read_votes,
)

ROWS = [
    "metric,left,right,choice",
    "happiness,aaa,bbb,left",  # aaa beats bbb
    "happiness,bbb,ccc,right",  # ccc beats bbb
    "Sadness , ccc,aaa, RIGHT",  # case/space tolerant: aaa beats ccc (sadness)
    "happiness,aaa,ccc,neither",  # undecided
    "anger,aaa,ddd,",  # undecided (empty choice); ddd only seen undecided
    "happiness,,bbb,left",  # corrupt: empty id
    "happiness,aaa,,right",  # corrupt: empty id
    "joy,aaa,bbb,left",  # corrupt: unknown metric
    "happiness,aaa",  # corrupt: malformed
    "fear,bbb,bbb,left",  # corrupt: a GIF against itself
    "",  # blank line: ignored
    "surprise,eee,aaa,both",  # undecided
]


def _write(path, rows, gz=False):
    data = ("\n".join(rows) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_read_votes_counts_corrupt_and_undecided(tmp_path, gz):
    # the gzip variant has a .csv name: the format is detected by magic bytes, not suffix
    votes = read_votes(_write(tmp_path / "votes.csv", ROWS, gz=gz))
    s = votes.stats
    assert s.rows == 11  # the blank line is not a row
    assert s.decisive == 3
    assert s.non_decisive == 3
    assert s.corrupt == {"empty_id": 2, "unknown_metric": 1, "malformed": 1, "same_gif": 1}
    assert s.corrupt_total == 5
    assert s.rows == s.decisive + s.non_decisive + s.corrupt_total
    assert s.non_decisive_choices == {"": 1, "both": 1, "neither": 1}
    assert s.decisive_per_emotion["happiness"] == 2
    assert s.decisive_per_emotion["sadness"] == 1
    assert s.non_decisive_per_emotion["anger"] == 1
    # every GIF of a valid row is listed, in order of first appearance, undecided-only ones too
    assert votes.ids == ["aaa", "bbb", "ccc", "ddd", "eee"]
    idx = votes.index()
    w, lo = votes.winners["happiness"], votes.losers["happiness"]
    assert w.dtype == np.int32
    assert list(zip(w.tolist(), lo.tolist(), strict=True)) == [
        (idx["aaa"], idx["bbb"]),
        (idx["ccc"], idx["bbb"]),
    ]
    assert votes.winners["sadness"].tolist() == [idx["aaa"]]
    assert votes.losers["sadness"].tolist() == [idx["ccc"]]
    assert len(votes.winners["anger"]) == 0
    comps = votes.comparisons()
    assert comps.shape == (5, 17)
    assert comps[idx["bbb"]].sum() == 2
    json.dumps(s.to_dict())  # serialisable for the run's report


def test_read_votes_rejects_bad_header_and_truncated_gzip(tmp_path):
    with pytest.raises(VotesFormatError, match="lacks column"):
        read_votes(_write(tmp_path / "a.csv", ["emotion,a,b,c", "happiness,x,y,left"]))
    with pytest.raises(VotesFormatError, match="empty"):
        (tmp_path / "b.csv").write_bytes(b"")
        read_votes(tmp_path / "b.csv")
    blob = gzip.compress(("\n".join(ROWS * 200) + "\n").encode())
    (tmp_path / "c.csv.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(VotesFormatError, match="unreadable"):
        read_votes(tmp_path / "c.csv.gz")


def test_header_columns_may_be_reordered(tmp_path):
    votes = read_votes(_write(tmp_path / "v.csv", ["choice,right,left,metric", "left,b,a,pride"]))
    assert votes.ids == ["a", "b"]  # left first
    assert votes.winners["pride"].tolist() == [0]  # left = "a" won
    assert votes.losers["pride"].tolist() == [1]


def test_index_gifs_nested_and_missing(tmp_path):
    votes = read_votes(_write(tmp_path / "votes.csv", ROWS))
    root = tmp_path / "gifs"
    (root / "x" / "y").mkdir(parents=True)
    (root / "aaa.gif").write_bytes(b"GIF89a")
    (root / "x" / "bbb.GIF").write_bytes(b"GIF89a")
    (root / "x" / "y" / "ccc.gif").write_bytes(b"GIF89a")
    (root / "x" / "notes.txt").write_text("not a gif")
    found = index_gifs(root)
    assert set(found) == {"aaa", "bbb", "ccc"}
    assert found["ccc"] == root / "x" / "y" / "ccc.gif"

    report = missing_gifs(votes, found)
    assert report.n_voted == 5 and report.n_present == 3
    assert report.missing_ids == ["ddd", "eee"]
    assert report.decisive_total == 3 and report.decisive_kept == 3

    del found["ccc"]
    report = missing_gifs(votes, found)
    assert report.decisive_kept == 1  # only aaa > bbb survives
    kept = filter_votes(votes, found)
    assert kept.ids == ["aaa", "bbb"]
    assert kept.winners["happiness"].tolist() == [0]
    assert kept.losers["happiness"].tolist() == [1]
    assert len(kept.winners["sadness"]) == 0

    with pytest.raises(FileNotFoundError):
        index_gifs(tmp_path / "nope")


def test_splits_deterministic_disjoint_and_order_free(tmp_path):
    ids = [f"gif{i:04d}" for i in range(1000)]
    a = make_splits(ids, seed=3)
    b = make_splits(list(reversed(ids)), seed=3)
    assert a == b
    assert [len(a[k]) for k in ("train", "dev", "test")] == [800, 100, 100]
    assert set(a["train"]) | set(a["dev"]) | set(a["test"]) == set(ids)
    assert not set(a["train"]) & set(a["dev"]) and not set(a["dev"]) & set(a["test"])
    c = make_splits(ids, seed=4)
    assert c["test"] != a["test"]
    # adding ids moves few existing ones across splits
    d = make_splits([*ids, "new1", "new2"], seed=3)
    moved = sum(1 for g in a["test"] if g not in d["test"])
    assert moved <= 2
    path = save_splits(tmp_path / "run" / "splits.json", a, seed=3, fractions=(0.8, 0.1, 0.1))
    assert load_splits(path) == a
    with pytest.raises(ValueError):
        make_splits(ids, fractions=(0.5, 0.5, 0.5))
