"""Ray where the data lives, on a local Ray instance: inputs listed from and scores committed to a
local S3 endpoint (moto's server mode on 127.0.0.1) equal the local CLI's rows, manifest rows
keep the limits, SSRF policy and error rows of local inputs; readers polling the table every
50 ms through a run that replaces every row see whole snapshots only."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("deltalake")
pytest.importorskip("moto")

from infer_support import build_model, gif_bytes, write_gifs  # noqa: E402
from ray_support import (  # noqa: E402
    assert_exactly_once,
    assert_same_row,
    assert_same_rows,
    init_local_ray,
    local_rows,
    reader_rows,
    renamed,
    s3_server,
    upload_folder,
)

from gifsent_infer.reading.inputs import sha256  # noqa: E402
from gifsent_infer.scaleout.distributed import read_scores, score_with_ray  # noqa: E402

SMALL = {"read_batch": 2, "batch_size": 2, "shard_rows": 3}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    init_local_ray(ray)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


def test_s3_inputs_and_a_manifest_score_into_an_s3_table(s3, tmp_path):
    client, bucket = s3
    model = build_model(tmp_path / "m.onnx")
    gifs = tmp_path / "gifs"
    write_gifs(gifs, 4)
    (gifs / "broken.gif").write_bytes(gif_bytes(9)[:40])
    extra = tmp_path / "extra"
    write_gifs(extra, 1, start=10)
    names = upload_folder(client, bucket, gifs, "gifs") | upload_folder(
        client, bucket, extra, "more"
    )
    want = renamed(local_rows(model, gifs, tmp_path / "l1.jsonl"), names)
    want |= renamed(local_rows(model, extra, tmp_path / "l2.jsonl"), names)
    # a manifest in the store: one more object, a missing one, a private URL, a repeat
    missing, private = f"s3://{bucket}/more/missing.gif", "http://127.0.0.1:9/x.gif"
    listed = [names[str(extra / "g00010.gif")], missing, private, names[str(gifs / "g00000.gif")]]
    client.put_object(Bucket=bucket, Key="todo.csv", Body="url\n" + "\n".join(listed) + "\n")

    table = f"s3://{bucket}/scores"
    s = score_with_ray(
        [f"s3://{bucket}/gifs/"], model, table, manifest=f"s3://{bucket}/todo.csv", **SMALL
    )
    assert (s.inputs, s.scored, s.failed) == (8, 5, 3)
    rows = {r["path"]: r for r in read_scores(table)}
    assert rows[missing]["error"] == "no such object"
    assert "--allow-private-urls" in rows[private]["error"]
    assert_same_rows([r for p, r in rows.items() if p not in (missing, private)], want)
    assert_exactly_once_all(table, rows)

    # a rerun scores only what the table lacks for this model: the error rows, retried
    again = score_with_ray(
        [f"s3://{bucket}/gifs/"], model, table, manifest=f"s3://{bucket}/todo.csv"
    )
    assert (again.scored, again.failed, again.skipped) == (0, 3, 5)
    assert len(read_scores(table)) == 8


def assert_exactly_once_all(table: str, rows: dict[str, dict]) -> None:
    for reader in ("deltalake", "duckdb", "polars"):
        got = reader_rows(table, reader)
        assert sorted(r["path"] for r in got) == sorted(rows), reader
        for r in got:
            assert_same_row(r, rows[r["path"]])


class Poller:
    """Reads the table's latest snapshot every 50 ms, with each reader in turn, and checks it:
    one row per input, every input present, every row exactly the old run's or the new one's."""

    def __init__(self, table: Path, old: dict, new: dict) -> None:
        self.table, self.old, self.new = table, old, new
        self.errors: list[str] = []
        self.snapshots = 0
        self.mixed = 0  # snapshots holding old and new rows (between two commits of the run)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        readers = ("deltalake", "duckdb", "polars")
        while not self.stop.is_set():
            reader = readers[self.snapshots % len(readers)]
            try:
                self.check(reader_rows(self.table, reader))
            except Exception as e:  # a reader's failure is what this test counts
                self.errors.append(f"{reader}: {type(e).__name__}: {e}")
            self.snapshots += 1
            self.stop.wait(0.05)

    def check(self, rows: list[dict]) -> None:
        counts = Counter(r["path"] for r in rows)
        assert set(counts) == set(self.old), "an input is missing"
        assert max(counts.values()) == 1, "an input has two rows"
        kinds = set()
        for r in rows:
            ref = self.new if r["model_id"] == self.new_id else self.old
            kinds.add(ref is self.new)
            assert_same_row(r, ref[r["path"]])  # a whole row, of one run or the other
        self.mixed += kinds == {True, False}

    @property
    def new_id(self) -> str:
        return next(iter(self.new.values()))["model_id"]


@pytest.mark.slow  # two runs with a reader thread polling beside them
def test_readers_polling_every_50ms_through_a_run_that_replaces_every_row(tmp_path):
    model_a = build_model(tmp_path / "a.onnx", seed=0)
    model_b = build_model(tmp_path / "b.onnx", seed=1)  # other weights: every row changes
    gifs = tmp_path / "gifs"
    write_gifs(gifs, 8)
    old = local_rows(model_a, gifs, tmp_path / "a.jsonl")
    new = local_rows(model_b, gifs, tmp_path / "b.jsonl")
    assert {r["model_id"] for r in new.values()} == {sha256(model_b.read_bytes())}
    table = tmp_path / "table"
    score_with_ray([gifs], model_a, table, **SMALL)
    poller = Poller(table, old, new)
    poller.thread.start()
    try:
        time.sleep(0.2)
        s = score_with_ray([gifs], model_b, table, flush_seconds=0.2, **SMALL)
        time.sleep(0.2)
    finally:
        poller.stop.set()
        poller.thread.join(timeout=60)
    assert s.scored == 8 and s.commits >= 3  # every row replaced, MERGEd in several commits
    assert poller.errors == []
    assert poller.snapshots >= 10
    assert_exactly_once(table, new)
