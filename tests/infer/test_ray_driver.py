"""The Ray driver's own parts, without a cluster: the warm-up that scores while the driver
joins (each chunk once, handed back when it fails or is discarded), and rows turned into the
table's Arrow rows without importing pandas."""

from __future__ import annotations

import collections
import math
import subprocess
import sys
import threading
import time

import pytest

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.scaleout import distributed
from gifsent_infer.scaleout.distributed import _chunks, _WarmUp

pa = pytest.importorskip("pyarrow")


class FakeScorer:
    """Scores a prepared chunk into one row per input; slow, or failing on a named input."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.delay, self.fail_on, self.calls = delay, fail_on, 0

    def score(self, prepared: list[dict]) -> list[dict]:
        self.calls += 1
        time.sleep(self.delay)
        if any(p["index"] == self.fail_on for p in prepared):
            raise RuntimeError("the model failed")
        return [{"index": p["index"], "status": "ok"} for p in prepared]


@pytest.fixture
def decoded(monkeypatch):
    """_read_batch without decoding: each record comes back as its prepared input; the
    decoded indices are recorded."""
    seen: list[int] = []

    def read_batch(records, done, **kwargs):
        assert kwargs["phase_log"] is None  # the warm-up's lines are the driver's own
        seen.extend(r["index"] for r in records)
        return [{"index": r["index"], "skipped": r["name"] in done} for r in records]

    monkeypatch.setattr(distributed, "_read_batch", read_batch)
    return seen


def records(n: int) -> list[dict]:
    return [
        {"index": i, "name": f"g{i}.gif", "path": None, "url": None, "error": None}
        for i in range(n)
    ]


def finish(warm: _WarmUp, timeout: float = 10.0) -> list[int]:
    """Wait for the warm-up's threads; the indices it handed over."""
    deadline = time.monotonic() + timeout
    while warm.running():
        assert time.monotonic() < deadline, "the warm-up did not end"
        time.sleep(0.01)
    return [r["index"] for rows in warm.blocks() for r in rows]


def test_the_warm_up_scores_every_chunk_once_beside_another_consumer(decoded):
    """The cluster's loop takes chunks from the same queue: together they take each once."""
    todo = _chunks(records(40), 2)
    scorer = FakeScorer(delay=0.002)
    warm = _WarmUp(lambda: scorer, todo, dict, {"phase_log": None})
    cluster = []
    while (chunk := distributed._pop(todo)) is not None:
        cluster += [r["index"] for r in chunk]
        time.sleep(0.003)
    mine = finish(warm)
    assert sorted(mine + cluster) == list(range(40))
    assert mine and cluster  # both took some (the queue was shared, not copied)


def test_the_warm_up_waits_for_the_scan_and_skips_what_it_says_is_done(decoded):
    gate = threading.Event()

    def done() -> dict:
        gate.wait(5)  # the table's scan, still running on its thread
        return {"g1.gif": "sha"}

    todo = _chunks(records(4), 2)
    warm = _WarmUp(lambda: FakeScorer(), todo, done, {"phase_log": None})
    time.sleep(0.1)
    assert decoded == [] and len(todo) == 2  # nothing taken before the scan is in
    gate.set()
    assert sorted(finish(warm)) == [0, 1, 2, 3]


def test_a_failing_scan_ends_the_warm_up_without_taking_anything(decoded):
    def done() -> dict:
        raise OSError("the table could not be read")  # the main thread raises it again

    todo = _chunks(records(6), 2)
    warm = _WarmUp(lambda: FakeScorer(), todo, done, {"phase_log": None})
    assert finish(warm) == [] and len(todo) == 3 and decoded == []


def test_a_chunk_the_warm_up_fails_on_goes_back_and_it_stops(decoded):
    todo = _chunks(records(10), 2)
    scorer = FakeScorer(fail_on=4)  # the third chunk
    warm = _WarmUp(lambda: scorer, todo, dict, {"phase_log": None})
    mine = finish(warm)
    left = sorted(r["index"] for chunk in todo for r in chunk)
    assert mine == [0, 1, 2, 3]
    assert sorted(mine + left) == list(range(10))  # nothing lost, nothing twice
    assert left[:2] == [4, 5] and scorer.calls == 3  # no chunk scored after the failure


def test_a_model_that_cannot_load_leaves_every_chunk_to_the_cluster(decoded):
    def broken():
        raise RuntimeError("no session")

    todo = _chunks(records(6), 2)
    warm = _WarmUp(broken, todo, dict, {"phase_log": None})
    assert finish(warm) == []
    assert sorted(r["index"] for chunk in todo for r in chunk) == list(range(6))


