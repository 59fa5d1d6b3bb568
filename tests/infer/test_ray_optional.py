"""The Ray path without Ray: importing costs nothing, a missing Ray says how to install it; the
Delta table writer's commits (by rows, by time, MERGE for replacements), object-store and
manifest inputs."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.scaleout.distributed import _drain, auto_commit_rows


def test_import_does_not_import_ray_and_missing_ray_gives_the_hint(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if Ray were not installed\n"
        "import gifsent_infer.scaleout.distributed as d\n"
        "assert 'pyarrow' not in sys.modules\n"
        "try:\n"
        "    d.score_with_ray(['x.gif'], 'm.onnx', 'out')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'gifsent[ray]'" in proc.stdout


def row(path: str, sha: str, status: str = "ok", score: float = 0.5) -> dict:
    r = {
        "path": path,
        "sha256": sha,
        "model_id": "m",
        "status": status,
        "error": "" if status == "ok" else "broken",
        "frames": 4 if status == "ok" else None,
        "duration": 0.4 if status == "ok" else None,
        "segments": 2 if status == "ok" else None,
        "padding": 0.0 if status == "ok" else None,
    }
    for e in EMOTIONS:
        r[e] = score if status == "ok" else None
    return r


class Block:
    """What Ray Data hands the driver: a block of score rows (here without pyarrow)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def to_pylist(self) -> list[dict]:
        return self.rows


def blocks(n_blocks: int, per_block: int, pause: float):
    """A pipeline that delivers `per_block` rows every `pause` seconds."""
    k = 0
    for _ in range(n_blocks):
        rows = []
        for _ in range(per_block):
            rows.append({**row(f"g{k:03d}.gif", f"s{k}"), "index": k})
            k += 1
        yield Block(rows)
        time.sleep(pause)


def table(tmp_path: Path):
    pytest.importorskip("deltalake")
    from gifsent_infer.scaleout.delta_table import ensure_table

    return ensure_table(tmp_path / "t")


def commits(dt) -> list[tuple[str, int]]:
    """(operation, rows it wrote) of each commit after the table's creation, oldest first."""
    out = []
    for h in reversed(dt.history()):
        if h["operation"] == "CREATE TABLE":
            continue
        m = h.get("operationMetrics", {})
        out.append((h["operation"], int(m.get("num_added_rows", m.get("num_output_rows", 0)))))
    return out


def test_rows_are_committed_by_rows(tmp_path: Path):
    from gifsent_infer.scaleout.delta_table import TableWriter, read_scores

    dt = table(tmp_path)
    w = TableWriter(dt, rows=3, seconds=3600.0, replaces=set())
    _drain(lambda: blocks(4, 2, 0.0), w)
    dt.update_incremental()
    assert commits(dt) == [("WRITE", 3), ("WRITE", 3), ("WRITE", 2)]
    assert (w.scored, w.failed, w.commits) == (8, 0, 3)
    assert [r["path"] for r in read_scores(tmp_path / "t")] == [f"g{k:03d}.gif" for k in range(8)]


def test_the_first_block_is_committed_at_once_then_by_rows(tmp_path: Path):
    """eager_first (rows per commit chosen by the run): a run killed early keeps its first
    rows; later commits wait for the row count as before."""
    from gifsent_infer.scaleout.delta_table import TableWriter

    dt = table(tmp_path)
    w = TableWriter(dt, rows=3, seconds=3600.0, replaces=set(), eager_first=True)
    _drain(lambda: blocks(4, 2, 0.0), w)
    dt.update_incremental()
    assert commits(dt) == [("WRITE", 2), ("WRITE", 3), ("WRITE", 3)]
    assert (w.scored, w.commits) == (8, 3)


def test_the_phase_log_times_a_run_from_its_process_start(tmp_path: Path, monkeypatch):
    from gifsent_infer.scaleout import phases

    log = tmp_path / "phases.jsonl"
    monkeypatch.setenv(phases.PHASES_ENV, str(log))
    before = time.time()
    phases.start_driver()
    phases.mark("first_rows", once=True, rows=8)
    phases.mark("first_rows", once=True, rows=8)  # once: not logged again
    phases.mark("model_loaded", role="actor", file=str(log))  # a worker's line
    rows = phases.read_phases(log)
    assert [r["phase"] for r in rows] == [
        "process_start",
        "run_start",
        "first_rows",
        "model_loaded",
    ]
    # this (pytest) process started before the run, within this test session
    assert rows[0]["t"] <= before and before - rows[0]["t"] < 3600
    line = phases.timeline(rows)
    assert line[0][2] == "process_start" and line[0][0] == 0.0
    assert [sec for sec, _, _ in line] == sorted(sec for sec, _, _ in line)
    monkeypatch.delenv(phases.PHASES_ENV)
    phases.mark("run_done")  # off: nothing written
    assert len(phases.read_phases(log)) == 4


def test_rows_are_committed_by_time_while_the_pipeline_is_busy(tmp_path: Path, monkeypatch):
    """Rows arriving every 0.6 s with a 0.1 s commit interval are committed before the next
    block comes, though the row limit (1000) is never reached."""
    from gifsent_infer.scaleout import ray_cluster
    from gifsent_infer.scaleout.delta_table import TableWriter, open_table

    dt = table(tmp_path)
    written: list[int] = []  # the table's version after each commit
    monkeypatch.setattr(
        ray_cluster,
        "fault_hook",
        lambda stage, n: (
            stage == "committed" and written.append(open_table(tmp_path / "t").version())
        ),
    )
    w = TableWriter(dt, rows=1000, seconds=0.1, replaces=set())
    _drain(lambda: blocks(3, 2, 0.6), w)
    assert written == [1, 2, 3]
    # one commit per block (2 rows each): each was committed by time, before the next block
    # was added (no wall-clock bounds, which a loaded machine's slow commits could break)
    dt.update_incremental()
    assert commits(dt) == [("WRITE", 2)] * 3


def test_replacement_rows_are_merged_and_commit_rows_follow_the_input_count(tmp_path: Path):
    from gifsent_infer.scaleout.delta_table import TableWriter, read_scores

    dt = table(tmp_path)
    first = TableWriter(dt, rows=100, seconds=3600.0, replaces=set())
    first.add([row("g000.gif", "a", "error"), row("g001.gif", "b")])
    first.flush()
    again = TableWriter(dt, rows=100, seconds=3600.0, replaces={"g000.gif", "g001.gif"})
    again.add([row("g000.gif", "a2", score=0.25), row("g002.gif", "c")])
    again.flush()
    dt.update_incremental()
    assert [op for op, _ in commits(dt)] == ["WRITE", "WRITE", "MERGE"]
    rows = {r["path"]: r for r in read_scores(tmp_path / "t")}
    assert sorted(rows) == ["g000.gif", "g001.gif", "g002.gif"]
    assert rows["g000.gif"]["status"] == "ok" and rows["g000.gif"]["happiness"] == 0.25
    assert [auto_commit_rows(n) for n in (1, 238, 1000, 10_000, 100_000)] == [8, 8, 32, 313, 1024]


def test_a_folder_that_is_not_a_table_is_refused(tmp_path: Path):
    pytest.importorskip("deltalake")
    from gifsent_infer.scaleout.delta_table import ScoresTableError, ensure_table

    old = tmp_path / "old"
    old.mkdir()
    (old / "part-g0001-0123456789abcdef01234567.parquet").write_bytes(b"PAR1")
    with pytest.raises(ScoresTableError, match="older gifsent"):
        ensure_table(old)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ScoresTableError, match="is a file"):
        ensure_table(tmp_path / "file")
    other = tmp_path / "other"
    import deltalake
    import pyarrow as pa

    deltalake.write_deltalake(str(other), pa.table({"x": [1]}))
    with pytest.raises(ScoresTableError, match="not a gifsent score table"):
        ensure_table(other)


def test_store_inputs_list_read_and_keep_the_limits():
    """Any fsspec filesystem works as an input store (here fsspec's memory://): a prefix is
    listed (GIFs by name), an object named explicitly always gets a row, the size limit is
    checked before reading, a missing object is an error row."""
    fsspec = pytest.importorskip("fsspec")
    pytest.importorskip("pyarrow")
    from infer_support import gif_bytes

    from gifsent_infer.reading.inputs import InputError, expand_inputs, read_item

    mem = fsspec.filesystem("memory")
    mem.pipe("/gifsent-t/in/a.gif", gif_bytes(1))
    mem.pipe("/gifsent-t/in/sub/b.gif", gif_bytes(2))
    mem.pipe("/gifsent-t/in/notes.txt", b"hello")
    items = expand_inputs(["memory://gifsent-t/in", "memory://gifsent-t/in/notes.txt"]).items
    names = [i.name for i in items]
    assert names[-1] == "memory://gifsent-t/in/notes.txt" and len(names) == 3
    assert sorted(n.rsplit("/", 1)[1] for n in names[:2]) == ["a.gif", "b.gif"]
    assert read_item(items[0]) in (gif_bytes(1), gif_bytes(2))
    with pytest.raises(InputError, match="over the"):
        read_item(items[0], max_bytes=10)
    (missing,) = expand_inputs(["memory://gifsent-t/nope.gif", "memory://gifsent-t/in"]).items[:1]
    assert missing.error == "no such object or prefix"