def test_stop_finishes_what_is_decoded_and_takes_nothing_more(decoded):
    todo = _chunks(records(200), 2)
    warm = _WarmUp(lambda: FakeScorer(delay=0.02), todo, dict, {"phase_log": None})
    time.sleep(0.1)
    warm.stop()
    mine = finish(warm)
    left = [r["index"] for chunk in todo for r in chunk]
    assert mine and sorted(mine + left) == list(range(200))
    assert sorted(decoded) == sorted(mine)  # every chunk it decoded was scored and handed over


def test_discard_hands_back_every_chunk_not_yet_handed_over(decoded):
    """ "auto" found GPUs after joining: the CPU rows are dropped, their inputs go back to the
    queue, and running() holds until the threads have returned theirs."""
    todo = _chunks(records(60), 3)
    warm = _WarmUp(lambda: FakeScorer(delay=0.01), todo, dict, {"phase_log": None})
    time.sleep(0.1)
    taken = next(iter(warm.blocks()), [])  # the cluster's loop took one block already
    warm.discard()
    assert finish(warm) == []  # nothing more handed over after discard
    left = sorted(r["index"] for chunk in todo for r in chunk)
    assert sorted(left + [r["index"] for r in taken]) == list(range(60))


def table_rows() -> tuple[tuple[str, ...], list[dict]]:
    columns = ("path", "sha256", "model_id", "status", "error", "format", "frames", "duration")
    columns += (*EMOTIONS, "amusement_pct", "top")
    ok = {
        "path": 's3://bucket/ünï cödé "quoted".gif',
        "sha256": "ab" * 32,
        "model_id": "m",
        "status": "ok",
        "error": "",
        "format": "gif",
        "frames": 12,
        "duration": 1.23,
        "amusement_pct": 97.5,
        "top": [{"emotion": "amusement", "score": 0.1 + 0.2}],
    }
    ok.update({e: 1 / (k + 3) for k, e in enumerate(EMOTIONS)})
    ok["anger"], ok["fear"] = float("nan"), float("inf")  # nulls, as in every output
    bad = {"path": "x\n.gif", "status": "error", "error": "not a GIF: line 1\nline 2 \\ \t"}
    return columns, [ok, bad]


def test_rows_become_the_same_arrow_table_as_from_pylist():
    from gifsent_infer.running.rows import arrow_schema
    from gifsent_infer.scaleout.delta_table import _arrow_rows

    columns, rows = table_rows()
    got = _arrow_rows(rows, columns)

    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    want = pa.Table.from_pylist(
        [{c: clean(r.get(c)) for c in columns} for r in rows], schema=arrow_schema(columns)
    )
    assert got.schema == want.schema
    assert got.to_pylist() == want.to_pylist()  # floats exact, strings byte for byte
    assert got.column("amusement")[0].as_py() == 1 / 3 and got.column("anger")[0].as_py() is None


def test_a_drivers_commits_do_not_import_pandas(tmp_path):
    """pa.array imports pandas the first time (0.2-0.5 s of a fresh driver, on the way to its
    first commit); appends and MERGEs through the JSON reader do not."""
    code = (
        "import sys\n"
        "from gifsent_infer.scaleout import delta_table as d\n"
        f"dt = d.ensure_table({str(tmp_path / 't')!r}, 1.0, d.COLUMNS)\n"
        "r = {'path': 'a.gif', 'status': 'ok', 'frames': 3}\n"
        "d.append_rows(dt, [r])\n"
        "d.merge_rows(dt, [{**r, 'frames': 4}, {'path': 'b.gif', 'status': 'error'}])\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
        "print(sorted((x['path'], x['frames']) for x in d.read_scores(dt.table_uri)))\n"
        # a MERGE then a read in one process aborts at interpreter exit now and then
        # ("terminate called without an active exception", delta-io/delta-rs#2184): not this
        # test's question, so the process leaves without running the exit-time destructors
        "sys.stdout.flush()\n"
        "import os; os._exit(0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[('a.gif', 4), ('b.gif', None)]"


def test_chunks_cover_the_records_in_order():
    chunks = _chunks(records(7), 3)
    assert isinstance(chunks, collections.deque)
    assert [[r["index"] for r in c] for c in chunks] == [[0, 1, 2], [3, 4, 5], [6]]