def test_gcs_inputs_through_a_local_emulator(monkeypatch):
    """gs:// inputs against a GCS emulator on 127.0.0.1 (gcp-storage-emulator; the
    STORAGE_EMULATOR_HOST variable Google's client libraries read): a prefix is listed, an
    object read, the size limit kept, a missing object is an error row. (The Delta table on
    gs:// is deltalake's own object store, not exercised here.)"""
    pytest.importorskip("pyarrow")
    emulator = pytest.importorskip("gcp_storage_emulator.server")
    import pyarrow.fs as pafs
    from infer_support import gif_bytes

    from gifsent_infer.reading.inputs import InputError, expand_inputs, read_item

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket="gt")
    server.start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        fs = pafs.GcsFileSystem(
            anonymous=True, endpoint_override=f"127.0.0.1:{port}", scheme="http"
        )
        for key, data in (("in/a.gif", gif_bytes(1)), ("in/sub/b.gif", gif_bytes(2))):
            with fs.open_output_stream(f"gt/{key}") as f:
                f.write(data)
        items = expand_inputs(["gs://gt/in/", "gs://gt/nope.gif"]).items
        assert [i.name for i in items] == [
            "gs://gt/in/a.gif",
            "gs://gt/in/sub/b.gif",
            "gs://gt/nope.gif",
        ]
        assert read_item(items[0]) == gif_bytes(1)
        with pytest.raises(InputError, match="over the"):
            read_item(items[1], max_bytes=10)
        assert items[2].error == "no such object or prefix"
    finally:
        server.stop()


def test_manifest_rows_are_inputs_named_exactly(tmp_path: Path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gifsent_infer.reading.manifest import ManifestError, manifest_items, read_manifest_names

    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    listed = [str(tmp_path / "a.gif"), "", str(tmp_path / "gone.gif"), str(tmp_path)]
    listed += ["https://example.com/x.gif", "s3://bucket/k.gif", str(tmp_path / "a.gif")]
    pq.write_table(pa.table({"id": list(range(7)), "url": listed}), tmp_path / "m.parquet")
    items = manifest_items(tmp_path / "m.parquet")
    assert [i.name for i in items] == [listed[0], *listed[2:6]]  # blanks and repeats dropped
    assert [i.error for i in items] == [None, "no such file or folder", "is a folder", None, None]
    assert items[3].url == listed[4] and items[4].url == listed[5]
    (tmp_path / "m.csv").write_text("name,n\n007.gif,1\n")
    assert read_manifest_names(tmp_path / "m.csv", "name") == ["007.gif"]  # text, not 7
    (tmp_path / "m.jsonl").write_text('{"path": "x.gif"}\n{"path": null}\n')
    assert read_manifest_names(tmp_path / "m.jsonl") == ["x.gif"]
    with pytest.raises(ManifestError, match="--manifest-column"):
        read_manifest_names(tmp_path / "m.csv")
    with pytest.raises(ManifestError, match="no such file"):
        read_manifest_names(tmp_path / "nope.parquet")


def test_what_a_driver_killed_inside_a_commit_leaves_is_in_no_snapshot(tmp_path: Path):
    """A SIGKILL between a commit's data files and its log entry leaves data files no log
    entry names (here: a file holding every row again) and a temporary log file; readers and
    the next commit ignore both (a timed SIGKILL rarely lands there: an append takes ~5 ms)."""
    import pyarrow.parquet as pq
    from ray_support import reader_rows

    from gifsent_infer.scaleout.delta_table import TableWriter, open_table, read_scores

    dt = table(tmp_path)
    w = TableWriter(dt, rows=100, seconds=3600.0, replaces=set())
    w.add([row(f"g{k}.gif", f"s{k}") for k in range(3)])
    w.flush()
    t = tmp_path / "t"
    orphan = pq.read_table(next(t.glob("*.parquet")))
    pq.write_table(
        orphan, t / "part-00000-0badc0de-0000-0000-0000-000000000000-c000.snappy.parquet"
    )
    (t / "_delta_log" / "_commit_0badc0de.json.tmp").write_text('{"add": {"path": "x"}}')
    for reader in ("deltalake", "duckdb", "polars"):
        assert sorted(r["path"] for r in reader_rows(t, reader)) == ["g0.gif", "g1.gif", "g2.gif"]
    w.add([row("g3.gif", "s3")])
    w.flush()  # the next commit after such a kill
    assert [r["path"] for r in read_scores(t)] == ["g0.gif", "g1.gif", "g2.gif", "g3.gif"]
    assert open_table(t).version() == 2
